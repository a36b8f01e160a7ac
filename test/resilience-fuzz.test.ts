// Property-based specification of /mutate under bad input: every generated request gets a well-formed 4xx JSON error or a
// valid AdmissionReview whose patch applies strictly and whose warnings stay within the limits; never a 5xx, a throw or
// a heap that keeps growing. Generators include objects with toString/valueOf keys, every envelope field nested far
// past the stack, and lists where strings belong.
//
// The requests come from a fixed seed and a random one (test/helpers/property.ts); a failure prints the command that
// replays it (FC_SEED=<seed> [FC_PATH=<path>]). RESILIENCE_RUNS sets the requests per seed.
import t from 'tap';
import fc from 'fast-check';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Writable } from 'node:stream';
import { loadConfig } from '../src/config/config.js';
import { buildServer, type WebhookServer } from '../src/webhook/server.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/webhook/metrics.js';
import { createServingCert } from '../src/webhook/tls.js';
import { admissionFixtures, exampleConfig } from './helpers/fixtures.js';
import { applyStrict } from './helpers/strict-patch.js';
import { LIMITS } from '../src/webhook/admission.js';
import { checkProperty, FIXED_SEED, propertySeeds } from './helpers/property.js';

// a real full collection between the heap readings, so the margin can be small
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const RUNS = Number(process.env.RESILIENCE_RUNS ?? 2500);

const config = loadConfig(exampleConfig);
const reviews = admissionFixtures().map((f) => f.review);
const OUR_ENV = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'MLFLOW_ARTIFACTS_DESTINATION', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_STS_REGIONAL_ENDPOINTS', 'AWS_CONFIG_FILE', 'POSTGRES_PASSWORD'];
const DEEP = '"__deep_nesting_goes_here__"';

type Json = any;

/** Every location in a JSON value, as a list of keys from the root (the root itself excluded). */
function paths(value: Json, at: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  if (Array.isArray(value)) value.forEach((v, i) => { out.push([...at, i]); paths(v, [...at, i], out); });
  else if (value !== null && typeof value === 'object') for (const k of Object.keys(value)) { out.push([...at, k]); paths(value[k], [...at, k], out); }
  return out;
}

function containers(value: Json, at: Array<string | number> = [], out: Json[] = []): Json[] {
  if (value !== null && typeof value === 'object') {
    out.push(value);
    for (const v of Object.values(value)) containers(v, at, out);
  }
  return out;
}

function setAt(root: Json, path: Array<string | number>, fn: (parent: Json, key: string | number) => void): void {
  let cur = root;
  for (const k of path.slice(0, -1)) cur = cur[k];
  fn(cur, path[path.length - 1]);
}

/** The container list of the pod template, when the object still has one. */
function envLists(review: Json): Json[][] {
  const cs = review?.request?.object?.spec?.template?.spec?.containers;
  if (!Array.isArray(cs)) return [];
  return cs.filter((c: Json) => c && typeof c === 'object' && Array.isArray(c.env)).map((c: Json) => c.env);
}

/** Every field of the envelope the webhook reads, and the object fields it routes by, as paths from the review's root. */
const ENVELOPE: Array<Array<string | number>> = [
  ['kind'], ['apiVersion'], ['request'], ['request', 'uid'], ['request', 'kind'], ['request', 'kind', 'group'], ['request', 'kind', 'version'],
  ['request', 'kind', 'kind'], ['request', 'resource'], ['request', 'operation'], ['request', 'name'], ['request', 'namespace'],
  ['request', 'subResource'], ['request', 'dryRun'], ['request', 'userInfo'], ['request', 'options'], ['request', 'object'], ['request', 'oldObject'],
  ['request', 'object', 'metadata'], ['request', 'object', 'metadata', 'name'], ['request', 'object', 'metadata', 'namespace'],
  ['request', 'object', 'metadata', 'annotations'], ['request', 'object', 'spec'],
];
const POD = ['request', 'object', 'spec', 'template', 'spec'];
/** Fields where a string belongs. */
const STRINGS: Array<Array<string | number>> = [
  ['kind'], ['apiVersion'], ['request', 'uid'], ['request', 'kind', 'group'], ['request', 'kind', 'version'], ['request', 'kind', 'kind'],
  ['request', 'operation'], ['request', 'name'], ['request', 'namespace'], ['request', 'subResource'],
  ['request', 'object', 'metadata', 'name'], ['request', 'object', 'metadata', 'namespace'],
  [...POD, 'containers', 0, 'name'], [...POD, 'containers', 0, 'env', 0, 'name'], [...POD, 'containers', 0, 'env', 0, 'value'],
  [...POD, 'containers', 0, 'volumeMounts', 0, 'name'], [...POD, 'containers', 0, 'volumeMounts', 0, 'mountPath'], [...POD, 'volumes', 0, 'name'],
];

