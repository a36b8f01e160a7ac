// bootstrap-cert and restart-target against a stand-in API server over real TLS: the exact requests they make, and their outcomes.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { parseConfig } from '../src/config/config.js';
import { createLogger } from '../src/log.js';
import { buildMutators, planPatch } from '../src/mutators/index.js';
import { buildServer } from '../src/webhook/server.js';
import { createCa, createServingCert } from '../src/webhook/tls.js';
import { kubeClient } from '../src/k8s/client.js';
import { createCert, patchCaBundle, secretProblem, serviceDnsNames } from '../src/k8s/bootstrap-cert.js';
import * as bootstrapCert from '../src/k8s/bootstrap-cert.js';
import * as restartCommand from '../src/k8s/restart-target.js';
import { RESTARTED_AT, restartTarget } from '../src/k8s/restart-target.js';
import { k8sFixture, startK8sStub, type K8sStub } from './helpers/k8s-stub.js';
import { root } from './helpers/fixtures.js';

const run = promisify(execFile);
const NS = 'mlflow-irsa-webhook';
const SECRET = 'mlflow-irsa-webhook-tls';
const SVC = 'mlflow-irsa-webhook';
const MWC = 'mlflow-irsa-webhook';
const secretPath = `/api/v1/namespaces/${NS}/secrets/${SECRET}`;
const secretsPath = `/api/v1/namespaces/${NS}/secrets`;
const mwcPath = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${MWC}`;
const deploymentPath = '/apis/apps/v1/namespaces/domino-platform/deployments/mlflow';

const config = parseConfig({
  roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access',
  artifactsDestination: 's3://sw-domino-project-based-mlflow',
  region: 'us-west-2',
});

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

/** A logger whose lines the test can read. */
function capture() {
  const lines: any[] = [];
  return { lines, log: createLogger('info', { write: (s: string) => lines.push(JSON.parse(s)) }) };
}

async function stubFor(t: any): Promise<K8sStub> {
  const stub = await startK8sStub();
  t.teardown(() => stub.close());
  return stub;
}

const requestLine = (stub: K8sStub) => stub.requests.map((r) => `${r.method} ${r.path}${r.contentType ? ` ${r.contentType}` : ''}`);

async function tlsSecretData(service: string, days: number) {
  const ca = await createCa('test-ca', days);
  const pair = await createServingCert(serviceDnsNames(service, NS), days, ca);
  return { 'tls.crt': b64(pair.cert), 'tls.key': b64(pair.key), 'ca.crt': b64(ca.cert) };
}

const createOptions = { namespace: NS, secret: SECRET, service: SVC, days: 3650, renewDays: 30, retries: 5 };
const patchOptions = { namespace: NS, secret: SECRET, webhookConfig: MWC, retries: 5 };

t.test('bootstrap-cert create', async (t) => {
  t.test('first install: 404, then one POST of a kubernetes.io/tls Secret valid for the Service names', async (t) => {
    const stub = await stubFor(t);
    const { log } = capture();
    t.equal(await createCert(await kubeClient(stub.kubeconfig), createOptions, log), 'created');
    t.same(requestLine(stub), [`GET ${secretPath}`, `POST ${secretsPath} application/json`]);
    const body = stub.requests[1].body;
    t.match(body, { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: SECRET, namespace: NS } });
    t.same(Object.keys(body.data).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
    const cert = new X509Certificate(unb64(body.data['tls.crt']));
    const ca = new X509Certificate(unb64(body.data['ca.crt']));
    for (const name of [SVC, `${SVC}.${NS}`, `${SVC}.${NS}.svc`]) t.equal(cert.checkHost(name), name, `valid for ${name}`);
    t.equal(cert.checkHost('other.example.com'), undefined);
    t.ok(cert.verify(ca.publicKey), 'signed by ca.crt');
    t.ok(cert.checkPrivateKey(createPrivateKey(unb64(body.data['tls.key']))), 'tls.key matches');
    t.ok(ca.ca, 'ca.crt is a CA');
    t.equal(secretProblem(stub.object(secretPath), serviceDnsNames(SVC, NS), 30), undefined);
  });

  t.test('an existing Secret valid for more than 30 days is kept: one GET, no write', async (t) => {
    const stub = await stubFor(t);
    const data = await tlsSecretData(SVC, 90);
    stub.seed(secretPath, { apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS, resourceVersion: '7' }, type: 'kubernetes.io/tls', data });
    t.equal(await createCert(await kubeClient(stub.kubeconfig), createOptions, capture().log), 'kept');
    t.same(requestLine(stub), [`GET ${secretPath}`]);
    t.same(stub.object(secretPath).data, data);
  });

  t.test('a Secret expiring within 30 days, or made for another Service, is replaced by a PUT carrying its resourceVersion', async (t) => {
    for (const [what, data] of [['expiring', await tlsSecretData(SVC, 20)], ['other service', await tlsSecretData('someone-else', 900)]] as const) {
      const stub = await stubFor(t);
      stub.seed(secretPath, { apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS, resourceVersion: '7' }, type: 'kubernetes.io/tls', data });
      const { log, lines } = capture();
      t.equal(await createCert(await kubeClient(stub.kubeconfig), createOptions, log), 'renewed', what);
      t.same(requestLine(stub), [`GET ${secretPath}`, `PUT ${secretPath} application/json`], what);
      t.equal(stub.requests[1].body.metadata.resourceVersion, '7', `${what}: optimistic concurrency`);
      t.not(stub.requests[1].body.data['tls.crt'], data['tls.crt'], `${what}: new certificate`);
      t.equal(secretProblem(stub.object(secretPath), serviceDnsNames(SVC, NS), 30), undefined, `${what}: now valid`);
      t.match(lines.find((l) => l.msg.includes('cannot be kept')).reason, what === 'expiring' ? /expires in 1\d days/ : /not valid for mlflow-irsa-webhook/);
    }
  });

  t.test('a 409 Conflict on the PUT is retried from a fresh read', async (t) => {
    const stub = await stubFor(t);
    stub.seed(secretPath, { apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS, resourceVersion: '7' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64('garbage') } });
    stub.failNext('PUT', secretPath, 'status-conflict');
    const { log, lines } = capture();
    t.equal(await createCert(await kubeClient(stub.kubeconfig), createOptions, log), 'renewed');
    t.same(requestLine(stub), [`GET ${secretPath}`, `PUT ${secretPath} application/json`, `GET ${secretPath}`, `PUT ${secretPath} application/json`]);
    t.match(lines.find((l) => l.msg.startsWith('conflict')), { attempt: 1, reason: /409 Conflict: Operation cannot be fulfilled on secrets "mlflow-irsa-webhook-tls"/ });
  });

  t.test('a 409 AlreadyExists on the POST (another pod created it first) is retried', async (t) => {
    const stub = await stubFor(t);
    stub.failNext('POST', secretsPath, 'status-already-exists');
    t.equal(await createCert(await kubeClient(stub.kubeconfig), createOptions, capture().log), 'created');
    t.same(requestLine(stub), [`GET ${secretPath}`, `POST ${secretsPath} application/json`, `GET ${secretPath}`, `POST ${secretsPath} application/json`]);
  });

  t.test('conflicts beyond --retries fail with the API server\'s message', async (t) => {
    const stub = await stubFor(t);
    stub.failNext('POST', secretsPath, 'status-already-exists', 5);
    await t.rejects(createCert(await kubeClient(stub.kubeconfig), { ...createOptions, retries: 2 }, capture().log),
      { message: `create secret ${NS}/${SECRET}: 409 AlreadyExists: secrets "${SECRET}" already exists` });
    t.equal(stub.requests.length, 4);
  });
});

t.test('bootstrap-cert patch', async (t) => {
  const seeded = async (t: any) => {
    const stub = await stubFor(t);
    stub.seed(secretPath, { apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS, resourceVersion: '7' }, type: 'kubernetes.io/tls', data: await tlsSecretData(SVC, 90) });
    stub.seed(mwcPath, k8sFixture('mutatingwebhookconfiguration'));
    return stub;
  };

  t.test('writes ca.crt into every webhook\'s caBundle with one PUT, and nothing else changes', async (t) => {
    const stub = await seeded(t);
    t.equal(await patchCaBundle(await kubeClient(stub.kubeconfig), patchOptions, capture().log), 'patched');
    t.same(requestLine(stub), [`GET ${secretPath}`, `GET ${mwcPath}`, `PUT ${mwcPath} application/json`]);
    const expected = k8sFixture('mutatingwebhookconfiguration');
    for (const w of expected.webhooks) w.clientConfig.caBundle = stub.object(secretPath).data['ca.crt'];
    const sent = stub.requests[2].body;
    // client-node reads timestamps into Dates and writes them back with milliseconds: the same instant
    t.equal(Date.parse(sent.metadata.creationTimestamp), Date.parse(expected.metadata.creationTimestamp));
    sent.metadata.creationTimestamp = expected.metadata.creationTimestamp;
    t.same(sent, expected, 'the PUT body is the object read, plus caBundle');
  });

  t.test('a second run finds the caBundle current and writes nothing', async (t) => {
    const stub = await seeded(t);
    await patchCaBundle(await kubeClient(stub.kubeconfig), patchOptions, capture().log);
    stub.requests.length = 0;
    t.equal(await patchCaBundle(await kubeClient(stub.kubeconfig), patchOptions, capture().log), 'unchanged');
    t.same(requestLine(stub), [`GET ${secretPath}`, `GET ${mwcPath}`]);
  });

  t.test('a 409 Conflict on the PUT is retried from a fresh read', async (t) => {
    const stub = await seeded(t);
    stub.failNext('PUT', mwcPath, 'status-conflict');
    t.equal(await patchCaBundle(await kubeClient(stub.kubeconfig), patchOptions, capture().log), 'patched');
    t.same(requestLine(stub), [`GET ${secretPath}`, `GET ${mwcPath}`, `PUT ${mwcPath} application/json`, `GET ${mwcPath}`, `PUT ${mwcPath} application/json`]);
    t.ok(stub.object(mwcPath).webhooks.every((w: any) => w.clientConfig.caBundle === stub.object(secretPath).data['ca.crt']));
  });

  t.test('a missing Secret or one without ca.crt fails clearly, before touching the configuration', async (t) => {
    const stub = await stubFor(t);
    stub.seed(mwcPath, k8sFixture('mutatingwebhookconfiguration'));
    await t.rejects(patchCaBundle(await kubeClient(stub.kubeconfig), patchOptions, capture().log),
      { message: `get secret ${NS}/${SECRET}: 404 NotFound: secrets "${SECRET}" not found` });
    stub.seed(secretPath, { apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS }, data: { 'tls.crt': b64('x') } });
    await t.rejects(patchCaBundle(await kubeClient(stub.kubeconfig), patchOptions, capture().log), { message: /has no ca.crt; run `bootstrap-cert create` first/ });
    t.notOk(stub.requests.some((r) => r.path === mwcPath));
  });
});

t.test('restart-target', async (t) => {
  // The real webhook, over real TLS, answering the stub's AdmissionReviews. restart-target itself never connects to it:
  // it asks the API server (a dry run of the restart), as a NetworkPolicy that admits only the API server requires.
  const ca = await createCa('webhook-ca', 1);
  const webhook = buildServer({ config, tls: await createServingCert(['localhost'], 1, ca), logger: createLogger('silent') });
  await webhook.app.listen({ port: 0, host: 'localhost' });
  t.teardown(() => webhook.app.close());
  const port = (webhook.app.server.address() as { port: number }).port;
  const opts = { waitSeconds: 30, retryMs: 50, now: () => new Date('2024-06-03T08:21:45.678Z') };
  const restartPatch = { spec: { template: { metadata: { annotations: { [RESTARTED_AT]: '2024-06-03T08:21:45Z' } } } } };
  const mutate = buildMutators(config).deployment;
  const dryRun = `PATCH ${deploymentPath}?dryRun=All application/strategic-merge-patch+json`;
  const restart = `PATCH ${deploymentPath} application/strategic-merge-patch+json`;

  t.test('an unmutated Deployment gets exactly one strategic-merge restart patch, after a dry run of it was admitted through the webhook', async (t) => {
    const stub = await stubFor(t);
    stub.admission = { url: `https://localhost:${port}/mutate`, ca: ca.cert };
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow'));
    t.not(planPatch(mutate, k8sFixture('deployment-mlflow')).patch.length, 0, 'the fixture lacks the mutation');
    t.equal(await restartTarget(await kubeClient(stub.kubeconfig), config, opts, capture().log), 'restarted');
    t.same(requestLine(stub), [`GET ${deploymentPath}`, dryRun, restart]);
    t.same(stub.requests[1].body, restartPatch, 'the dry run is the restart itself');
    t.same(stub.requests[2].body, restartPatch);
    const live = stub.object(deploymentPath);
    t.same(planPatch(mutate, live).patch, [], 'the stored Deployment carries the mutation');
    t.equal(live.spec.template.metadata.annotations[RESTARTED_AT], '2024-06-03T08:21:45Z');
  });

  t.test('an already-mutated Deployment is left alone: one GET, no patch', async (t) => {
    const stub = await stubFor(t);
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow-mutated'));
    t.equal(await restartTarget(await kubeClient(stub.kubeconfig), config, opts, capture().log), 'already-mutated');
    t.same(requestLine(stub), [`GET ${deploymentPath}`]);
  });

  t.test('credentials pod-identity: the IRSA-mutated Deployment is restarted once through a pod-identity webhook, which takes IRSA out', async (t) => {
    const podIdentity = parseConfig({ ...JSON.parse(JSON.stringify(config)), credentials: 'pod-identity' });
    const hook = buildServer({ config: podIdentity, tls: await createServingCert(['localhost'], 1, ca), logger: createLogger('silent') });
    await hook.app.listen({ port: 0, host: 'localhost' });
    t.teardown(() => hook.app.close());
    const hookPort = (hook.app.server.address() as { port: number }).port;
    const stub = await stubFor(t);
    stub.admission = { url: `https://localhost:${hookPort}/mutate`, ca: ca.cert };
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow-mutated'));
    // the ServiceAccount as IRSA mode annotated it: while it names the role, EKS's webhook gives new pods web identity
    const saPath = '/api/v1/namespaces/domino-platform/serviceaccounts/mlflow';
    const sa = k8sFixture('serviceaccount-mlflow');
    stub.seed(saPath, { ...sa, metadata: { ...sa.metadata, annotations: { ...sa.metadata.annotations, 'eks.amazonaws.com/role-arn': config.roleArn, 'eks.amazonaws.com/sts-regional-endpoints': 'true' } } });
    const piOpts = opts;
    t.equal(await restartTarget(await kubeClient(stub.kubeconfig), podIdentity, piOpts, capture().log), 'restarted', 'the IRSA shape lacks the pod-identity mutation');
    t.same(requestLine(stub), [`GET ${deploymentPath}`, `PATCH ${deploymentPath}?dryRun=All application/strategic-merge-patch+json`, `GET ${saPath}`,
      `PATCH ${saPath} application/merge-patch+json`, `PATCH ${deploymentPath} application/strategic-merge-patch+json`],
    'the webhook answers the dry run, then the role annotation comes off the ServiceAccount, then the restart');
    t.same(stub.requests[3].body, { metadata: { annotations: { 'eks.amazonaws.com/role-arn': null, 'eks.amazonaws.com/sts-regional-endpoints': null } } });
    t.same(stub.object(saPath).metadata.annotations, sa.metadata.annotations, 'other annotations stay');
    const live = stub.object(deploymentPath);
    t.same(planPatch(buildMutators(podIdentity).deployment, live).patch, [], 'the stored Deployment carries the pod-identity shape');
    t.notOk(JSON.stringify(live.spec.template.spec).includes('AWS_WEB_IDENTITY_TOKEN_FILE'), 'no web identity left');
    const before = stub.requests.length;
    t.equal(await restartTarget(await kubeClient(stub.kubeconfig), podIdentity, piOpts, capture().log), 'already-mutated', 'a second run leaves it alone');
    t.same(requestLine(stub).slice(before), [`GET ${deploymentPath}`], 'and reads nothing else');
  });

  t.test('no Deployment yet (404): nothing to restart', async (t) => {
    const stub = await stubFor(t);
    t.equal(await restartTarget(await kubeClient(stub.kubeconfig), config, opts, capture().log), 'absent');
    t.same(requestLine(stub), [`GET ${deploymentPath}`]);
  });

  t.test('a webhook the API server does not reach: dry runs until the wait ends, no restart, and an error saying why', async (t) => {
    const stub = await stubFor(t);
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow'));
    const closed = createLogger('silent');
    // failurePolicy Ignore and no webhook reached: the dry run is admitted unchanged
    await t.rejects(restartTarget(await kubeClient(stub.kubeconfig), config, { ...opts, waitSeconds: 0 }, closed),
      { message: /^webhook not ready after 0 s \(last dry run of the restart of Deployment domino-platform\/mlflow: the dry run was admitted without the mutation \(\d+ changes missing\): the API server does not reach the webhook yet\); not restarting/ });
    // a caBundle from another CA: the API server's call fails TLS, and the dry run fails with it
    stub.admission = { url: `https://localhost:${port}/mutate`, ca: (await createCa('other-ca', 1)).cert };
    await t.rejects(restartTarget(await kubeClient(stub.kubeconfig), config, { ...opts, waitSeconds: 0 }, closed),
      { message: /^webhook not ready after 0 s \(last dry run of the restart of Deployment domino-platform\/mlflow: patch deployment domino-platform\/mlflow \(dry run\): 500 .*certificate/ }, 'a certificate from another CA is not trusted');
    t.same(requestLine(stub), [`GET ${deploymentPath}`, dryRun, `GET ${deploymentPath}`, dryRun]);
    t.same(stub.object(deploymentPath), k8sFixture('deployment-mlflow'), 'nothing stored');
  });

  t.test('a webhook that starts answering while restart-target waits: the restart follows the first mutated dry run', async (t) => {
    const stub = await stubFor(t);
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow'));
    const log = capture();
    const done = restartTarget(await kubeClient(stub.kubeconfig), config, opts, log.log);
    while (!stub.requests.some((r) => r.path.endsWith('?dryRun=All'))) await new Promise((r) => setTimeout(r, 10));
    stub.admission = { url: `https://localhost:${port}/mutate`, ca: ca.cert };
    t.equal(await done, 'restarted');
    const lines = requestLine(stub);
    t.ok(lines.filter((l) => l === dryRun).length >= 2, 'dry runs until one comes back mutated');
    t.equal(lines.at(-1), restart, 'then the one restart');
    t.ok(log.lines.some((l) => l.msg === 'webhook not ready yet; waiting'), 'the wait is logged');
    t.ok(log.lines.some((l) => l.msg === 'webhook is ready: a dry run of the restart was admitted with the mutation'));
  });

  t.test('a restart admitted without the mutation (the webhook gone between the dry run and the write) is reported as a failure', async (t) => {
    const stub = await stubFor(t);
    stub.admission = { url: `https://localhost:${port}/mutate`, ca: ca.cert };
    stub.admitDryRunOnly = true;
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow'));
    await t.rejects(restartTarget(await kubeClient(stub.kubeconfig), config, opts, capture().log), { message: /restarted but admitted without the mutation/ });
    t.same(requestLine(stub), [`GET ${deploymentPath}`, dryRun, restart]);
  });

  t.test('a Deployment without the configured container cannot be mutated: no restart, an error naming it', async (t) => {
    const stub = await stubFor(t);
    const other = k8sFixture('deployment-mlflow');
    other.spec.template.spec.containers[0].name = 'server';
    stub.seed(deploymentPath, other);
    await t.rejects(restartTarget(await kubeClient(stub.kubeconfig), config, opts, capture().log), { message: /cannot be mutated: .*container "mlflow" not found/ });
    t.same(requestLine(stub), [`GET ${deploymentPath}`]);
  });

  t.test('the CLI: KUBECONFIG from the environment, flags, exit codes', async (t) => {
    const stub = await stubFor(t);
    stub.admission = { url: `https://localhost:${port}/mutate`, ca: ca.cert };
    stub.seed(mwcPath, k8sFixture('mutatingwebhookconfiguration'));
    stub.seed(deploymentPath, k8sFixture('deployment-mlflow'));
    const dir = mkdtempSync(join(tmpdir(), 'k8s-cli-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, stringify({ ...config, trigger: { mode: 'project-id' }, logLevel: 'info' }));
    // without tap's NODE_OPTIONS loaders (TypeScript, coverage), which make each child start several seconds slower
    const { NODE_OPTIONS: _loaders, ...parentEnv } = process.env;
    const env = { ...parentEnv, KUBECONFIG: stub.kubeconfig };
    const cli = (...args: string[]) => run('node', [join(root, 'dist/cli.js'), ...args, '--config', configFile], { env }).then(
      (r) => ({ code: 0, ...r }),
      (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));

    const created = await cli('bootstrap-cert', 'create', '--webhook-namespace', NS, '--tls-secret', SECRET, '--service', SVC);
    t.equal(created.code, 0, created.stderr);
    t.match(created.stdout, /"msg":"certificate created"/);
    const patched = await cli('bootstrap-cert', 'patch', '--webhook-namespace', NS, '--tls-secret', SECRET, '--webhook-config', MWC);
    t.equal(patched.code, 0, patched.stderr);
    t.equal(stub.object(mwcPath).webhooks[0].clientConfig.caBundle, stub.object(secretPath).data['ca.crt']);
    t.notMatch(created.stdout + patched.stdout, /BEGIN|PRIVATE KEY/, 'no key material in the logs');

    const restarted = await cli('restart-target', '--wait', '10');
    t.equal(restarted.code, 0, restarted.stderr);
    t.same(stub.requests.filter((r) => r.method === 'PATCH' && r.path === deploymentPath).length, 1, 'one restart (after its dry run)');
    t.same(planPatch(mutate, stub.object(deploymentPath)).patch, [], 'restarted with the mutation');

    const failed = await cli('bootstrap-cert', 'patch', '--namespace', 'elsewhere', '--secret', SECRET, '--webhook-config', MWC);
    t.equal(failed.code, 1);
    t.match(failed.stderr, `bootstrap-cert: get secret elsewhere/${SECRET}: 404 NotFound: secrets "${SECRET}" not found`);
    t.match(failed.stderr, /bootstrap-cert: note: --namespace is deprecated; use --webhook-namespace\nbootstrap-cert: note: --secret is deprecated; use --tls-secret/, 'the old names still work, and say so');
    const both = await cli('bootstrap-cert', 'patch', '--namespace', NS, '--webhook-namespace', NS, '--tls-secret', SECRET, '--webhook-config', MWC);
    t.equal(both.code, 2);
    t.match(both.stderr, /--namespace is the old name of --webhook-namespace; give one of them/);
    const usage = await cli('bootstrap-cert', 'create', '--webhook-namespace', NS, '--service', SVC);
    t.equal(usage.code, 2);
    t.match(usage.stderr, /--tls-secret is required \(name of the TLS Secret\)\nusage: mlflow-irsa-webhook bootstrap-cert create/);

    // a malformed kubeconfig holding a token, by --kubeconfig and by KUBECONFIG: the YAML parser's excerpt of the file
    // (the token's line) is not in the log; one line with the reason and the position is
    const malformed = join(root, 'test/fixtures/k8s/kubeconfig-malformed/bad-indentation.yaml');
    for (const r of [
      await cli('restart-target', '--wait', '1', '--kubeconfig', malformed),
      await run('node', [join(root, 'dist/cli.js'), 'bootstrap-cert', 'patch', '--webhook-namespace', NS, '--tls-secret', SECRET, '--webhook-config', MWC, '--config', configFile],
        { env: { ...env, KUBECONFIG: malformed } }).then((x) => ({ code: 0, ...x }), (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string })),
    ]) {
      t.equal(r.code, 1);
      t.match(r.stderr, `: cannot load the kubeconfig ${malformed}: not valid YAML: bad indentation of a mapping entry (line 12, column 11)\n`);
      t.notMatch(r.stdout + r.stderr, /Kub3c0nfigT0kenMarker|sha256~/, 'the token is in no output');
    }
  });

  t.test('bad flags are usage errors naming the flag, raised before any API call', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-usage-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const cases = [
      [bootstrapCert, ['create'], { 'webhook-namespace': NS, service: SVC }, /^--tls-secret is required \(name of the TLS Secret\)$/],
      [bootstrapCert, ['create', 'now'], { 'webhook-namespace': NS, 'tls-secret': SECRET }, /^expected one step, create or patch; got "create now"$/],
      [bootstrapCert, ['renew'], { 'webhook-namespace': NS, 'tls-secret': SECRET }, /^expected one step, create or patch; got "renew"$/],
      [bootstrapCert, ['patch'], { 'webhook-namespace': NS, 'tls-secret': SECRET }, /^--webhook-config is required/],
      [bootstrapCert, ['create'], { 'webhook-namespace': NS, 'tls-secret': SECRET, service: SVC, days: '10', 'renew-days': '30' }, /^--renew-days 30 must be below --days 10/],
      [bootstrapCert, ['create'], { 'webhook-namespace': NS, 'tls-secret': SECRET, service: SVC, retries: '0' }, /^--retries: "0" is not a whole number in 1..100$/],
      [restartCommand, [], { wait: 'soon' }, /^--wait: "soon" is not a whole number/],
    ] as const;
    for (const [command, positionals, values, message] of cases) {
      await t.rejects(command.run({ values: { ...values, kubeconfig: join(dir, 'no-such-kubeconfig') }, positionals: [...positionals], config }),
        { name: 'UsageError', message }, JSON.stringify(values));
    }
  });
});
