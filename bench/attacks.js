// What an in-cluster caller can cost the webhook, measured on any build (BENCH_COMPARE_DIST=DIR or --dist DIR, default
// dist/): the patch's cost against list size, how much a request can make the response and the log grow, and the
// memory 8,000 TLS connections from one client take.
//   node bench/attacks.js list-size [--sizes 1000,8000,32000]
//   node bench/attacks.js amplification
//   node bench/attacks.js connections [--count 8000]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { freePort } from './run.js';
import { parseArgs } from 'node:util';
import { loadModule } from './dist.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixtureReview = () => JSON.parse(readFileSync(join(root, 'test/fixtures/admission/deployment-create.json'), 'utf8'));
const TOKEN_PATH = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
const MiB = 2 ** 20;

const distOf = (dir) => resolve(dir ?? process.env.BENCH_COMPARE_DIST ?? join(root, 'dist'));
const load = loadModule;

/** VmRSS and VmHWM of a process in MiB (Linux). */
function memory(pid = 'self') {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)[1]) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * The worst case for an index-by-index or table-based diff: one entry removed at the front of each list (AWS_CONFIG_FILE
 * from env, a mount on the token's path from volumeMounts) while ours are appended at the end.
 */
export function listReview(n) {
  const review = fixtureReview();
  const container = review.request.object.spec.template.spec.containers[0];
  container.env = [{ name: 'AWS_CONFIG_FILE', value: '/etc/aws/config' }, ...Array.from({ length: n }, (_, i) => ({ name: `E${i}`, value: `value-${i}` }))];
  container.volumeMounts = [{ name: 'aws-user-token', mountPath: TOKEN_PATH }, ...Array.from({ length: n }, (_, i) => ({ name: `m${i}`, mountPath: `/mnt/${i}` }))];
  return review;
}

/** In a fresh process: one size, review() timed over a few runs, and the peak RSS the first run adds. */
async function listSizeChild(dist, n) {
  const [{ loadConfig }, { buildMutators }, { review }] = await Promise.all([load(dist, 'config.js'), load(dist, 'mutators/index.js'), load(dist, 'admission.js')]);
  const mutators = buildMutators(loadConfig(join(root, 'examples/config.yaml')));
  const small = listReview(100);
  for (let i = 0; i < 50; i++) review(small, mutators);
  const body = listReview(n);
  globalThis.gc();
  const before = memory();
  // resets VmHWM to the current RSS, so the next reading is this call's peak (Linux 4.0+)
  writeFileSync('/proc/self/clear_refs', '5');
  const times = [];
  let first;
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    const out = review(body, mutators);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (i === 0) first = { hwm: memory().hwm, out };
  }
  const patch = JSON.parse(Buffer.from(first.out.review.response.patch, 'base64').toString('utf8'));
  return { n, ms: [...times].sort((a, b) => a - b)[2], firstMs: times[0], extraMiB: first.hwm - before.rss, ops: patch.length, removes: patch.filter((o) => o.op === 'remove').length };
}

function runChild(args, timeoutMs) {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(JSON.parse(out));
      else resolvePromise({ failed: signal === 'SIGKILL' ? `killed after ${timeoutMs / 1000} s` : (err.trim().split('\n').find((l) => /Error/.test(l)) ?? `exit ${code}`) });
    });
  });
}

/** Each size in its own process, so one size's garbage and peak never count against the next. */
export async function listSizes(sizes = [1000, 8000, 32000], dist = distOf()) {
  const rows = [];
  for (const n of sizes) rows.push({ n, ...(await runChild(['list-size-child', '--dist', dist, '--size', String(n)], 120_000)) });
  return rows;
}

const f1 = (x) => (x == null ? 'n/a' : x.toFixed(1));
const f2 = (x) => (x == null ? 'n/a' : x.toFixed(2));

export function listSizeTable(rows, label = 'this build') {
  const out = [`Patch cost against list size (${label}): \`review()\` of a Deployment whose mlflow container has N env entries and N volumeMounts, the first of each removed by the mutation and ours appended; each size in a fresh process, median of 5 runs; extra RSS is the first run's peak (VmHWM) over the RSS before it.`, ''];
  out.push('| N | time (median) | first run | extra peak RSS | patch ops (removes) | time growth | RSS growth |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|');
  rows.forEach((r, i) => {
    const prev = rows[i - 1];
    if (r.failed) {
      out.push(`| ${r.n} | failed: ${r.failed} | | | | | |`);
      return;
    }
    const growth = prev && !prev.failed ? `×${f1(r.ms / prev.ms)} for ×${f1(r.n / prev.n)} N` : '';
    // below a MiB the reading is page and heap granularity, not growth
    const rssGrowth = prev && !prev.failed && prev.extraMiB >= 1 ? `×${f1(r.extraMiB / prev.extraMiB)}` : '';
    out.push(`| ${r.n} | ${f2(r.ms)} ms | ${f2(r.firstMs)} ms | ${f1(r.extraMiB)} MiB | ${r.ops} (${r.removes}) | ${growth} | ${rssGrowth} |`);
  });
  return out.join('\n');
}

