// Specification of /mutate: every recorded AdmissionReview fixture against its golden object, and every bad input.
import t from 'tap';
import { Writable } from 'node:stream';
import { loadConfig, parseConfig } from '../src/config/config.js';
import { buildServer, type WebhookServer } from '../src/webhook/server.js';
import { buildMutators, type Mutators } from '../src/mutators/index.js';
import { createLogger, lazyChildLogger } from '../src/log.js';
import { decisionLogger, pinoDecisionLogger } from '../src/webhook/decision.js';
import { createMetrics } from '../src/webhook/metrics.js';
import { createServingCert, type KeyPair } from '../src/webhook/tls.js';
import { admissionFixtures, exampleConfig, fixture, fixtureFolders } from './helpers/fixtures.js';
import { applyStrict } from './helpers/strict-patch.js';
import { cowArbitraries, edit } from './helpers/cow-edits.js';
import { validateK8s } from './helpers/k8s-schema.js';
import { checkProperty } from './helpers/property.js';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { constant, diff, encodedDiff, PatchLimitError, type Operation } from '../src/webhook/patch.js';
import { boundWarnings, encodeReview, LIMITS, REVIEW_REPLY_SCHEMA, review, SUPPORTED_VERSIONS, type AdmissionResponse } from '../src/webhook/admission.js';
import { createRequire } from 'node:module';
import { parseJson } from '../src/webhook/json-body.js';
import secureJson from 'secure-json-parse';

const config = loadConfig(exampleConfig);
let pair: KeyPair;

/** A log sink that keeps every line, so tests can read what was logged. */
function captureLog(level = 'debug') {
  const lines: any[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line));
      }
      cb();
    },
  });
  return { logger: createLogger(level, sink), lines, raw };
}

function server(opts: { cfg?: typeof config; mutators?: Mutators } = {}) {
  const log = captureLog();
  const s = buildServer({ config: opts.cfg ?? config, tls: pair, logger: log.logger, metrics: createMetrics(false), mutators: opts.mutators });
  return { s, log };
}

async function post(s: WebhookServer, payload: unknown, contentType = 'application/json') {
  const res = await s.app.inject({
    method: 'POST',
    url: '/mutate',
    headers: { 'content-type': contentType },
    payload: typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload),
  });
  return { status: res.statusCode, body: res.json(), headers: res.headers };
}

function decodePatch(response: any): any[] | undefined {
  if (response.patch === undefined) return undefined;
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
}

t.before(async () => {
  pair = await createServingCert(['localhost'], 1);
});

t.test('recorded AdmissionReview fixtures, each folder answered with its own config', async (t) => {
  const folders = fixtureFolders();
  t.same(folders.map((f) => f.folder), ['', 'pod-identity'], 'the top folder (examples/config.yaml) and one a config');
  for (const { folder, configFile } of folders) {
    const { s } = server({ cfg: loadConfig(configFile) });
    t.teardown(() => s.app.close());
    const cases = admissionFixtures(folder);
    t.ok(cases.length >= (folder ? 7 : 15), `${folder || 'top folder'}: fixtures found: ${cases.length}`);
    for (const c of cases) await t.test(`${folder ? `${folder}/` : ''}${c.name}`, async (t) => {
      const req = c.review.request;
      const { status, body } = await post(s, c.review);
      t.equal(status, 200);
      t.equal(body.apiVersion, c.review.apiVersion, 'answers in the request\'s version');
      t.equal(body.kind, 'AdmissionReview');
      t.equal(body.response.uid, req.uid, 'echoes the uid');
      t.equal(body.response.allowed, true);
      t.same(body.response.warnings ?? [], c.warnings, 'warnings as in the .warnings.json golden');
      const ops = decodePatch(body.response);
      const expectPatch = c.patched !== undefined && JSON.stringify(c.patched) !== JSON.stringify(req.object);
      if (!expectPatch) {
        t.equal(ops, undefined, 'no patch');
        t.equal(body.response.patchType, undefined, 'no patchType without a patch');
        return;
      }
      t.equal(body.response.patchType, 'JSONPatch');
      const patched = applyStrict(req.object, ops!);
      t.same(patched, c.patched, 'strictly applied patch gives the golden object');
      t.doesNotThrow(() => validateK8s(patched), 'patched object is a valid Kubernetes object');
      const again = await post(s, { ...c.review, request: { ...req, uid: `${req.uid}-again`, object: patched } });
      t.equal(again.body.response.patch, undefined, 'the patched object gets no second patch');
    });
  }
});

