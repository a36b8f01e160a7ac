// `npm run bench`: the real webhook against a bare node:https ceiling, same run, same load: throughput, latency, RSS, start-up;
// beside them two references that attribute the gap (a minimal fastify: the framework's own cost; bare node:https calling
// this project's review(): our review work without server extras); the per-request pieces timed alone (bench/micro.js);
// then the patch's cost against list size (bench/attacks.js), each size in a fresh process; then serve's memory with and
// without its reconcile loop, under the chart's memory limit, and the cuts tried on it (bench/memory.js).
// The headline is each ratio to the baseline: the machine is shared and noisy, so absolute figures drift between runs
// while ratios taken side by side, in interleaved rounds, hold.
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:https';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { createServingCert } from '../dist/webhook/tls.js';
import { buildMixes } from './mixes.js';
import { listSizes, listSizeTable } from './attacks.js';
import { microBench } from './micro.js';
import { main as memoryMain, measureMemory, writeMemoryResults } from './memory.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));
// Many short rounds rather than a few long ones: another process's burst then falls on one round of each server, and
// each ratio is the median over rounds of the pair measured side by side in that round.
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.25);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const WARMUP_SECONDS = 1;
const STARTS = Number(process.env.BENCH_STARTS ?? 5);
// BENCH_MIXES=target-create,not-ours runs only those; BENCH_COMPARE_DIST=DIR adds a webhook built into DIR (an
// earlier build, say) to every mix, measured in the same interleaved rounds: the A/B behind each optimisation commit.
// DIR,DIR,... adds one webhook per build (each DIR a dist/ directory beside a package.json), for a ladder of commits.
const ONLY = process.env.BENCH_MIXES ? process.env.BENCH_MIXES.split(',') : undefined;
const COMPARE_DIST = process.env.BENCH_COMPARE_DIST;
const COMPARE_DISTS = COMPARE_DIST ? COMPARE_DIST.split(',') : [];
// BENCH_WARN=1 adds the webhook at logLevel warn on the target mix (32 connections): pino's share, at ~15 s more
const WARN = process.env.BENCH_WARN === '1';
// BENCH_CONNECTIONS=32 leaves out the 1-connection figures (an A/B run that only needs the throughput)
const CONNECTIONS = process.env.BENCH_CONNECTIONS ? process.env.BENCH_CONNECTIONS.split(',').map(Number) : [1, 32];
export const LOADED = Math.max(...CONNECTIONS);
// Every server on CPU 1 and the load generator on CPU 0 (as the issue's own figures were taken), so that a server's
// helper threads (GC, TLS) cannot borrow the load generator's core and what is compared is work per core. BENCH_PIN=0 turns it off.
const CORES = availableParallelism();
export const PIN = process.env.BENCH_PIN !== '0' && CORES >= 2 && existsSync('/usr/bin/taskset');
// A Node 22+ binary to measure start-up with as well (the image runs Node 24): BENCH_NODE_ALT, else the CI's cached one.
const ALT_NODE = process.env.BENCH_NODE_ALT ?? (() => {
  const cache = join(root, '.cache');
  const dir = existsSync(cache) ? readdirSync(cache).filter((d) => /^node-v2[2-9]/.test(d)).sort().at(-1) : undefined;
  return dir && existsSync(join(cache, dir, 'bin/node')) ? join(cache, dir, 'bin/node') : undefined;
})();
export const TARGETS = { ratio: 0.85, p99Ms: 2, rssRatio: 1.1, readyMs: 300, reviewDeploymentUs: 10, reviewServiceAccountUs: 3, triggerForeign: 1.1, list8000Ms: 20, list8000MiB: 20 };

const started = Date.now();
const log = (msg) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};

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

/** What a reference server that times its answers (bench/baseline.js) has summed so far: { answers, ms }. */
async function answerTime(server, ca) {
  const res = await call(server.port, ca, 'GET', '/answer-time');
  if (res.status !== 200) throw new Error(`${server.def.name}: GET /answer-time answered ${res.status}`);
  return JSON.parse(res.text);
}