/** Sets the value at a path whose parent exists; a missing parent leaves the review as it is. */
function put(review: Json, path: Array<string | number>, value: Json): void {
  let cur = review;
  for (const k of path.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') return;
    cur = cur[k];
  }
  if (cur !== null && typeof cur === 'object') cur[path[path.length - 1]] = value;
}

/** One edit of an AdmissionReview; its fields are plain data, so a failing case prints and replays as it was. */
const edit = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('retype' as const), at: fc.nat(), value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(null, [], {}, '', 0, -1, true, 1e308, '\u0000', 'null')) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('drop' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('envelope' as const), which: fc.constantFrom('request', 'object', 'uid', 'kind', 'apiVersion', 'operation', 'oldObject', 'containers', 'env'), value: fc.constantFrom(null, undefined, 'x', 7, [], {}, [{}]) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('apiVersion' as const), value: fc.oneof(fc.constantFrom('admission.k8s.io/v2', 'admission.k8s.io/v1beta2', 'admission.k8s.io/V1', 'v1', ''), fc.string()) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('unicodeKey' as const), at: fc.nat(), key: fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }), fc.constantFrom('~', '/', '~1', '~0/', 'a/b~c', '', '\u{1F600}', '\u202E', 'constructor', 'prototype')), value: fc.jsonValue({ maxDepth: 1 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('envEntry' as const), at: fc.nat(), entry: fc.oneof(
    fc.record({ name: fc.constantFrom(...OUR_ENV), value: fc.string({ maxLength: 20 }) }),
    fc.record({ name: fc.constantFrom(...OUR_ENV), valueFrom: fc.constant({ secretKeyRef: { name: 's', key: 'k' } }) }),
    fc.record({ value: fc.string({ maxLength: 20 }) }),
    fc.record({ name: fc.oneof(fc.constant(null), fc.integer(), fc.string({ maxLength: 8 })) }),
    fc.jsonValue({ maxDepth: 1 }),
  ) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('mount' as const), at: fc.nat(), entry: fc.oneof(
    fc.constant({ name: 'aws-user-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount/' }),
    fc.constant({ name: 'aws-iam-token', mountPath: '/elsewhere' }),
    fc.record({ name: fc.string({ maxLength: 6 }), mountPath: fc.oneof(fc.string({ maxLength: 6 }), fc.constant(7)) }),
  ) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('huge' as const), at: fc.nat(), size: fc.integer({ min: 10_000, max: 3_300_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('deep' as const), at: fc.nat(), depth: fc.integer({ min: 50, max: 1_000 }), array: fc.boolean() }) },
  // objects a String() or template literal cannot convert (JSON cannot carry functions, so these keys are plain data)
  { weight: 3, arbitrary: fc.record({ op: fc.constant('coercion' as const), at: fc.nat(), value: fc.constantFrom<Json>({ toString: 1 }, { valueOf: {} }, { toString: 'x', valueOf: null }, { toString: {}, valueOf: {} }, { toJSON: 1 }, { name: { toString: 1 } }) }) },
  // every envelope field nested far past the stack, as objects or arrays
  { weight: 2, arbitrary: fc.record({ op: fc.constant('deepField' as const), at: fc.nat(), depth: fc.constantFrom(2_000, 20_000, 100_000), array: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('arrayForString' as const), at: fc.nat(), value: fc.constantFrom<Json>(['mlflow'], ['domino-platform'], [], ['CREATE'], [['mlflow']], ['admission.k8s.io/v1']) }) },
);

const request = fc.record({
  review: fc.nat({ max: reviews.length - 1 }),
  edits: fc.array(edit, { minLength: 0, maxLength: 4 }),
  /** cut the serialised body at this fraction of its length (truncated JSON), or leave it whole */
  truncate: fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }) }),
  contentType: fc.constantFrom('application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain', 'application/merge-patch+json'),
});

type Request = typeof request extends fc.Arbitrary<infer R> ? R : never;