t.test('goldens say what the issue asks, independent of the code under test', async (t) => {
  const created = fixture('deployment-create');
  const pod = created.patched.spec.template.spec;
  const mlflow = pod.containers.find((c: any) => c.name === 'mlflow');
  const env = Object.fromEntries(mlflow.env.map((e: any) => [e.name, e]));
  t.same(env.AWS_ROLE_ARN, { name: 'AWS_ROLE_ARN', value: config.roleArn });
  t.same(env.AWS_WEB_IDENTITY_TOKEN_FILE.value, '/var/run/secrets/eks.amazonaws.com/serviceaccount/token');
  t.same(env.MLFLOW_ARTIFACTS_DESTINATION.value, 's3://sw-domino-project-based-mlflow');
  t.same(env.POSTGRES_PASSWORD.valueFrom, { secretKeyRef: { name: 'mlflow-postgresql', key: 'postgresql-password' } }, 'secretKeyRef env untouched');
  t.notOk(env.AWS_CONFIG_FILE, 'AWS_CONFIG_FILE removed from the mlflow container');
  t.same(mlflow.env.slice(0, 4).map((e: any) => e.name), ['MLFLOW_BACKEND_STORE_URI', 'POSTGRES_PASSWORD', 'MLFLOW_ARTIFACTS_DESTINATION', 'GUNICORN_CMD_ARGS'], 'other env keeps its order');
  t.same(pod.containers[1], created.review.request.object.spec.template.spec.containers[1], 'the second container is untouched');
  t.same(pod.initContainers, created.review.request.object.spec.template.spec.initContainers, 'initContainers untouched');
  t.same(pod.volumes.find((v: any) => v.name === 'aws-iam-token'), {
    name: 'aws-iam-token',
    projected: { defaultMode: 420, sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] },
  });
  t.same(mlflow.volumeMounts.at(-1), { name: 'aws-iam-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount', readOnly: true });

  const partial = fixture('deployment-update-partial').patched.spec.template.spec.containers[0].env;
  t.same(partial.filter((e: any) => e.name === 'AWS_WEB_IDENTITY_TOKEN_FILE').length, 1, 'duplicates of our env collapse to one');
  t.same(partial.filter((e: any) => e.name === 'AWS_CONFIG_FILE').length, 0, 'every AWS_CONFIG_FILE removed, duplicates too');
  t.same(partial.find((e: any) => e.name === 'AWS_ROLE_ARN'), { name: 'AWS_ROLE_ARN', value: config.roleArn }, 'set over a valueFrom');

  // credentials set before us: every variable that beats or breaks web identity goes, each named in a warning
  const creds = fixture('deployment-update-credentials');
  const credsEnv = creds.patched.spec.template.spec.containers.find((c: any) => c.name === 'mlflow').env.map((e: any) => e.name);
  const beats = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CONFIG_FILE'];
  for (const name of beats) {
    t.notOk(credsEnv.includes(name), `${name} removed from the mlflow container`);
    t.ok(creds.warnings.some((w) => w.includes('removed env') && new RegExp(`\\b${name}\\b`).test(w)), `${name}'s removal named in a warning`);
  }
  t.ok(creds.warnings.some((w) => w.includes('envFrom') && w.includes('configMap "mlflow-aws-env"') && w.includes('secret "mlflow-extra"')), 'envFrom: each source named');
  for (const flag of ['--artifacts-destination', '--default-artifact-root']) t.ok(creds.warnings.some((w) => w.includes(`runs with ${flag}:`)), `${flag} in args warned`);
  t.equal(creds.patched.spec.template.metadata.annotations['eks.amazonaws.com/skip-containers'], 'istio-proxy,nginx-auth,wait-for-postgres',
    'skip-containers: what was there, then every container and init container but mlflow');
  t.equal(creds.patched.metadata.annotations['mlflow-irsa-webhook.io/previous-artifacts-destination'], 's3://domino-blobs-mlflow/mlflow',
    'a replace that dropped the recorded destination gets it back from the old object');
  t.equal(created.patched.metadata.annotations['mlflow-irsa-webhook.io/previous-artifacts-destination'], 's3://domino-blobs-mlflow/mlflow', 'Domino\'s destination recorded when replaced');
  t.notOk(fixture('deployment-update-manual-procedure').patched.metadata.annotations?.['mlflow-irsa-webhook.io/previous-artifacts-destination'], 'nothing recorded when the destination is already ours');
  const reapply = fixture('deployment-update-reapply');
  t.equal(reapply.patched.metadata.annotations['mlflow-irsa-webhook.io/previous-artifacts-destination'], 's3://domino-blobs-mlflow/mlflow', 'a re-apply with another destination does not overwrite the first one seen');
  t.same(reapply.warnings.map((w) => /runs with (\S+):/.exec(w)?.[1]), ['--no-serve-artifacts'], 'a shell command line is read too; a mlflow-artifacts: default root is no override');
  t.same(pod.containers.find((c: any) => c.name === 'nginx-auth').env, created.review.request.object.spec.template.spec.containers.find((c: any) => c.name === 'nginx-auth').env, 'sidecars untouched');

  const sa = fixture('serviceaccount-update').patched.metadata.annotations;
  t.equal(sa['eks.amazonaws.com/role-arn'], config.roleArn);
  t.equal(sa['eks.amazonaws.com/sts-regional-endpoints'], 'true');
  t.equal(sa['example.com/owner'], 'platform-team', 'other annotations stay');
});

