// `npm run bench`: the real webhook against a bare node:https ceiling, same run, same load: throughput, latency, RSS, start-up;
// then the patch's cost against list size (bench/attacks.js), each size in a fresh process.
// The headline is each ratio to the baseline: the machine is shared and noisy, so absolute figures drift between runs
// while ratios taken side by side, in interleaved rounds, hold.
import { fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:https';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createServingCert } from '../dist/tls.js';
import { buildMixes } from './mixes.js';
import { listSizes, listSizeTable } from './attacks.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2.5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const WARMUP_SECONDS = 1;
const STARTS = Number(process.env.BENCH_STARTS ?? 5);
// BENCH_MIXES=target-create,not-ours runs only those; BENCH_COMPARE_DIST=DIR adds a webhook built into DIR (an
// earlier build, say) to every mix, measured in the same interleaved rounds: the A/B behind each optimisation commit.
const ONLY = process.env.BENCH_MIXES ? process.env.BENCH_MIXES.split(',') : undefined;
const COMPARE_DIST = process.env.BENCH_COMPARE_DIST;
// BENCH_WARN=1 adds the webhook at logLevel warn on the target mix (32 connections): pino's share, at ~15 s more
const WARN = process.env.BENCH_WARN === '1';
const CONNECTIONS = [1, 32];
export const TARGETS = { ratio: 0.85, p99Ms: 2, rssMiB: 80, readyMs: 400, triggerForeign: 1.1, list8000Ms: 20, list8000MiB: 20 };

const started = Date.now();
const log = (msg) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** One HTTPS request on a fresh connection; resolves with status and body text. */
function call(port, ca, method, path, body) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, ca, servername: 'localhost', agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Spawns a server and polls /readyz until the first 200; the time from spawn to that answer is its start-up. */
export async function startServer(def, tls) {
  const port = await freePort();
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [...(def.nodeArgs ?? []), ...def.args, '--host', '127.0.0.1', '--port', String(port), '--tls-cert', tls.certFile, '--tls-key', tls.keyFile], {
    cwd: root,
    // the webhook's info lines go to /dev/null: written (one sync write each, as in a container) but not read back
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  let exited = false;
  child.on('exit', () => (exited = true));
  for (;;) {
    if (exited) throw new Error(`${def.name} exited before it was ready: ${stderr.trim()}`);
    if (Number(process.hrtime.bigint() - t0) > 15e9) throw new Error(`${def.name} not ready within 15 s: ${stderr.trim()}`);
    try {
      const res = await call(port, tls.ca, 'GET', '/readyz');
      if (res.status === 200) break;
    } catch (err) {
      if (err.code !== 'ECONNREFUSED' && err.code !== 'ECONNRESET') throw err;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
  return { def, child, port, readyMs, url: `https://127.0.0.1:${port}/mutate` };
}

export async function stopServer(s) {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exit = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
  await exit;
  clearTimeout(timer);
}

/** Peak resident set of a running process (Linux VmHWM), in MiB; null where /proc is missing. */
function peakRssMiB(pid) {
  const file = `/proc/${pid}/status`;
  if (!existsSync(file)) return null;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(file, 'utf8'));
  return m ? Number(m[1]) / 1024 : null;
}

/** Proves the server answers this mix correctly before it is measured (uid echoed, allowed, patch or not as expected). */
export async function checkAnswer(s, mix, tls) {
  const res = await call(s.port, tls.ca, 'POST', '/mutate', mix.body);
  if (res.status !== 200) throw new Error(`${s.def.name} answered ${res.status} to ${mix.id}: ${res.text}`);
  const r = JSON.parse(res.text).response;
  if (r?.uid !== mix.uid || r.allowed !== true) throw new Error(`${s.def.name} gave a wrong answer to ${mix.id}: ${res.text.slice(0, 300)}`);
  if (s.def.checksPatch && Boolean(r.patch) !== mix.expect.patch) {
    throw new Error(`${s.def.name}: ${mix.id} expected ${mix.expect.patch ? 'a patch' : 'no patch'}, got ${res.text.slice(0, 300)}`);
  }
}

export function loadClient() {
  const child = fork(join(here, 'load.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let next = 0;
  child.on('message', ({ id, result, error }) => {
    const p = pending.get(id);
    pending.delete(id);
    if (error) p.reject(new Error(error));
    else p.resolve(result);
  });
  return {
    run(msg) {
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.send({ id, ...msg });
      });
    },
    close: () => child.disconnect(),
  };
}

/** Copies the example config with the bench's few changes: no drain wait on stop, and the log level under test. */
function writeConfig(dir, logLevel) {
  const config = parseYaml(readFileSync(join(root, 'examples/config.yaml'), 'utf8'));
  config.logLevel = logLevel;
  config.server = { ...config.server, drainSeconds: 0 };
  const file = join(dir, `config-${logLevel}.yaml`);
  writeFileSync(file, stringifyYaml(config));
  return file;
}

export async function makeTls(dir) {
  const pair = await createServingCert(['localhost'], 1);
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  writeFileSync(certFile, pair.cert);
  writeFileSync(keyFile, pair.key, { mode: 0o600 });
  return { certFile, keyFile, ca: pair.cert };
}

export function serverDefs(dir) {
  return {
    // BENCH_WEBHOOK_NODE_ARGS="--max-semi-space-size=2" tries a V8 flag on the webhook (say, for peak RSS)
    webhook: { name: 'webhook', nodeArgs: (process.env.BENCH_WEBHOOK_NODE_ARGS ?? '').split(' ').filter(Boolean), args: ['dist/cli.js', 'serve', '--config', writeConfig(dir, 'info')], checksPatch: true },
    webhookWarn: { name: 'webhook (logLevel warn)', args: ['dist/cli.js', 'serve', '--config', writeConfig(dir, 'warn')], checksPatch: true },
    baseline: { name: 'bare node:https', args: [join(here, 'baseline.js')], checksPatch: false },
    ...(COMPARE_DIST ? { compare: { name: `webhook from ${COMPARE_DIST}`, args: [join(COMPARE_DIST, 'cli.js'), 'serve', '--config', writeConfig(dir, 'info')], checksPatch: true } } : {}),
  };
}

async function measureStartup(defs, tls) {
  const times = { webhook: [], baseline: [] };
  for (let i = 0; i < STARTS; i++) {
    for (const key of Object.keys(times)) {
      const s = await startServer(defs[key], tls);
      times[key].push(s.readyMs);
      await stopServer(s);
    }
  }
  return Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, { medianMs: median(xs), samplesMs: xs.map((x) => Math.round(x)) }]));
}

