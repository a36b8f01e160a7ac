// Specification of the self-healing decisions: needs repair?, rollout in progress?, and the restart backoff.
import t, { type Test } from 'tap';
import { Writable } from 'node:stream';
import { loadConfig, parseConfig } from '../src/config/config.js';
import { buildServer } from '../src/webhook/server.js';
import { serve } from '../src/webhook/serve.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/webhook/metrics.js';
import { createCa, createServingCert } from '../src/webhook/tls.js';
import { kubeClient } from '../src/k8s/client.js';
import { Reconciler, type ReconcilerOptions } from '../src/reconcile/loop.js';
import { LeaseElector, parseLeaseMetadata } from '../src/reconcile/lease.js';
import { serviceAccountPlan } from '../src/mutators/service-account.js';
import { startK8sStub, k8sFixture } from './helpers/k8s-stub.js';
import { buildMutators } from '../src/mutators/index.js';
import { backoffInterval, decideRepair, initialRepairState, lacksMutation, rolloutInProgress, type RepairState } from '../src/reconcile/decide.js';
import { exampleConfig, fixture } from './helpers/fixtures.js';
import { findCredentials } from '../src/k8s/args.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const mutators = buildMutators(loadConfig(exampleConfig));
const MIN = 600_000;
const policy = { minRestartIntervalMs: MIN, maxRestartIntervalMs: 8 * MIN };

t.test('lacksMutation asks the same mutator the webhook uses', async (t) => {
  const table: Array<[string, any, boolean]> = [
    ['Domino\'s unmutated Deployment', fixture('deployment-create').review.request.object, true],
    ['a mutated Deployment', fixture('deployment-update-restart-mutated').patched, false],
    ['one mutated by an earlier version, without skip-containers for its sidecars (one restart after an upgrade)', fixture('deployment-update-restart-mutated').review.request.object, true],
    ['one whose recorded destination only stands on the old object (metadata only: nothing to restart for)', fixture('deployment-update-credentials').patched, false],
    ['the golden of a partly mutated one', fixture('deployment-update-partial').patched, false],
    ['a partly mutated one', fixture('deployment-update-partial').review.request.object, true],
    ['no mlflow container (cannot be repaired by a restart)', fixture('deployment-create-no-container').review.request.object, false],
  ];
  for (const [what, obj, expected] of table) t.equal(lacksMutation(mutators.deployment, obj), expected, what);
  t.equal(lacksMutation(mutators.serviceAccount, fixture('serviceaccount-create').review.request.object), true, 'unannotated ServiceAccount');
  t.equal(lacksMutation(mutators.serviceAccount, fixture('serviceaccount-update').patched), false, 'annotated ServiceAccount');
  t.equal(lacksMutation(mutators.serviceAccount, fixture('serviceaccount-update').review.request.object), true, 'ServiceAccount with an old role');
});

t.test('rolloutInProgress follows kubectl rollout status', async (t) => {
  const dep = (generation: number, replicas: number, status: Record<string, unknown>) => ({ metadata: { generation }, spec: { replicas }, status });
  const done = { observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 };
  const table: Array<[string, any, boolean, RegExp]> = [
    ['complete', dep(3, 2, done), false, /complete/],
    ['new generation not observed', dep(4, 2, done), true, /generation 4 not yet observed/],
    ['replicas not updated', dep(3, 2, { ...done, updatedReplicas: 1 }), true, /1 of 2 replicas updated/],
    ['old replicas terminating', dep(3, 2, { ...done, replicas: 3 }), true, /1 old replicas pending termination/],
    ['updated not available', dep(3, 2, { ...done, availableReplicas: 1 }), true, /1 of 2 updated replicas available/],
    ['deadline exceeded', dep(3, 2, { ...done, updatedReplicas: 1, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] }), false, /deadline/],
    ['scaled to zero', dep(3, 0, { observedGeneration: 3 }), false, /complete/],
    ['no status yet', { metadata: { generation: 1 }, spec: {} }, true, /not yet observed/],
  ];
  for (const [what, obj, inProgress, reason] of table) {
    const r = rolloutInProgress(obj);
    t.equal(r.inProgress, inProgress, what);
    t.match(r.reason, reason, what);
  }
});