t.test('pod-identity goldens say what the issue asks: no IRSA left, the destination and region set, sidecars excluded', async (t) => {
  const TOKEN_DIR = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
  const WEB_IDENTITY = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE'];
  const dir = (p: string) => p.replace(/\/+$/, '');
  const deployments = ['deployment-create', 'deployment-update-irsa-mutated', 'deployment-update-manual-procedure', 'deployment-update-sidecar-mounts-token'];
  for (const name of deployments) {
    const c = fixture(name, 'pod-identity');
    const before = c.review.request.object.spec.template.spec;
    const pod = c.patched.spec.template.spec;
    const all = [...pod.containers, ...(pod.initContainers ?? [])];
    const mlflow = pod.containers.find((x: any) => x.name === 'mlflow');
    const env = Object.fromEntries(mlflow.env.map((e: any) => [e.name, e.value]));
    t.equal(env.MLFLOW_ARTIFACTS_DESTINATION, 's3://sw-domino-project-based-mlflow', `${name}: the destination`);
    t.same([env.AWS_REGION, env.AWS_DEFAULT_REGION], ['us-west-2', 'us-west-2'], `${name}: the region, in the variable botocore reads too`);
    for (const v of [...WEB_IDENTITY, 'AWS_CONFIG_FILE']) t.notOk(v in env, `${name}: no ${v} in mlflow`);
    // EKS's own webhook injects Pod Identity's variables into the pod; the Deployment must not carry them
    for (const v of ['AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE']) t.notOk(v in env, `${name}: ${v} left to EKS's webhook`);
    t.notOk(all.some((x: any) => (x.env ?? []).some((e: any) => WEB_IDENTITY.includes(e.name))), `${name}: no container carries web identity`);
    t.notOk((mlflow.volumeMounts ?? []).some((m: any) => dir(m.mountPath) === TOKEN_DIR || m.name === 'aws-iam-token'), `${name}: no IRSA token mount in mlflow`);
    const volumes = new Set((pod.volumes ?? []).map((v: any) => v.name));
    for (const x of all) for (const m of x.volumeMounts ?? []) t.ok(volumes.has(m.name), `${name}: ${x.name}'s mount ${m.name} has its volume`);
    const mounted = new Set(all.flatMap((x: any) => (x.volumeMounts ?? []).map((m: any) => m.name)));
    const tokens = (pod.volumes ?? []).filter((v: any) => v.projected?.sources?.some((src: any) => src.serviceAccountToken?.audience === 'sts.amazonaws.com'));
    t.ok(tokens.every((v: any) => mounted.has(v.name)), `${name}: an STS token volume is left only where another container still mounts it`);
    t.equal(c.patched.spec.template.metadata.annotations['eks.amazonaws.com/skip-containers'], 'nginx-auth,wait-for-postgres', `${name}: EKS's webhook leaves every container but mlflow alone`);
    for (const x of pod.containers.filter((x: any) => x.name !== 'mlflow')) t.same(x, before.containers.find((y: any) => y.name === x.name), `${name}: ${x.name} untouched`);
  }
  const irsa = fixture('deployment-update-irsa-mutated', 'pod-identity');
  t.ok(irsa.warnings.some((w) => /removed env AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE\b.*before Pod Identity/.test(w)), 'the web identity removed, and why, in a warning');
  t.ok(irsa.warnings.some((w) => /removed volume "aws-iam-token"/.test(w)) && irsa.warnings.some((w) => /removed volumeMount "aws-iam-token"/.test(w)), 'the token volume and mount, each named');
  t.notOk(fixture('deployment-update-manual-procedure', 'pod-identity').patched.spec.template.spec.volumes.some((v: any) => v.name === 'aws-user-token'), 'the manual procedure\'s token volume goes with its mount');
  const sidecar = fixture('deployment-update-sidecar-mounts-token', 'pod-identity');
  t.ok(sidecar.patched.spec.template.spec.volumes.some((v: any) => v.name === 'aws-user-token'), 'a token volume a sidecar still mounts stays, or the API server would refuse the pod');
  t.ok(sidecar.warnings.some((w) => /kept volume "aws-user-token"/.test(w)), 'and a warning says so');

  const annotations = (name: string) => fixture(name, 'pod-identity').patched.metadata.annotations ?? {};
  for (const name of ['serviceaccount-create', 'serviceaccount-update', 'serviceaccount-update-irsa-annotated']) {
    t.notOk('eks.amazonaws.com/role-arn' in annotations(name), `${name}: no role-arn annotation (EKS would inject web identity)`);
    t.notOk('eks.amazonaws.com/sts-regional-endpoints' in annotations(name), `${name}: nor regional STS`);
  }
  t.equal(annotations('serviceaccount-update')['example.com/owner'], 'platform-team', 'other annotations stay');
  t.match(fixture('serviceaccount-update', 'pod-identity').warnings, [/removed eks\.amazonaws\.com\/role-arn "arn:aws:iam::111122223333:role\/old-mlflow-role"/], 'the removed role is named');
  t.match(fixture('serviceaccount-update-irsa-annotated', 'pod-identity').warnings, [/role\/sw-mlflow-full-access" and eks\.amazonaws\.com\/sts-regional-endpoints/]);
  t.same(fixture('serviceaccount-create', 'pod-identity').warnings, [], 'nothing to remove, nothing said');
});

t.test('patches are minimal and use JSON-pointer escaping', async (t) => {
  const { s } = server();
  t.teardown(() => s.app.close());
  const sa = await post(s, fixture('serviceaccount-update').review);
  t.same(decodePatch(sa.body.response), [
    { op: 'replace', path: '/metadata/annotations/eks.amazonaws.com~1role-arn', value: config.roleArn },
    { op: 'add', path: '/metadata/annotations/eks.amazonaws.com~1sts-regional-endpoints', value: 'true' },
  ]);
  const dep = decodePatch((await post(s, fixture('deployment-create').review)).body.response)!;
  const annotationPaths = ['/metadata/annotations/mlflow-irsa-webhook.io~1previous-artifacts-destination', '/spec/template/metadata/annotations'];
  t.ok(dep.every((op) => op.path.startsWith('/spec/template/spec/') || annotationPaths.includes(op.path)), 'only the pod spec and the two annotations are touched');
  t.same(dep.filter((op) => op.op === 'remove'), [{ op: 'remove', path: '/spec/template/spec/containers/0/env/2' }], 'AWS_CONFIG_FILE removed by index, later env not rewritten');
  t.notOk(JSON.stringify(dep).includes('postgresql-password'), 'no other env entry is re-sent');
});

t.test('the patch mechanism alone: entries paired by name, reference or value; only what changed', async (t) => {
  const env = (names: string[]) => names.map((name) => ({ name, value: `v-${name}` }));
  const check = (what: string, a: any, b: any) => {
    const ops = diff(a, b);
    t.same(applyStrict(a, ops), b, `${what}: the patch applied strictly gives the target`);
    return ops;
  };
  const long = env(Array.from({ length: 5000 }, (_, i) => `E${i}`));
  const front = check('a removal at the front, ours appended', { env: [{ name: 'AWS_CONFIG_FILE', value: 'x' }, ...long] }, { env: [...long, { name: 'AWS_ROLE_ARN', value: 'r' }] });
  t.same(front, [{ op: 'remove', path: '/env/0' }, { op: 'add', path: '/env/5000', value: { name: 'AWS_ROLE_ARN', value: 'r' } }], 'one remove, one add; the 5,000 entries between are not re-sent');

  const edited = check('an entry edited in place', { env: env(['A', 'B', 'C']) }, { env: [{ name: 'A', value: 'v-A' }, { name: 'B', value: 'new' }, { name: 'C', value: 'v-C' }] });
  t.same(edited, [{ op: 'replace', path: '/env/1/value', value: 'new' }], 'only the changed field');

  const dupes = check('duplicates of a name pair in order', { env: env(['X', 'A', 'X', 'B', 'X']) }, { env: env(['X', 'A', 'B']) });
  t.same(dupes, [{ op: 'remove', path: '/env/4' }, { op: 'remove', path: '/env/2' }], 'the later duplicates removed, the first kept');

  const moved = check('an entry moved (no mutator does this; still correct)', { env: env(['A', 'B', 'C', 'D']) }, { env: env(['B', 'C', 'D', 'A']) });
  t.same(moved, [{ op: 'remove', path: '/env/0' }, { op: 'add', path: '/env/3', value: { name: 'A', value: 'v-A' } }], 'the longest run in order is kept; the moved entry is removed and added');

  const shared = { value: 'no name', deep: { x: [1, 2] } };
  const byRef = check('unnamed entries paired by reference', { list: [1, shared, 'a', null, shared] }, { list: [shared, 'a', null, 2] });
  t.same(byRef, [{ op: 'remove', path: '/list/4' }, { op: 'remove', path: '/list/0' }, { op: 'add', path: '/list/3', value: 2 }]);
  const byValue = check('unnamed entries rebuilt by a copying mutator, paired by value', { list: [{ a: 1 }, { b: [2] }] }, { list: [{ b: [2] }, { c: 3 }] });
  t.same(byValue, [{ op: 'remove', path: '/list/0' }, { op: 'add', path: '/list/1', value: { c: 3 } }], 'the equal entry is kept, not re-sent');
  const mixed = check('rebuilt unnamed entries beside named ones and primitives', { list: [{ name: 'a', v: 1 }, 1, { x: [1] }, 'p'] }, { list: [{ name: 'a', v: 1 }, 1, { x: [1] }, 'q'] });
  t.same(mixed, [{ op: 'remove', path: '/list/3' }, { op: 'add', path: '/list/3', value: 'q' }], 'only the changed primitive');
  t.same(check('kinds differ', { a: { deep: [[[[1]]]] }, b: 'x', c: [1] }, { a: 'flat', b: 'x', c: { k: 1 } }), [
    { op: 'replace', path: '/a', value: 'flat' }, { op: 'replace', path: '/c', value: { k: 1 } },
  ]);
  t.same(check('keys that need escaping', { m: { 'a/b': 1, 'c~d': 2 } }, { m: { 'a/b': 2 } }), [{ op: 'remove', path: '/m/c~0d' }, { op: 'replace', path: '/m/a~1b', value: 2 }]);

  const big = { deep: shared };
  t.same(diff(big, { ...big }), [], 'a shared subtree is skipped by reference');
  t.throws(() => diff({ env: long }, { env: [] }, 100), PatchLimitError, 'the diff stops at the operation limit');
  t.equal(diff({ env: long }, { env: [] }, 5000).length, 5000, 'and not before it');
});

t.test('the diff\'s list shortcuts, by fixed examples: removals at the tail, additions at the tail, both, with edits before them', async (t) => {
  const e = (name: string, value = `v-${name}`) => ({ name, value });
  const [A, B, C, D, E] = ['A', 'B', 'C', 'D', 'E'].map((n) => e(n));
  const at = '/spec/template/spec/containers/0/env';
  const rm = (i: number): Operation => ({ op: 'remove', path: `${at}/${i}` });
  const add = (i: number, value: unknown): Operation => ({ op: 'add', path: `${at}/${i}`, value });
  const cases: Array<[string, unknown[], unknown[], Operation[]]> = [
    ['one removed at the tail', [A, B, C], [A, B], [rm(2)]],
    ['three removed at the tail, from the end', [A, B, C, D, E], [A, B], [rm(4), rm(3), rm(2)]],
    ['all removed, from the end', [A, B, C], [], [rm(2), rm(1), rm(0)]],
    ['two added at the tail, in order', [A, B], [A, B, C, D], [add(2, C), add(3, D)]],
    ['added to an empty list', [], [A, B], [add(0, A), add(1, B)]],
    ['an entry of the head edited, then two removed at the tail', [A, B, C, D], [A, e('B', 'new')], [rm(3), rm(2), { op: 'replace', path: `${at}/1/value`, value: 'new' }]],
    ['an entry of the head edited, then two added at the tail', [A, B], [e('A', 'new'), B, C, D], [{ op: 'replace', path: `${at}/0/value`, value: 'new' }, add(2, C), add(3, D)]],
    ['two removed and two added at the tail (past the shortcut)', [A, B, C, D], [A, B, E, e('F')], [rm(3), rm(2), add(2, E), add(3, e('F'))]],
    ['unnamed values: two removed at the tail', [1, 'x', null, 4], [1, 'x'], [rm(3), rm(2)]],
    ['unnamed values: two added at the tail', [1], [1, 'x', null], [add(1, 'x'), add(2, null)]],
  ];
  for (const [what, a, b, expected] of cases) {
    // as a mutator leaves them: the entries it keeps are the same objects, the lists new ones
    const object = (env: unknown[]) => ({ spec: { template: { spec: { containers: [{ name: 'mlflow', env }] } } } });
    const from = object(a);
    const to = object(b);
    const ops = diff(from, to);
    t.same(ops, expected, `${what}: op by op`);
    t.same(diff(from, to, Infinity, false), expected, `${what}: the same operations the long way (no shortcuts)`);
    let applied: unknown;
    try {
      applied = applyStrict(from, ops);
    } catch (err) {
      applied = `refused by the strict applier: ${(err as Error).message}`;
    }
    t.same(applied, to, `${what}: applied strictly, the patch gives the target`);
  }
});

t.test('the target\'s status and scale sub-resources are admitted without a patch, although the same object on the main resource is patched', async (t) => {
  const { s } = server();
  t.teardown(() => s.app.close());
  for (const [name, sub, kind] of [['deployment-update-status-subresource', 'status', 'Deployment'], ['deployment-update-scale-subresource', 'scale', 'Scale']] as const) {
    const { review } = fixture(name);
    t.match(review.request, { resource: { group: 'apps', version: 'v1', resource: 'deployments' }, subResource: sub, requestSubResource: sub, namespace: 'domino-platform', name: 'mlflow', operation: 'UPDATE', kind: { kind } },
      `${name}: an UPDATE of the target Deployment's ${sub}, as the API server sends it`);
    const res = await post(s, review);
    t.equal(res.body.response.allowed, true);
    t.equal(res.body.response.patch, undefined, `${name}: no patch (the API server rejects a patch on a sub-resource update)`);
  }
  // the proof that the status fixture exercises the sub-resource guard and nothing else: on the main resource, patched
  const main = structuredClone(fixture('deployment-update-status-subresource').review);
  delete main.request.subResource;
  delete main.request.requestSubResource;
  const patched = await post(s, main);
  t.ok((decodePatch(patched.body.response) ?? []).length > 0, 'the same request without subResource is patched');
});

t.test('the copy-on-write shortcuts change nothing: the same operations as the long way, the same text as JSON.stringify', async (t) => {
  const shared = constant({ name: 'B', projected: { 'q"\ud800': ['\ud800', 1, null], defaultMode: 420 } });
  const { root: object, edits } = cowArbitraries(fc, shared);
  // plain objects (fast-check's dictionaries have no prototype), every value its own copy as in parsed JSON (the random
  // trees share `shared` and subtrees), made without a JSON round trip: Node 24.21.0's JSON.parse misreads some keys
  // that hold escapes after certain earlier parses in the process (a key `\ud800` read back as `\`: the first N
  // characters of its raw text, N its decoded length), and the random keys here are such keys
  const plain = (v: unknown): unknown => (Array.isArray(v) ? v.map(plain)
    : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)])) : v);
  let ops = 0;
  const runs = await checkProperty(t, fc.property(object, edits, (a, es) => {
    const b = es.reduce<unknown>((v, e) => edit(v, e), a);
    const shortcut = diff(a, b);
    assert.deepStrictEqual(shortcut, diff(a, b, Infinity, false), 'the same operations as without the shortcuts');
    const encoded = encodedDiff(a, b);
    assert.deepStrictEqual(encoded.ops, shortcut);
    assert.equal(encoded.text, JSON.stringify(shortcut), 'the text is JSON.stringify of the operations, byte for byte');
    // (an edit may replace the root itself, which no webhook patch does and the strict applier refuses)
    if (b !== null && typeof b === 'object' && !Array.isArray(b)) assert.deepStrictEqual(plain(applyStrict(plain(a), plain(shortcut))), plain(b), 'applied strictly, the patch gives the target');
    ops += shortcut.length;
  }), { numRuns: 500 });
  t.ok(ops > runs, `${runs} random copy-on-write edits (${ops} operations): the same operations as the long way, the same text as JSON.stringify, and each patch applied strictly gives its target`);
  t.throws(() => { (shared as { name: string }).name = 'X'; }, TypeError, 'a constant cannot be changed by any holder');
  t.throws(() => { (shared.projected['q"\ud800'] as unknown[]).push(2); }, TypeError, 'nor anything inside it');
});