/** Which servers each mix drives, and at which connection counts. */
function sidesFor(mix, defs) {
  const sides = [{ key: 'baseline', conns: CONNECTIONS }, { key: 'webhook', conns: CONNECTIONS }];
  if (WARN && mix.id === 'target-create') sides.push({ key: 'webhookWarn', conns: [32] });
  if (defs.compare) sides.push({ key: 'compare', conns: CONNECTIONS });
  return sides;
}

/**
 * One mix, on servers that live through all mixes (starting fresh ones per mix cost more of the 3-minute budget than
 * it told): ROUNDS rounds in which the order of servers alternates, so that drift in the machine's load falls on both
 * sides alike. Peak RSS (VmHWM) is read after each mix, so it is the peak up to and including that mix.
 */
async function measureMix(mix, sides, servers, tls, load) {
  for (const side of sides) await checkAnswer(servers[side.key], mix, tls);
  const figures = {};
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      for (const connections of side.conns) {
        const key = `${side.key}:${mix.id}:${connections}`;
        figures[side.key] ??= {};
        figures[side.key][connections] = await load.run({ key, url: servers[side.key].url, body: mix.body, connections, seconds: SECONDS, ca: tls.ca });
      }
    }
  }
  for (const side of sides) {
    figures[side.key].peakRssMiB = peakRssMiB(servers[side.key].child.pid);
    const f = figures[side.key];
    for (const c of side.conns) if (f[c].non2xx || f[c].errors || f[c].timeouts) throw new Error(`${side.key} ${mix.id} ${c} conns: ${f[c].non2xx} non-2xx, ${f[c].errors} errors, ${f[c].timeouts} timeouts`);
  }
  return figures;
}

/** Starts every server the mixes need and warms each up once (JIT, TLS sessions) on the first mix's body. */
async function startAll(mixes, defs, tls, load) {
  const keys = new Set(mixes.flatMap((m) => sidesFor(m, defs).map((s) => s.key)));
  const servers = {};
  for (const key of keys) {
    servers[key] = await startServer(defs[key], tls);
    await load.run({ key: `warmup:${key}`, url: servers[key].url, body: mixes[0].body, connections: 32, seconds: WARMUP_SECONDS, ca: tls.ca });
  }
  return servers;
}

/** The trigger's per-row cost comes from bench/trigger-cost.mjs (another module owns it); absent, the row says so. */
async function measureTrigger() {
  const file = join(here, 'trigger-cost.mjs');
  if (!existsSync(file)) return { skipped: 'bench/trigger-cost.mjs not present' };
  const { benchTrigger } = await import(pathToFileURL(file).href);
  return await benchTrigger();
}