t.test('the backoff state machine', async (t) => {
  t.same([0, 1, 2, 3, 4, 5].map((n) => backoffInterval(n, policy) / MIN), [1, 1, 2, 4, 8, 8], 'min, min, 2·min, 4·min … capped');

  const unmutated = { lacksMutation: true, rolloutInProgress: false };
  let s: RepairState = initialRepairState;
  let now = 1_000_000;
  const step = (observed: typeof unmutated & { rolloutReason?: string }, at: number) => {
    const d = decideRepair(s, observed, at, policy);
    s = d.state;
    return d;
  };
  t.equal(step(unmutated, now).action, 'restart', 'first sight of an unmutated Deployment restarts at once');
  t.equal(step({ lacksMutation: true, rolloutInProgress: true, rolloutReason: '0 of 1 replicas updated' }, now + 1000).action, 'wait', 'never during a rollout');
  const early = step(unmutated, now + MIN - 1);
  t.equal(early.action, 'wait', 'the repair did not stick: wait at least min');
  t.equal(early.notBefore, now + MIN);
  t.match(early.reason, /backing off until/);
  t.equal(step(unmutated, now + MIN).action, 'restart', 'second restart after min');
  now += MIN;
  t.equal(step(unmutated, now + 2 * MIN - 1).action, 'wait', 'then 2·min');
  t.equal(step(unmutated, now + 2 * MIN).action, 'restart');
  t.equal(s.consecutive, 3);
  now += 2 * MIN;
  const ok = step({ lacksMutation: false, rolloutInProgress: false }, now + 10);
  t.equal(ok.action, 'none', 'a mutated Deployment needs nothing');
  t.equal(s.consecutive, 0, 'and resets the streak');
  t.equal(step(unmutated, now + 20).action, 'wait', 'even after a repair that stuck, at most one restart per min');
  t.equal(step(unmutated, now + MIN).action, 'restart');

  // no restart loop: an hour of checks every minute against a webhook that never comes back sends few restarts
  s = initialRepairState;
  let restarts = 0;
  for (let minute = 0; minute < 24 * 60; minute++) if (step(unmutated, minute * 60_000).action === 'restart') restarts++;
  t.equal(restarts, 5 + Math.floor((24 * 60 - 1 - 150) / 80), 'a day of 1-minute checks: restarts at 0, 10, 30, 70, 150 min, then every 80 min');
});

// ---------------------------------------------------------------------------------------------------------------
// The loop over the real @kubernetes/client-node client, against the local API stub (real paths, verbs, content
// types, recorded bodies) whose admission calls the real webhook server, as the API server would.

const DEP = '/apis/apps/v1/namespaces/domino-platform/deployments/mlflow';
const SA = '/api/v1/namespaces/domino-platform/serviceaccounts/mlflow';
const LEASE = '/apis/coordination.k8s.io/v1/namespaces/mlflow-irsa-webhook/leases/mlflow-irsa-webhook-reconcile';

const loopConfig = parseConfig({
  ...JSON.parse(JSON.stringify(loadConfig(exampleConfig))),
  reconcile: { intervalSeconds: 1, leaseDurationSeconds: 2, minRestartIntervalSeconds: 600 },
  server: { drainSeconds: 0 },
});

async function world(t: Test, opts: { webhook?: boolean; config?: typeof loopConfig } = {}) {
  const config = opts.config ?? loopConfig;
  const worldMutators = opts.config ? buildMutators(config) : mutators;
  const stub = await startK8sStub();
  t.teardown(() => stub.close());
  if (opts.webhook !== false) {
    const ca = await createCa('webhook-ca', 1);
    const pair = await createServingCert(['localhost'], 1, ca);
    const hook = buildServer({ config, tls: pair, logger: quiet(), metrics: createMetrics(false) });
    await hook.app.listen({ port: 0, host: '127.0.0.1' });
    t.teardown(() => hook.app.close());
    stub.admission = { url: `https://localhost:${(hook.app.server.address() as any).port}/mutate`, ca: ca.cert };
  }
  stub.seed(DEP, k8sFixture('deployment-mlflow'));
  stub.seed(SA, {
    ...k8sFixture('serviceaccount-mlflow'),
    metadata: { ...k8sFixture('serviceaccount-mlflow').metadata, annotations: { ...k8sFixture('serviceaccount-mlflow').metadata.annotations, ...serviceAccountPlan(loopConfig).annotations } },
  });
  stub.seed(LEASE, k8sFixture('lease'));
  const client = await kubeClient(stub.kubeconfig);
  const make = (identity: string, extra: Partial<ReconcilerOptions> = {}) => {
    const log = logSink();
    const metrics = createMetrics(false);
    const r = new Reconciler({ config, mutators: worldMutators, api: client, logger: log.logger, metrics, identity, leaseNamespace: 'mlflow-irsa-webhook', checkTimeoutMs: 1000, ...extra });
    t.teardown(() => r.stop());
    return { r, log, metrics };
  };
  const patches = (path = DEP) => stub.requests.filter((q) => q.method === 'PATCH' && q.path === path);
  return { stub, client, make, patches };
}

function quiet() {
  return createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
}

function logSink() {
  const lines: any[] = [];
  const logger = createLogger('debug', new Writable({ write: (c, _e, cb) => { for (const l of c.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l)); cb(); } }));
  return { logger, lines };
}

/** The stub's requests from index `from` on with this method and path. */
function since(stub: { requests: Array<{ method: string; path: string }> }, from: number, method: string, path: string) {
  return stub.requests.slice(from).filter((q) => q.method === method && q.path === path).length;
}