t.test('dryRun gets the same patch; v1beta1 is answered in v1beta1', async (t) => {
  const { s } = server();
  t.teardown(() => s.app.close());
  const plain = await post(s, fixture('deployment-create').review);
  const dry = await post(s, fixture('deployment-create-dryrun').review);
  const beta = await post(s, fixture('deployment-create-v1beta1').review);
  t.equal(dry.body.response.patch, plain.body.response.patch);
  t.equal(beta.body.response.patch, plain.body.response.patch);
  t.equal(beta.body.apiVersion, 'admission.k8s.io/v1beta1');
});

t.test('config variations change the mutation', async (t) => {
  const base = { roleArn: 'arn:aws-cn:iam::123456789012:role/team/mlflow', artifactsDestination: 's3://my-bucket/prefix/' };
  const noRegion = parseConfig({ ...base, token: { mountPath: '/aws/token-dir/', volumeName: 'irsa', audience: 'sts.amazonaws.com.cn', expirationSeconds: 3600 } });
  const m = buildMutators(noRegion);
  const obj = structuredClone(fixture('deployment-create').review.request.object);
  const out = m.deployment(obj).object as any;
  const c = out.spec.template.spec.containers[0];
  t.same(c.env.filter((e: any) => e.name.startsWith('AWS_') && e.name.includes('REGION')), [], 'no region env without region');
  t.same(c.env.find((e: any) => e.name === 'AWS_WEB_IDENTITY_TOKEN_FILE').value, '/aws/token-dir/token', 'no double slash');
  t.same(c.env.find((e: any) => e.name === 'MLFLOW_ARTIFACTS_DESTINATION').value, 's3://my-bucket/prefix', 'trailing slash dropped');
  t.same(c.volumeMounts.at(-1), { name: 'irsa', mountPath: '/aws/token-dir/', readOnly: true });
  t.same(out.spec.template.spec.volumes.at(-1).projected.sources[0].serviceAccountToken, { audience: 'sts.amazonaws.com.cn', expirationSeconds: 3600, path: 'token' });
  t.same(obj, fixture('deployment-create').review.request.object, 'the mutator never writes into its input');
  const sa = m.serviceAccount({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'mlflow', annotations: null } } as any).object as any;
  t.same(sa.metadata.annotations, { 'eks.amazonaws.com/role-arn': base.roleArn }, 'no regional STS annotation without region');

  const removeMore = buildMutators(parseConfig({ ...base, removeEnv: ['AWS_CONFIG_FILE', 'GUNICORN_CMD_ARGS'] }));
  const names = (removeMore.deployment(obj).object as any).spec.template.spec.containers[0].env.map((e: any) => e.name);
  t.notOk(names.includes('GUNICORN_CMD_ARGS'));
  const keepAll = buildMutators(parseConfig({ ...base, removeEnv: [] }));
  t.ok((keepAll.deployment(obj).object as any).spec.template.spec.containers[0].env.some((e: any) => e.name === 'AWS_CONFIG_FILE'), 'removeEnv: [] keeps AWS_CONFIG_FILE');

  const otherNs = buildMutators(parseConfig({ ...base, namespace: 'mlflow-ns', deployment: 'tracking' }));
  t.ok(otherNs.forTarget({ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'mlflow-ns', name: 'tracking' }));
  t.notOk(otherNs.forTarget({ group: 'apps', version: 'v1', kind: 'Deployment', namespace: 'domino-platform', name: 'mlflow' }));
  t.notOk(otherNs.forTarget({ group: 'apps', version: 'v1beta2', kind: 'Deployment', namespace: 'mlflow-ns', name: 'tracking' }));
  t.notOk(otherNs.forTarget({ group: 'extensions', version: 'v1', kind: 'Deployment', namespace: 'mlflow-ns', name: 'tracking' }));
});

