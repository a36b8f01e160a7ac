// In-process micro-benchmarks of the work one request costs, each piece timed alone in a fresh process:
// `review()` as a ratio to `JSON.parse` of the same body (the ratio survives a noisy machine where microseconds do
// not), and the server's extras (body parsing, reply serialisation, the decision log line, metrics), each beside
// the library path it replaced, in the same interleaved rounds.
//   node bench/micro.js [--dist DIR] [--compare-dist DIR] [--mixes a,b]   (prints JSON)
import { fork } from 'node:child_process';
import { openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildMixes } from './mixes.js';
import { loadModule } from './dist.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const self = fileURLToPath(import.meta.url);
const MS_PER_BATCH = Number(process.env.BENCH_MICRO_BATCH_MS ?? 15);
const ROUNDS = Number(process.env.BENCH_MICRO_ROUNDS ?? 15);

let sink;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Iterations that take about MS_PER_BATCH, found by running fn for 50 ms (which also warms it up). */
function calibrate(fn) {
  let n = 0;
  const t0 = process.hrtime.bigint();
  while (Number(process.hrtime.bigint() - t0) < 50e6) sink = fn(n++);
  const perOpNs = 50e6 / n;
  return Math.max(1, Math.round((MS_PER_BATCH * 1e6) / perOpNs));
}

/**
 * Times each case in batches, the cases interleaved (forward, then backward, then forward...) so that a drift in the
 * machine's load falls on all alike; returns the median µs per operation of each.
 */
function measure(cases) {
  const live = cases.filter((c) => c.fn);
  for (const c of live) c.batch = calibrate(c.fn);
  const samples = new Map(live.map((c) => [c.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of r % 2 === 0 ? live : [...live].reverse()) {
      const { fn, batch } = c;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < batch; i++) sink = fn(i);
      samples.get(c.key).push(Number(process.hrtime.bigint() - t0) / batch / 1e3);
    }
  }
  return Object.fromEntries(live.map((c) => [c.key, median(samples.get(c.key))]));
}

const load = (dist, module) => loadModule(dist, module).catch(() => ({}));