/** Builds the body text: the edits on a copy of the chosen fixture, then serialisation, deep nesting and truncation. */
function build(r: Request): { body: string; sent: Json | undefined } {
  const review = structuredClone(reviews[r.review]);
  let deep = '';
  for (const e of r.edits) {
    const all = paths(review);
    const pick = <T>(list: T[], n: number) => list[n % list.length];
    switch (e.op) {
      case 'retype': if (all.length) setAt(review, pick(all, e.at), (p, k) => { p[k] = structuredClone(e.value); }); break;
      case 'drop': if (all.length) setAt(review, pick(all, e.at), (p, k) => { if (Array.isArray(p)) p.splice(k as number, 1); else delete p[k]; }); break;
      case 'envelope': {
        const req = review.request;
        const target = e.which === 'apiVersion' ? review
          : e.which === 'containers' ? req?.object?.spec?.template?.spec
            : e.which === 'env' ? req?.object?.spec?.template?.spec?.containers?.[0]
              : e.which === 'request' ? review : req;
        if (target && typeof target === 'object') target[e.which] = structuredClone(e.value);
        break;
      }
      case 'apiVersion': review.apiVersion = e.value; break;
      case 'unicodeKey': { const objs = containers(review).filter((o) => !Array.isArray(o)); if (objs.length) pick(objs, e.at)[e.key] = structuredClone(e.value); break; }
      case 'envEntry': { const lists = envLists(review); if (lists.length) { const l = pick(lists, e.at); l.splice(e.at % (l.length + 1), 0, structuredClone(e.entry)); } break; }
      case 'mount': {
        const cs = review?.request?.object?.spec?.template?.spec?.containers;
        const c = Array.isArray(cs) ? cs.find((x: Json) => x && typeof x === 'object' && Array.isArray(x.volumeMounts)) : undefined;
        if (c) c.volumeMounts.splice(e.at % (c.volumeMounts.length + 1), 0, structuredClone(e.entry));
        break;
      }
      case 'huge': if (all.length) setAt(review, pick(all, e.at), (p, k) => { p[k] = 'x'.repeat(e.size); }); break;
      case 'deep': if (all.length && !deep) {
        setAt(review, pick(all, e.at), (p, k) => { p[k] = JSON.parse(DEEP); });
        deep = e.array ? '['.repeat(e.depth) + ']'.repeat(e.depth) : '{"a":'.repeat(e.depth) + '1' + '}'.repeat(e.depth);
        break;
      }
      case 'deepField': if (!deep) {
        put(review, pick(ENVELOPE, e.at), JSON.parse(DEEP));
        if (JSON.stringify(review).includes(DEEP)) deep = e.array ? '['.repeat(e.depth) + ']'.repeat(e.depth) : '{"a":'.repeat(e.depth) + '1' + '}'.repeat(e.depth);
        break;
      }
      case 'coercion': put(review, pick([...ENVELOPE, ...STRINGS], e.at), structuredClone(e.value)); break;
      case 'arrayForString': put(review, pick(STRINGS, e.at), structuredClone(e.value)); break;
    }
  }
  let body = JSON.stringify(review) ?? '';
  if (deep) body = body.replace(DEEP, deep);
  if (r.truncate !== null) return { body: body.slice(0, Math.floor(body.length * r.truncate)), sent: undefined };
  // With deep nesting, the oracle judges the patch against the same review nested only three levels there (no copy of
  // 100,000 levels is possible): a patch may add beside the nesting, but one reaching into it fails the strict apply.
  return { body, sent: deep ? JSON.parse(JSON.stringify(review).replace(DEEP, deep.startsWith('[') ? '[[[]]]' : '{"a":{"a":{"a":1}}}')) : review };
}