t.test('objects of the target name but unusable shape are admitted unchanged with a warning', async (t) => {
  const { s } = server();
  t.teardown(() => s.app.close());
  const base = fixture('deployment-create').review;
  const shapes: Array<[string, (o: any) => void, RegExp]> = [
    ['containers not a list', (o) => { o.spec.template.spec.containers = { mlflow: {} }; }, /containers is not a list/],
    ['no spec', (o) => { delete o.spec; }, /containers is not a list/],
    ['env not a list', (o) => { o.spec.template.spec.containers[0].env = 'A=B'; }, /env is not a list/],
    ['volumes not a list', (o) => { o.spec.template.spec.volumes = {}; }, /not a list/],
    ['no container of that name', (o) => { o.spec.template.spec.containers[0].name = 'server'; }, /container "mlflow" not found/],
  ];
  for (const [what, edit, warning] of shapes) {
    const review = structuredClone(base);
    edit(review.request.object);
    const { status, body } = await post(s, review);
    t.equal(status, 200, what);
    t.equal(body.response.allowed, true, what);
    t.equal(body.response.patch, undefined, `${what}: no patch`);
    t.match(body.response.warnings?.[0], warning, `${what}: warning names the problem`);
  }
  const noName = structuredClone(base);
  noName.request.object.spec.template.spec.containers[0].env.push({ value: 'no name' }, 42, null);
  const res = await post(s, noName);
  const patched = applyStrict(noName.request.object, decodePatch(res.body.response)!);
  t.same(patched.spec.template.spec.containers[0].env.slice(-8, -5), [{ value: 'no name' }, 42, null], 'unnamed env entries are kept as they are');
});

t.test('a mutator exception fails open: allowed, no patch, a warning and an error log', async (t) => {
  const real = buildMutators(config);
  const throwing: Mutators = { ...real, forTarget: () => () => { throw new TypeError('boom'); } };
  const { s, log } = server({ mutators: throwing });
  t.teardown(() => s.app.close());
  const { status, body } = await post(s, fixture('deployment-create').review);
  t.equal(status, 200);
  t.equal(body.response.allowed, true);
  t.equal(body.response.patch, undefined);
  t.match(body.response.warnings[0], /could not mutate apps\/v1\/Deployment domino-platform\/mlflow/);
  const line = log.lines.find((l) => l.level === 'error');
  t.match(line, { outcome: 'failed-open', error: 'TypeError: boom', uid: fixture('deployment-create').review.request.uid });
});