/** The API calls a reconciler makes through this client, by method name, in order: what reaches the API from it alone. */
function recordCalls<T extends object>(api: T): { api: T; calls: string[] } {
  const calls: string[] = [];
  const proxy = new Proxy(api, {
    get(target, key) {
      const v = Reflect.get(target, key);
      return typeof v === 'function' ? (...args: unknown[]) => { calls.push(String(key)); return v.apply(target, args); } : v;
    },
  });
  return { api: proxy, calls };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('loop: a watch delivering an unmutated Deployment leads to exactly one restart patch', async (t) => {
  const w = await world(t);
  const { r, log, metrics } = w.make('pod-a');
  r.start();
  await until('a restart patch', () => w.patches().length > 0);
  await until('the watch to see the mutated result', () => log.lines.some((l) => /restarted: the new pod template carries the mutation/.test(l.msg)));
  // the loop goes on: checks never overlap, so a third read of the Deployment means two more checks have finished
  const mark = w.stub.requests.length;
  await until('two more checks and Lease renewals', () => since(w.stub, mark, 'GET', DEP) >= 3 && since(w.stub, mark, 'PUT', LEASE) >= 2);
  t.ok(log.lines.filter((l) => l.decision === 'none').length >= 2, 'later checks found the Deployment mutated');
  t.equal(w.patches().length, 1, 'exactly one restart');
  const p = w.patches()[0];
  t.equal(p.contentType, 'application/strategic-merge-patch+json');
  t.match(p.body, { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/ } } } } });
  t.same(Object.keys(p.body), ['spec'], 'the restart patch holds nothing else');
  t.ok(w.stub.requests.some((q) => q.method === 'GET' && q.path.startsWith('/apis/apps/v1/namespaces/domino-platform/deployments?') && q.path.includes('watch=true') && q.path.includes('fieldSelector=metadata.name%3Dmlflow')), 'watch limited to the one object by fieldSelector');
  t.equal(lacksMutation(mutators.deployment, w.stub.object(DEP)), false, 'the live Deployment now carries the mutation');
  t.equal(r.isLeader, true);
  const text = await metrics.registry.metrics();
  t.match(text, /mlflow_irsa_webhook_reconcile_repairs_total\{object="deployment"\} 1/);
  t.match(text, /mlflow_irsa_webhook_reconcile_leader 1/);
  t.match(text, /mlflow_irsa_webhook_reconcile_last_success_timestamp_seconds [1-9]/);
  t.ok(log.lines.some((l) => l.decision === 'restart' && /lacks the mutation/.test(l.reason)), 'the decision is logged with its reason');
  const lease = w.stub.object(LEASE);
  t.equal(lease.spec.holderIdentity, 'pod-a');
  t.match(lease.spec.renewTime, /\.\d{6}Z$/, 'MicroTime with six fraction digits');
  await r.stop();
  t.equal(w.stub.object(LEASE).spec.holderIdentity, '', 'the Lease is released on stop');
});

t.test('loop: a mutated Deployment, a rollout in progress, and a Lease held elsewhere lead to no restart', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const a = w.make('pod-a');
  await a.r.checkNow();
  t.equal(a.r.isLeader, true);
  t.equal(w.patches().length, 0, 'mutated: no patch');

  const rolling = k8sFixture('deployment-mlflow');
  rolling.metadata.generation = 9;
  w.stub.seed(DEP, rolling);
  await a.r.checkNow();
  t.equal(w.patches().length, 0, 'rollout in progress: no patch');
  t.ok(a.log.lines.some((l) => l.decision === 'wait' && /rollout is in progress \(generation 9 not yet observed/.test(l.reason)));

  // another replica holds a fresh Lease: pod-b must not act, whatever it sees
  w.stub.seed(DEP, k8sFixture('deployment-mlflow'));
  const b = w.make('pod-b');
  await b.r.checkNow();
  t.equal(b.r.isLeader, false, 'pod-b follows');
  t.equal(w.patches().length, 0, 'a follower never restarts');
  t.equal(w.stub.object(LEASE).spec.holderIdentity, 'pod-a');
});

t.test('loop: only one of two replicas acts, and a lost Lease stops the old leader', async (t) => {
  const w = await world(t);
  const a = w.make('pod-a');
  const b = w.make('pod-b');
  await Promise.all([a.r.checkNow(), b.r.checkNow()]);
  t.equal([a.r.isLeader, b.r.isLeader].filter(Boolean).length, 1, 'exactly one leader after racing for the Lease');
  t.equal(w.patches().length, 1, 'one restart between them');
  const [leader, follower] = a.r.isLeader ? [a, b] : [b, a];
  // the leader loses the Lease: someone else's write since its last read makes its renewal conflict
  const lease = w.stub.object(LEASE);
  w.stub.seed(LEASE, { ...lease, metadata: { ...lease.metadata, resourceVersion: '99999' }, spec: { ...lease.spec, holderIdentity: 'pod-c', renewTime: new Date().toISOString().replace('Z', '000Z') } });
  await leader.r.checkNow();
  t.equal(leader.r.isLeader, false, 'the old leader steps down');
  await follower.r.checkNow();
  t.equal(follower.r.isLeader, false, 'pod-c\'s fresh claim is respected');
  t.equal(w.patches().length, 1, 'no action without the Lease');
});

