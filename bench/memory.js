// What `serve` holds in memory as it runs in a pod: its reconcile loop running against a local API stand-in (Lease
// held, Deployment watched), idle and under the bench's load mixes, on this machine's Node and on the image's, beside
// `serve` without the loop; and each cut tried on the always-on memory (V8 start-up flags), before and after in the
// same run, with its cost under load (CPU per request, p99) where it could change behaviour.
//   node bench/memory.js                     (or BENCH_ONLY=memory npm run bench; BENCH_MIXES picks the load mixes)
import { execFileSync, fork } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { buildMixes } from './mixes.js';
import { cpuRatio, loadClient, makeTls, measureMix, PIN, ratio, startServer, stopServer, LOADED } from './run.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));
const MiB = 2 ** 20;
const LEASE_NAMESPACE = 'mlflow-irsa-webhook';
/** Seconds a server idles, every loop leading, before its idle RSS is read; samples are taken over the last third. */
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The image's Node (scripts/fetch-node.sh caches it), if fetched: the Dockerfile's NODE_IMAGE version. */
export function imageNode() {
  const version = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))?.[1];
  const bin = version && join(root, `.cache/node-v${version}/bin/node`);
  return bin && existsSync(bin) ? { bin, version: `v${version}` } : undefined;
}

/** VmRSS and its anonymous and file-backed parts, in MiB (Linux /proc). */
export function rss(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), hwm: kb('VmHWM') };
}