/** Response and log bytes for the two amplifying requests of issue 12, answered in process with the production log level. */
async function amplification(dist) {
  const [{ loadConfig }, { buildServer }, { createLogger }, { createMetrics }, { createServingCert }] = await Promise.all(
    ['config.js', 'server.js', 'log.js', 'metrics.js', 'tls.js'].map((m) => load(dist, m)));
  const config = loadConfig(join(root, 'examples/config.yaml'));
  let logBytes = 0;
  const sink = new Writable({ write(c, _e, cb) { logBytes += c.length; cb(); } });
  const s = buildServer({ config, tls: await createServingCert(['localhost'], 1), logger: createLogger('info', sink), metrics: createMetrics(false) });
  const manyMounts = fixtureReview();
  manyMounts.request.object.spec.template.spec.containers[0].volumeMounts = Array.from({ length: 20_000 }, (_, i) => ({ name: `t${i}`, mountPath: TOKEN_PATH }));
  const longName = fixtureReview();
  const mounts = longName.request.object.spec.template.spec.containers[0].volumeMounts;
  mounts.push({ name: '', mountPath: TOKEN_PATH });
  // as long as the 3 MiB body limit allows
  mounts.at(-1).name = 'n'.repeat(config.server.bodyLimitBytes - JSON.stringify(longName).length - 64);
  const rows = [];
  for (const [what, review] of [['20,000 volumeMounts on the token path', manyMounts], [`one mount on the token path named with ${f1(mounts.at(-1).name.length / MiB)} MiB`, longName]]) {
    logBytes = 0;
    const payload = JSON.stringify(review);
    const res = await s.app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload });
    const body = res.json();
    rows.push({ what, requestBytes: payload.length, status: res.statusCode, responseBytes: res.body.length, logBytes, warnings: body.response?.warnings?.length ?? 0, patched: Boolean(body.response?.patch) });
  }
  await s.app.close();
  return rows;
}

export function amplificationTable(rows, label) {
  const out = [`Output a request can cause (${label}; in process, logLevel info):`, '', '| request | request | status | response | log | warnings | patched |', '|---|---:|---:|---:|---:|---:|---|'];
  for (const r of rows) out.push(`| ${r.what} | ${f1(r.requestBytes / 1024)} KiB | ${r.status} | ${f1(r.responseBytes / 1024)} KiB | ${f1(r.logBytes / 1024)} KiB | ${r.warnings} | ${r.patched ? 'yes' : 'no'} |`);
  return out.join('\n');
}

/**
 * Spawns `serve` from the build, opens `count` TLS connections from this one process, and reads the server's memory.
 * The request timeout is at its maximum (300 s) so that no connection is closed for idling while the rest are opened.
 */
async function connections(dist, count) {
  const { createServingCert } = await load(dist, 'tls.js');
  const dir = mkdtempSync(join(tmpdir(), 'attack-conns-'));
  try {
    const pair = await createServingCert(['localhost'], 1);
    writeFileSync(join(dir, 'tls.crt'), pair.cert);
    writeFileSync(join(dir, 'tls.key'), pair.key);
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ roleArn: 'arn:aws:iam::111122223333:role/r', artifactsDestination: 's3://bucket-x', logLevel: 'info', reconcile: { enabled: false }, server: { drainSeconds: 0, requestTimeoutSeconds: 300 } }));
    const port = await freePort();
    const child = spawn(process.execPath, [join(dist, 'cli.js'), 'serve', '--config', config, '--host', '127.0.0.1', '--port', String(port), '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    await new Promise((res, rej) => {
      const timer = setInterval(() => {
        if (out.includes('"msg":"listening')) { clearInterval(timer); res(); }
        if (child.exitCode !== null) { clearInterval(timer); rej(new Error(out)); }
      }, 20);
    });
    await new Promise((r) => setTimeout(r, 500));
    const rest = memory(child.pid);
    const sockets = [];
    let open = 0;
    let failed = 0;
    let peakOpen = 0;
    const one = () => new Promise((res) => {
      const s = connect({ host: '127.0.0.1', port, ca: pair.cert, servername: 'localhost' }, () => { open++; peakOpen = Math.max(peakOpen, open); res(); });
      s.on('error', () => { failed++; res(); });
      s.on('close', () => { if (s.authorized !== undefined) open--; });
      sockets.push(s);
    });
    const t0 = Date.now();
    for (let i = 0; i < count; i += 250) await Promise.all(Array.from({ length: Math.min(250, count - i) }, one));
    const openMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
    const loaded = memory(child.pid);
    for (const s of sockets) s.destroy();
    child.kill('SIGKILL');
    return { count, handshakes: count - failed, failed, peakOpen, openMs, restRssMiB: rest.rss, peakRssMiB: loaded.hwm, rssAfterMiB: loaded.rss };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const [command] = process.argv.slice(2);
  const { values } = parseArgs({ args: process.argv.slice(3), options: { dist: { type: 'string' }, sizes: { type: 'string' }, size: { type: 'string' }, count: { type: 'string' } } });
  const dist = distOf(values.dist);
  const label = dist === join(root, 'dist') ? 'this build' : `build in ${dist}`;
  if (command === 'list-size-child') {
    process.stdout.write(JSON.stringify(await listSizeChild(dist, Number(values.size))));
  } else if (command === 'list-size') {
    process.stdout.write(`${listSizeTable(await listSizes(values.sizes?.split(',').map(Number), dist), label)}\n`);
  } else if (command === 'amplification') {
    process.stdout.write(`${amplificationTable(await amplification(dist), label)}\n`);
  } else if (command === 'connections') {
    const r = await connections(dist, Number(values.count ?? 8000));
    process.stdout.write(`${count(r, label)}\n`);
  } else {
    throw new Error('usage: node bench/attacks.js list-size|amplification|connections [--dist DIR]');
  }
}

const count = (r, label) => `${r.count} TLS connections from one client (${label}): ${r.handshakes} completed the handshake (at most ${r.peakOpen} open at once), ${r.failed} refused or reset, in ${(r.openMs / 1000).toFixed(1)} s; server RSS ${f1(r.restRssMiB)} MiB at rest, peak ${f1(r.peakRssMiB)} MiB, ${f1(r.rssAfterMiB)} MiB with them open.`;

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