/** Spawns a server and polls /readyz until the first 200; the time from spawn to that answer is its start-up. */
export async function startServer(def, tls, { pin = false, node = process.execPath, env, wrap = [] } = {}) {
  const port = await freePort();
  // wrap: a command that execs the server in place (bench/memory.js's pod memory limit), so the pid stays the server's
  const argv = [...wrap, node, ...(def.nodeArgs ?? []), ...def.args, '--host', '127.0.0.1', '--port', String(port), '--tls-cert', tls.certFile, '--tls-key', tls.keyFile];
  // taskset execs node in its own process, so the pid stays the server's
  if (pin) argv.unshift('taskset', '-c', '1');
  // stdout is a pipe that a `cat` of its own drains, as a container runtime's shim reads a container's: each log line
  // costs the server the write it costs in a pod (a drain in this busy process would fill the pipe and stall it)
  const sink = spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] });
  const t0 = process.hrtime.bigint();
  const child = spawn(argv[0], argv.slice(1), {
    cwd: root,
    env: env ? { ...process.env, ...env } : process.env,
    stdio: ['ignore', sink.stdin, 'pipe'],
  });
  // the server holds its own copy of the pipe's end; cat ends when the server does
  sink.stdin.destroy();
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

/**
 * CPU time a process has used so far, all its threads (GC and TLS helpers included), in ns: the first field of each
 * thread's /proc schedstat. Null where /proc is missing.
 */