/** The API stand-in in its own process (bench/api-stub.js), driven over IPC. */
export async function startApiStub() {
  const child = fork(join(here, 'api-stub.js'), {
    cwd: root,
    execArgv: ['--import', '@tapjs/typescript/import'],
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map();
  let next = 0;
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the API stand-in exited (${code}) before it was ready`)));
    child.on('message', (msg) => {
      if (msg.ready) return resolve(msg.ready);
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(msg.error));
      else p.resolve(msg.result);
    });
  });
  const { url, kubeconfig } = await ready;
  const call = (op, args) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject });
    child.send({ id, op, args });
  });
  return { url, kubeconfig, pid: child.pid, call, close: () => child.disconnect() };
}

/** GET /metrics on the webhook's HTTPS port, as name{labels} → value. */
function scrape(port, ca) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/metrics', ca, servername: 'localhost', agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        const out = {};
        for (const line of text.split('\n')) {
          const m = /^(\S+)\s+(\S+)$/.exec(line);
          if (m) out[m[1]] = Number(m[2]);
        }
        resolve(out);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The chart's webhook resources (values.yaml `resources`), memory in MiB. */
export function chartMemory() {
  const { resources } = parseYaml(readFileSync(join(root, 'charts/mlflow-irsa-webhook/values.yaml'), 'utf8'));
  const mib = (q) => {
    const m = /^(\d+(?:\.\d+)?)(Mi|Gi|M|G)?$/.exec(String(q ?? ''));
    if (!m) return undefined;
    return Number(m[1]) * { Mi: 1, Gi: 1024, M: 1e6 / MiB, G: 1e9 / MiB, undefined: 1 / MiB }[m[2]];
  };
  return { request: mib(resources?.requests?.memory), limit: mib(resources?.limits?.memory) };
}

/**
 * A wrapper that starts a command as a pod's container starts it as far as Node can tell: Node sizes V8's heap from
 * the memory limit of its cgroup (libuv's uv_get_constrained_memory: under 1 GiB, a 1 MiB young generation and a heap
 * limit of ~259 MiB; on this machine unconstrained, a 16 MiB one and ~4 GiB). The wrapper gives the command a private
 * mount namespace (an unprivileged user namespace: `unshare -Urm`) in which its cgroup's memory files say `limitMiB`;
 * nothing else changes, and the kernel does not enforce the limit (the bench measures, it does not kill).
 * Undefined where that is not possible (no unshare, user namespaces off, no cgroup line): the rows then say so.
 */
export function podWrapper(limitMiB) {
  const lines = existsSync('/proc/self/cgroup') ? readFileSync('/proc/self/cgroup', 'utf8').split('\n') : [];
  const v1 = lines.map((l) => /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/.exec(l)?.[1]).find((x) => x !== undefined);
  const v2 = lines.map((l) => /^0::(.*)$/.exec(l)?.[1]).find((x) => x !== undefined);
  const bytes = Math.round(limitMiB * MiB);
  const cgroup = v1 !== undefined
    ? { mount: '/sys/fs/cgroup/memory', leaf: `/sys/fs/cgroup/memory${v1}`, files: { 'memory.limit_in_bytes': bytes, 'memory.soft_limit_in_bytes': '9223372036854771712' } }
    : v2 !== undefined ? { mount: '/sys/fs/cgroup', leaf: `/sys/fs/cgroup${v2}`, files: { 'memory.max': bytes, 'memory.high': 'max' } } : undefined;
  if (!cgroup || !existsSync('/usr/bin/unshare')) return undefined;
  const q = (x) => `'${String(x).replaceAll("'", "'\\''")}'`;
  const script = [`mount -t tmpfs none ${q(cgroup.mount)}`, `mkdir -p ${q(cgroup.leaf)}`,
    ...Object.entries(cgroup.files).map(([f, v]) => `printf %s ${q(v)} > ${q(`${cgroup.leaf}/${f}`)}`), 'exec "$@"'].join(' && ');
  const wrap = ['unshare', '-Urm', 'sh', '-c', script, 'sh'];
  // proof, on each Node, that Node itself sees the limit
  const sees = (node) => {
    try {
      return Number(execFileSync(wrap[0], [...wrap.slice(1), node.bin, '-p', 'process.constrainedMemory()'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) === bytes;
    } catch {
      return false;
    }
  };
  return { wrap, limitMiB, sees };
}

/** The flags the image starts Node with: the Dockerfile's ENTRYPOINT is ["node", ...flags, "dist/cli.js"]. */
export function imageFlags() {
  const line = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'))?.[1];
  const words = line ? JSON.parse(line) : [];
  return words.slice(1, words.indexOf('dist/cli.js')).filter((w) => w.startsWith('--'));
}

/**
 * The cuts tried on the always-on memory, each alone on the loop's server on the image's Node under the pod's limit,
 * beside it without: V8's size-over-speed mode, its interpreter-only mode, its mid-tier compiler (Maglev, on from Node
 * 22) off, glibc's malloc arenas (one per thread by default, up to 8 per core) cut to 2, the old generation capped at
 * half the limit (V8 otherwise sizes it at ~259 MiB, past a 256 MiB limit, so the kernel kills before V8 collects
 * hard), and the other way, young generations of 2, 4 and 8 MiB (what the pod's 1 MiB one costs under load). BENCH_CUTS=a,b runs
 * only those.
 */
export const CUTS = [
  { key: 'optimizeForSize', nodeArgs: ['--optimize-for-size'] },
  { key: 'liteMode', nodeArgs: ['--lite-mode'] },
  { key: 'noMaglev', nodeArgs: ['--no-maglev'] },
  { key: 'arena2', env: { MALLOC_ARENA_MAX: '2' } },
  { key: 'oldHalf', nodeArgs: ['--max-old-space-size-percentage=50'] },
  { key: 'semi2', nodeArgs: ['--max-semi-space-size=2'] },
  { key: 'semi4', nodeArgs: ['--max-semi-space-size=4'] },
  { key: 'semi8', nodeArgs: ['--max-semi-space-size=8'] },
].filter((c) => !process.env.BENCH_CUTS || process.env.BENCH_CUTS.split(',').includes(c.key));

/**
 * The servers of one run. Per Node, under the pod's limit: `serve` without the loop and with it, each without flags
 * and as the image starts it (when the Dockerfile gives Node flags); with the loop also unconstrained (as the bench's
 * other figures are taken); on the image's Node (else this one) each cut alone, under the limit.
 */
export function memoryVariants(nodes, flags = imageFlags(), cuts = CUTS) {
  const out = [];
  for (const [i, node] of nodes.entries()) {
    const add = (key, loop, nodeArgs, role, { env = {}, pod = true } = {}) => out.push({ key: `${node.version}:${key}`, node, loop, nodeArgs, env, pod, role });
    add('noloop', false, [], 'before');
    if (flags.length) add('noloop-image', false, flags, 'image');
    add('loop', true, [], 'before');
    if (flags.length) add('loop-image', true, flags, 'image');
    add('loop-unconstrained', true, [], 'unconstrained', { pod: false });
    const image = (cut) => !cut.env && (cut.nodeArgs ?? []).join(' ') === flags.join(' ');
    if (i === nodes.length - 1) for (const cut of cuts) if (!image(cut)) add(`cut-${cut.key}`, true, cut.nodeArgs ?? [], 'cut', { env: cut.env });
  }
  return out;
}

/** The example config, with no drain wait and (for a loop) a Lease of its own, so that every loop of the run leads. */
function writeConfig(dir, variant) {
  const config = parseYaml(readFileSync(join(root, 'examples/config.yaml'), 'utf8'));
  config.server = { ...config.server, drainSeconds: 0 };
  config.reconcile = { ...config.reconcile, leaseName: leaseName(variant) };
  const file = join(dir, `config-${leaseName(variant)}.yaml`);
  writeFileSync(file, stringifyYaml(config));
  return file;
}
const leaseName = (variant) => `bench-${variant.key.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`;
const identity = (variant) => `${leaseName(variant)}-pod`;

/**
 * A fresh Node, RSS before and after `import('@kubernetes/client-node')` (what the loop loads), median of `times`;
 * under the pod's limit when given its wrapper.
 */
export function importCost(node, wrap = [], times = 3) {
  const script = `
    import { readFileSync } from 'node:fs';
    const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    const pause = () => new Promise((r) => setTimeout(r, 300));
    await pause();
    const before = rss();
    await import('@kubernetes/client-node');
    await pause();
    console.log(JSON.stringify({ before, after: rss() }));`;
  const argv = [...wrap, node.bin, '--input-type=module', '-e', script];
  const runs = Array.from({ length: times }, () => JSON.parse(execFileSync(argv[0], argv.slice(1), { cwd: root, encoding: 'utf8' })));
  return { before: median(runs.map((r) => r.before)), after: median(runs.map((r) => r.after)) };
}

const MEMORY_MIXES = ['target-create', 'mutated-update', 'serviceaccount'];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);

/** Polls `check` (which returns a problem, or nothing once all is well) until it passes or `seconds` are gone. */
async function until(what, check, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const problem = await check();
    if (!problem) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${problem}`);
    await sleep(250);
  }
}

/**
 * Proves each server is what its row says: a loop that leads (its Lease held under its identity, its leader gauge 1,
 * a check done) with a watch open on the Deployment per loop; a server without the loop holds no Lease.
 */
async function loopState(variants, servers, stub, tls) {
  const out = {};
  for (const v of variants) {
    const m = await scrape(servers[v.key].port, tls.ca);
    const lease = v.loop ? await stub.call('state', { namespace: LEASE_NAMESPACE, name: leaseName(v) }) : undefined;
    out[v.key] = {
      leader: m.mlflow_irsa_webhook_reconcile_leader ?? null,
      lastCheck: m.mlflow_irsa_webhook_reconcile_last_success_timestamp_seconds ?? null,
      holder: lease?.holder ?? null,
      renewTime: lease?.renewTime ?? null,
      watches: lease?.watches,
      heapUsed: m.mlflow_irsa_webhook_nodejs_heap_size_used_bytes / MiB,
      heapTotal: m.mlflow_irsa_webhook_nodejs_heap_size_total_bytes / MiB,
      newSpace: m['mlflow_irsa_webhook_nodejs_heap_space_size_total_bytes{space="new"}'] / MiB,
    };
  }
  return out;
}

/** Seconds each server has spent in garbage collection so far, by kind (prom-client's nodejs_gc_duration_seconds). */
async function gcSeconds(variants, servers, tls) {
  const out = {};
  for (const v of variants) {
    const m = await scrape(servers[v.key].port, tls.ca);
    const sum = (kind) => m[`mlflow_irsa_webhook_nodejs_gc_duration_seconds_sum{kind="${kind}"}`] ?? 0;
    const count = (kind) => m[`mlflow_irsa_webhook_nodejs_gc_duration_seconds_count{kind="${kind}"}`] ?? 0;
    out[v.key] = { minor: sum('minor'), major: sum('major') + sum('incremental'), minorCount: count('minor'), majorCount: count('major') };
  }
  return out;
}

function loopProblem(variants, state) {
  const loops = variants.filter((v) => v.loop).length;
  for (const v of variants) {
    const s = state[v.key];
    if (v.loop && (s.leader !== 1 || !s.lastCheck || s.holder !== identity(v))) return `${v.key}: leader gauge ${s.leader}, last check ${s.lastCheck}, Lease held by ${s.holder}`;
    if (v.loop && s.watches !== loops) return `${s.watches} watches open on the Deployment, ${loops} loops`;
    if (!v.loop && s.leader) return `${v.key} runs a loop it should not`;
  }
  return undefined;
}

/** RSS sampled every second for `seconds`: the median of each figure. */
async function settle(variants, servers, seconds) {
  const samples = Object.fromEntries(variants.map((v) => [v.key, []]));
  for (let i = 0; i < seconds; i++) {
    await sleep(1000);
    for (const v of variants) samples[v.key].push(rss(servers[v.key].child.pid));
  }
  const pick = (xs, k) => median(xs.map((x) => x[k]));
  return Object.fromEntries(variants.map((v) => [v.key, { rss: pick(samples[v.key], 'rss'), anon: pick(samples[v.key], 'anon'), file: pick(samples[v.key], 'file'), hwm: samples[v.key].at(-1).hwm }]));
}

/**
 * The memory part of the bench. Every server runs at once (each loop on a Lease of its own), pinned as the throughput
 * runs pin them; idle RSS is read after IDLE_SECONDS with every loop leading, then the load mixes run over all of them
 * in interleaved rounds, then peak RSS (VmHWM) and RSS once settled again.
 */
export async function measureMemory({ tls, dir, load, mixIds = MEMORY_MIXES, log = () => {} }) {
  const image = imageNode();
  const here = { bin: process.execPath, version: process.version };
  // BENCH_NODES=image: the image's Node alone (a quicker A/B of cuts)
  const nodes = image && image.version !== here.version ? (process.env.BENCH_NODES === 'image' ? [image] : [here, image]) : [here];
  const chart = chartMemory();
  const pod = podWrapper(chart.limit);
  const limited = Object.fromEntries(nodes.map((n) => [n.version, Boolean(pod?.sees(n))]));
  for (const n of nodes) if (!limited[n.version]) log(`memory: Node ${n.version} cannot be shown the chart's ${chart.limit} MiB limit here; its "pod" rows run unconstrained`);
  const variants = memoryVariants(nodes);
  const wrapOf = (v) => (v.pod && limited[v.node.version] ? pod.wrap : []);
  const stub = await startApiStub();
  const servers = {};
  try {
    for (const v of variants) {
      const args = ['dist/cli.js', 'serve', '--config', writeConfig(dir, v)];
      if (v.loop) {
        await stub.call('seedLease', { namespace: LEASE_NAMESPACE, name: leaseName(v) });
        args.push('--kubeconfig', stub.kubeconfig);
      }
      // KUBECONFIG cleared: a developer's own must neither start a loop in the rows without one nor be used by the others
      const env = { KUBECONFIG: undefined, POD_NAME: identity(v), POD_NAMESPACE: LEASE_NAMESPACE, ...v.env };
      servers[v.key] = await startServer({ name: v.key, nodeArgs: v.nodeArgs, args, checksPatch: true }, tls, { pin: PIN, node: v.node.bin, env, wrap: wrapOf(v) });
    }
    log(`memory: ${variants.length} servers up; waiting for every loop to lead`);
    let state;
    await until('the reconcile loops', async () => loopProblem(variants, (state = await loopState(variants, servers, stub, tls))));
    log(`memory: idle ${IDLE_SECONDS} s`);
    await sleep((IDLE_SECONDS * 2000) / 3);
    const idle = await settle(variants, servers, Math.max(1, Math.round(IDLE_SECONDS / 3)));
    const idleState = await loopState(variants, servers, stub, tls);
    const mixes = buildMixes().filter((m) => mixIds.includes(m.id));
    const sides = variants.map((v) => ({ key: v.key, conns: [LOADED] }));
    const figures = {};
    for (const mix of mixes) {
      log(`memory: load, mix ${mix.id}`);
      for (const side of sides) await load.run({ key: `memory-warmup:${side.key}:${mix.id}`, url: servers[side.key].url, body: mix.body, connections: LOADED, seconds: 0.5, ca: tls.ca });
      const gc0 = await gcSeconds(variants, servers, tls);
      figures[mix.id] = await measureMix(mix, sides, servers, tls, load, ROUNDS);
      const gc1 = await gcSeconds(variants, servers, tls);
      for (const v of variants) {
        const f = figures[mix.id][v.key][LOADED];
        const d = (k) => gc1[v.key][k] - gc0[v.key][k];
        f.gc = { minorMsPer1000: (d('minor') * 1e6) / f.ok, majorMsPer1000: (d('major') * 1e6) / f.ok, minorCount: d('minorCount'), majorCount: d('majorCount') };
      }
    }
    const peak = Object.fromEntries(variants.map((v) => [v.key, rss(servers[v.key].child.pid).hwm]));
    log('memory: settling after the load');
    const after = await settle(variants, servers, 5);
    const endState = await loopState(variants, servers, stub, tls);
    const problem = loopProblem(variants, endState) ?? variants.filter((v) => v.loop).map((v) => (endState[v.key].renewTime === idleState[v.key].renewTime ? `${v.key} stopped renewing its Lease` : '')).find(Boolean);
    if (problem) throw new Error(`after the load: ${problem}`);
    const stubRequests = await stub.call('state', { namespace: LEASE_NAMESPACE, name: leaseName(variants.find((v) => v.loop)) });
    return {
      settings: {
        chart,
        limited,
        machineGiB: Math.round(totalmem() / 1024 ** 3),
        idleSeconds: IDLE_SECONDS, rounds: ROUNDS, mixes: mixes.map((m) => ({ id: m.id, label: m.label, bodyBytes: m.body.length })), connections: LOADED, pinned: PIN,
        reconcile: 'chart defaults (watch, 60 s poll, 15 s Lease renewed every 5 s), each server on a Lease of its own',
      },
      nodes: nodes.map((n) => n.version),
      imageNode: image?.version ?? null,
      imageFlags: imageFlags(),
      importCost: Object.fromEntries(nodes.map((n) => [n.version, { pod: limited[n.version] ? importCost(n, pod.wrap) : null, unconstrained: importCost(n) }])),
      apiRequests: { ...stubRequests, holder: undefined, renewTime: undefined },
      variants: variants.map((v) => {
        const ref = variants.find((r) => r.node === v.node && r.loop === v.loop && r.role === 'before');
        return {
          key: v.key, node: v.node.version, loop: v.loop, nodeArgs: v.nodeArgs, env: v.env, role: v.role, limitMiB: wrapOf(v).length ? chart.limit : null,
          idle: { ...idle[v.key], heapUsed: idleState[v.key].heapUsed, heapTotal: idleState[v.key].heapTotal, newSpace: idleState[v.key].newSpace },
          startupPeak: idle[v.key].hwm,
          loaded: {
            peak: peak[v.key],
            after: after[v.key],
            heapTotalAfter: endState[v.key].heapTotal,
            mixes: Object.fromEntries(mixes.map((m) => {
              const f = figures[m.id][v.key][LOADED];
              const base = figures[m.id][ref.key][LOADED];
              return [m.id, { requests: f.ok, rps: median(f.roundsRps), cpuUs: median(f.cpuUsPerRequest), p99Ms: f.latencyMs.p99, cpuRatio: cpuRatio(f, base), rpsRatio: ratio(f, base), gc: f.gc }];
            })),
          },
          loopCheck: v.loop ? { holder: endState[v.key].holder, leader: endState[v.key].leader, renewTime: endState[v.key].renewTime } : null,
        };
      }),
    };
  } finally {
    for (const s of Object.values(servers)) await stopServer(s);
    stub.close();
  }
}

const f0 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(0));
const f1 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(1));
const f2 = (x) => (x == null || Number.isNaN(x) ? 'n/a' : x.toFixed(2));
const flagsCell = (v) => [...v.nodeArgs, ...Object.entries(v.env ?? {}).map(([k, x]) => `${k}=${x}`)].map((a) => `\`${a}\``).join(' ') || 'none';