t.test('bad input gets a clear 4xx naming the problem', async (t) => {
  const small = parseConfig({ ...JSON.parse(JSON.stringify(config)), server: { ...config.server, bodyLimitBytes: 4096 } });
  const { s, log } = server({ cfg: small });
  t.teardown(() => s.app.close());
  const ok = fixture('serviceaccount-create').review;
  const cases: Array<[string, unknown, string, number, RegExp]> = [
    ['not JSON', '{"kind": "AdmissionRev', 'application/json', 400, /not valid JSON/i],
    ['empty body', '', 'application/json', 400, /empty/i],
    ['a JSON array', '[]', 'application/json', 400, /body must be a JSON object/],
    ['not an AdmissionReview', { kind: 'Pod', apiVersion: 'v1' }, 'application/json', 400, /kind must be "AdmissionReview"/],
    ['unsupported apiVersion', { ...ok, apiVersion: 'admission.k8s.io/v2' }, 'application/json', 400, /apiVersion "admission.k8s.io\/v2" is not supported/],
    ['request: null', { ...ok, request: null }, 'application/json', 400, /request must be an object/],
    ['no uid', { ...ok, request: { ...ok.request, uid: undefined } }, 'application/json', 400, /request.uid must be a non-empty string/],
    ['numeric uid', { ...ok, request: { ...ok.request, uid: 7 } }, 'application/json', 400, /request.uid/],
    ['no kind', { ...ok, request: { ...ok.request, kind: 'ServiceAccount' } }, 'application/json', 400, /request.kind must be an object/],
    ['bad operation', { ...ok, request: { ...ok.request, operation: 'PATCH' } }, 'application/json', 400, /request.operation must be one of/],
    ['object: null on CREATE', { ...ok, request: { ...ok.request, object: null } }, 'application/json', 400, /request.object must be an object for CREATE/],
    ['name not a string', { ...ok, request: { ...ok.request, name: ['mlflow'] } }, 'application/json', 400, /request.name must be a string/],
    ['prototype pollution', '{"kind":"AdmissionReview","__proto__":{"x":1}}', 'application/json', 400, /prototype/i],
    ['text/plain', JSON.stringify(ok), 'text/plain', 415, /Unsupported Media Type|content-type/i],
    ['form', 'a=b', 'application/x-www-form-urlencoded', 415, /Unsupported Media Type|content-type/i],
    ['over the body limit', JSON.stringify({ ...ok, pad: 'x'.repeat(5000) }), 'application/json', 413, /too large/i],
  ];
  for (const [what, payload, type, code, message] of cases) {
    const res = await post(s, payload, type);
    t.equal(res.status, code, `${what} → ${code}`);
    t.equal(res.headers['content-type']?.toString().split(';')[0], 'application/json', `${what}: JSON error body`);
    t.match(res.body.message, message, `${what}: message names the problem (${res.body.message})`);
  }
  const long = await post(s, { ...ok, kind: 'K'.repeat(1000) }); // under this server's 4 KiB body limit
  t.equal(long.status, 400);
  t.ok(long.body.message.length < 200, 'a value quoted into the message is cut short');
  t.match(long.body.message, /got "KKKK.*\.\.\./);
  const wrongMethod = await s.app.inject({ method: 'GET', url: '/mutate' });
  t.equal(wrongMethod.statusCode, 404);
  const rejected = log.lines.filter((l) => l.msg === 'rejected request');
  t.ok(rejected.length >= cases.length, `a line per rejected request (${rejected.length})`);
  t.ok(rejected.every((l) => /^req-/.test(l.reqId) && l.level === 'warn'), 'each at warn with its request id, through fastify\'s request logger');
  t.equal(new Set(rejected.map((l) => l.reqId)).size, rejected.length, 'a different id on each');
});

t.test('a request\'s logger becomes a pino child only when a line is written through it', async (t) => {
  const { logger, lines } = captureLog('info');
  let made = 0;
  const parent = Object.assign(Object.create(logger), { child: (b: object, o: object) => (made++, logger.child(b, o)) });
  const lazy = lazyChildLogger(parent, { reqId: 'req-9' }, {});
  lazy.debug('below the level');
  t.equal(made, 1, 'made when first written through (even below the level, as pino would have made it at once)');
  const quiet = lazyChildLogger(parent, { reqId: 'req-10' }, {});
  t.equal(made, 1, 'not made while nothing is written');
  quiet.warn({ status: 400 }, 'rejected request');
  lazy.info('kept');
  t.equal(made, 2);
  t.same(lines.map((l) => [l.reqId, l.msg, l.level]), [['req-10', 'rejected request', 'warn'], ['req-9', 'kept', 'info']], 'the lines carry their request ids');
  t.equal(quiet.level, 'info', 'the level is the parent\'s');
  t.equal(typeof quiet.child({ x: 1 }).info, 'function');
});

t.test('the reply is what fastify\'s serialiser compiled from the reply schema writes, byte for byte', async (t) => {
  // the compiler fastify used for the reply schema before the reply was built by hand, from fastify's own dependencies
  const fromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
  const compiled = fromFastify('@fastify/fast-json-stringify-compiler')()()({ schema: REVIEW_REPLY_SCHEMA, method: 'POST', url: '/mutate', httpStatus: '200' });
  const { s } = server();
  t.teardown(() => s.app.close());
  const mutators = buildMutators(config);
  let replies = 0;
  for (const c of admissionFixtures()) {
    const res = await s.app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(c.review) });
    const result = review(c.review, mutators);
    if (!result.ok) continue;
    t.equal(res.body, compiled(result.review), `${c.name}: the bytes fastify's serialiser wrote`);
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', `${c.name}: as JSON`);
    replies++;
  }
  t.ok(replies >= 15, `${replies} fixtures`);
  // and any reply: uids and warnings with quotes, backslashes, control characters and lone surrogates
  const text = fc.string({ unit: 'binary', maxLength: 40 });
  const response = fc.record({
    apiVersion: fc.oneof(fc.constantFrom(...SUPPORTED_VERSIONS), text),
    uid: text,
    patch: fc.option(fc.base64String({ maxLength: 200 }), { nil: undefined }),
    warnings: fc.option(fc.array(text, { maxLength: 3 }), { nil: undefined }),
  }).map(({ apiVersion, uid, patch, warnings }): AdmissionResponse => ({
    apiVersion, kind: 'AdmissionReview',
    response: { uid, allowed: true, ...(warnings ? { warnings } : {}), ...(patch === undefined ? {} : { patchType: 'JSONPatch' as const, patch }) },
  }));
  await checkProperty(t, fc.property(response, (r) => assert.equal(encodeReview(r), compiled(r))), { numRuns: 1000 });
});

t.test('a route with a schema still gets fastify\'s compilers, loaded when first needed', async (t) => {
  const { s } = server();
  t.teardown(() => s.app.close());
  s.app.post('/schema-check', {
    schema: { body: { type: 'object', required: ['a'], properties: { a: { type: 'integer' } } }, response: { 200: { type: 'object', properties: { a: { type: 'integer' } } } } },
  }, async (request) => ({ a: (request.body as { a: number }).a, dropped: 'by the reply schema' }));
  const ok = await s.app.inject({ method: 'POST', url: '/schema-check', headers: { 'content-type': 'application/json' }, payload: '{"a":7}' });
  t.equal(ok.body, '{"a":7}', 'the reply schema serialises');
  const bad = await s.app.inject({ method: 'POST', url: '/schema-check', headers: { 'content-type': 'application/json' }, payload: '{"b":1}' });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().message, /must have required property 'a'/, 'the body schema validates');
});