t.test('loop: a 409 on the restart patch is retried; the ServiceAccount is re-annotated', async (t) => {
  const w = await world(t);
  w.stub.seed(SA, k8sFixture('serviceaccount-mlflow'));
  w.stub.failNext('PATCH', DEP, 'status-conflict');
  const a = w.make('pod-a');
  await a.r.checkNow();
  t.equal(w.patches().length, 2, 'the conflicted patch was sent again');
  t.equal(lacksMutation(mutators.deployment, w.stub.object(DEP)), false, 'and went through');
  const sa = w.patches(SA);
  t.equal(sa.length, 1);
  t.equal(sa[0].contentType, 'application/merge-patch+json');
  t.same(sa[0].body, { metadata: { annotations: serviceAccountPlan(loopConfig).annotations } });
  t.equal(w.stub.object(SA).metadata.annotations['meta.helm.sh/release-name'], 'mlflow', 'other annotations stay');
  t.match(await a.metrics.registry.metrics(), /repairs_total\{object="serviceaccount"\} 1/);
});

t.test('loop: switching to pod-identity restarts an IRSA-mutated mlflow once and takes the role annotation off its ServiceAccount', async (t) => {
  const podIdentity = parseConfig({ ...JSON.parse(JSON.stringify(loopConfig)), credentials: 'pod-identity' });
  const w = await world(t, { config: podIdentity });
  // as the irsa mode left them: the mutated Deployment (the seeded ServiceAccount carries the IRSA annotations)
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  t.equal(lacksMutation(buildMutators(podIdentity).deployment, w.stub.object(DEP)), true, 'the IRSA shape lacks the pod-identity mutation');
  const a = w.make('pod-a');
  await a.r.checkNow();
  const restarts = w.patches().filter((q) => !q.path.includes('dryRun'));
  t.equal(restarts.length, 1, 'one restart');
  const live = w.stub.object(DEP);
  t.equal(lacksMutation(buildMutators(podIdentity).deployment, live), false, 'the restarted Deployment carries the pod-identity shape');
  const mlflow = live.spec.template.spec.containers.find((c: any) => c.name === 'mlflow');
  t.same(mlflow.env.filter((e: any) => /^AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE)$/.test(e.name)), [], 'no web identity left');
  t.notOk(live.spec.template.spec.volumes.some((v: any) => v.name === 'aws-iam-token'), 'no token volume');
  t.ok(a.log.lines.some((l) => /restarted: the new pod template carries the mutation/.test(l.msg)));

  const sa = w.patches(SA);
  t.equal(sa.length, 1, 'one ServiceAccount repair');
  t.equal(sa[0].contentType, 'application/merge-patch+json');
  t.same(sa[0].body, { metadata: { annotations: { 'eks.amazonaws.com/role-arn': null, 'eks.amazonaws.com/sts-regional-endpoints': null } } }, 'a merge patch that removes exactly those two');
  const annotations = w.stub.object(SA).metadata.annotations;
  t.notOk('eks.amazonaws.com/role-arn' in annotations, 'the role annotation is gone');
  t.equal(annotations['meta.helm.sh/release-name'], 'mlflow', 'other annotations stay');
  t.ok(a.log.lines.some((l) => l.decision === 'annotate' && /IRSA's role-arn annotation/.test(l.reason)), 'the repair says why');
  const at = (path: string) => w.stub.requests.findIndex((q) => q.method === 'PATCH' && q.path === path);
  t.ok(at(SA) >= 0 && at(SA) < at(DEP), 'the ServiceAccount first: a pod started while it names a role would get web identity again');

  await a.r.checkNow();
  t.equal(w.patches().filter((q) => !q.path.includes('dryRun')).length, 1, 'no second restart');
  t.equal(w.patches(SA).length, 1, 'no second ServiceAccount patch');
});

t.test('loop: a webhook the API server cannot reach yet gets a dry-run rehearsal, not a restart', async (t) => {
  const w = await world(t, { webhook: false }); // failurePolicy Ignore and an unreachable webhook: admitted unmutated
  const a = w.make('pod-a');
  await a.r.checkNow();
  await a.r.checkNow();
  t.equal(w.patches().length, 0, 'no restart that would roll out unmutated again');
  const rehearsals = w.stub.requests.filter((q) => q.method === 'PATCH' && q.path === `${DEP}?dryRun=All`);
  const waits = a.log.lines.filter((l) => l.decision === 'wait' && /dry-run restart is admitted without the mutation/.test(l.reason));
  t.ok(waits.length >= 2, 'each check waits');
  t.equal(rehearsals.length, waits.length, 'after one dry run each');
  t.equal(rehearsals[0].contentType, 'application/strategic-merge-patch+json');
  t.equal(w.stub.object(DEP).metadata.resourceVersion, k8sFixture('deployment-mlflow').metadata.resourceVersion, 'a dry run stores nothing');
});

t.test('loop: a restart that does not stick backs off instead of looping', async (t) => {
  const w = await world(t);
  w.stub.admitDryRunOnly = true; // the rehearsal reaches the webhook, the real write does not
  const a = w.make('pod-a');
  await a.r.checkNow();
  await a.r.checkNow();
  await a.r.checkNow();
  t.equal(w.patches().length, 1, 'one restart, then the backoff holds');
  t.ok(a.log.lines.some((l) => /admitted without the mutation/.test(l.msg)));
  t.ok(a.log.lines.some((l) => l.decision === 'wait' && /backing off until/.test(l.reason)));
});

t.test('loop: the API server going away and coming back makes the loop resume', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const a = w.make('pod-a');
  a.r.start();
  await until('leadership', () => a.r.isLeader);
  await w.stub.pause();
  await until('the loop to notice', () => a.log.lines.some((l) => /could not read or renew the Lease|watch ended|check failed/.test(l.msg)));
  // meanwhile the platform re-applied an unmutated mlflow (the webhook was bypassed)
  w.stub.seed(DEP, k8sFixture('deployment-mlflow'));
  await w.stub.resume();
  await until('the repair after the API came back', () => !lacksMutation(mutators.deployment, w.stub.object(DEP)), 15_000);
  t.equal(w.patches().length, 1, 'repaired with one restart');
});

