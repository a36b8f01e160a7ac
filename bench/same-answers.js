// The companion of an A/B run: proves that this build (dist/) gives every answer another build gives, so that a speed-up
// changed nothing else. The diff on random copy-on-write edits (duplicates, moves, rebuilt entries, keys that need
// escaping), and review() on every recorded fixture and on random Deployments (our entries present, absent, changed,
// duplicated, mounts on the token's path): reply (base64 patch included) and decision compared whole.
//   node bench/same-answers.js --dist DIR [--runs 20000]     (DIR: the other build's dist/, beside its package.json)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { cowArbitraries, edit } from '../test/helpers/cow-edits.js';
import { loadModule } from './dist.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { dist: { type: 'string' }, runs: { type: 'string' } } });
if (!values.dist) throw new Error('usage: node bench/same-answers.js --dist DIR [--runs N]');
const RUNS = Number(values.runs ?? 20000);
const load = (dist, module) => loadModule(resolve(dist), module);
const builds = await Promise.all([join(root, 'dist'), values.dist].map(async (dist) => ({
  patch: await load(dist, 'patch.js'),
  admission: await load(dist, 'admission.js'),
  mutators: await load(dist, 'mutators/index.js'),
  config: await load(dist, 'config.js'),
})));
const [ours, theirs] = builds;

// 1. The diff on random copy-on-write edits.
const { root: object, edits } = cowArbitraries(fc, { name: 'B', projected: { x: [1, null] } });
let operations = 0;
fc.assert(fc.property(object, edits, (a, es) => {
  const b = es.reduce((v, e) => edit(v, e), a);
  const ops = ours.patch.diff(a, b);
  assert.deepStrictEqual(ops, theirs.patch.diff(a, b));
  operations += ops.length;
}), { numRuns: RUNS });
process.stdout.write(`diff: ${RUNS} random copy-on-write edit sets, the same ${operations} operations from both builds\n`);

// 2. review() on the fixtures and on random Deployments.
const config = ours.config.loadConfig(join(root, 'examples/config.yaml'));
const mutators = [ours.mutators.buildMutators(config), theirs.mutators.buildMutators(theirs.config.loadConfig(join(root, 'examples/config.yaml')))];
const answer = (build, i, review) => {
  const r = build.admission.review(review, mutators[i]);
  return r.ok ? { review: r.review, decision: r.decision } : r;
};
const same = (review) => assert.deepStrictEqual(answer(ours, 0, review), answer(theirs, 1, review));
const dir = join(root, 'test/fixtures/admission');
const fixtures = readdirSync(dir).filter((f) => /^[a-z0-9-]+\.json$/.test(f)).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
for (const f of fixtures) same(f);
const names = ['AWS_ROLE_ARN', 'AWS_CONFIG_FILE', 'AWS_REGION', 'MLFLOW_ARTIFACTS_DESTINATION', 'X', 'aws-iam-token', 'aws-user-token', 'other'];
const token = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
const entry = fc.oneof(
  fc.record({ name: fc.constantFrom(...names), value: fc.string({ maxLength: 4 }) }),
  fc.record({ name: fc.constantFrom(...names), mountPath: fc.constantFrom(token, `${token}/`, '/x', token.replace('/serviceaccount', '/./serviceaccount')) }),
  fc.record({ name: fc.constantFrom(...names), projected: fc.constant({ defaultMode: 420, sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] }) }),
  fc.jsonValue({ maxDepth: 1 }),
);
const lists = fc.record({ env: fc.array(entry, { maxLength: 8 }), volumeMounts: fc.array(entry, { maxLength: 5 }), volumes: fc.array(entry, { maxLength: 5 }) });
const deployments = fixtures.filter((f) => f.request?.kind?.kind === 'Deployment' && Array.isArray(f.request.object?.spec?.template?.spec?.containers));
const reviews = Math.ceil(RUNS / 4);
fc.assert(fc.property(fc.nat(), lists, fc.boolean(), (k, l, append) => {
  const f = structuredClone(deployments[k % deployments.length]);
  const pod = f.request.object.spec.template.spec;
  const c = pod.containers.find((x) => x.name === config.container) ?? pod.containers[0];
  c.env = append ? [...(c.env ?? []), ...l.env] : l.env;
  c.volumeMounts = append ? [...l.volumeMounts, ...(c.volumeMounts ?? [])] : l.volumeMounts;
  pod.volumes = append ? [...(pod.volumes ?? []), ...l.volumes] : l.volumes;
  same(f);
}), { numRuns: reviews });
process.stdout.write(`review(): ${fixtures.length} fixtures and ${reviews} random Deployments, the same reply (patch bytes included) and decision from both builds\n`);