t.test('the body parser gives what secure-json-parse gives: the same value, or the same error', async (t) => {
  const library = (text: string) => secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  const outcome = (parse: (text: string) => unknown, text: string) => {
    try {
      return { value: parse(text) };
    } catch (err) {
      return { error: `${(err as Error).name}: ${(err as Error).message}` };
    }
  };
  const crafted = [
    '{"__proto__":{"x":1}}', '{"a":{"b":[{"__proto__":1}]}}', '{ "__proto__" \n: {} }', '{"\\u005f_proto__":{}}', '{"__pro\\u0074o__":{}}',
    '{"\\u005F\\u005Fproto\\u005F\\u005F":1}', '{"constructor":{"prototype":{"x":1}}}', '{"a":[{"constructor":{"prototype":null}}]}',
    '{"c\\u006fnstructor":{"prototype":1}}', '{"constructor":{"pr\\u006ftotype":1}}', '{"constructor":{"prototype2":1}}', '{"constructor":"x"}',
    '{"constructor":null}', '{"constructor":{"constructor":{"prototype":1}}}', '"__proto__"', '{"v":"__proto__"}', '{"v":"constructor"}',
    '{"v":"\\u0041 \\u003c"}', '\ufeff{"a":1}', '\ufeff{"__proto__":1}', '\ufeff', '[{"__proto__":1}]', '{"a": 1,}', '{"a":"MARKER}', 'null', '7',
    '{"__proto__":{"x":1}', JSON.stringify(fixture('deployment-create').review),
  ];
  for (const text of crafted) t.same(outcome(parseJson, text), outcome(library, text), `${JSON.stringify(text).slice(0, 60)}: as the library`);
  const refused = crafted.filter((text) => outcome(library, text).error?.includes('prototype')).length;
  t.ok(refused >= 10, `${refused} crafted texts are refused for their prototype keys, by both`);

  // random texts from fragments that matter (escapes, both words, byte order marks), most of them not JSON at all
  const fragment = fc.constantFrom('{', '}', '[', ']', ':', ',', '"', ' ', 'a', '1', 'null', '__proto__', 'constructor', 'prototype', '\\u005f',
    '\\u0063', '\\u006f', '\\u0041', '\\', '\ufeff', '{"__proto__":', '{"constructor":{"prototype":', '"x":');
  // and JSON values holding those keys at random depths (written as text: an object literal cannot hold a __proto__ key)
  const keyed = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)), tie('object'), tie('array')),
    object: fc.array(fc.tuple(fc.constantFrom('"a"', '"__proto__"', '"constructor"', '"prototype"', '"\\u005f_proto__"', '"c\\u006fnstructor"'), tie('value')), { maxLength: 3 })
      .map((entries) => `{${entries.map(([k, v]) => `${k}:${v}`).join(',')}}`),
    array: fc.array(tie('value'), { maxLength: 3 }).map((items) => `[${items.join(',')}]`),
  })).value as fc.Arbitrary<string>;
  let texts = 0;
  let refusedRandom = 0;
  await checkProperty(t, fc.property(fc.oneof(fc.array(fragment, { maxLength: 12 }).map((f) => f.join('')), keyed), (text) => {
    const library_ = outcome(library, text);
    assert.deepStrictEqual(outcome(parseJson, text), library_);
    texts++;
    if (library_.error?.includes('prototype')) refusedRandom++;
  }), { numRuns: 2000 });
  t.ok(refusedRandom > 50, `${texts} random texts: the same outcome as the library, ${refusedRandom} of them refused for prototype keys`);
});

t.test('metrics, probes and one log line per decision without object content', async (t) => {
  const { s, log } = server();
  t.teardown(() => s.app.close());
  const secretReview = structuredClone(fixture('deployment-create').review);
  secretReview.request.object.spec.template.spec.containers[0].env.push({ name: 'DB_PASSWORD', value: 'MARKER-s3cr3t-9f2' });
  await post(s, secretReview);
  const mutated = fixture('deployment-update-restart-mutated');
  await post(s, { ...mutated.review, request: { ...mutated.review.request, object: mutated.patched } });
  await post(s, fixture('nontarget-other-name').review);
  await post(s, 'nope');
  const metrics = (await s.app.inject({ url: '/metrics' })).body;
  t.match(metrics, /mlflow_irsa_webhook_admission_requests_total\{kind="apps\/v1\/Deployment",operation="CREATE",outcome="patched"\} 1/);
  t.match(metrics, /mlflow_irsa_webhook_admission_requests_total\{kind="apps\/v1\/Deployment",operation="UPDATE",outcome="unchanged"\} 1/);
  t.match(metrics, /mlflow_irsa_webhook_admission_requests_total\{kind="apps\/v1\/Deployment",operation="CREATE",outcome="ignored"\} 1/);
  t.match(metrics, /outcome="invalid"\} 1/);
  t.match(metrics, /mlflow_irsa_webhook_patches_total\{kind="apps\/v1\/Deployment"\} 1/);
  t.match(metrics, /mlflow_irsa_webhook_admission_duration_seconds_bucket\{le="0\.0001",outcome="patched"\}/, 'sub-millisecond buckets');
  const decisions = log.lines.filter((l) => l.msg === 'admission decision');
  t.equal(decisions.length, 3);
  t.match(decisions[0], { uid: secretReview.request.uid, kind: 'apps/v1/Deployment', namespace: 'domino-platform', name: 'mlflow', operation: 'CREATE', patched: true, outcome: 'patched' });
  t.type(decisions[0].durationMs, 'number');
  t.notOk(log.raw.join('\n').includes('MARKER-s3cr3t-9f2'), 'env values never reach the log');
  t.notOk(log.raw.join('\n').includes('postgresql-password'), 'object content never reaches the log');

  t.same((await s.app.inject({ url: '/healthz' })).json(), { status: 'ok' });
  t.same((await s.app.inject({ url: '/readyz' })).json(), { status: 'ready' });
});

t.test('decision lines are the bytes pino writes for the same fields, at the same levels', async (t) => {
  const outcomes = ['patched', 'unchanged', 'ignored', 'failed-open', 'too-large'] as const;
  const text = fc.string({ unit: 'grapheme', maxLength: 30 });
  const decision = fc.record({
    uid: fc.oneof(text, fc.constant('q"uo\\te\n\u0001'), fc.string({ minLength: 300, maxLength: 400 })), kind: text, namespace: text, name: text,
    operation: fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT'), dryRun: fc.boolean(), outcome: fc.constantFrom(...outcomes),
    patchOps: fc.nat({ max: 300 }), warnings: fc.array(text, { maxLength: 3 }), error: fc.option(text, { nil: undefined }),
  });
  const sameTime = (line: string) => line.replace(/"time":"[^"]*"/, '"time":"T"');
  let lines = 0;
  for (const level of ['debug', 'info', 'error'] as const) {
    const ours = captureLog(level);
    const theirs = captureLog(level);
    const write = decisionLogger(ours.logger);
    const reference = pinoDecisionLogger(theirs.logger);
    await checkProperty(t, fc.property(decision, fc.nat(), fc.double({ min: 0, max: 2, noNaN: true }), (d, n, seconds) => {
      const before = ours.raw.length;
      write(d, `req-${n}`, seconds);
      reference(d, `req-${n}`, seconds);
      assert.equal(ours.raw.length, theirs.raw.length, 'a line where pino writes one, none where it writes none');
      if (ours.raw.length > before) assert.equal(sameTime(ours.raw.at(-1)!), sameTime(theirs.raw.at(-1)!));
    }), { numRuns: 300 });
    lines += ours.raw.length;
    t.ok(ours.raw.every((l) => JSON.parse(l).name !== undefined), `at ${level}: ${ours.raw.length} lines, each the bytes pino wrote (time aside)`);
  }
  t.ok(lines > 300, 'lines at every level were compared');
  // a lone surrogate pino writes raw (invalid UTF-16, which reaches the log as U+FFFD); here it is escaped, still one JSON line
  const { logger, raw } = captureLog('info');
  decisionLogger(logger)({ uid: 'a\ud800b', kind: 'k', namespace: 'n', name: 'x', operation: 'CREATE', dryRun: false, outcome: 'patched', patchOps: 1, warnings: [] }, 'req-1', 0);
  t.equal(JSON.parse(raw[0]).uid, 'a\ud800b');
});