t.test('loop: an API server that hangs blocks neither later checks nor stopping; once stopped, the loop sends nothing more', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const recorded = recordCalls(w.client);
  const a = w.make('pod-a', { api: recorded.api });
  await a.r.checkNow();
  t.equal(a.r.isLeader, true);
  // a read of the Deployment that never returns: the check is given up, and the next one is not blocked by it
  w.stub.hang = (method, path) => method === 'GET' && path === DEP;
  await a.r.checkNow();
  t.ok(a.log.lines.some((l) => /reconcile check did not finish/.test(l.msg)), 'a hung check is given up');
  w.stub.hang = undefined;
  w.stub.seed(DEP, k8sFixture('deployment-mlflow'));
  await a.r.checkNow();
  t.equal(w.patches().length, 1, 'later checks still run and repair');
  // the loop running on its timers, with its watch open
  const collection = '/apis/apps/v1/namespaces/domino-platform/deployments';
  a.r.start();
  const polled = recorded.calls.filter((c) => c === 'readDeployment').length;
  await until('a poll and an open watch', () => recorded.calls.filter((c) => c === 'readDeployment').length > polled && w.stub.watching(collection) === 1);
  // then nothing answers at all
  w.stub.hang = () => true;
  await a.r.stop();
  const sentBeforeStop = recorded.calls.length;
  t.ok(a.log.lines.some((l) => /releasing the Lease took too long/.test(l.msg)), 'stop() returned, and says why the Lease is left to expire');
  t.ok(a.log.lines.some((l) => l.msg === 'reconcile loop stopped'));
  w.stub.hang = undefined;
  await until('the watch to close', () => w.stub.watching(collection) === 0);
  // the proof that pod-a would have sent something by now: pod-b, on the same intervals, waits out pod-a's claim (2 s,
  // several of pod-a's Lease rounds and polls), takes the Lease and checks the Deployment
  const b = w.make('pod-b');
  b.r.start();
  await until('pod-b to lead and check', () => b.r.isLeader && b.log.lines.some((l) => l.decision === 'none'));
  t.same(recorded.calls.slice(sentBeforeStop), [], 'after stop(), pod-a sent nothing: no Lease round, no poll, no watch');
});