/** Where a server ran: under the chart's limit as Node sees it, or unconstrained on this machine. */
const whereCell = (v, m) => (v.limitMiB ? `pod, ${f0(v.limitMiB)} MiB limit` : `no limit (${m.settings.machineGiB} GiB machine)`);

/** The memory part's tables, as bench/RESULTS.md shows them. */
export function memoryTable(m) {
  const out = [];
  const { mixes, chart } = m.settings;
  out.push(`\`serve\` with its reconcile loop (its own Lease held and renewed, a watch open on the mlflow Deployment, the first check done; ${m.settings.reconcile}) against the tests' API stand-in, and without it; every server of the table running at once. ` +
    `"pod": Node sees the chart's memory limit (${f0(chart.limit)} MiB) as in a container, and sizes V8's heap from it (bench/memory.js, \`podWrapper\`); "no limit": as the bench's other figures are taken. ` +
    `Idle: median RSS over the last third of ${m.settings.idleSeconds} s at rest, every loop leading. Under load: ${mixes.map((x) => `${x.label} (${(x.bodyBytes / 1024).toFixed(1)} KiB)`).join(', ')}, at ${m.settings.connections} connections, ${m.settings.rounds} interleaved rounds each${m.settings.pinned ? ', servers on CPU 1 and the load generator on CPU 0' : ''}; peak = VmHWM after them all (start-up included); after = RSS once settled (5 s). ` +
    `The image's Node is ${m.imageNode ?? 'not fetched (scripts/fetch-node.sh): this Node alone'}; the image starts Node with ${m.imageFlags.length ? m.imageFlags.map((f) => `\`${f}\``).join(' ') : 'no flags'}.`);
  out.push('');
  out.push(`| Node | server | memory | Node flags | **idle RSS** MiB (anonymous) | V8 heap used / total (young) MiB | **peak** MiB | after load MiB | CPU per request ÷ the pod's loop without flags (${mixes.map((x) => x.id).join(' / ')}) | GC ms per 1,000 requests, young / old | p99 ms (${mixes[0].id}) |`);
  out.push('|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const v of m.variants) {
    const all = mixes.map((x) => v.loaded.mixes[x.id]);
    const cpu = v.role === 'before' ? '1 (reference)' : v.loop ? all.map((x) => f2(1 / x.cpuRatio)).join(' / ') : '';
    const requests = all.reduce((n, x) => n + x.requests, 0);
    const gc = (k) => f1(all.reduce((n, x) => n + x.gc[k] * x.requests, 0) / requests);
    const i = v.idle;
    out.push(`| ${v.node} | ${v.loop ? 'with the loop' : 'without the loop'} | ${whereCell(v, m)} | ${flagsCell(v)} | **${f0(i.rss)}** (${f0(i.anon)}) | ${f0(i.heapUsed)} / ${f0(i.heapTotal)} (${f0(i.newSpace)}) | **${f0(v.loaded.peak)}** | ${f0(v.loaded.after.rss)} | ${cpu} | ${gc('minorMsPer1000')} / ${gc('majorMsPer1000')} | ${f2(all[0].p99Ms)} |`);
  }
  out.push('');
  out.push('What loading `@kubernetes/client-node` alone adds to a fresh Node (RSS before and after `import()`, median of 3):');
  out.push('');
  out.push('| Node | pod: before → after MiB | **added** | no limit: before → after MiB | **added** |');
  out.push('|---|---:|---:|---:|---:|');
  const cost = (c) => (c ? [`${f0(c.before)} → ${f0(c.after)}`, `**${f0(c.after - c.before)}**`] : ['n/a', 'n/a']);
  for (const [node, c] of Object.entries(m.importCost)) out.push(`| ${node} | ${[...cost(c.pod), ...cost(c.unconstrained)].join(' | ')} |`);
  const r = m.apiRequests;
  out.push('');
  out.push(`The API stand-in saw, over the run: ${r.deploymentWatches} watches of the Deployment (seeded as mutated), ${r.deploymentReads} reads of it and ${r.deploymentPatches} patches; ${r.serviceAccountReads} reads of the ServiceAccount (seeded without the role annotation) and ${r.serviceAccountPatches} patches; ${r.leaseUpdates} renewals of one loop's Lease.`);
  return out.join('\n');
}