/** The foreign-tag overhead ratio from whatever shape benchTrigger returns: the first numeric field naming "foreign". */
function foreignRatio(trigger) {
  const found = Object.entries(trigger ?? {}).find(([k, v]) => /foreign/i.test(k) && /ratio|overhead/i.test(k) && typeof v === 'number');
  return found ? found[1] : undefined;
}

const f1 = (x) => (x == null ? 'n/a' : x.toFixed(1));
const f2 = (x) => (x == null ? 'n/a' : x.toFixed(2));
const f3 = (x) => (x == null ? 'n/a' : x.toFixed(3));
const lat = (l) => `${f3(l.p50)} / ${f3(l.p99)} / ${f3(l.p99_9)}`;
const yes = (ok) => (ok === undefined ? 'not measured' : ok ? 'met' : '**missed**');

export function table(results) {
  const { machine, mixes, startup, trigger } = results;
  const out = [];
  out.push(`Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ${machine.date}. ` +
    `${results.settings.rounds} interleaved rounds × ${results.settings.seconds} s per figure, autocannon in its own process, keep-alive HTTPS, TLS ${results.settings.tls}.`);
  out.push('');
  out.push('| mix | body | conns | webhook req/s | baseline req/s | **ratio** | webhook p50 / p99 / p99.9 ms | baseline p50 / p99 / p99.9 ms |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of mixes) {
    for (const c of CONNECTIONS) {
      const w = m.webhook[c];
      const b = m.baseline[c];
      out.push(`| ${m.label} | ${f1(m.bodyBytes / 1024)} KiB | ${c} | ${Math.round(w.rps)} | ${Math.round(b.rps)} | **${f2(w.rps / b.rps)}** | ${lat(w.latencyMs)} | ${lat(b.latencyMs)} |`);
    }
    for (const c of m.compare ? CONNECTIONS : []) {
      const w = m.compare[c];
      const b = m.baseline[c];
      out.push(`| ${m.label}, build in ${COMPARE_DIST} | ${f1(m.bodyBytes / 1024)} KiB | ${c} | ${Math.round(w.rps)} | ${Math.round(b.rps)} | ${f2(w.rps / b.rps)} | ${lat(w.latencyMs)} | ${lat(b.latencyMs)} |`);
    }
    if (m.webhookWarn) {
      const w = m.webhookWarn[32];
      const b = m.baseline[32];
      out.push(`| ${m.label}, logLevel warn | ${f1(m.bodyBytes / 1024)} KiB | 32 | ${Math.round(w.rps)} | ${Math.round(b.rps)} | ${f2(w.rps / b.rps)} | ${lat(w.latencyMs)} | ${lat(b.latencyMs)} |`);
    }
  }
  out.push('');
  out.push('| peak RSS (VmHWM) after | webhook | bare node:https |');
  out.push('|---|---:|---:|');
  for (const m of mixes) out.push(`| ${m.label} (and every mix above it) | ${f1(m.webhook.peakRssMiB)} MiB | ${f1(m.baseline.peakRssMiB)} MiB |`);
  out.push('');
  out.push(`Spawn → first 200 on /readyz, median of ${STARTS} starts: webhook ${f1(startup.webhook.medianMs)} ms (${startup.webhook.samplesMs.join(', ')}), bare node:https ${f1(startup.baseline.medianMs)} ms (${startup.baseline.samplesMs.join(', ')}); webhook ÷ bare ${f2(startup.webhook.medianMs / startup.baseline.medianMs)}.`);
  out.push('');
  if (trigger.skipped) out.push(`Trigger cost: not measured (${trigger.skipped}).`);
  else {
    out.push('Trigger cost (embedded PostgreSQL, `INSERT INTO experiment_tags`, with our trigger ÷ without):');
    out.push('');
    out.push('| figure | value |');
    out.push('|---|---:|');
    for (const [k, v] of Object.entries(trigger)) out.push(`| ${k} | ${typeof v === 'number' ? (Number.isInteger(v) ? v : f3(v)) : typeof v === 'object' ? JSON.stringify(v) : v} |`);
  }
  out.push('');
  const ratios32 = mixes.map((m) => ({ label: m.label, r: m.webhook[32].rps / m.baseline[32].rps }));
  const target = mixes.find((m) => m.id === 'target-create') ?? mixes[0];
  const rss = Math.max(...mixes.map((m) => m.webhook.peakRssMiB ?? 0));
  const fr = foreignRatio(trigger);
  out.push('| target | goal | measured | |');
  out.push('|---|---|---|---|');
  for (const { label, r } of ratios32) out.push(`| throughput ÷ baseline, ${label}, 32 conns | ≥ ${TARGETS.ratio} | ${f2(r)} | ${yes(r >= TARGETS.ratio)} |`);
  out.push(`| p99 latency, target Deployment, 1 conn | ≤ ${TARGETS.p99Ms} ms | ${f3(target.webhook[1].latencyMs.p99)} ms | ${yes(target.webhook[1].latencyMs.p99 <= TARGETS.p99Ms)} |`);
  out.push(`| peak RSS under load (all mixes) | ≤ ${TARGETS.rssMiB} MiB | ${f1(rss)} MiB | ${yes(rss <= TARGETS.rssMiB)} |`);
  out.push(`| spawn → ready (median of ${STARTS}) | ≤ ${TARGETS.readyMs} ms | ${f1(startup.webhook.medianMs)} ms | ${yes(startup.webhook.medianMs <= TARGETS.readyMs)} |`);
  out.push(`| trigger overhead, foreign-tag insert | ≤ ${TARGETS.triggerForeign}× | ${fr === undefined ? 'n/a' : `${f3(fr)}×`} | ${yes(fr === undefined ? undefined : fr <= TARGETS.triggerForeign)} |`);
  const l8 = results.lists?.find((r) => r.n === 8000 && !r.failed);
  out.push(`| patch of 8,000 env entries and mounts: time, extra peak RSS | < ${TARGETS.list8000Ms} ms, < ${TARGETS.list8000MiB} MiB | ${l8 ? `${f2(l8.ms)} ms, ${f1(l8.extraMiB)} MiB` : 'n/a'} | ${yes(l8 ? l8.ms < TARGETS.list8000Ms && l8.extraMiB < TARGETS.list8000MiB : undefined)} |`);
  if (results.lists) out.push('', listSizeTable(results.lists));
  return out.join('\n');
}