t.test('serve starts the loop only with credentials and reconcile.enabled', async (t) => {
  const stub = await startK8sStub();
  t.teardown(() => stub.close());
  stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  stub.seed(SA, k8sFixture('serviceaccount-mlflow'));
  stub.seed(LEASE, k8sFixture('lease'));
  const log = logSink();
  process.env.POD_NAMESPACE = 'mlflow-irsa-webhook';
  process.env.POD_NAME = 'mlflow-irsa-webhook-7d9c-abcde';
  t.teardown(() => { delete process.env.POD_NAMESPACE; delete process.env.POD_NAME; });
  const running = await serve(loopConfig, { port: 0, host: '127.0.0.1', credentials: { file: stub.kubeconfig, from: `--kubeconfig ${stub.kubeconfig}` } }, log.logger);
  t.teardown(() => running.stop());
  t.ok(running.reconciler, 'started with --kubeconfig');
  await until('the ServiceAccount repair', () => stub.requests.some((q) => q.method === 'PATCH' && q.path === SA));
  t.equal(stub.object(LEASE).spec.holderIdentity, 'mlflow-irsa-webhook-7d9c-abcde', 'POD_NAME holds the Lease in POD_NAMESPACE');
  const off = await serve(parseConfig({ ...JSON.parse(JSON.stringify(loopConfig)), reconcile: { enabled: false } }), { port: 0, host: '127.0.0.1', credentials: { file: stub.kubeconfig, from: '--kubeconfig' } }, quiet());
  t.teardown(() => off.stop());
  t.equal(off.reconciler, undefined, 'reconcile.enabled: false');

  // where serve looks: --kubeconfig, then $KUBECONFIG (as every command), then the pod's service account; never the
  // developer's ~/.kube/config by default, so a local trial does not start restarting their current cluster's mlflow
  const home = mkdtempSync(join(tmpdir(), 'home-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  mkdirSync(join(home, '.kube'));
  writeFileSync(join(home, '.kube', 'config'), readFileSync(stub.kubeconfig));
  const savedHome = process.env.HOME;
  process.env.HOME = home;
  t.teardown(() => { process.env.HOME = savedHome; });
  t.same(findCredentials({}, { userFile: false, env: { KUBECONFIG: stub.kubeconfig } }), { from: `$KUBECONFIG (${stub.kubeconfig})` }, '$KUBECONFIG is honoured');
  t.equal(findCredentials({}, { userFile: false, env: {} }), undefined, '~/.kube/config alone is not taken');
  t.same(findCredentials({}, { env: {} }), { from: join(home, '.kube', 'config') }, 'which the other commands do take');
  const local = logSink();
  const trial = await serve(loopConfig, { port: 0, host: '127.0.0.1' }, local.logger);
  t.teardown(() => trial.stop());
  t.equal(trial.reconciler, undefined, 'no credentials found: no loop');
  t.ok(local.lines.some((l) => /reconcile loop not started: no cluster credentials: no --kubeconfig, no \$KUBECONFIG, and not in a pod/.test(l.msg)));
});

// ---------------------------------------------------------------------------------------------------------------
// The Lease: written back whole (labels and Helm's annotations survive), created when missing, and its loss noticed.

const LEASES = '/apis/coordination.k8s.io/v1/namespaces/mlflow-irsa-webhook/leases';
const chartLease = k8sFixture('lease');
const leaseMetadata = { labels: chartLease.metadata.labels, annotations: chartLease.metadata.annotations };
const metadataOf = (o: any) => ({ labels: o.metadata.labels, annotations: o.metadata.annotations });

t.test('the stub replaces the whole object on PUT, as the API server does', async (t) => {
  // the proof that the Lease tests below can fail: a PUT that leaves labels out loses them
  const w = await world(t);
  const res = await fetchStub(w.stub, 'PUT', LEASE, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: chartLease.metadata.name, resourceVersion: chartLease.metadata.resourceVersion }, spec: { holderIdentity: 'x' } });
  t.equal(res.status, 200);
  const stored = w.stub.object(LEASE);
  t.same(stored.metadata.labels, undefined, 'labels left out are gone');
  t.same(stored.metadata.annotations, undefined, 'annotations left out are gone');
  t.equal(stored.metadata.uid, chartLease.metadata.uid, 'the system fields stay');
  t.equal((await fetchStub(w.stub, 'PUT', LEASE, { ...stored, metadata: { ...stored.metadata, resourceVersion: '1' } })).status, 409, 'a stale resourceVersion conflicts');
  t.equal((await fetchStub(w.stub, 'PUT', LEASE, { ...stored, metadata: { ...stored.metadata, name: 'other' } })).status, 400, 'the name must match the URL');
});

t.test('Lease: labels and annotations survive 10 renewals, a release, and takeovers by other identities', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const a = w.make('pod-a');
  const puts = () => w.stub.requests.filter((q) => q.method === 'PUT' && q.path === LEASE);
  for (let i = 0; i < 10; i++) {
    await a.r.checkNow();
    t.same(metadataOf(w.stub.object(LEASE)), leaseMetadata, `renewal ${i + 1} keeps them`);
  }
  t.equal(puts().length, 10, 'ten renewals, each a PUT');
  t.equal(puts()[9].body.metadata.uid, chartLease.metadata.uid, 'the PUT sends back the object as read, not a new one');
  t.equal(w.stub.object(LEASE).spec.holderIdentity, 'pod-a');
  t.equal(w.stub.object(LEASE).spec.leaseTransitions, 0, 'taking a Lease nobody held is no transition');
  await a.r.stop();
  t.equal(w.stub.object(LEASE).spec.holderIdentity, '', 'released');
  t.same(metadataOf(w.stub.object(LEASE)), leaseMetadata, 'the release keeps them');

  const b = w.make('pod-b');
  await b.r.checkNow();
  t.equal(b.r.isLeader, true, 'pod-b takes the released Lease at once');
  t.same(metadataOf(w.stub.object(LEASE)), leaseMetadata, 'the takeover keeps them');

  // pod-c takes over from pod-b once pod-b stops renewing, on pod-c's own clock
  let clock = Date.now();
  const c = new LeaseElector(w.client, { namespace: 'mlflow-irsa-webhook', name: chartLease.metadata.name, identity: 'pod-c', durationMs: 2000, now: () => clock });
  t.equal(await c.tick(), 'follow', 'pod-b\'s claim is fresh');
  clock += 2000;
  t.equal(await c.tick(), 'acquire', 'and lapses after the lease duration without a change');
  const taken = w.stub.object(LEASE);
  t.equal(taken.spec.holderIdentity, 'pod-c');
  t.equal(taken.spec.leaseTransitions, 1, 'a takeover from another holder counts as a transition');
  t.same(metadataOf(taken), leaseMetadata, 'the takeover by expiry keeps them');
  t.equal(taken.metadata.creationTimestamp, chartLease.metadata.creationTimestamp);
});