async function child({ dist, compareDist, mixIds }) {
  const secureJson = (await import('secure-json-parse')).default;
  const { SerializerSelector } = await import('@fastify/fast-json-stringify-compiler');
  const { pino } = await import('pino');
  const { loadConfig } = await load(dist, 'config.js');
  const { buildMutators } = await load(dist, 'mutators/index.js');
  const admission = await load(dist, 'admission.js');
  const server = await load(dist, 'server.js');
  const jsonBody = await load(dist, 'json-body.js');
  const { createLogger, lazyChildLogger, TurnBufferedDestination } = await load(dist, 'log.js');
  const decisionModule = await load(dist, 'decision.js');
  const { createMetrics } = await load(dist, 'metrics.js');
  const config = loadConfig(join(root, 'examples/config.yaml'));
  const mutators = buildMutators(config);
  const compare = compareDist ? await load(compareDist, 'admission.js') : undefined;
  const compareMutators = compareDist ? (await load(compareDist, 'mutators/index.js')).buildMutators(config) : undefined;

  // what fastify compiles from the reply schema: the serialiser the server used before its reply was built by hand
  const reviewSchema = admission.REVIEW_REPLY_SCHEMA ?? server.reviewReply;
  const fjs = SerializerSelector()()({ schema: reviewSchema, method: 'POST', url: '/mutate', httpStatus: '200' });
  const sjOptions = { protoAction: 'error', constructorAction: 'error' };

  const mixes = buildMixes().filter((m) => !mixIds || mixIds.includes(m.id));
  // every mix's review() run before any is timed, so that no mix is timed while V8 still optimises code the others
  // share: without it the first mix came out 5–15 % above its warm figure in runs of this file alone, and 1.5× and 3×
  // the same work on the padded body in two full bench runs
  for (const mix of mixes) {
    const body = JSON.parse(mix.body);
    const t0 = Date.now();
    while (Date.now() - t0 < 100) for (let i = 0; i < 100; i++) sink = admission.review(body, mutators);
  }
  const perMix = [];
  for (const mix of mixes) {
    const pool = Array.from({ length: 64 }, () => JSON.parse(mix.body));
    const answer = admission.review(pool[0], mutators);
    const reply = answer.review;
    const t = measure([
      { key: 'jsonParse', fn: () => JSON.parse(mix.body) },
      { key: 'secureJsonParse', fn: () => secureJson.parse(mix.body, undefined, sjOptions) },
      { key: 'bodyParser', fn: jsonBody.parseJsonBody && (() => jsonBody.parseJsonBody(mix.body)) },
      { key: 'review', fn: (i) => admission.review(pool[i & 63], mutators) },
      { key: 'reviewCompare', fn: compare && ((i) => compare.review(pool[i & 63], compareMutators)) },
      { key: 'replySchema', fn: () => fjs(reply) },
      { key: 'replyStringify', fn: () => JSON.stringify(reply) },
      { key: 'replyOurs', fn: admission.encodeReview && (() => admission.encodeReview(reply)) },
    ]);
    perMix.push({ id: mix.id, label: mix.label, bodyBytes: mix.body.length, outcome: answer.decision?.outcome, us: t });
  }

  // The decision line and the metrics do not depend on the body: a patched Deployment's decision stands for all.
  const target = buildMixes().find((m) => m.id === 'target-create-fixture');
  const decision = admission.review(JSON.parse(target.body), mutators).decision;
  const devNull = openSync('/dev/null', 'w');
  // stdout is a pipe the parent drains, as a container's is
  const toPipe = createLogger('info', pino.destination({ dest: 1, sync: true }));
  const toNull = createLogger('info', pino.destination({ dest: devNull, sync: true }));
  const beforeLine = (logger) => {
    const child = logger.child({}, { redact: [] });
    return () => child.info({ reqId: 'req-1', ...admission.loggable(decision), operation: decision.operation, dryRun: decision.dryRun, outcome: decision.outcome, patched: true, patchOps: decision.patchOps, durationMs: 0.123 }, 'admission decision');
  };
  const oursLine = (logger) => decisionModule.decisionLogger && ((log) => () => log(decision, 'req-1', 0.000123))(decisionModule.decisionLogger(logger));
  // the server's destination writes once per event-loop turn: a turn that answers `perTurn` requests, emulated
  const turned = (perTurn) => {
    if (!TurnBufferedDestination || !decisionModule.decisionLogger) return undefined;
    const dest = new TurnBufferedDestination(1);
    const log = decisionModule.decisionLogger(createLogger('info', dest));
    return (i) => {
      log(decision, 'req-1', 0.000123);
      if (i % perTurn === perTurn - 1) dest.flushSync();
    };
  };
  const metricsBefore = createMetrics();
  const metricsOurs = createMetrics();
  const record = decisionModule.recordDecision;
  const extras = measure([
    { key: 'logPipeBefore', fn: beforeLine(toPipe) },
    { key: 'logNullBefore', fn: beforeLine(toNull) },
    { key: 'logPipeOurs', fn: oursLine(toPipe) },
    { key: 'logPipeTurn1', fn: turned(1) },
    { key: 'logPipeTurn4', fn: turned(4) },
    { key: 'logPipeTurn16', fn: turned(16) },
    { key: 'logNullOurs', fn: oursLine(toNull) },
    // what fastify does per request when it is given the logger: a child carrying the request id
    { key: 'fastifyChildLogger', fn: (i) => toNull.child({ reqId: `req-${i}` }, {}) },
    { key: 'requestLoggerOurs', fn: lazyChildLogger && ((i) => lazyChildLogger(toNull, { reqId: `req-${i}` }, {})) },
    {
      key: 'metricsBefore',
      fn: () => {
        metricsBefore.requests.inc({ kind: 'apps/v1/Deployment', operation: decision.operation, outcome: decision.outcome });
        metricsBefore.duration.observe({ outcome: decision.outcome }, 0.000123);
        metricsBefore.patches.inc({ kind: 'apps/v1/Deployment' });
      },
    },
    { key: 'metricsOurs', fn: record && (() => record(metricsOurs, decision, 0.000123)) },
  ]);
  return { settings: { msPerBatch: MS_PER_BATCH, rounds: ROUNDS, node: process.version }, mixes: perMix, extras };
}

/** Runs the micro-benchmarks in a fresh process whose stdout is a pipe drained here, and resolves with the figures. */
export function microBench({ dist = join(root, 'dist'), compareDist, mixIds } = {}) {
  return new Promise((resolvePromise, reject) => {
    const args = ['--child', '--dist', resolve(dist), ...(compareDist ? ['--compare-dist', resolve(compareDist)] : []), ...(mixIds ? ['--mixes', mixIds.join(',')] : [])];
    const c = fork(self, args, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
    c.stdout.resume();
    let result;
    c.on('message', (m) => (result = m));
    c.on('exit', (code) => (code === 0 && result ? resolvePromise(result) : reject(new Error(`bench/micro.js exited ${code}`))));
  });
}

if (process.argv[1] === self) {
  const { values } = parseArgs({ options: { child: { type: 'boolean' }, dist: { type: 'string' }, 'compare-dist': { type: 'string' }, mixes: { type: 'string' } } });
  const mixIds = values.mixes?.split(',');
  if (values.child) {
    const result = await child({ dist: values.dist, compareDist: values['compare-dist'], mixIds });
    process.send(result, () => process.disconnect());
  } else {
    const result = await microBench({ dist: values.dist, compareDist: values['compare-dist'] ?? process.env.BENCH_COMPARE_DIST, mixIds });
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  }
}