/**
 * Replaces the generated part of bench/RESULTS.md (between the markers) and keeps the hand-written profile notes; the
 * README's Performance section carries the same markers and gets the same table, so it always shows a real run.
 */
function writeResultsMd(markdown) {
  const begin = '<!-- bench:begin (written by npm run bench) -->';
  const end = '<!-- bench:end -->';
  const block = `${begin}\n${markdown}\n${end}`;
  for (const file of [join(here, 'RESULTS.md'), join(here, '..', 'README.md')]) {
    const current = existsSync(file) ? readFileSync(file, 'utf8') : `# Benchmark results\n\n${begin}\n${end}\n`;
    const i = current.indexOf(begin);
    const j = current.indexOf(end);
    if (i >= 0 && j > i) writeFileSync(file, current.slice(0, i) + block + current.slice(j + end.length));
    else if (file.endsWith('RESULTS.md')) writeFileSync(file, `${current.trimEnd()}\n\n${block}\n`);
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'mlflow-irsa-bench-'));
  const load = loadClient();
  try {
    const tls = await makeTls(dir);
    const defs = serverDefs(dir);
    log(`start-up: ${STARTS} starts each`);
    const startup = await measureStartup(defs, tls);
    const mixes = [];
    const chosen = buildMixes().filter((m) => !ONLY || ONLY.includes(m.id));
    const servers = await startAll(chosen, defs, tls, load);
    try {
      for (const mix of chosen) {
        log(`mix ${mix.id} (${mix.body.length} bytes)`);
        const figures = await measureMix(mix, sidesFor(mix, defs), servers, tls, load);
        mixes.push({ id: mix.id, label: mix.label, bodyBytes: mix.body.length, ...figures });
      }
    } finally {
      for (const s of Object.values(servers)) await stopServer(s);
    }
    log('trigger cost');
    const trigger = await measureTrigger();
    log('patch cost against list size');
    const lists = await listSizes();
    const results = {
      machine: {
        cores: availableParallelism(),
        cpu: cpus()[0]?.model.trim() ?? 'unknown',
        memoryGiB: Math.round(totalmem() / 1024 ** 3),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        date: new Date().toISOString(),
      },
      settings: { seconds: SECONDS, rounds: ROUNDS, warmupSeconds: WARMUP_SECONDS, serversLiveThroughAllMixes: true, connections: CONNECTIONS, starts: STARTS, tls: 'self-signed ECDSA P-256, TLSv1.2 floor' },
      targets: TARGETS,
      startup,
      mixes,
      trigger,
      lists,
      elapsedSeconds: (Date.now() - started) / 1000,
    };
    const markdown = table(results);
    process.stdout.write(`${markdown}\n`);
    if (ONLY || COMPARE_DIST || process.env.BENCH_WEBHOOK_NODE_ARGS) {
      log(`done in ${results.elapsedSeconds.toFixed(1)} s; a partial or A/B run, so bench/results.json and bench/RESULTS.md are left as they were`);
      return;
    }
    writeFileSync(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeResultsMd(markdown);
    log(`done in ${results.elapsedSeconds.toFixed(1)} s; wrote bench/results.json and bench/RESULTS.md`);
  } finally {
    load.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