t.test('output is bounded whatever the request: warnings, log lines, patch size', async (t) => {
  const TOKEN_DIR = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
  // the recorded Deployment carries Domino's AWS_CONFIG_FILE, whose removal is named too
  const configFileRemoved = fixture('deployment-create').warnings[0];
  const { s, log } = server();
  t.teardown(() => s.app.close());
  const logBytes = () => log.raw.reduce((n, l) => n + l.length + 1, 0);

  // 20,000 mounts on the token's path: 20,000 removes and as many warnings before; now admitted unchanged, one warning
  const many = structuredClone(fixture('deployment-create').review);
  many.request.object.spec.template.spec.containers[0].volumeMounts = Array.from({ length: 20_000 }, (_, i) => ({ name: `t${i}`, mountPath: TOKEN_DIR }));
  let before = logBytes();
  const big = await post(s, many);
  t.equal(big.status, 200);
  t.equal(big.body.response.allowed, true);
  t.equal(big.body.response.patch, undefined, 'no patch');
  t.same(big.body.response.warnings, [`mlflow-irsa-webhook: mutating apps/v1/Deployment domino-platform/mlflow would need a patch over ${LIMITS.patchOps} operations or 64 KiB; admitted unchanged`]);
  t.ok(JSON.stringify(big.body).length < 1024, `response ${JSON.stringify(big.body).length} bytes`);
  t.ok(logBytes() - before < 2048, `log ${logBytes() - before} bytes`);
  t.match(log.lines.at(-1), { level: 'warn', outcome: 'too-large', patched: false });

  // a few displaced mounts are still removed, in one warning that names three and counts the rest
  const some = structuredClone(fixture('deployment-create').review);
  some.request.object.spec.template.spec.containers[0].volumeMounts.push(...Array.from({ length: 40 }, (_, i) => ({ name: `t${i}`, mountPath: `${TOKEN_DIR}/` })));
  const res = await post(s, some);
  t.same(res.body.response.warnings, [`Deployment domino-platform/mlflow: removed 40 volumeMounts ("t0", "t1", "t2" and 37 more) of container "mlflow", which used the token's mountPath ${TOKEN_DIR}`, configFileRemoved]);
  t.equal(applyStrict(some.request.object, decodePatch(res.body.response)!).spec.template.spec.containers[0].volumeMounts.filter((m: any) => m.mountPath.startsWith(TOKEN_DIR)).length, 1, 'only ours is left on the path');

  // a mount name of 3 MiB: the warning quotes 61 characters of it, and neither reply nor log carries the rest
  const longName = structuredClone(fixture('deployment-create').review);
  const name = 'n'.repeat(3_000_000);
  longName.request.object.spec.template.spec.containers[0].volumeMounts.push({ name, mountPath: TOKEN_DIR });
  before = logBytes();
  const long = await post(s, longName);
  t.equal(long.status, 200);
  t.ok(long.body.response.patch, 'patched: the mount is removed by index');
  t.same(long.body.response.warnings, [`Deployment domino-platform/mlflow: removed volumeMount "${'n'.repeat(61)}..." of container "mlflow", which used the token's mountPath ${TOKEN_DIR}`, configFileRemoved]);
  t.ok(JSON.stringify(long.body).length < 4096, `response ${JSON.stringify(long.body).length} bytes`);
  t.ok(logBytes() - before < 2048, `log ${logBytes() - before} bytes`);

  // request-chosen strings in the envelope: cut in the log line, the uid echoed whole in the reply
  const odd = structuredClone(fixture('nontarget-other-name').review);
  odd.request.uid = 'u'.repeat(100_000);
  odd.request.name = 'x'.repeat(100_000);
  odd.request.kind.kind = 'K'.repeat(100_000);
  before = logBytes();
  const echoed = await post(s, odd);
  t.equal(echoed.body.response.uid, odd.request.uid, 'the reply echoes the uid as the API server needs');
  const line = log.lines.at(-1);
  t.ok(logBytes() - before < 2048, `log ${logBytes() - before} bytes`);
  t.equal(line.uid.length, LIMITS.logValueChars);
  t.equal(line.name.length, LIMITS.logValueChars);
  t.match(line.kind, /^apps\/v1\/K+\.\.\.$/);
});

t.test('boundWarnings: duplicates dropped, each cut to 256 characters, at most 8 with the last counting the rest', async (t) => {
  t.same(boundWarnings(['a', 'b', 'a']), ['a', 'b']);
  const cut = boundWarnings(['w'.repeat(10_000)]);
  t.equal(cut[0].length, LIMITS.warningChars);
  t.match(cut[0], /w\.\.\.$/);
  const many = boundWarnings(Array.from({ length: 20_000 }, (_, i) => `warning ${i}`));
  t.equal(many.length, LIMITS.warnings);
  t.same(many.slice(0, 2), ['warning 0', 'warning 1']);
  t.equal(many.at(-1), `mlflow-irsa-webhook: ${20_000 - LIMITS.warnings + 1} more warnings not shown`);
  t.ok(many.join('').length <= 4096, 'under the API server\'s 4096 characters in all');
});

t.test('no input makes a 5xx: coercion-proof fields, deep envelopes, and a last-resort 400', async (t) => {
  const { s } = server();
  t.teardown(() => s.app.close());
  const base = fixture('deployment-create').review;
  const noNs = structuredClone(base);
  delete noNs.request.namespace;
  noNs.request.object.metadata.namespace = { toString: 1 };
  const r1 = await post(s, noNs);
  t.equal(r1.status, 200, 'request.namespace absent, metadata.namespace {"toString": 1}: answered');
  t.equal(r1.body.response.patch, undefined, 'and not taken for the target namespace');
  const listName = structuredClone(base);
  delete listName.request.name;
  listName.request.object.metadata.name = ['mlflow'];
  const r2 = await post(s, listName);
  t.equal(r2.status, 200);
  t.equal(r2.body.response.patch, undefined, 'metadata.name ["mlflow"] is not the name "mlflow"');
  const valueOf = structuredClone(base);
  valueOf.request.object.metadata.namespace = { valueOf: {}, toString: null };
  t.ok((await post(s, valueOf)).body.response.patch, 'request.namespace (a string) decides; the odd object metadata is only described, never coerced');

  for (const field of ['kind', 'apiVersion', 'request.operation', 'request.uid', 'request.kind', 'request.name', 'request.namespace'] as const) {
    const review: any = structuredClone(base);
    const [a, b] = field.split('.');
    if (b) review[a][b] = '__deep__';
    else review[a] = '__deep__';
    const body = JSON.stringify(review).replace('"__deep__"', '['.repeat(100_000) + ']'.repeat(100_000));
    const res = await post(s, body);
    t.equal(res.status, 400, `${field} nested 100,000 deep → 400`);
    t.match(res.body.message, new RegExp(`${field.replace('.', '\\.')}|kind must|apiVersion`), `${field}: ${res.body.message}`);
    t.ok(res.body.message.length < 300, 'a short message');
  }

  // The last guard: review() throwing for any reason answers 400 with a message, never 500.
  const real = buildMutators(config);
  const broken: Mutators = { ...real, forTarget: () => { throw new RangeError('Maximum call stack size exceeded'); } };
  const b = server({ mutators: broken });
  t.teardown(() => b.s.app.close());
  const res = await post(b.s, base);
  t.equal(res.status, 400);
  t.equal(res.body.message, 'could not process the AdmissionReview (RangeError: "Maximum call stack size exceeded")');
});