t.test('Lease: a 409 on renewal re-reads and retries; only a persistent conflict costs the lead', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const a = w.make('pod-a');
  await a.r.checkNow();
  w.stub.failNext('PUT', LEASE, 'status-conflict');
  await a.r.checkNow();
  t.equal(a.r.isLeader, true, 'one conflict: read again and renewed');
  t.notOk(a.log.lines.some((l) => /lost/.test(l.msg)), 'nothing lost');
  const reads = w.stub.requests.filter((q) => q.method === 'GET' && q.path === LEASE).length;
  t.equal(reads, 3, 'a read per round, and one more after the conflict');
  w.stub.failNext('PUT', LEASE, 'status-conflict', 3);
  await a.r.checkNow();
  t.equal(a.r.isLeader, false, 'three conflicts in a row: step down');
  t.ok(a.log.lines.some((l) => l.level === 'warn' && /lost the race for the Lease/.test(l.msg)));
  t.ok(a.log.lines.some((l) => l.level === 'warn' && /lost the Lease \(the renewal failed: update lease .*409 Conflict/.test(l.msg)), 'the loss is logged with its cause');
  t.same(metadataOf(w.stub.object(LEASE)), leaseMetadata);
});

t.test('Lease: a missing Lease is created with the chart\'s labels; one that may not be created is reported once', async (t) => {
  const w = await world(t);
  w.stub.seed(LEASE, undefined);
  w.stub.failNext('POST', LEASES, 'status-forbidden', 3);
  const a = w.make('pod-a', { leaseMetadata });
  for (let i = 0; i < 3; i++) await a.r.checkNow();
  const denied = a.log.lines.filter((l) => /not allowed to read, renew or create the Lease mlflow-irsa-webhook\/mlflow-irsa-webhook-reconcile/.test(l.msg));
  t.same(denied.map((l) => l.level), ['warn', 'debug', 'debug'], 'every round notices, only the first warns');
  t.match(denied[0].reason, /create lease mlflow-irsa-webhook\/mlflow-irsa-webhook-reconcile: 403 Forbidden/);
  t.equal(a.r.isLeader, false);
  t.equal(w.patches().length, 0, 'no action without the Lease');

  await a.r.checkNow();
  t.equal(a.r.isLeader, true, 'allowed now: created and leading');
  const created = w.stub.object(LEASE);
  t.same(metadataOf(created), leaseMetadata, 'with the chart\'s labels and Helm\'s ownership annotations');
  t.match(created.spec, { holderIdentity: 'pod-a', leaseDurationSeconds: 2, leaseTransitions: 0, renewTime: /\.\d{6}Z$/, acquireTime: /\.\d{6}Z$/ });
  t.equal(w.patches().length, 1, 'and acting');
  await a.r.checkNow();
  t.same(metadataOf(w.stub.object(LEASE)), leaseMetadata, 'which the next renewal keeps');

  // two replicas finding it missing at once: one creates it, the other's create conflicts, and it reads and follows
  w.stub.seed(LEASE, undefined);
  const b = w.make('pod-b', { leaseMetadata });
  const c = w.make('pod-c', { leaseMetadata });
  await Promise.all([b.r.checkNow(), c.r.checkNow()]);
  t.equal([b.r.isLeader, c.r.isLeader].filter(Boolean).length, 1, 'exactly one of them leads');
});