/** The oracle: what any answer to any input must look like. Throws (so fast-check shrinks) on the first breach. */
function check(status: number, contentType: string, text: string, r: Request, sent: Json | undefined): void {
  if (!contentType.startsWith('application/json')) throw new Error(`answer is not JSON (${contentType}): ${text.slice(0, 200)}`);
  const body = JSON.parse(text);
  if (status >= 400 && status < 500) {
    if (body.statusCode !== status || typeof body.error !== 'string' || typeof body.message !== 'string' || body.message === '') {
      throw new Error(`${status} is not a well-formed error {statusCode, error, message}: ${text.slice(0, 300)}`);
    }
    return;
  }
  if (status !== 200) throw new Error(`status ${status}: ${text.slice(0, 300)}`);
  if (sent === undefined) throw new Error('a truncated body was answered 200');
  if (!r.contentType.startsWith('application/json')) throw new Error(`a ${r.contentType} body was answered 200`);
  const res = body.response;
  if (body.kind !== 'AdmissionReview' || body.apiVersion !== sent.apiVersion) throw new Error(`not an AdmissionReview in the request's version: ${text.slice(0, 300)}`);
  if (!res || res.uid !== sent.request.uid || res.allowed !== true) throw new Error(`uid not echoed or not allowed: ${text.slice(0, 300)}`);
  if ((res.patch === undefined) !== (res.patchType === undefined)) throw new Error('patch and patchType must come together');
  if (res.patch !== undefined) {
    if (res.patchType !== 'JSONPatch') throw new Error(`patchType ${res.patchType}`);
    const ops = JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8'));
    if (!Array.isArray(ops) || ops.length === 0) throw new Error('an empty or non-array patch was sent');
    applyStrict(sent.request.object, ops);
  }
  if (res.warnings !== undefined && !(Array.isArray(res.warnings) && res.warnings.every((w: unknown) => typeof w === 'string'))) {
    throw new Error('warnings must be a list of strings');
  }
  if (res.warnings && (res.warnings.length > LIMITS.warnings || res.warnings.some((w: string) => w.length > LIMITS.warningChars))) {
    throw new Error(`warnings over the limits: ${res.warnings.length} of up to ${Math.max(...res.warnings.map((w: string) => w.length))} characters`);
  }
}

let s: WebhookServer;
const discard = new Writable({ write(_c, _e, cb) { cb(); } });

async function answer(r: Request): Promise<void> {
  const { body, sent } = build(r);
  const res = await s.app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': r.contentType }, payload: body });
  check(res.statusCode, String(res.headers['content-type'] ?? ''), res.body, r, sent);
}

t.before(async () => {
  // logs are kept at debug and thrown away: the log path runs for every request, as in production
  s = buildServer({ config, tls: await createServingCert(['localhost'], 1), logger: createLogger('debug', discard), metrics: createMetrics(false) });
  await s.app.ready();
});
t.teardown(() => s.app.close());

t.test(`${RUNS} generated requests per seed: a 4xx JSON error or a strictly applicable AdmissionReview, never a 5xx`, async (t) => {
  const property = fc.asyncProperty(request, answer);
  // warm-up, so that lazily built code (fastify's serialisers, JIT) is not counted as growth
  await fc.assert(property, { seed: FIXED_SEED + 1, numRuns: 200 });
  gc();
  const before = process.memoryUsage().heapUsed;
  const runs = await checkProperty(t, property, { numRuns: RUNS });
  t.equal(runs, RUNS * propertySeeds().length, 'all runs were made (none skipped)');
  gc();
  const after = process.memoryUsage().heapUsed;
  const growthMb = (after - before) / 2 ** 20;
  t.comment(`heap before ${(before / 2 ** 20).toFixed(1)} MiB, after ${(after / 2 ** 20).toFixed(1)} MiB`);
  t.ok(growthMb < 8, `heap grew ${growthMb.toFixed(2)} MiB over ${runs} requests (margin 8 MiB)`);
});

t.test('metrics stay bounded: request-chosen kinds do not become label values', async (t) => {
  const kinds = (await s.app.inject({ url: '/metrics' })).body.match(/kind="[^"]*"/g) ?? [];
  const distinct = new Set(kinds);
  t.ok(distinct.size <= 4, `distinct kind labels after the run: ${[...distinct].join(', ')}`);
});

t.test('nesting far deeper than the stack: answered, never a 5xx', async (t) => {
  for (const [where, depth] of [['object.metadata.labels', 100_000], ['object.spec.template.spec', 100_000], ['uid', 20_000]] as const) {
    const review = structuredClone(reviews.find((r) => r.request.uid && r.request.object?.kind === 'Deployment' && r.request.operation === 'CREATE'));
    const slot = where === 'uid' ? review.request : where === 'object.metadata.labels' ? review.request.object.metadata : review.request.object.spec.template.spec;
    slot[where === 'uid' ? 'uid' : where.endsWith('labels') ? 'labels' : 'affinity'] = JSON.parse(DEEP);
    const body = JSON.stringify(review).replace(DEEP, '['.repeat(depth) + ']'.repeat(depth));
    const res = await s.app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: body });
    t.ok(res.statusCode === 200 || (res.statusCode >= 400 && res.statusCode < 500), `${where} ${depth} deep → ${res.statusCode}`);
    const answer = res.json();
    if (res.statusCode === 200) t.match(answer, { kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }, 'an AdmissionReview');
    else t.match(answer, { statusCode: res.statusCode, error: String, message: String }, 'a JSON error');
  }
});
