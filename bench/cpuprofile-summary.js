// Summarises a V8 .cpuprofile by self time: the top functions, and the same time grouped by where the code lives.
// Usage: node bench/cpuprofile-summary.js FILE.cpuprofile [top=25] [skipMs=0]  (skipMs drops start-up samples)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where a frame's code lives: our src, a package in node_modules, Node's own lib, or V8 (GC, idle, program). */
function place(url) {
  if (!url) return '(v8)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const ours = /\/(dist|bench)\/(.+)$/.exec(url);
  return ours ? `${ours[1]}/${ours[2]}` : url;
}

export function summarise(profile, top = 25, skipMs = 0) {
  const self = new Map();
  for (const n of profile.nodes) self.set(n.id, { node: n, us: 0 });
  // timeDeltas[i] is the time before sample i; charge it to that sample's node
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (at >= skipMs * 1000) self.get(profile.samples[i]).us += profile.timeDeltas[i] ?? 0;
  }
  const total = [...self.values()].reduce((a, b) => a + b.us, 0);
  const byFunction = new Map();
  const byPlace = new Map();
  for (const { node, us } of self.values()) {
    const f = node.callFrame;
    const key = `${f.functionName || '(anonymous)'}  ${place(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const p = f.url ? place(f.url) : f.functionName;
    byPlace.set(p, (byPlace.get(p) ?? 0) + us);
  }
  const rows = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => ({ name: k, ms: Math.round(us / 1000), pct: Math.round((1000 * us) / total) / 10 }));
  return { totalMs: Math.round(total / 1000), functions: rows(byFunction), places: rows(byPlace) };
}

export function format(summary) {
  const line = (r) => `${String(r.pct.toFixed(1)).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`;
  return [`total sampled ${summary.totalMs} ms`, '', 'self time by function:', ...summary.functions.map(line), '', 'self time by place:', ...summary.places.map(line)].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top, skipMs] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/cpuprofile-summary.js FILE.cpuprofile [top]\n');
    process.exit(2);
  }
  process.stdout.write(`${format(summarise(JSON.parse(readFileSync(file, 'utf8')), Number(top ?? 25), Number(skipMs ?? 0)))}\n`);
}