t.test('Lease: a leader that loses it to another holder logs it, drops the gauge, stops its watch and acting', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const a = w.make('pod-a');
  a.r.start();
  await until('leadership and a watch', () => a.r.isLeader && w.stub.watching('/apis/apps/v1/namespaces/domino-platform/deployments') === 1);
  t.match(await a.metrics.registry.metrics(), /reconcile_leader 1/);
  const lease = w.stub.object(LEASE);
  w.stub.seed(LEASE, { ...lease, metadata: { ...lease.metadata, resourceVersion: '99999' }, spec: { ...lease.spec, holderIdentity: 'pod-c', renewTime: new Date().toISOString().replace('Z', '000Z') } });
  // pod-c stays alive from here on (it renews, as a live holder does), so however slow the machine, its claim never
  // lapses and a takeover by pod-a would be a bug, not the election working
  const podCRenews = () => {
    const l = w.stub.object(LEASE);
    // a renewal as the API server stores it: a new resourceVersion, which is what a follower watches for
    if (l.spec.holderIdentity === 'pod-c') {
      w.stub.seed(LEASE, { ...l, metadata: { ...l.metadata, resourceVersion: String(Number(l.metadata.resourceVersion) + 1) }, spec: { ...l.spec, renewTime: new Date().toISOString().replace('Z', '000Z') } });
    }
  };
  const renewing = setInterval(podCRenews, 250);
  t.teardown(() => clearInterval(renewing));
  await until('the loss to be logged', () => a.log.lines.some((l) => /lost the Lease/.test(l.msg)));
  const lost = a.log.lines.find((l) => /lost the Lease/.test(l.msg));
  t.equal(lost.level, 'warn');
  t.match(lost.msg, /taken by pod-c/);
  t.equal(lost.holder, 'pod-c');
  t.match(await a.metrics.registry.metrics(), /reconcile_leader 0/);
  await until('the watch to stop', () => w.stub.watching('/apis/apps/v1/namespaces/domino-platform/deployments') === 0);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow'));
  // the loop still runs as a follower: three more Lease rounds (one every 2/3 s) span more than a poll interval (1 s)
  const mark = w.stub.requests.length;
  await until('three more Lease rounds', () => since(w.stub, mark, 'GET', LEASE) >= 3);
  t.equal(since(w.stub, mark, 'GET', DEP), 0, 'no longer reading the Deployment');
  t.equal(w.patches().length, 0, 'no longer acting');
  t.equal(w.stub.object(LEASE).spec.holderIdentity, 'pod-c', 'pod-c\'s fresh claim is respected');
});

t.test('Lease: a leader whose renewals hang notices the claim lapse, and leads again when they go through', async (t) => {
  const w = await world(t);
  w.stub.seed(DEP, k8sFixture('deployment-mlflow-mutated'));
  const a = w.make('pod-a');
  a.r.start();
  const collection = '/apis/apps/v1/namespaces/domino-platform/deployments';
  await until('leadership and a watch', () => a.r.isLeader && w.stub.watching(collection) === 1);
  w.stub.hang = (_method, path) => path === LEASE; // the Lease calls never answer: no error, no renewal
  await until('the loss to be logged', () => a.log.lines.some((l) => /lost the Lease/.test(l.msg)), 5000);
  const lost = a.log.lines.find((l) => /lost the Lease/.test(l.msg));
  t.equal(lost.level, 'warn');
  t.match(lost.msg, /expired: not renewed within 2 s/);
  t.match(await a.metrics.registry.metrics(), /reconcile_leader 0/);
  t.equal(a.r.isLeader, false);
  await until('the watch to stop', () => w.stub.watching(collection) === 0);
  w.stub.hang = undefined;
  await until('leading again', () => a.log.lines.filter((l) => /^leading/.test(l.msg)).length === 2, 5000);
  await until('the watch to resume', () => w.stub.watching(collection) === 1);
  t.match(await a.metrics.registry.metrics(), /reconcile_leader 1/);
});

t.test('RECONCILE_LEASE_METADATA: parsed, or refused with the variable, key and rule', async (t) => {
  t.same(parseLeaseMetadata(undefined), {});
  t.same(parseLeaseMetadata(''), {});
  t.same(parseLeaseMetadata(JSON.stringify(leaseMetadata)), leaseMetadata);
  t.throws(() => parseLeaseMetadata('{'), /RECONCILE_LEASE_METADATA: not valid JSON/);
  t.throws(() => parseLeaseMetadata('[]'), /RECONCILE_LEASE_METADATA: must be a JSON object/);
  t.throws(() => parseLeaseMetadata('{"owner":{}}'), /unknown key "owner"/);
  t.throws(() => parseLeaseMetadata('{"labels":[]}'), /labels must be an object/);
  t.throws(() => parseLeaseMetadata('{"labels":{"a":1}}'), /labels\.a must be a string/);
  process.env.RECONCILE_LEASE_METADATA = '{"labels":{"a":1}}';
  t.teardown(() => { delete process.env.RECONCILE_LEASE_METADATA; });
  await t.rejects(serve(loopConfig, { port: 0, host: '127.0.0.1' }, quiet()), /RECONCILE_LEASE_METADATA: labels\.a must be a string/, 'serve refuses to start with it');
});

/** A raw request to the stub, as any API client would send it. */
async function fetchStub(stub: { url: string }, method: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const { request } = await import('node:https');
  const { readFileSync } = await import('node:fs');
  const { parse } = await import('yaml');
  const ca = Buffer.from(parse(readFileSync((stub as any).kubeconfig, 'utf8')).clusters[0].cluster['certificate-authority-data'], 'base64').toString();
  return new Promise((resolve, reject) => {
    const req = request(`${stub.url}${path}`, { method, ca, servername: 'localhost', headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