function cpuNs(pid) {
  const dir = `/proc/${pid}/task`;
  if (!existsSync(dir)) return null;
  let ns = 0;
  for (const tid of readdirSync(dir)) {
    try {
      ns += Number(readFileSync(`${dir}/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended between the listing and the read used no more time
    }
  }
  return ns;
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

export function loadClient({ pin = false } = {}) {
  const child = fork(join(here, 'load.js'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (pin) execFileSync('taskset', ['-a', '-p', '-c', '0', String(child.pid)], { stdio: 'ignore' });
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
    fastify: { name: 'minimal fastify', args: [join(here, 'fastify-min.js')], checksPatch: false },
    bareReview: { name: 'bare node:https + review()', args: [join(here, 'baseline.js'), '--review', '--config', join(root, 'examples/config.yaml')], checksPatch: true, timesAnswers: true },
    bareReplay: { name: 'bare node:https, answer replayed', args: [join(here, 'baseline.js'), '--replay', '--config', join(root, 'examples/config.yaml')], checksPatch: true },
    ...Object.fromEntries(COMPARE_DISTS.map((d, i) => [`compare${i}`, { name: `webhook from ${d}`, args: [join(d, 'cli.js'), 'serve', '--config', writeConfig(dir, 'info')], checksPatch: true }])),
  };
}

/**
 * Spawn → first 200 on /readyz, each server STARTS times in turn (unpinned, as a pod starts). With a Node 22+ binary at
 * hand the webhook is started on it too: once with an empty compile cache (NODE_COMPILE_CACHE), then with it warm.
 */
async function measureStartup(defs, tls, dir) {
  const keys = ['webhook', 'baseline', 'fastify', 'bareReview'];
  const times = Object.fromEntries(keys.map((k) => [k, []]));
  const alt = ALT_NODE ? { node: ALT_NODE, version: execFileSync(ALT_NODE, ['--version'], { encoding: 'utf8' }).trim(), plain: [], bare: [], cold: [], warm: [] } : undefined;
  const cacheDir = join(dir, 'compile-cache');
  const start = async (def, options) => {
    const s = await startServer(def, tls, options);
    await stopServer(s);
    return s.readyMs;
  };
  for (let i = 0; i < STARTS; i++) {
    for (const key of keys) times[key].push(await start(defs[key], {}));
    if (alt) {
      alt.plain.push(await start(defs.webhook, { node: alt.node }));
      alt.bare.push(await start(defs.baseline, { node: alt.node }));
      rmSync(cacheDir, { recursive: true, force: true });
      alt.cold.push(await start(defs.webhook, { node: alt.node, env: { NODE_COMPILE_CACHE: cacheDir } }));
      alt.warm.push(await start(defs.webhook, { node: alt.node, env: { NODE_COMPILE_CACHE: cacheDir } }));
    }
  }
  const summary = (xs) => ({ medianMs: median(xs), samplesMs: xs.map((x) => Math.round(x)) });
  const out = Object.fromEntries(keys.map((k) => [k, summary(times[k])]));
  if (alt) out.alt = { node: alt.version, webhook: summary(alt.plain), baseline: summary(alt.bare), compileCacheCold: summary(alt.cold), compileCacheWarm: summary(alt.warm) };
  return out;
}

/** Which servers each mix drives, and at which connection counts. */
function sidesFor(mix, defs) {
  // one connection (latency) only on the mixes that ask for it: it adds two runs a round to a mix
  const conns = mix.latency ? CONNECTIONS : [LOADED];
  const sides = [{ key: 'baseline', conns }, { key: 'webhook', conns }, { key: 'fastify', conns: [LOADED] }, { key: 'bareReview', conns: [LOADED] }];
  if (mix.expect.patch) sides.push({ key: 'bareReplay', conns: [LOADED] });
  if (WARN && mix.id === 'target-create') sides.push({ key: 'webhookWarn', conns: [LOADED] });
  COMPARE_DISTS.forEach((_, i) => sides.push({ key: `compare${i}`, conns }));
  return sides;
}

/**
 * One mix, on servers that live through all mixes (starting fresh ones per mix cost more of the 3-minute budget than
 * it told): ROUNDS rounds in which the order of servers alternates, so that drift in the machine's load falls on both
 * sides alike. Peak RSS (VmHWM) is read after each mix, so it is the peak up to and including that mix.
 */
export async function measureMix(mix, sides, servers, tls, load, rounds = ROUNDS) {
  for (const side of sides) await checkAnswer(servers[side.key], mix, tls);
  const figures = {};
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      for (const connections of side.conns) {
        const key = `${side.key}:${mix.id}:${connections}`;
        figures[side.key] ??= {};
        const pid = servers[side.key].child.pid;
        const timed = servers[side.key].def.timesAnswers;
        const answered0 = timed && await answerTime(servers[side.key], tls.ca);
        const cpu0 = cpuNs(pid);
        const f = await load.run({ key, url: servers[side.key].url, body: mix.body, connections, seconds: SECONDS, ca: tls.ca });
        const cpu = cpuNs(pid) - cpu0;
        const cpuUsPerRequest = [...(figures[side.key][connections]?.cpuUsPerRequest ?? []), cpu0 === null ? null : cpu / 1e3 / f.roundsOk.at(-1)];
        figures[side.key][connections] = { ...f, cpuUsPerRequest };
        if (timed) {
          const answered = await answerTime(servers[side.key], tls.ca);
          const perAnswerUs = ((answered.ms - answered0.ms) * 1e3) / (answered.answers - answered0.answers);
          figures[side.key][connections].answerUs = [...(figures[side.key][connections].answerUs ?? []), perAnswerUs];
        }
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
    servers[key] = await startServer(defs[key], tls, { pin: PIN });
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
const us = (x) => (x == null ? 'n/a' : x < 10 ? x.toFixed(2) : x.toFixed(1));
const lat = (l) => `${f3(l.p50)} / ${f3(l.p99)} / ${f3(l.p99_9)}`;
const lat2 = (l) => `${f3(l.p50)} / ${f3(l.p99)}`;
const yes = (ok) => (ok === undefined ? 'not measured' : ok ? 'met' : '**missed**');
const kib = (m) => `${f1(m.bodyBytes / 1024)} KiB`;
/** The median over rounds of x's throughput ÷ the baseline's in the same round (rounds alternate the servers' order). */
export const ratio = (x, base) => median(x.roundsRps.map((r, i) => r / base.roundsRps[i]));
/**
 * The same from CPU time: the baseline's CPU µs per request ÷ x's, median over rounds. Each server has one core to
 * itself, so on a quiet machine this equals the throughput ratio; on a shared one it does not move when another
 * process takes part of that core, since a request costs the same CPU either way.
 */
export const cpuRatio = (x, base) => (x.cpuUsPerRequest?.every((v) => v) ? median(x.cpuUsPerRequest.map((c, i) => base.cpuUsPerRequest[i] / c)) : null);
const ratioCell = (x, base, bold = false) => (x ? `${bold ? '**' : ''}${f2(ratio(x, base))}${bold ? '**' : ''} (${Math.round(median(x.roundsRps))})` : 'n/a');
const cpuCell = (x, base, bold = false) => (x ? `${bold ? '**' : ''}${f2(cpuRatio(x, base))}${bold ? '**' : ''} (${us(median(x.cpuUsPerRequest))})` : 'n/a');
const startCell = (s) => `${f1(s.medianMs)} ms (${s.samplesMs.join(', ')})`;

function microTables(micro, compareLabels) {
  const compareLabel = compareLabels[0];
  const out = [];
  const cmp = micro.mixes.some((m) => m.us.reviewCompare !== undefined);
  out.push(`Per request, in process (\`bench/micro.js\`, a fresh process, median of ${micro.settings.rounds} interleaved batches of ~${micro.settings.msPerBatch} ms): \`review()\` beside \`JSON.parse\` of the same body, the ratio being the figure that survives a noisy machine.`);
  out.push('');
  out.push(`| mix | body | \`JSON.parse\` µs | \`review()\` µs | **÷ \`JSON.parse\`** |${cmp ? ` \`review()\` µs, ${compareLabel} | ÷ \`JSON.parse\` |` : ''}`);
  out.push(`|---|---:|---:|---:|---:|${cmp ? '---:|---:|' : ''}`);
  for (const m of micro.mixes) {
    const u = m.us;
    out.push(`| ${m.label} | ${kib(m)} | ${us(u.jsonParse)} | ${us(u.review)} | **${f3(u.review / u.jsonParse)}** |${cmp ? ` ${us(u.reviewCompare)} | ${f3(u.reviewCompare / u.jsonParse)} |` : ''}`);
  }
  out.push('');
  const pick = (id) => micro.mixes.find((m) => m.id === id);
  const cols = ['target-create-fixture', 'target-create', 'serviceaccount'].map(pick).filter(Boolean);
  const e = micro.extras;
  const over = (m, key) => (m.us[key] === undefined ? undefined : m.us[key] - m.us.jsonParse);
  const perMix = (f) => cols.map((m) => us(f(m))).join(' / ');
  out.push(`Server extras, µs per request (columns for the body-dependent ones: ${cols.map((m) => `${m.label} ${kib(m)}`).join(' / ')}):`);
  out.push('');
  out.push('| extra | library path, as before | this build |');
  out.push('|---|---:|---:|');
  out.push(`| body: poisoning check, over \`JSON.parse\` | secure-json-parse: ${perMix((m) => over(m, 'secureJsonParse'))} | ${perMix((m) => over(m, 'bodyParser'))} |`);
  out.push(`| reply serialisation | fastify response schema: ${perMix((m) => m.us.replySchema)} | ${perMix((m) => m.us.replyOurs)} |`);
  out.push(`| decision log line, sync write to a pipe (as to a container's stdout) | pino child without redaction: ${us(e.logPipeBefore)} | ${us(e.logPipeOurs)} |`);
  out.push(`| decision log line, sync write to /dev/null (as in the throughput runs) | ${us(e.logNullBefore)} | ${us(e.logNullOurs)} |`);
  out.push(`| request logger (fastify, when given a logger: a child per request) | pino child: ${us(e.fastifyChildLogger)} | ${us(e.requestLoggerOurs)} |`);
  out.push(`| metrics: requests, duration, patches | prom-client, labels as objects: ${us(e.metricsBefore)} | ${us(e.metricsOurs)} |`);
  return out.join('\n');
}

/**
 * What a ratio of TARGETS.ratio leaves per request, beside what the parts cost in the same run: bare's CPU µs per
 * request × (1 ÷ ratio − 1) is all a server may add to bare's work, and each reference's CPU over bare's (or review()'s
 * own time, inside a server and in a loop) says what the parts take of it.
 */
function budgetTable(mixes, loaded, micro) {
  const over = (x, b) => (x?.cpuUsPerRequest ? us(median(x.cpuUsPerRequest) - median(b.cpuUsPerRequest)) : 'n/a');
  const out = [];
  out.push(`Where ${TARGETS.ratio} of bare stands, CPU µs per request (medians over the same rounds): what a server may add to bare's work at that ratio, and what each part adds in this run. \`review()\` inside a server is its own time, measured by bare + \`review()\` around each call; in a loop it is bench/micro.js's figure (the same call, caches warm).`);
  out.push('');
  out.push(`| mix | body | bare µs | **${TARGETS.ratio} leaves** | answer's bytes (replayed − bare) | minimal fastify − bare | \`review()\` inside a server | \`review()\` in a loop | bare + \`review()\` − bare | webhook − bare |`);
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of mixes) {
    const b = m.baseline[loaded];
    const budget = median(b.cpuUsPerRequest) * (1 / TARGETS.ratio - 1);
    const inServer = m.bareReview?.[loaded]?.answerUs;
    const inLoop = micro?.mixes.find((x) => x.id === m.id)?.us.review;
    out.push(`| ${m.label} | ${kib(m)} | ${us(median(b.cpuUsPerRequest))} | **${us(budget)}** | ${m.bareReplay ? over(m.bareReplay[loaded], b) : 'same as bare'} | ${over(m.fastify?.[loaded], b)} | ${inServer ? us(median(inServer)) : 'n/a'} | ${us(inLoop)} | ${over(m.bareReview?.[loaded], b)} | ${over(m.webhook[loaded], b)} |`);
  }
  return out.join('\n');
}

export function table(results) {
  const { machine, mixes, startup, trigger, micro, settings } = results;
  const compareLabels = (settings.compareDists ?? []).map((d) => `build in ${d}`);
  const compares = compareLabels.map((label, i) => ({ key: `compare${i}`, label }));
  const cmpHead = compares.map((c) => ` ${c.label} |`).join('');
  const cmpRule = compares.map(() => '---:|').join('');
  const out = [];
  out.push(`Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.platform}; ${machine.date}; load average ${machine.loadAverage.start.map(f2).join(', ')} at the start, ${machine.loadAverage.end.map(f2).join(', ')} at the end. ` +
    `${settings.rounds} interleaved rounds × ${settings.seconds} s per figure (ratios: the median over rounds of the pair in each round), autocannon in its own process${settings.pinned ? ' on CPU 0, each server on CPU 1' : ''}, keep-alive HTTPS, TLS ${settings.tls}.`);
  if (mixes.length > 0) {
    const loaded = settings.loaded;
    out.push('');
    out.push(`Throughput at ${loaded} connections as a ratio to bare node:https (req/s in brackets). Minimal fastify: the framework's own cost. Bare + \`review()\`: our review work without any server extras. Bare, answer replayed (patched mixes): bare node:https sending the webhook's answer (patch included) without working it out, the cost of the answer's bytes.`);
    out.push('');
    out.push(`| mix | body | bare node:https req/s | minimal fastify | bare + \`review()\` | bare, answer replayed | **webhook** |${cmpHead} webhook p50 / p99 ms | bare p50 / p99 ms |`);
    out.push(`|---|---:|---:|---:|---:|---:|---:|${cmpRule}---:|---:|`);
    for (const m of mixes) {
      const b = m.baseline[loaded];
      out.push(`| ${m.label} | ${kib(m)} | ${Math.round(median(b.roundsRps))} | ${ratioCell(m.fastify?.[loaded], b)} | ${ratioCell(m.bareReview?.[loaded], b)} | ${ratioCell(m.bareReplay?.[loaded], b)} | ${ratioCell(m.webhook[loaded], b, true)} |${compares.map((c) => ` ${ratioCell(m[c.key]?.[loaded], b)} |`).join('')} ${lat2(m.webhook[loaded].latencyMs)} | ${lat2(b.latencyMs)} |`);
      if (m.webhookWarn) out.push(`| ${m.label}, webhook at logLevel warn | ${kib(m)} | ${Math.round(median(b.roundsRps))} | | | | ${ratioCell(m.webhookWarn[loaded], b)} |${compares.map(() => ' |').join('')} ${lat2(m.webhookWarn[loaded].latencyMs)} | |`);
    }
    out.push('');
    out.push(`The same runs, as CPU time: bare node:https's CPU µs per request ÷ each server's (its µs per request in brackets; all threads of the process, from /proc). With a core to itself, a server's throughput is 1 ÷ its CPU per request; on a shared machine the CPU figure holds when another process takes part of that core, and throughput does not.`);
    out.push('');
    out.push(`| mix | body | bare node:https µs | minimal fastify | bare + \`review()\` | bare, answer replayed | **webhook** |${cmpHead}`);
    out.push(`|---|---:|---:|---:|---:|---:|---:|${cmpRule}`);
    for (const m of mixes) {
      const b = m.baseline[loaded];
      out.push(`| ${m.label} | ${kib(m)} | ${us(median(b.cpuUsPerRequest))} | ${cpuCell(m.fastify?.[loaded], b)} | ${cpuCell(m.bareReview?.[loaded], b)} | ${cpuCell(m.bareReplay?.[loaded], b)} | ${cpuCell(m.webhook[loaded], b, true)} |${compares.map((c) => ` ${cpuCell(m[c.key]?.[loaded], b)} |`).join('')}`);
    }
    if (settings.connections.includes(1)) {
      out.push('');
      out.push('One connection (latency; the load generator waits for each answer):');
      out.push('');
      out.push('| mix | body | server | req/s | ratio to bare | p50 / p99 / p99.9 ms | bare p50 / p99 / p99.9 ms |');
      out.push('|---|---:|---|---:|---:|---:|---:|');
      for (const m of mixes.filter((x) => x.baseline[1])) {
        const b = m.baseline[1];
        for (const { key, label: name } of [{ key: 'webhook', label: 'webhook' }, ...compares]) {
          if (!m[key]?.[1]) continue;
          out.push(`| ${m.label} | ${kib(m)} | ${name} | ${Math.round(median(m[key][1].roundsRps))} | ${f2(ratio(m[key][1], b))} | ${lat(m[key][1].latencyMs)} | ${lat(b.latencyMs)} |`);
        }
      }
    }
    out.push('', budgetTable(mixes, loaded, micro));
    const last = mixes.at(-1);
    const peak = (key) => Math.max(...mixes.map((m) => m[key]?.peakRssMiB ?? 0)) || null;
    out.push('');
    out.push('| peak RSS (VmHWM) over every mix | webhook | bare node:https | minimal fastify | bare + `review()` | **webhook ÷ bare** |');
    out.push('|---|---:|---:|---:|---:|---:|');
    out.push(`| after ${last.label} | ${f1(peak('webhook'))} MiB | ${f1(peak('baseline'))} MiB | ${f1(peak('fastify'))} MiB | ${f1(peak('bareReview'))} MiB | **${f2(peak('webhook') / peak('baseline'))}** |`);
  }
  if (micro) out.push('', microTables(micro, compareLabels));
  if (startup) {
    out.push('');
    out.push(`Start-up, spawn → first 200 on /readyz with certificate files, median of ${settings.starts} starts (samples in brackets), servers unpinned:`);
    out.push('');
    out.push('| server | Node | spawn → ready |');
    out.push('|---|---|---:|');
    out.push(`| webhook | ${machine.node} | **${startCell(startup.webhook)}** |`);
    out.push(`| bare node:https | ${machine.node} | ${startCell(startup.baseline)} |`);
    out.push(`| minimal fastify | ${machine.node} | ${startCell(startup.fastify)} |`);
    out.push(`| bare node:https + \`review()\` (config, mutators) | ${machine.node} | ${startCell(startup.bareReview)} |`);
    if (startup.alt) {
      out.push(`| webhook | ${startup.alt.node} | ${startCell(startup.alt.webhook)} |`);
      out.push(`| bare node:https | ${startup.alt.node} | ${startCell(startup.alt.baseline)} |`);
      out.push(`| webhook, empty compile cache (NODE_COMPILE_CACHE) | ${startup.alt.node} | ${startCell(startup.alt.compileCacheCold)} |`);
      out.push(`| webhook, warm compile cache | ${startup.alt.node} | ${startCell(startup.alt.compileCacheWarm)} |`);
    }
  }
  if (trigger) {
    out.push('');
    if (trigger.skipped) out.push(`Trigger cost: not measured (${trigger.skipped}).`);
    else {
      out.push('Trigger cost (embedded PostgreSQL, `INSERT INTO experiment_tags`, with our trigger ÷ without):');
      out.push('');
      out.push('| figure | value |');
      out.push('|---|---:|');
      for (const [k, v] of Object.entries(trigger)) out.push(`| ${k} | ${typeof v === 'number' ? (Number.isInteger(v) ? v : f3(v)) : typeof v === 'object' ? JSON.stringify(v) : v} |`);
    }
  }
  out.push('');
  out.push('| target | goal | measured | |');
  out.push('|---|---|---|---|');
  if (mixes.length > 0) {
    const loaded = settings.loaded;
    for (const m of mixes) {
      const r = ratio(m.webhook[loaded], m.baseline[loaded]);
      out.push(`| throughput ÷ bare, ${m.label} ${kib(m)}, ${loaded} conns | ≥ ${TARGETS.ratio} | ${f2(r)} (per CPU: ${f2(cpuRatio(m.webhook[loaded], m.baseline[loaded]))}) | ${yes(r >= TARGETS.ratio)} |`);
    }
    const target = mixes.find((m) => m.id === 'target-create') ?? mixes[0];
    if (target.webhook[1]) out.push(`| p99 latency, ${target.label}, 1 conn | ≤ ${TARGETS.p99Ms} ms | ${f3(target.webhook[1].latencyMs.p99)} ms | ${yes(target.webhook[1].latencyMs.p99 <= TARGETS.p99Ms)} |`);
    const w = Math.max(...mixes.map((m) => m.webhook.peakRssMiB ?? 0));
    const b = Math.max(...mixes.map((m) => m.baseline.peakRssMiB ?? 0));
    out.push(`| peak RSS under load ÷ bare node:https | ≤ ${TARGETS.rssRatio}× | ${f1(w)} ÷ ${f1(b)} MiB = ${f2(w / b)}× | ${yes(w / b <= TARGETS.rssRatio)} |`);
  }
  if (micro) {
    for (const [id, goal] of [['target-create-fixture', TARGETS.reviewDeploymentUs], ['target-create', TARGETS.reviewDeploymentUs], ['serviceaccount', TARGETS.reviewServiceAccountUs]]) {
      const m = micro.mixes.find((x) => x.id === id);
      if (m) out.push(`| \`review()\`, ${m.label} ${kib(m)} | ≤ ${goal} µs | ${us(m.us.review)} µs (${f3(m.us.review / m.us.jsonParse)} × \`JSON.parse\`) | ${yes(m.us.review <= goal)} |`);
    }
  }
  if (startup) out.push(`| spawn → ready (median of ${settings.starts}), Node ${machine.node} | ≤ ${TARGETS.readyMs} ms | ${f1(startup.webhook.medianMs)} ms | ${yes(startup.webhook.medianMs <= TARGETS.readyMs)} |`);
  if (trigger) {
    const fr = foreignRatio(trigger);
    out.push(`| trigger overhead, foreign-tag insert | ≤ ${TARGETS.triggerForeign}× | ${fr === undefined ? 'n/a' : `${f3(fr)}×`} | ${yes(fr === undefined ? undefined : fr <= TARGETS.triggerForeign)} |`);
  }
  const l8 = results.lists?.find((r) => r.n === 8000 && !r.failed);
  if (results.lists) out.push(`| patch of 8,000 env entries and mounts: time, extra peak RSS | < ${TARGETS.list8000Ms} ms, < ${TARGETS.list8000MiB} MiB | ${l8 ? `${f2(l8.ms)} ms, ${f1(l8.extraMiB)} MiB` : 'n/a'} | ${yes(l8 ? l8.ms < TARGETS.list8000Ms && l8.extraMiB < TARGETS.list8000MiB : undefined)} |`);
  if (results.lists) out.push('', listSizeTable(results.lists));
  return out.join('\n');
}

/** Replaces the generated part of bench/RESULTS.md (between the markers) and keeps the hand-written notes around it. */
function writeResultsMd(markdown) {
  const begin = '<!-- bench:begin (written by npm run bench) -->';
  const end = '<!-- bench:end -->';
  const block = `${begin}\n${markdown}\n${end}`;
  const file = join(here, 'RESULTS.md');
  const current = existsSync(file) ? readFileSync(file, 'utf8') : `# Benchmark results\n\n${begin}\n${end}\n`;
  const i = current.indexOf(begin);
  const j = current.indexOf(end);
  writeFileSync(file, i >= 0 && j > i ? current.slice(0, i) + block + current.slice(j + end.length) : `${current.trimEnd()}\n\n${block}\n`);
}

async function main() {
  // BENCH_ONLY=memory: only bench/memory.js's part (serve's RSS with and without its reconcile loop, and the cuts tried)
  if (process.env.BENCH_ONLY === 'memory') return memoryMain();
  const dir = mkdtempSync(join(tmpdir(), 'mlflow-irsa-bench-'));
  // BENCH_SKIP=startup,micro,trigger,lists,memory leaves those parts out (a quicker A/B run)
  const skip = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean));
  const loadStart = loadavg();
  const load = loadClient({ pin: PIN });
  try {
    const tls = await makeTls(dir);
    const defs = serverDefs(dir);
    let startup;
    if (!skip.has('startup')) {
      log(`start-up: ${STARTS} starts each${ALT_NODE ? `, also on ${ALT_NODE}` : ''}`);
      startup = await measureStartup(defs, tls, dir);
    }
    // from here on this process (which drains the webhook's stdout) shares the load generator's CPU, not the servers'
    if (PIN) execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
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
    let micro;
    if (!skip.has('micro')) {
      log('per-request pieces in process (bench/micro.js)');
      micro = await microBench({ compareDist: COMPARE_DISTS[0], mixIds: ONLY });
    }
    let trigger;
    if (!skip.has('trigger')) {
      log('trigger cost');
      trigger = await measureTrigger();
    }
    let lists;
    if (!skip.has('lists')) {
      log('patch cost against list size');
      lists = await listSizes();
    }
    // the memory part has servers of its own (with the reconcile loop, under the chart's memory limit); an A/B run of
    // some mixes or builds leaves it out
    let memory;
    if (!skip.has('memory') && !ONLY && !COMPARE_DIST) {
      log('memory: serve with and without its reconcile loop (bench/memory.js)');
      memory = await measureMemory({ tls, dir, load, log });
    }
    const results = {
      machine: {
        cores: CORES,
        cpu: cpus()[0]?.model.trim() ?? 'unknown',
        memoryGiB: Math.round(totalmem() / 1024 ** 3),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        date: new Date().toISOString(),
        loadAverage: { start: loadStart, end: loadavg() },
      },
      settings: {
        seconds: SECONDS, rounds: ROUNDS, warmupSeconds: WARMUP_SECONDS, serversLiveThroughAllMixes: true, connections: CONNECTIONS, loaded: LOADED,
        starts: STARTS, pinned: PIN, compareDists: COMPARE_DISTS, stdout: 'a pipe the bench drains', tls: 'self-signed ECDSA P-256, TLSv1.2 floor',
      },
      targets: TARGETS,
      startup,
      mixes,
      micro,
      trigger,
      lists,
      memory,
      elapsedSeconds: (Date.now() - started) / 1000,
    };
    const markdown = table(results);
    process.stdout.write(`${markdown}\n`);
    if (ONLY || COMPARE_DIST || skip.size > 0 || process.env.BENCH_CONNECTIONS || process.env.BENCH_WEBHOOK_NODE_ARGS) {
      log(`done in ${results.elapsedSeconds.toFixed(1)} s; a partial or A/B run, so bench/results.json and bench/RESULTS.md are left as they were`);
      if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, `${JSON.stringify(results, null, 2)}\n`);
      return;
    }
    writeFileSync(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeResultsMd(markdown);
    if (memory) writeMemoryResults(memory, { json: false });
    log(`done in ${results.elapsedSeconds.toFixed(1)} s; wrote bench/results.json and bench/RESULTS.md`);
  } finally {
    load.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