const BEGIN = '<!-- bench:memory:begin (written by npm run bench and node bench/memory.js) -->';
const END = '<!-- bench:memory:end -->';

/**
 * Puts the memory part into bench/RESULTS.md (between its markers) and, unless the caller writes the whole file,
 * into bench/results.json (its `memory` key, the rest kept).
 */
export function writeMemoryResults(memory, { json = true } = {}) {
  if (json) {
    const file = join(here, 'results.json');
    const results = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
    writeFileSync(file, `${JSON.stringify({ ...results, memory }, null, 2)}\n`);
  }
  const md = join(here, 'RESULTS.md');
  const current = readFileSync(md, 'utf8');
  const i = current.indexOf(BEGIN);
  const j = current.indexOf(END);
  const block = `${BEGIN}\n${memoryTable(memory)}\n${END}`;
  writeFileSync(md, i >= 0 && j > i ? current.slice(0, i) + block + current.slice(j + END.length) : `${current.trimEnd()}\n\n${block}\n`);
}

/** The memory part alone (`node bench/memory.js`, or `BENCH_ONLY=memory npm run bench`). */
export async function main() {
  const started = Date.now();
  const log = (msg) => process.stderr.write(`[bench memory ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'mlflow-irsa-bench-memory-'));
  const load = loadClient({ pin: PIN });
  if (PIN) execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  try {
    const tls = await makeTls(dir);
    const mixIds = process.env.BENCH_MIXES ? process.env.BENCH_MIXES.split(',') : undefined;
    const memory = await measureMemory({ tls, dir, load, mixIds, log });
    process.stdout.write(`${memoryTable(memory)}\n`);
    if (process.env.BENCH_NO_WRITE === '1') log('BENCH_NO_WRITE=1: bench/results.json and bench/RESULTS.md left as they were');
    else {
      writeMemoryResults(memory);
      log('wrote the memory part of bench/results.json and bench/RESULTS.md');
    }
    if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, `${JSON.stringify(memory, null, 2)}\n`);
  } finally {
    load.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
