// The Helm chart rendered by the real helm binary: lint, every object against the Kubernetes schema, security, scope,
// RBAC, hooks, the config file it renders, values.schema.json against the program's schema, the image reference.
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { configSchema } from '../src/config/schema.js';
import { parseConfigText } from '../src/config/config.js';
import { parseLeaseMetadata } from '../src/reconcile/lease.js';
import { root } from './helpers/fixtures.js';
import { chart, ciValues, find, FULL, helmRun, NS, one, RELEASE, render, TARGET_NS, validateAll, WITH_POLICY_API, WITH_SERVICE_MONITOR_API, type Obj } from './helpers/chart.js';

const exec = promisify(execFile);

const hook = (o: Obj) => o.metadata.annotations?.['helm.sh/hook'] as string | undefined;
/** what `helm install` applies: everything but the `helm test` objects, which exist only while a test runs */
const installed = (objects: Obj[]) => objects.filter((o) => hook(o) !== 'test');
const weight = (o: Obj) => Number(o.metadata.annotations?.['helm.sh/hook-weight']);
const jobNamed = (objects: Obj[], suffix: string) => one(objects, 'Job', `${FULL}-${suffix}`);
const podSpec = (o: Obj) => o.spec.template.spec;

// Command modules by CLI command name, to check that every rendered command line parses with the program's own options.
const COMMANDS: Record<string, () => Promise<{ options: object; allowPositionals?: boolean }>> = {
  serve: () => import('../src/webhook/serve.js'),
  'bootstrap-cert': () => import('../src/k8s/bootstrap-cert.js'),
  'restart-target': () => import('../src/k8s/restart-target.js'),
  'install-trigger': () => import('../src/db/command.js'),
  doctor: () => import('../src/doctor/command.js'),
};

async function parseCommandLine(args: string[]) {
  const [command, ...rest] = args;
  const module = await COMMANDS[command]();
  return parseArgs({ args: rest, options: { config: { type: 'string' }, 'config-env': { type: 'string' }, ...module.options } as never, strict: true, allowPositionals: module.allowPositionals ?? false });
}

function assertSecure(t: any, label: string, pod: Obj): void {
  t.match(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } }, `${label}: pod securityContext`);
  t.ok(Number.isInteger(pod.securityContext.runAsUser) && pod.securityContext.runAsUser > 0, `${label}: numeric non-root uid`);
  for (const c of pod.containers) {
    t.match(c.securityContext, {
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    }, `${label}/${c.name}: container securityContext`);
    t.notOk(c.securityContext.capabilities.add, `${label}/${c.name}: no added capabilities`);
    t.ok(c.resources?.requests && c.resources?.limits, `${label}/${c.name}: resources set`);
  }
}

t.test('helm lint --strict is clean', async (t) => {
  const r = await helmRun(['lint', '--strict', chart, '-f', ciValues]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  t.notMatch(r.stdout, /\[(WARNING|ERROR)\]/);
});

t.test('values.schema.json refuses missing or malformed required values with a clear message', async (t) => {
  const base = ['template', RELEASE, chart, '--namespace', NS];
  const cases: Array<[string[], RegExp]> = [
    [['--set', 'artifactsDestination=s3://my-bucket'], /roleArn is required/],
    [['--set', 'roleArn=arn:aws:iam::111122223333:role/r'], /artifactsDestination is required/],
    [['-f', ciValues, '--set', 'roleArn=arn:aws:iam::1:role/r'], /roleArn: Does not match pattern/],
    [['-f', ciValues, '--set', 'failurePolicy=Sometimes'], /failurePolicy: failurePolicy must be one of the following: "Ignore", "Fail"/],
    [['-f', ciValues, '--set', 'trigger.mode=everything'], /trigger\.mode: trigger\.mode must be one of the following/],
    [['-f', ciValues, '--set', 'trigger.locationStyle=s3'], /trigger\.locationStyle: trigger\.locationStyle must be one of the following: "direct", "proxied"/],
    [['-f', ciValues, '--set', 'trigger.locationPolicy=strict'], /trigger\.locationPolicy: trigger\.locationPolicy must be one of the following: "off", "audit", "enforce"/],
    // an earlier values file's enforceLocations beside a locationPolicy that means something else: which was meant?
    [['-f', ciValues, '--set', 'trigger.enforceLocations=true', '--set', 'trigger.locationPolicy=audit'],
      /trigger\.enforceLocations: true is deprecated and means locationPolicy enforce, which disagrees with trigger\.locationPolicy: "audit"; remove trigger\.enforceLocations \(helm upgrade --reuse-values keeps it from the earlier chart's defaults: add --set trigger\.enforceLocations=null\)/],
    [['-f', ciValues, '--set', 'tokne.audience=x'], /Additional property tokne is not allowed/],
    [['-f', ciValues, '--set', 'terminationGracePeriodSeconds=5'], /terminationGracePeriodSeconds \(5\) must exceed server.drainSeconds \(5\)/],
    // there is no public image: without a repository the render stops and says what to set
    [['--set', 'roleArn=arn:aws:iam::111122223333:role/r', '--set', 'artifactsDestination=s3://my-bucket'], /image\.repository is required: set it to the repository you pushed this project's image to, e\.g\. --set image\.repository=/],
    [['-f', ciValues, '--set', 'image.repository='], /image\.repository is required/],
    [['-f', ciValues, '--set', 'server.metricsPort=0', '--set', 'metrics.serviceMonitor.enabled=true'], /metrics\.serviceMonitor\.enabled needs server\.metricsPort \(e\.g\. 9090\)/],
    [['-f', ciValues, '--set', 'server.metricsPort=8443'], /server\.metricsPort \(8443\) must differ from server\.port/],
    // a budget that allows no eviction blocks kubectl drain and node group upgrades of the node the pod runs on
    [['-f', ciValues, '--set', 'replicas=1'], /podDisruptionBudget\.minAvailable \(1\) must be below replicas \(1\): a budget that allows no eviction blocks kubectl drain/],
  ];
  const results = await Promise.all(cases.map(([args]) => helmRun([...base, ...args])));
  results.forEach((r, i) => {
    t.not(r.code, 0, cases[i][0].join(' '));
    t.match(r.stderr, cases[i][1]);
  });

  // the chart README's table marks as required exactly the keys a render fails without (the cases above); keys that
  // have defaults, such as the database's Secret names, are shown with them
  const table = readFileSync(join(chart, 'README.md'), 'utf8');
  const marked = [...table.matchAll(/^\| `([^`]+)` \| [^|]+ \| \*\*required\*\* \|/gm)].map((m) => m[1]);
  t.same(marked, ['roleArn', 'artifactsDestination', 'image.repository'], 'the values table marks exactly the keys a render needs');
  t.match(table, /^\| `database\.passwordSecret\.name` \| string \| `"mlflow-postgresql"` \|/m, 'a key with a default shows it');
  const lint = await helmRun(['lint', '--strict', chart]);
  t.not(lint.code, 0, 'lint without the required values fails');
  t.match(lint.stdout + lint.stderr, /roleArn is required/);
});

t.test('an earlier values file\'s trigger.enforceLocations still renders, and means what it meant (true enforce, false off)', async (t) => {
  const configOf = (objects: Obj[]) => parseConfigText(one(objects, 'ConfigMap', FULL, NS).data['config.yaml']).trigger;
  const [on, off, agreeing] = await Promise.all([
    render(['trigger.enforceLocations=true']), render(['trigger.enforceLocations=false']),
    render(['trigger.enforceLocations=false', 'trigger.locationPolicy=off']),
  ]);
  t.match(configOf(on), { enforceLocations: true, locationPolicy: 'enforce' });
  t.match(configOf(off), { enforceLocations: false, locationPolicy: 'off' });
  t.match(configOf(agreeing), { locationPolicy: 'off' }, 'both set and agreeing is accepted');
  t.match(configOf(await render(['trigger.enforceLocations=null', 'trigger.locationPolicy=enforce'])), { locationPolicy: 'enforce' }, 'null removes the old key, as the refusal says');
});

t.test('values.schema.json carries the program\'s config schema unchanged', async (t) => {
  const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8'));
  for (const [key, property] of Object.entries(configSchema.properties)) t.same(schema.properties[key], property, `config key ${key}`);
  t.same(schema.required, configSchema.required);
  t.equal(schema.additionalProperties, false, 'unknown top-level values are refused');
  const keys = readFileSync(join(chart, 'templates/_config-keys.tpl'), 'utf8');
  t.match(keys, `{{- define "mlflow-irsa-webhook.configKeys" -}}${Object.keys(configSchema.properties).join(' ')}{{- end -}}`);
  const check = await exec('node', [join(root, 'scripts/gen-chart-schema.mjs'), '--check']).then(() => 0, (e) => e.code as number);
  t.equal(check, 0, 'scripts/gen-chart-schema.mjs --check: generated files are current');

  // values.yaml writes config defaults out for readers; they must be the defaults the program itself applies, except
  // where the chart chooses otherwise on purpose (listed here): the metrics port is on, as the kubelet's probes use it.
  const values = parseYaml(readFileSync(join(chart, 'values.yaml'), 'utf8'));
  const props = configSchema.properties as Record<string, any>;
  const chartChoices: Record<string, unknown> = { 'server.metricsPort': 9090 };
  for (const key of Object.keys(props).filter((k) => k in values)) {
    const p = props[key];
    if (p.type === 'object') {
      for (const [sub, v] of Object.entries(values[key])) {
        const choice = `${key}.${sub}` in chartChoices;
        t.same(v, choice ? chartChoices[`${key}.${sub}`] : p.properties[sub].default, `values.yaml ${key}.${sub} is ${choice ? 'the chart\'s own choice' : 'the program\'s default'}`);
      }
    } else {
      t.same(values[key], p.default, `values.yaml ${key} is the program's default`);
    }
  }
});

t.test('default render (self-managed TLS, trigger and restart Jobs on)', async (t) => {
  const objects = await render();
  validateAll(t, objects);

  t.test('the ConfigMap is the webhook\'s config file, loaded by the program\'s own loader', async (t) => {
    const cm = one(objects, 'ConfigMap', FULL, NS);
    const text = cm.data['config.yaml'];
    const config = parseConfigText(text, 'ConfigMap config.yaml');
    t.equal(config.roleArn, 'arn:aws:iam::111122223333:role/sw-mlflow-full-access');
    t.equal(config.artifactsDestination, 's3://sw-domino-project-based-mlflow');
    t.equal(config.namespace, TARGET_NS);
    t.equal(config.server.port, 8443);
    t.equal(config.trigger.locationPolicy, 'audit', 'the location policy audits by default');
    t.same(Object.keys(parseYaml(text)).filter((k) => !(k in configSchema.properties)), [], 'only config keys');
  });

  t.test('the hook Jobs and the helm test carry the same config text in their own spec: no ConfigMap a tenant could edit before they start', async (t) => {
    const text = one(objects, 'ConfigMap', FULL, NS).data['config.yaml'];
    t.same(find(objects, 'ConfigMap').map((c) => `${c.metadata.namespace}/${c.metadata.name}`), [`${NS}/${FULL}`], 'one ConfigMap, the webhook\'s, in the release namespace');
    const pods = [...find(objects, 'Job').map((j) => [j.metadata.name, podSpec(j)]), [`${FULL}-doctor`, one(objects, 'Pod', `${FULL}-doctor`).spec]] as Array<[string, Obj]>;
    t.equal(pods.length, 6, 'five Jobs and the doctor');
    for (const [name, pod] of pods) {
      const c = pod.containers[0];
      t.same(c.env[0], { name: 'MLFLOW_IRSA_WEBHOOK_CONFIG', value: text.replace(/\n$/, '') }, `${name}: the config file's text in its env`);
      t.equal((await parseCommandLine(c.args)).values['config-env'], 'MLFLOW_IRSA_WEBHOOK_CONFIG', `${name}: read with --config-env`);
      t.notOk((pod.volumes ?? []).some((v: Obj) => v.configMap), `${name}: no ConfigMap volume`);
    }
    t.same(parseConfigText(pods[0][1].containers[0].env[0].value), parseConfigText(text), 'the program reads the same config from it');
  });

  t.test('webhook Deployment: replicas, spread, probes, security, drain, config and TLS mounts', async (t) => {
    const d = one(objects, 'Deployment', FULL, NS);
    const pod = podSpec(d);
    t.equal(d.spec.replicas, 2);
    t.match(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0], {
      podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: d.spec.selector.matchLabels } },
    });
    assertSecure(t, 'webhook', pod);
    t.equal(pod.automountServiceAccountToken, true, 'the reconcile loop (on by default) calls the API');
    const c = pod.containers[0];
    // the reconcile loop's Lease holder identity and the Lease's namespace, from the downward API; and the metadata of a
    // Lease it has to recreate: the very labels the chart's Lease carries, and Helm's ownership annotations
    t.same(c.env.slice(0, 2), [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ]);
    t.same(c.env.slice(2).map((e: Obj) => e.name), ['RECONCILE_LEASE_METADATA']);
    t.same(parseLeaseMetadata(c.env[2].value), {
      labels: one(objects, 'Lease').metadata.labels,
      annotations: { 'meta.helm.sh/release-name': RELEASE, 'meta.helm.sh/release-namespace': NS },
    });
    t.equal(one(objects, 'ServiceAccount', FULL, NS).automountServiceAccountToken, false, 'no token for other pods that might use the ServiceAccount');
    // the probes on the plain metrics port (on by default in the chart), which a client holding the HTTPS port cannot starve
    t.same(c.readinessProbe.httpGet, { path: '/readyz', port: 'metrics', scheme: 'HTTP' });
    t.same(c.livenessProbe.httpGet, { path: '/healthz', port: 'metrics', scheme: 'HTTP' });
    t.same(c.ports, [{ name: 'https', containerPort: 8443, protocol: 'TCP' }, { name: 'metrics', containerPort: 9090, protocol: 'TCP' }]);
    t.equal(parseConfigText(one(objects, 'ConfigMap', FULL, NS).data['config.yaml']).server.metricsPort, 9090, 'where the webhook serves them');
    const metricsOff = one(await render(['server.metricsPort=0']), 'Deployment', FULL, NS).spec.template.spec.containers[0];
    t.same([metricsOff.readinessProbe.httpGet, metricsOff.livenessProbe.httpGet], [{ path: '/readyz', port: 'https', scheme: 'HTTPS' }, { path: '/healthz', port: 'https', scheme: 'HTTPS' }], 'with the metrics port off, on the HTTPS port');
    t.ok(pod.terminationGracePeriodSeconds > 5, 'grace period exceeds server.drainSeconds');
    const args = await parseCommandLine(c.args);
    t.same(args.values, { config: '/etc/mlflow-irsa-webhook/config.yaml', 'tls-cert': '/etc/mlflow-irsa-webhook-tls/tls.crt', 'tls-key': '/etc/mlflow-irsa-webhook-tls/tls.key' });
    const volumes = Object.fromEntries(pod.volumes.map((v: Obj) => [v.name, v]));
    t.equal(volumes.config.configMap.name, FULL);
    t.equal(volumes.tls.secret.secretName, `${FULL}-tls`);
    t.ok(d.spec.template.metadata.annotations['checksum/config'], 'config changes roll the pods');
    const pdb = one(objects, 'PodDisruptionBudget', FULL, NS);
    t.same(pdb.spec.selector.matchLabels, d.spec.selector.matchLabels);
    t.equal(pdb.spec.minAvailable, 1);
    const svc = one(objects, 'Service', FULL, NS);
    t.same(svc.spec.ports, [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' }, { name: 'metrics', port: 9090, targetPort: 'metrics', protocol: 'TCP' }]);
    t.same(svc.spec.selector, d.spec.selector.matchLabels);
  });

  t.test('MutatingWebhookConfiguration: rules, scope, policy, and never its own objects', async (t) => {
    const mwc = one(objects, 'MutatingWebhookConfiguration', FULL);
    t.equal(mwc.webhooks.length, 2);
    const expected = [['apps', 'deployments', 'mlflow'], ['', 'serviceaccounts', 'mlflow']];
    mwc.webhooks.forEach((w: Obj, i: number) => {
      const [group, resource, name] = expected[i];
      t.same(w.rules, [{ operations: ['CREATE', 'UPDATE'], apiGroups: [group], apiVersions: ['v1'], resources: [resource], scope: 'Namespaced' }], `${resource}: no subresources`);
      t.match(w, { sideEffects: 'None', admissionReviewVersions: ['v1'], timeoutSeconds: 5, reinvocationPolicy: 'IfNeeded', failurePolicy: 'Ignore' });
      t.same(w.clientConfig, { service: { name: FULL, namespace: NS, path: '/mutate', port: 443 } }, 'no caBundle rendered without a Secret to look up');
      t.same(w.namespaceSelector, { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [TARGET_NS] }] });
      t.same(w.matchConditions, [{ name: 'target-name', expression: `object.metadata.name == '${name}'` }]);
      t.same(w.objectSelector, { matchExpressions: [{ key: 'app.kubernetes.io/name', operator: 'NotIn', values: ['mlflow-irsa-webhook'] }] });
    });
    // Every Deployment and ServiceAccount of the chart carries the label the objectSelector excludes.
    for (const o of [...find(objects, 'Deployment'), ...find(objects, 'ServiceAccount')]) {
      t.equal(o.metadata.labels['app.kubernetes.io/name'], 'mlflow-irsa-webhook', `${o.kind} ${o.metadata.name} is excluded by the objectSelector`);
    }
    t.ok(find(objects, 'Deployment').every((o) => o.metadata.namespace !== TARGET_NS), 'its own Deployment is outside the selected namespace');
  });

  t.test('RBAC: named objects only, no wildcards, nothing cluster-wide beyond its own webhook configuration', async (t) => {
    const roles = [...find(installed(objects), 'Role'), ...find(installed(objects), 'ClusterRole')];
    const rules = roles.flatMap((r) => r.rules.map((rule: Obj) => ({ ...rule, role: `${r.kind}/${r.metadata.namespace ?? ''}/${r.metadata.name}` })));
    for (const rule of rules) {
      for (const field of ['verbs', 'resources', 'apiGroups', 'resourceNames']) {
        t.notOk((rule[field] ?? []).some((v: string) => v.includes('*')), `${rule.role}: no wildcard in ${field}`);
      }
      // RBAC cannot restrict create by name; those rules are limited to Secrets and Leases in the release namespace.
      if (!(rule.verbs.length === 1 && rule.verbs[0] === 'create')) t.ok(rule.resourceNames?.length > 0, `${rule.role}: ${rule.verbs} by resourceNames`);
    }
    // one identity per hook Job that calls the API, named like the Job, with that Job's rights only
    const create = `${FULL}-bootstrap-cert-create`;
    const patch = `${FULL}-bootstrap-cert-patch`;
    const restart = `${FULL}-restart-target`;
    t.same(rules.map(({ role, ...r }) => [role, r]).sort(), [
      [`ClusterRole//${patch}`, { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [FULL], verbs: ['get', 'update'] }],
      [`Role/${NS}/${patch}`, { apiGroups: [''], resources: ['secrets'], resourceNames: [`${FULL}-tls`], verbs: ['get'] }],
      [`Role/${NS}/${create}`, { apiGroups: [''], resources: ['secrets'], resourceNames: [`${FULL}-tls`], verbs: ['get', 'update'] }],
      [`Role/${NS}/${create}`, { apiGroups: [''], resources: ['secrets'], verbs: ['create'] }],
      // the restart, and the dry runs of it by which restart-target waits for the webhook through the API server
      [`Role/${TARGET_NS}/${restart}`, { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['mlflow'], verbs: ['get', 'patch'] }],
      // the reconcile loop: list/watch by name work because it sends fieldSelector metadata.name=<name>
      [`Role/${TARGET_NS}/${FULL}-reconcile`, { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['mlflow'], verbs: ['get', 'list', 'watch', 'patch'] }],
      [`Role/${TARGET_NS}/${FULL}-reconcile`, { apiGroups: [''], resources: ['serviceaccounts'], resourceNames: ['mlflow'], verbs: ['get', 'list', 'watch', 'patch'] }],
      [`Role/${NS}/${FULL}-reconcile-lease`, { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['mlflow-irsa-webhook-reconcile'], verbs: ['get', 'update'] }],
      // create only to recreate a deleted Lease: the chart makes it, and RBAC cannot limit create by name
      [`Role/${NS}/${FULL}-reconcile-lease`, { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] }],
    ].sort());
    // with credentials pod-identity the restart Job may also take IRSA's annotation off the one ServiceAccount
    const podIdentity = await render(['credentials=pod-identity']);
    validateAll(t, podIdentity);
    t.same(one(podIdentity, 'Role', `${FULL}-restart-target`, TARGET_NS).rules, [
      { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['mlflow'], verbs: ['get', 'patch'] },
      { apiGroups: [''], resources: ['serviceaccounts'], resourceNames: ['mlflow'], verbs: ['get', 'patch'] },
    ]);
    const bindings = [...find(installed(objects), 'RoleBinding'), ...find(installed(objects), 'ClusterRoleBinding')];
    t.same(bindings.map((b) => `${b.kind}/${b.metadata.namespace ?? ''}/${b.metadata.name}`).sort(), [
      `ClusterRoleBinding//${patch}`, `RoleBinding/${NS}/${create}`, `RoleBinding/${NS}/${patch}`, `RoleBinding/${TARGET_NS}/${restart}`,
      `RoleBinding/${TARGET_NS}/${FULL}-reconcile`, `RoleBinding/${NS}/${FULL}-reconcile-lease`,
    ].sort());
    for (const b of bindings) {
      // each hook identity's rights go to its own ServiceAccount, the reconcile rights to the webhook pods' own
      const sa = b.metadata.name.includes('-reconcile') ? FULL : b.metadata.name;
      t.same(b.subjects, [{ kind: 'ServiceAccount', name: sa, namespace: NS }], `${b.kind} ${b.metadata.name} binds ${sa} only`);
      t.ok(roles.some((r) => r.kind === b.roleRef.kind && r.metadata.name === b.roleRef.name && (r.metadata.namespace === b.metadata.namespace)), `${b.metadata.name} refers to a rendered role in its namespace`);
    }
    // Each identity exists, before its Job, in exactly the phases its Job runs in, and goes when the phase ends
    for (const job of [create, patch, restart]) {
      const jobObject = one(objects, 'Job', job);
      t.equal(podSpec(jobObject).serviceAccountName, job, `${job} runs as its own ServiceAccount`);
      const identity = [...roles, ...bindings, ...find(objects, 'ServiceAccount')].filter((o) => o.metadata.name === job);
      t.ok(identity.length >= 3, `${job}: a ServiceAccount, a role and its binding`);
      for (const o of identity) {
        t.equal(hook(o), hook(jobObject), `${o.kind} ${o.metadata.name}: the phases of its Job (${hook(jobObject)})`);
        t.ok(weight(o) < weight(jobObject), `${o.kind} ${o.metadata.name} comes before its Job`);
        t.equal(o.metadata.annotations['helm.sh/hook-delete-policy'], 'before-hook-creation,hook-succeeded', `${o.kind} ${o.metadata.name} goes when the phase ends`);
      }
    }
    // A rollback to a revision rendered before the TLS Secret existed (the first install's has no caBundle, since the
    // Secret is made by a pre-install hook) empties the caBundle: the patch Job runs again after a rollback, with its identity.
    t.ok(hook(one(objects, 'Job', patch)).split(',').includes('post-rollback'), 'bootstrap-cert patch runs again after a rollback');
    t.same(find(objects, 'ServiceAccount').map((o) => o.metadata.name).filter((n) => n.endsWith('-hooks')), [], 'no identity shared by the hook Jobs');
    // The webhook's own rights live as long as the release, not just a hook phase.
    for (const o of [...roles, ...bindings].filter((o) => o.metadata.name.includes('-reconcile'))) t.equal(hook(o), undefined, `${o.kind} ${o.metadata.name} is no hook`);
  });

  t.test('helm test: doctor in a Pod beside the database Secret, with a read-only identity of its own that exists only for the test', async (t) => {
    const tests = objects.filter((o) => hook(o) === 'test');
    t.same(tests.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort(), [
      `ClusterRole//${FULL}-doctor`, `ClusterRoleBinding//${FULL}-doctor`, `Pod/${TARGET_NS}/${FULL}-doctor`,
      `Role/${NS}/${FULL}-doctor-webhook`, `Role/${TARGET_NS}/${FULL}-doctor`, `RoleBinding/${NS}/${FULL}-doctor-webhook`, `RoleBinding/${TARGET_NS}/${FULL}-doctor`,
      `ServiceAccount/${TARGET_NS}/${FULL}-doctor`,
    ].sort());
    const pod = one(objects, 'Pod', `${FULL}-doctor`, TARGET_NS);
    for (const o of tests) {
      t.equal(o.metadata.annotations['helm.sh/hook-weight'], o === pod ? '0' : '-10', `${o.kind} ${o.metadata.name}: made before the Pod`);
      t.equal(o.metadata.annotations['helm.sh/hook-delete-policy'], o === pod ? 'before-hook-creation' : 'before-hook-creation,hook-succeeded',
        o === pod ? 'the Pod stays for its report until the next test' : `${o.kind} ${o.metadata.name} goes when the test passes`);
    }
    // exactly what the checks read (doctor.test.ts runs doctor against these very rules and sees every one used)
    const rules = tests.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')
      .flatMap((r) => r.rules.map((rule: Obj) => [`${r.kind}/${r.metadata.namespace ?? ''}`, rule]));
    t.same(rules.sort(), [
      ['ClusterRole/', { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [FULL], verbs: ['get'] }],
      [`Role/${NS}`, { apiGroups: [''], resources: ['services'], resourceNames: [FULL], verbs: ['get'] }],
      [`Role/${NS}`, { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list'] }],
      // the served certificate, read through the API server: doctor needs no network path to the webhook's pods
      [`Role/${NS}`, { apiGroups: [''], resources: ['services/proxy'], resourceNames: [`https:${FULL}:443`], verbs: ['get'] }],
      [`Role/${NS}`, { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['mlflow-irsa-webhook-reconcile'], verbs: ['get'] }],
      [`Role/${TARGET_NS}`, { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['mlflow'], verbs: ['get', 'patch'] }],
      [`Role/${TARGET_NS}`, { apiGroups: [''], resources: ['serviceaccounts'], resourceNames: ['mlflow'], verbs: ['get'] }],
      [`Role/${TARGET_NS}`, { apiGroups: [''], resources: ['configmaps'], verbs: ['get'] }],
      [`Role/${TARGET_NS}`, { apiGroups: [''], resources: ['pods'], verbs: ['list'] }],
      [`Role/${TARGET_NS}`, { apiGroups: ['apps'], resources: ['replicasets'], verbs: ['list'] }],
    ].sort(), 'no secrets, no writes but the dry-run patch on the one Deployment, ConfigMaps only by name (envFrom), lists only where a label selector is the only way');
    for (const b of tests.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')) {
      t.same(b.subjects, [{ kind: 'ServiceAccount', name: `${FULL}-doctor`, namespace: TARGET_NS }], `${b.metadata.name} binds the doctor only`);
      t.ok(tests.some((r) => r.kind === b.roleRef.kind && r.metadata.name === b.roleRef.name && r.metadata.namespace === b.metadata.namespace), `${b.metadata.name} refers to a rendered role`);
    }
    const spec = pod.spec;
    assertSecure(t, 'doctor', spec);
    t.equal(spec.restartPolicy, 'Never', 'a failed check is a failed test, not a retry');
    t.equal(spec.serviceAccountName, `${FULL}-doctor`);
    t.equal(spec.automountServiceAccountToken, true);
    const parsed = await parseCommandLine(spec.containers[0].args);
    t.same(parsed.values, { 'config-env': 'MLFLOW_IRSA_WEBHOOK_CONFIG', 'webhook-config': FULL, 'webhook-namespace': NS, 'tls-secret': `${FULL}-tls` }, 'flags doctor accepts');
    t.same(spec.containers[0].env, podSpec(jobNamed(objects, 'install-trigger')).containers[0].env, 'the webhook\'s own config, and the database as the trigger Job reads it');
    t.notOk(rules.some(([, r]) => r.resources.includes('secrets')), 'no rule on Secrets');
    t.notOk((spec.volumes ?? []).some((v: Obj) => v.secret), 'no Secret volume (the password comes in by secretKeyRef, as for the trigger Job)');
    // with credentials pod-identity, also the agent's DaemonSet, by name, in kube-system (doctor.test.ts uses it too)
    const podIdentity = (await render(['credentials=pod-identity'])).filter((o) => hook(o) === 'test');
    t.same(one(podIdentity, 'Role', `${FULL}-doctor-pod-identity`, 'kube-system').rules, [{ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: ['eks-pod-identity-agent'], verbs: ['get'] }]);
    t.same(one(podIdentity, 'RoleBinding', `${FULL}-doctor-pod-identity`, 'kube-system').subjects, [{ kind: 'ServiceAccount', name: `${FULL}-doctor`, namespace: TARGET_NS }]);
    t.notOk(tests.some((o) => o.metadata.namespace === 'kube-system'), 'irsa: nothing in kube-system');
    const off = await render(['tests.enabled=false']);
    t.same(off.filter((o) => hook(o) === 'test'), [], 'tests.enabled=false renders none');

    // doctor's own read-only login: the same database, another role and its Secret; the trigger Jobs keep theirs
    const readOnly = await render(['tests.database.user=mlflow_doctor', 'tests.database.passwordSecret.name=mlflow-doctor-db']);
    const env = one(readOnly, 'Pod', `${FULL}-doctor`, TARGET_NS).spec.containers[0].env;
    const jobEnv = podSpec(jobNamed(readOnly, 'install-trigger')).containers[0].env;
    t.same(env.find((e: Obj) => e.name === 'PGUSER'), { name: 'PGUSER', value: 'mlflow_doctor' });
    t.same(env.find((e: Obj) => e.name === 'PGPASSWORD'), { name: 'PGPASSWORD', valueFrom: { secretKeyRef: { name: 'mlflow-doctor-db', key: 'password' } } });
    t.same(env.filter((e: Obj) => !['PGUSER', 'PGPASSWORD'].includes(e.name)), jobEnv.filter((e: Obj) => !['PGUSER', 'PGPASSWORD'].includes(e.name)), 'host, port, database and TLS as the Jobs have them');
    t.same(jobEnv.find((e: Obj) => e.name === 'PGUSER'), { name: 'PGUSER', value: 'mlflow' }, 'the trigger Jobs still log in as MLflow\'s owner');
    for (const half of [['tests.database.user=mlflow_doctor'], ['tests.database.passwordSecret.name=mlflow-doctor-db']]) {
      const r = await helmRun(['template', RELEASE, chart, '--namespace', NS, '-f', ciValues, ...half.flatMap((s) => ['--set', s])]);
      t.not(r.code, 0, half[0]);
      t.match(r.stderr, /tests\.database\.user \(".*"\) and tests\.database\.passwordSecret\.name \(".*"\) go together/);
    }
  });

  t.test('reconcile Lease: made by the chart in the release namespace, with no holder', async (t) => {
    const lease = one(objects, 'Lease');
    t.same({ name: lease.metadata.name, namespace: lease.metadata.namespace }, { name: 'mlflow-irsa-webhook-reconcile', namespace: NS }, 'the Lease sits where POD_NAMESPACE points');
    // only the duration the loop writes itself: a holder set by the chart would be reset by every upgrade
    t.same(lease.spec, { leaseDurationSeconds: 15 });
    t.equal(hook(lease), undefined, 'an ordinary release object, so upgrades three-way-merge it instead of recreating it');
    const config = parseConfigText(one(objects, 'ConfigMap', FULL, NS).data['config.yaml'], 'ConfigMap config.yaml');
    t.same(config.reconcile, {
      enabled: true, intervalSeconds: 60, minRestartIntervalSeconds: 600, maxRestartIntervalSeconds: 21600,
      leaseName: lease.metadata.name, leaseDurationSeconds: lease.spec.leaseDurationSeconds,
    }, 'the config file names the Lease the chart made');
  });

  t.test('no ValidatingAdmissionPolicy without the API in the capabilities (helm 3.17 client-only lists no kinds)', async (t) => {
    t.same([...find(objects, 'ValidatingAdmissionPolicy'), ...find(objects, 'ValidatingAdmissionPolicyBinding')], []);
  });

  t.test('hook Jobs: phases, order, flags the commands accept, security, database password from the Secret', async (t) => {
    const jobs = find(objects, 'Job');
    t.same(jobs.map((j) => [j.metadata.name, hook(j), weight(j)]).sort(), [
      [`${FULL}-bootstrap-cert-create`, 'pre-install,pre-upgrade', 0],
      [`${FULL}-bootstrap-cert-patch`, 'post-install,post-upgrade,post-rollback', 0],
      [`${FULL}-install-trigger`, 'post-install,post-upgrade', 5],
      [`${FULL}-restart-target`, 'post-install,post-upgrade', 10],
      [`${FULL}-uninstall-trigger`, 'pre-delete', 0],
    ].sort());
    t.ok(weight(jobNamed(objects, 'restart-target')) > weight(jobNamed(objects, 'bootstrap-cert-patch')), 'restart runs after the caBundle patch');
    for (const j of jobs) {
      const pod = podSpec(j);
      t.equal(j.metadata.annotations['helm.sh/hook-delete-policy'], 'before-hook-creation');
      t.ok(Number.isInteger(j.spec.backoffLimit) && Number.isInteger(j.spec.ttlSecondsAfterFinished), `${j.metadata.name}: backoffLimit and ttl`);
      t.equal(pod.restartPolicy, 'Never');
      assertSecure(t, j.metadata.name, pod);
      const parsed = await parseCommandLine(pod.containers[0].args);
      t.equal(parsed.values['config-env'], 'MLFLOW_IRSA_WEBHOOK_CONFIG', `${j.metadata.name}: flags parse with the command's own options`);
    }
    const create = await parseCommandLine(podSpec(jobNamed(objects, 'bootstrap-cert-create')).containers[0].args);
    t.same(create.positionals, ['create']);
    t.match(create.values, { 'webhook-namespace': NS, 'tls-secret': `${FULL}-tls`, service: FULL, days: '3650', 'renew-days': '30' });
    const patch = await parseCommandLine(podSpec(jobNamed(objects, 'bootstrap-cert-patch')).containers[0].args);
    t.same(patch.positionals, ['patch']);
    t.match(patch.values, { 'webhook-namespace': NS, 'tls-secret': `${FULL}-tls`, 'webhook-config': FULL });
    const restartPod = podSpec(jobNamed(objects, 'restart-target'));
    const restart = await parseCommandLine(restartPod.containers[0].args);
    t.same(restart.values, { wait: '180', 'config-env': 'MLFLOW_IRSA_WEBHOOK_CONFIG' }, 'restart-target waits through the API server: no Service address, no CA file');
    t.equal(restartPod.volumes, undefined, 'and mounts nothing');
    for (const name of ['bootstrap-cert-create', 'bootstrap-cert-patch', 'restart-target']) {
      t.equal(podSpec(jobNamed(objects, name)).serviceAccountName, `${FULL}-${name}`, `${name} runs as its own ServiceAccount`);
    }
    for (const name of ['install-trigger', 'uninstall-trigger']) {
      const j = jobNamed(objects, name);
      t.equal(j.metadata.namespace, TARGET_NS, `${name} runs beside the database password Secret`);
      t.equal(podSpec(j).automountServiceAccountToken, false, `${name} has no API token`);
      t.notOk(podSpec(j).serviceAccountName);
      const env = Object.fromEntries(podSpec(j).containers[0].env.slice(1).map((e: Obj) => [e.name, e.value ?? e.valueFrom]));
      t.same(env, {
        PGHOST: 'mlflow-postgresql.domino-platform.svc', PGPORT: '5432', PGDATABASE: 'mlflow', PGUSER: 'mlflow', PGSSLMODE: 'prefer',
        PGPASSWORD: { secretKeyRef: { name: 'mlflow-postgresql', key: 'postgresql-password' } },
      });
    }
    t.equal((await parseCommandLine(podSpec(jobNamed(objects, 'uninstall-trigger')).containers[0].args)).values.uninstall, true);
  });
});

t.test('other renders', async (t) => {
  const [certManager, ownIssuer, noTrigger, noMatch, failClosed, sameNs, noReconcile, renamed, policyApi, policyOff] = await Promise.all([
    render(['certManager.enabled=true']),
    render(['certManager.enabled=true', 'certManager.issuerRef.name=corp-ca', 'certManager.issuerRef.kind=ClusterIssuer']),
    render(['jobs.trigger.enabled=false']),
    render(['matchConditions.enabled=false']),
    render(['failurePolicy=Fail', 'jobs.restart.enabled=false', 'certManager.enabled=true']),
    helmRun(['template', 'mlflow', chart, '--namespace', TARGET_NS, '-f', ciValues, '--set', 'fullnameOverride=mlflow']),
    render(['reconcile.enabled=false']),
    render(['deployment=tracking', 'serviceAccount=tracking-sa', 'reconcile.leaseName=tracking-leader', 'reconcile.leaseDurationSeconds=40']),
    render([], WITH_POLICY_API),
    render(['validatingPolicy.enabled=false'], WITH_POLICY_API),
  ]);

  t.test('cert-manager on: Issuer chain, Certificate for the Service names, CA injection, no bootstrap Jobs', async (t) => {
    validateAll(t, certManager);
    const certs = find(certManager, 'Certificate');
    const serving = one(certManager, 'Certificate', FULL, NS);
    t.same(serving.spec.dnsNames, [FULL, `${FULL}.${NS}`, `${FULL}.${NS}.svc`]);
    t.equal(serving.spec.secretName, `${FULL}-tls`);
    t.same(serving.spec.issuerRef, { name: `${FULL}-ca`, kind: 'Issuer', group: 'cert-manager.io' });
    const ca = certs.find((c) => c.spec.isCA);
    t.equal(ca.spec.issuerRef.name, `${FULL}-selfsigned`);
    t.same(find(certManager, 'Issuer').map((i) => [i.metadata.name, Object.keys(i.spec)[0]]).sort(), [[`${FULL}-ca`, 'ca'], [`${FULL}-selfsigned`, 'selfSigned']]);
    t.equal(one(certManager, 'Issuer', `${FULL}-ca`).spec.ca.secretName, ca.spec.secretName);
    const mwc = one(certManager, 'MutatingWebhookConfiguration', FULL);
    t.equal(mwc.metadata.annotations['cert-manager.io/inject-ca-from'], `${NS}/${FULL}`);
    t.ok(mwc.webhooks.every((w: Obj) => w.clientConfig.caBundle === undefined));
    t.same(find(certManager, 'Job').map((j) => j.metadata.name).filter((n) => n.includes('bootstrap-cert')), []);
    t.notOk(find(installed(certManager), 'ClusterRole').length, 'no cluster-wide rights when cert-manager injects the CA');
    t.same(find(installed(certManager), 'Role').map((r) => r.metadata.name).filter((n) => !n.includes('-reconcile')), [`${FULL}-restart-target`], 'only the restart Job\'s identity');
    t.equal(podSpec(one(certManager, 'Deployment', FULL, NS)).volumes.find((v: Obj) => v.name === 'tls').secret.secretName, serving.spec.secretName);

    validateAll(t, ownIssuer);
    t.same(find(ownIssuer, 'Issuer'), [], 'an existing issuer: no Issuers of our own');
    t.same(find(ownIssuer, 'Certificate').map((c) => c.spec.issuerRef), [{ name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' }]);
  });

  t.test('trigger Jobs off: none rendered, no hook ConfigMap in the target namespace', async (t) => {
    validateAll(t, noTrigger);
    t.same(find(noTrigger, 'Job').map((j) => j.metadata.name).sort(), [`${FULL}-bootstrap-cert-create`, `${FULL}-bootstrap-cert-patch`, `${FULL}-restart-target`]);
    t.same(find(noTrigger, 'ConfigMap').map((c) => c.metadata.namespace), [NS]);
    t.same(find(noTrigger, 'Job').concat(find(noTrigger, 'Pod')).map((o) => o.metadata.namespace).filter((n) => n === TARGET_NS), [], 'nothing of the chart runs in the target namespace');
    const doctor = one(noTrigger, 'Pod', `${FULL}-doctor`);
    t.equal(doctor.metadata.namespace, NS, 'without the trigger checks, the doctor runs in the release namespace, where helm test --logs finds it');
    t.same(doctor.spec.containers[0].env.map((e: Obj) => e.name), ['MLFLOW_IRSA_WEBHOOK_CONFIG'], 'and has no database environment');
  });

  t.test('matchConditions off (clusters before 1.28): none rendered, the namespace scope stays', async (t) => {
    validateAll(t, noMatch);
    for (const w of one(noMatch, 'MutatingWebhookConfiguration', FULL).webhooks) {
      t.equal(w.matchConditions, undefined);
      t.same(w.namespaceSelector.matchExpressions[0].values, [TARGET_NS]);
    }
  });

  t.test('failurePolicy Fail, no restart Job, cert-manager: no hook identity at all', async (t) => {
    validateAll(t, failClosed);
    t.ok(one(failClosed, 'MutatingWebhookConfiguration', FULL).webhooks.every((w: Obj) => w.failurePolicy === 'Fail'));
    const hooksIdentity = [...find(installed(failClosed), 'Role'), ...find(installed(failClosed), 'RoleBinding'), ...find(installed(failClosed), 'ClusterRole'),
      ...find(installed(failClosed), 'ClusterRoleBinding'), ...find(installed(failClosed), 'ServiceAccount')].filter((o) => hook(o));
    t.same(hooksIdentity, []);
  });

  t.test('reconcile off: no API token, no downward-API env, no RBAC for the webhook, no Lease', async (t) => {
    validateAll(t, noReconcile);
    const pod = podSpec(one(noReconcile, 'Deployment', FULL, NS));
    t.equal(pod.automountServiceAccountToken, false, 'the admission path never calls the API');
    t.equal(pod.containers[0].env, undefined);
    t.same([...find(installed(noReconcile), 'Role'), ...find(installed(noReconcile), 'RoleBinding')].map((o) => o.metadata.name).filter((n) => n.includes('-reconcile')), []);
    t.same(one(noReconcile, 'Role', `${FULL}-doctor-webhook`, NS).rules.map((r: Obj) => r.resources[0]), ['services', 'endpointslices', 'services/proxy'], 'the doctor reads no Lease');
    t.same(find(noReconcile, 'Lease'), []);
    t.equal(parseConfigText(one(noReconcile, 'ConfigMap', FULL, NS).data['config.yaml']).reconcile.enabled, false, 'the loop is off in the config file too');
    // ...and the default render has all of it, so these assertions can fail
    t.equal(find(await render(), 'Lease').length, 1);
  });

  t.test('reconcile RBAC and Lease follow the target names and the Lease values', async (t) => {
    validateAll(t, renamed);
    const rules = one(renamed, 'Role', `${FULL}-reconcile`, TARGET_NS).rules;
    t.same(rules.map((r: Obj) => [r.resources, r.resourceNames]), [[['deployments'], ['tracking']], [['serviceaccounts'], ['tracking-sa']]]);
    t.same(one(renamed, 'Role', `${FULL}-reconcile-lease`, NS).rules[0].resourceNames, ['tracking-leader']);
    t.same(one(renamed, 'Lease', 'tracking-leader', NS).spec, { leaseDurationSeconds: 40 });
  });

  t.test('ValidatingAdmissionPolicy: rendered when the cluster serves the API, unless switched off', async (t) => {
    validateAll(t, policyApi);
    const policy = one(policyApi, 'ValidatingAdmissionPolicy', FULL);
    const binding = one(policyApi, 'ValidatingAdmissionPolicyBinding', FULL);
    t.equal(binding.spec.policyName, policy.metadata.name);
    t.same(binding.spec.validationActions, ['Warn', 'Audit'], 'warns and audits, never denies');
    const selector = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [TARGET_NS] }] };
    t.same(binding.spec.matchResources, { namespaceSelector: selector }, 'bound to the target namespace');
    t.same(policy.spec.matchConstraints, {
      resourceRules: [{ apiGroups: ['apps'], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['deployments'], scope: 'Namespaced' }],
      namespaceSelector: selector,
    }, 'apps/v1 deployments only, no subresources, in the target namespace');
    t.equal(policy.spec.failurePolicy, 'Fail', 'evaluation errors surface through Warn/Audit instead of vanishing');
    t.ok(policy.spec.validations.length >= 5);
    for (const v of policy.spec.validations) t.notMatch(v.message, /\n/, 'messages hold no line break (the API refuses them)');
    t.same([...find(policyOff, 'ValidatingAdmissionPolicy'), ...find(policyOff, 'ValidatingAdmissionPolicyBinding')], [], 'validatingPolicy.enabled=false');
    t.equal(find(policyOff, 'Deployment').length, 1, 'the rest still renders');
  });

  t.test('objects named like the mlflow Deployment in its namespace are refused', async (t) => {
    t.not(sameNs.code, 0);
    t.match(sameNs.stderr, /the release's objects are named "mlflow" in namespace "domino-platform", the same as the mlflow Deployment\/ServiceAccount/);
  });
});

t.test('image: the repository given, the tag defaulting to the chart\'s appVersion, or a digest, on every pod', async (t) => {
  const appVersion = parseYaml(readFileSync(join(chart, 'Chart.yaml'), 'utf8')).appVersion;
  const digest = `sha256:${'ab'.repeat(32)}`;
  const [byDefault, tagged, pinned] = await Promise.all([render(), render(['image.tag=0.9.1-rc.1']), render([`image.digest=${digest}`, 'image.tag=ignored'])]);
  const images = (objects: Obj[]) => [...new Set(objects.filter((o) => o.spec?.template).flatMap((o) => podSpec(o).containers.map((c: Obj) => c.image)))];
  t.ok(find(byDefault, 'Job').length >= 4, 'the hook Jobs are counted too');
  t.same(images(byDefault), [`registry.example.com/mlflow-irsa-webhook:${appVersion}`]);
  t.same(images(tagged), ['registry.example.com/mlflow-irsa-webhook:0.9.1-rc.1']);
  t.same(images(pinned), [`registry.example.com/mlflow-irsa-webhook@${digest}`], 'a digest wins over the tag');
});

t.test('metrics port: on the pods, the Service and in the config; a ServiceMonitor where the API is served, or forced', async (t) => {
  const on = ['server.metricsPort=9090', 'metrics.serviceMonitor.enabled=true'];
  const [withApi, withoutApi, forced, portOnly, labelled] = await Promise.all([
    render(on, WITH_SERVICE_MONITOR_API),
    render(on),
    render([...on, 'metrics.serviceMonitor.force=true']),
    render(['server.metricsPort=9090'], WITH_SERVICE_MONITOR_API),
    render([...on, 'metrics.serviceMonitor.labels.release=kps', 'metrics.serviceMonitor.scrapeTimeout=', 'metrics.serviceMonitor.interval=15s'], WITH_SERVICE_MONITOR_API),
  ]);
  validateAll(t, withApi);
  const c = podSpec(one(withApi, 'Deployment', FULL, NS)).containers[0];
  t.same(c.ports, [{ name: 'https', containerPort: 8443, protocol: 'TCP' }, { name: 'metrics', containerPort: 9090, protocol: 'TCP' }]);
  const svc = one(withApi, 'Service', FULL, NS);
  t.same(svc.spec.ports, [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' }, { name: 'metrics', port: 9090, targetPort: 'metrics', protocol: 'TCP' }]);
  t.equal(parseConfigText(one(withApi, 'ConfigMap', FULL, NS).data['config.yaml']).server.metricsPort, 9090, 'the program gets the port');
  const sm = one(withApi, 'ServiceMonitor', FULL, NS);
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) t.equal(svc.metadata.labels[k], v, `the ServiceMonitor selects the Service by ${k}`);
  t.same(sm.spec.namespaceSelector, { matchNames: [NS] });
  t.same(sm.spec.endpoints, [{ port: 'metrics', path: '/metrics', scheme: 'http', interval: '30s', scrapeTimeout: '10s' }], 'the Service port named metrics, plain HTTP');
  t.same(find(withoutApi, 'ServiceMonitor'), [], 'no ServiceMonitor where the cluster lacks the CRD: the install would fail');
  t.equal(find(withoutApi, 'Service')[0].spec.ports.length, 2, 'the port is there all the same');
  validateAll(t, forced);
  t.equal(find(forced, 'ServiceMonitor').length, 1, 'force renders it without the API');
  t.same(find(portOnly, 'ServiceMonitor'), [], 'the port alone renders no ServiceMonitor');
  const custom = one(labelled, 'ServiceMonitor', FULL, NS);
  t.equal(custom.metadata.labels.release, 'kps', 'extra labels for a Prometheus serviceMonitorSelector');
  t.same(custom.spec.endpoints, [{ port: 'metrics', path: '/metrics', scheme: 'http', interval: '15s' }], 'no scrapeTimeout when empty');
});

t.test('examples/values-domino.yaml: lints, and renders valid objects for a Domino install from that file alone', async (t) => {
  const example = join(root, 'examples/values-domino.yaml');
  const lint = await helmRun(['lint', '--strict', chart, '-f', example]);
  t.equal(lint.code, 0, lint.stdout + lint.stderr);
  t.notMatch(lint.stdout, /\[(WARNING|ERROR)\]/);
  // as the docs install it: release mlflow-irsa-webhook in its own namespace, no --set
  const r = await helmRun(['template', 'mlflow-irsa-webhook', chart, '--namespace', 'mlflow-irsa-webhook', '-f', example]);
  t.equal(r.code, 0, r.stderr);
  const objects = parseAllDocuments(r.stdout).map((d) => d.toJS()).filter((o) => o !== null);
  validateAll(t, objects);
  const config = parseConfigText(one(objects, 'ConfigMap', 'mlflow-irsa-webhook', 'mlflow-irsa-webhook').data['config.yaml'], 'values-domino.yaml config');
  t.match(config, {
    roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access', artifactsDestination: 's3://sw-domino-project-based-mlflow', region: 'us-west-2',
    namespace: 'domino-platform', deployment: 'mlflow', container: 'mlflow', serviceAccount: 'mlflow', server: { metricsPort: 9090 },
  });
  const appVersion = parseYaml(readFileSync(join(chart, 'Chart.yaml'), 'utf8')).appVersion;
  const pods = objects.filter((o) => o.spec?.template).map(podSpec);
  t.ok(pods.length >= 5, 'the webhook and the hook Jobs');
  for (const pod of pods) {
    t.equal(pod.containers[0].image, `111122223333.dkr.ecr.us-west-2.amazonaws.com/mlflow-irsa-webhook:${appVersion}`);
    t.same(pod.nodeSelector, { 'dominodatalab.com/node-pool': 'platform' });
  }
  const env = Object.fromEntries(podSpec(one(objects, 'Job', 'mlflow-irsa-webhook-install-trigger')).containers[0].env.map((e: Obj) => [e.name, e.value ?? e.valueFrom]));
  t.match(env, { PGHOST: 'mlflow-postgresql.domino-platform.svc', PGPASSWORD: { secretKeyRef: { name: 'mlflow-postgresql', key: 'postgresql-password' } } });
});

t.test('reachability: NetworkPolicy, hostNetwork and the container port', async (t) => {
  const peers = ['networkPolicy.enabled=true', 'networkPolicy.apiServer[0].ipBlock.cidr=10.0.0.0/16', 'networkPolicy.apiServer[1].ipBlock.cidr=2600:1f14::/56'];
  const [plain, policy, scraped, host, hostPort] = await Promise.all([
    render(),
    render(peers),
    render([...peers, 'networkPolicy.metricsScrapers[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring']),
    render(['hostNetwork=true']),
    render(['hostNetwork=true', 'server.port=10260']),
  ]);
  t.same(find(plain, 'NetworkPolicy'), [], 'no NetworkPolicy unless asked for');
  const d = one(plain, 'Deployment', FULL, NS);
  t.notOk(podSpec(d).hostNetwork, 'pod network by default');
  t.notOk(podSpec(d).dnsPolicy);

  validateAll(t, policy);
  const np = one(policy, 'NetworkPolicy', FULL, NS);
  const webhookPod = one(policy, 'Deployment', FULL, NS).spec.template.metadata.labels;
  t.ok(Object.entries(np.spec.podSelector.matchLabels).every(([k, v]) => webhookPod[k] === v), 'selects the webhook pods');
  const restartPod = jobNamed(policy, 'restart-target').spec.template.metadata.labels;
  t.notOk(Object.entries(np.spec.podSelector.matchLabels).every(([k, v]) => restartPod[k] === v), 'and not the hook Jobs');
  t.same(np.spec.policyTypes, ['Ingress'], 'ingress only: the reconcile loop still reaches the API server');
  const https = [{ port: 'https', protocol: 'TCP' }];
  // no rule admits pods by labels (a tenant's pod can carry any labels in its namespace): the Jobs and helm test reach
  // the webhook through the API server, the kubelet's probes come from the node
  t.same(np.spec.ingress, [{ from: [{ ipBlock: { cidr: '10.0.0.0/16' } }, { ipBlock: { cidr: '2600:1f14::/56' } }], ports: https }], 'the API server peers as given (IPv4 and IPv6), to the webhook\'s port, and nothing else');
  for (const objects of [policy, await render([...peers, 'tests.enabled=false', 'jobs.restart.enabled=false'])]) {
    const rules = one(objects, 'NetworkPolicy', FULL, NS).spec.ingress;
    const podPeers = rules.flatMap((r: Obj) => r.from).filter((peer: Obj) => peer.podSelector || peer.namespaceSelector);
    t.same(podPeers, [], 'no peer chosen by pod or namespace labels');
  }
  const withScrapers = one(scraped, 'NetworkPolicy', FULL, NS);
  t.same(withScrapers.spec.ingress[1].from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], 'metrics scrapers as given');
  t.same(withScrapers.spec.ingress[1].ports, [{ port: 'metrics', protocol: 'TCP' }], 'to the plain metrics port only: a scraper cannot take the HTTPS port\'s connections');
  const metricsOff = one(await render([...peers, 'networkPolicy.metricsScrapers[0].podSelector.matchLabels.app=prometheus', 'server.metricsPort=0']), 'NetworkPolicy', FULL, NS);
  t.same(metricsOff.spec.ingress[1].ports, https, 'and to the HTTPS port, where /metrics is, when the metrics port is off');

  validateAll(t, hostPort);
  const hd = one(hostPort, 'Deployment', FULL, NS);
  t.match(podSpec(hd), { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' });
  t.same(podSpec(hd).containers[0].ports, [{ name: 'https', containerPort: 10260, protocol: 'TCP' }, { name: 'metrics', containerPort: 9090, protocol: 'TCP' }], 'the container ports are server.port and server.metricsPort');
  t.equal(parseConfigText(one(hostPort, 'ConfigMap', FULL, NS).data['config.yaml']).server.port, 10260, 'and the webhook listens there');
  t.same(hd.spec.strategy.rollingUpdate, { maxUnavailable: 1, maxSurge: 0 }, 'no surge pod that could not share a node with an old one');
  t.same(d.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: 1 }, 'surge in the pod network');
  t.match(podSpec(one(host, 'Deployment', FULL, NS)), { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' }, 'hostNetwork with the default port renders');

  const base = ['template', RELEASE, chart, '--namespace', NS, '-f', ciValues];
  const refused: Array<[string[], RegExp]> = [
    [['--set', 'hostNetwork=true', '--set', 'server.port=10250'], /server\.port 10250 is a kubelet or kube-proxy port on every node; with hostNetwork pick a free one, e\.g\. 10260/],
    [['--set', 'hostNetwork=true', '--set', 'server.port=10256'], /server\.port 10256 is a kubelet or kube-proxy port/],
    [['--set', 'hostNetwork=true', '--set', 'server.port=443'], /server\.port 443 is below 1024/],
    // the metrics port binds in the node's network too
    [['--set', 'hostNetwork=true', '--set', 'server.port=10260', '--set', 'server.metricsPort=10250'], /server\.metricsPort 10250 is a kubelet or kube-proxy port on every node/],
    [['--set', 'hostNetwork=true', '--set', 'server.metricsPort=90'], /server\.metricsPort 90 is below 1024/],
    [['--set', 'hostNetwork=true', ...peers.flatMap((p) => ['--set', p])], /networkPolicy\.enabled has no effect on hostNetwork pods/],
    [['--set', 'networkPolicy.enabled=true'], /networkPolicy\.apiServer is empty: the NetworkPolicy would keep the API server from the webhook/],
    [['--set', 'networkPolicy.apiServer=nope'], /networkPolicy\.apiServer: Invalid type/],
  ];
  const results = await Promise.all(refused.map(([args]) => helmRun([...base, ...args])));
  results.forEach((r, i) => {
    t.not(r.code, 0, refused[i][0].join(' '));
    t.match(r.stderr, refused[i][1]);
  });
  t.equal((await helmRun([...base, '--set', 'server.port=10250'])).code, 0, 'a kubelet port number is fine in the pod network');
});

t.test('NOTES.txt renders the verification commands for the values given', async (t) => {
  // helm template does not print NOTES.txt, so a copy of the chart renders it through tpl into a ConfigMap.
  const dir = mkdtempSync(join(tmpdir(), 'chart-notes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(chart, dir, { recursive: true });
  cpSync(join(chart, 'templates/NOTES.txt'), join(dir, 'notes.src'));
  writeFileSync(join(dir, 'templates/notes.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n{{ tpl (.Files.Get "notes.src") . | indent 4 }}\n');
  const notesFor = async (args: string[]) => {
    const r = await helmRun(['template', RELEASE, dir, '--namespace', NS, '-f', ciValues, '--show-only', 'templates/notes.yaml', ...args]);
    t.equal(r.code, 0, r.stderr);
    return parseYaml(r.stdout).data.notes as string;
  };
  const metricsOn = ['--set', 'server.metricsPort=9090', '--set', 'metrics.serviceMonitor.enabled=true'];
  const [notes, withPolicy, quiet, metrics, metricsNoApi, netpol, hostNet, metricsOffNotes] = await Promise.all([
    notesFor(['--set', 'deployment=tracking']),
    notesFor(WITH_POLICY_API),
    notesFor(['--set', 'reconcile.enabled=false', '--set', 'validatingPolicy.enabled=false', '--set', 'tests.enabled=false']),
    notesFor([...metricsOn, ...WITH_SERVICE_MONITOR_API]),
    notesFor(metricsOn),
    notesFor(['--set', 'networkPolicy.enabled=true', '--set', 'networkPolicy.apiServer[0].ipBlock.cidr=10.0.0.0/16']),
    notesFor(['--set', 'hostNetwork=true', '--set', 'server.port=10260']),
    notesFor(['--set', 'server.metricsPort=0']),
  ]);
  const podIdentityNotes = await notesFor(['--set', 'credentials=pod-identity']);
  t.match(podIdentityNotes, `aws eks list-pod-identity-associations --cluster-name <cluster> --namespace ${TARGET_NS} --service-account mlflow`, 'pod-identity: the association to look at');
  t.match(podIdentityNotes, `kubectl -n ${TARGET_NS} exec deploy/mlflow -c mlflow -- env | grep -E`);
  t.notMatch(podIdentityNotes, /carries the token volume/, 'and no IRSA check');
  t.match(notes, /The ServiceAccount carries the role:[\s\S]*carries the token volume, mount and env/, 'irsa: the role annotation and the token');
  t.notMatch(notes, /list-pod-identity-associations/);
  t.notMatch(metricsOffNotes, /Metrics in plain HTTP/, 'nothing about a metrics port that is off');
  t.match(notes, 'Metrics in plain HTTP on port 9090', 'the metrics port is on by default');
  t.match(metrics, `kubectl -n ${NS} port-forward svc/${FULL} 9090:9090`);
  t.match(metrics, `ServiceMonitor ${NS}/${FULL} has prometheus-operator scrape it`);
  t.match(metricsNoApi, 'The ServiceMonitor was NOT installed', 'says when the cluster lacks the CRD');
  t.match(notes, 'mlflow_irsa_webhook_serving_cert_not_after_timestamp_seconds - time() < 21 * 86400', 'the certificate expiry alert');
  t.match(notes, 'increase(mlflow_irsa_webhook_connections_dropped_total{reason!="no-request"}[10m]) > 0');
  t.match(notes, 'connections are being closed at server.maxConnections or server.maxConnectionsPerSource');
  t.notMatch(notes, /NetworkPolicy|hostNetwork/, 'nothing about reachability options left off');
  t.match(netpol, `kubectl -n ${NS} get networkpolicy ${FULL} -o yaml`);
  t.match(hostNet, 'the webhook listens on port 10260 of each node it runs on');
  t.match(notes, 'kubectl -n domino-platform get deploy tracking -o jsonpath=');
  t.match(notes, `kubectl get mutatingwebhookconfiguration ${FULL}`);
  t.match(notes, 'psql -h localhost -U mlflow -d mlflow');
  t.match(notes, `helm test ${RELEASE} --namespace ${NS}\n   kubectl -n domino-platform logs ${FULL}-doctor`, 'the one-step verification first');
  t.notMatch(quiet, 'helm test', 'not with tests.enabled=false');
  t.match(notes, `kubectl -n ${NS} get lease mlflow-irsa-webhook-reconcile -o jsonpath='{.spec.holderIdentity}`, 'where to see the reconcile leader');
  t.match(notes, 'The ValidatingAdmissionPolicy was NOT installed', 'says when the cluster lacks the policy API');
  t.match(withPolicy, `Warning: Validation failed for ValidatingAdmissionPolicy '${FULL}' with binding '${FULL}'`, 'how the warning looks');
  t.match(withPolicy, 'validation.policy.admission.k8s.io/validation_failure', 'where the audit annotation is');
  t.notMatch(withPolicy, 'NOT installed');
  t.match(quiet, 'Self-healing is off');
  t.notMatch(quiet, /ValidatingAdmissionPolicy/, 'nothing about a policy switched off');
});

// ---- hook Jobs that fit the platform: selectors, mesh sidecars, Helm's timeout, the database's CA (issue 10) ----

/** Does a Kubernetes selector (a Service's label map, or a LabelSelector) select these labels? */
function selects(selector: Obj, labels: Record<string, string>): boolean {
  const isLabelSelector = 'matchLabels' in selector || 'matchExpressions' in selector;
  const matchLabels: Record<string, string> = isLabelSelector ? selector.matchLabels ?? {} : selector;
  if (!Object.entries(matchLabels).every(([k, v]) => labels[k] === v)) return false;
  return (isLabelSelector ? selector.matchExpressions ?? [] : []).every((e: Obj) => {
    switch (e.operator) {
      case 'In': return e.key in labels && e.values.includes(labels[e.key]);
      case 'NotIn': return !(e.key in labels) || !e.values.includes(labels[e.key]);
      case 'Exists': return e.key in labels;
      case 'DoesNotExist': return !(e.key in labels);
      default: throw new Error(`unknown operator ${e.operator}`);
    }
  });
}

/** Every pod selector anywhere in the rendered objects (Service, Deployment, PodDisruptionBudget, affinity terms). */
function podSelectors(objects: Obj[]): Array<{ where: string; selector: Obj }> {
  const found: Array<{ where: string; selector: Obj }> = [];
  const walk = (node: unknown, where: string): void => {
    if (Array.isArray(node)) node.forEach((n, i) => walk(n, `${where}[${i}]`));
    else if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if ((k === 'selector' || k === 'labelSelector') && v && typeof v === 'object') found.push({ where: `${where}.${k}`, selector: v });
        else walk(v, `${where}.${k}`);
      }
    }
  };
  for (const o of objects) walk(o, `${o.kind} ${o.metadata.name}`);
  return found;
}

t.test('hook Jobs fit the platform', async (t) => {
  const [defaults, withCaSecret, withCaConfigMap, withAnnotations] = await Promise.all([
    render(),
    render(['database.sslMode=verify-full', 'database.tls.caSecret.name=mlflow-postgresql-ca', 'database.tls.caSecret.key=tls.crt']),
    render(['database.sslMode=verify-full', 'database.tls.caConfigMap.name=mlflow-postgresql-ca']),
    render(['jobs.podAnnotations.cluster-autoscaler\\.kubernetes\\.io/safe-to-evict=true', 'jobs.podLabels.team=platform', 'podLabels.tier=admission']),
  ]);

  t.test('defaults, database.tls.caSecret / caConfigMap and jobs.podAnnotations render valid objects', async (t) => {
    for (const objects of [defaults, withCaSecret, withCaConfigMap, withAnnotations]) validateAll(t, objects);
  });

  t.test('no Job pod matches any pod selector of the chart; the webhook pods match them all', async (t) => {
    for (const objects of [defaults, withAnnotations]) {
      const selectors = podSelectors(objects);
      t.ok(selectors.length >= 4, `found the Service, Deployment, PodDisruptionBudget and anti-affinity selectors (${selectors.map((s) => s.where).join(', ')})`);
      const webhookPod = one(objects, 'Deployment', FULL, NS).spec.template.metadata.labels;
      for (const { where, selector } of selectors) t.ok(selects(selector, webhookPod), `${where} selects the webhook pods`);
      for (const job of find(objects, 'Job')) {
        const labels = job.spec.template.metadata.labels;
        t.equal(labels['app.kubernetes.io/component'], job.metadata.name.slice(FULL.length + 1), `${job.metadata.name}: its own component label`);
        for (const { where, selector } of selectors) t.notOk(selects(selector, labels), `${where} does not select ${job.metadata.name}'s pods`);
      }
    }
    t.notOk(selects({ matchLabels: { a: '1' } }, { a: '2' }), 'the matcher itself tells labels apart');
  });

  t.test('Job pods: Istio injection off by default, jobs.podLabels / jobs.podAnnotations added, the webhook pods untouched by them', async (t) => {
    for (const job of find(defaults, 'Job')) {
      t.equal(job.spec.template.metadata.labels['sidecar.istio.io/inject'], 'false', `${job.metadata.name}: label`);
      t.equal(job.spec.template.metadata.annotations['sidecar.istio.io/inject'], 'false', `${job.metadata.name}: annotation`);
    }
    for (const job of find(withAnnotations, 'Job')) {
      t.match(job.spec.template.metadata.annotations, { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'true', 'sidecar.istio.io/inject': 'false' }, `${job.metadata.name}: annotations merged with the default`);
      t.match(job.spec.template.metadata.labels, { team: 'platform', 'sidecar.istio.io/inject': 'false' });
      t.notOk('tier' in job.spec.template.metadata.labels, 'the webhook\'s podLabels stay on the webhook');
    }
    const webhookPod = one(withAnnotations, 'Deployment', FULL, NS).spec.template.metadata;
    t.equal(webhookPod.labels.tier, 'admission');
    t.notOk('team' in webhookPod.labels || 'sidecar.istio.io/inject' in webhookPod.labels, 'jobs.podLabels stay on the Jobs');
    const optedIn = await render(['jobs.podLabels.sidecar\\.istio\\.io/inject=null', 'jobs.podAnnotations=null']);
    t.notOk('sidecar.istio.io/inject' in jobNamed(optedIn, 'install-trigger').spec.template.metadata.labels, 'null removes the default');
    t.notOk(jobNamed(optedIn, 'install-trigger').spec.template.metadata.annotations);
  });

  t.test('each Job gives up by itself before activeDeadlineSeconds, which ends before Helm\'s default --timeout of 5 minutes', async (t) => {
    for (const job of find(defaults, 'Job')) {
      t.ok(job.spec.activeDeadlineSeconds < 300, `${job.metadata.name}: activeDeadlineSeconds ${job.spec.activeDeadlineSeconds} < 300`);
      const wait = (await parseCommandLine(podSpec(job).containers[0].args)).values.wait;
      if (wait !== undefined) t.ok(Number(wait) < job.spec.activeDeadlineSeconds, `${job.metadata.name}: --wait ${wait} < activeDeadlineSeconds`);
    }
    const refused = await Promise.all([
      helmRun(['template', RELEASE, chart, '-n', NS, '-f', ciValues, '--set', 'jobs.trigger.waitSeconds=270']),
      helmRun(['template', RELEASE, chart, '-n', NS, '-f', ciValues, '--set', 'jobs.activeDeadlineSeconds=120']),
    ]);
    t.match(refused[0].stderr, /jobs\.trigger\.waitSeconds \(270\) must be below jobs\.activeDeadlineSeconds \(270\), so the Job gives up with its own message/);
    t.match(refused[1].stderr, /jobs\.trigger\.waitSeconds \(180\) must be below jobs\.activeDeadlineSeconds \(120\)/);
    const raised = await render(['jobs.activeDeadlineSeconds=840', 'jobs.trigger.waitSeconds=720']);
    t.equal(jobNamed(raised, 'install-trigger').spec.activeDeadlineSeconds, 840, 'raised together, as the docs say');
  });

  t.test('the database\'s CA: mounted read-only into the pods that connect to the database (trigger Jobs, helm test doctor) only, named by PGSSLROOTCERT', async (t) => {
    for (const [objects, source] of [
      [withCaSecret, { secret: { secretName: 'mlflow-postgresql-ca', items: [{ key: 'tls.crt', path: 'ca.crt' }] } }],
      [withCaConfigMap, { configMap: { name: 'mlflow-postgresql-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }],
    ] as const) {
      for (const name of ['install-trigger', 'uninstall-trigger', 'doctor']) {
        const pod = name === 'doctor' ? one(objects, 'Pod', `${FULL}-doctor`).spec : podSpec(jobNamed(objects, name));
        const env = Object.fromEntries(pod.containers[0].env.map((e: Obj) => [e.name, e.value]));
        t.match(env, { PGSSLMODE: 'verify-full', PGSSLROOTCERT: '/etc/mlflow-irsa-webhook-db-ca/ca.crt' }, name);
        t.same(pod.containers[0].volumeMounts.find((m: Obj) => m.name === 'db-ca'), { name: 'db-ca', mountPath: '/etc/mlflow-irsa-webhook-db-ca', readOnly: true });
        t.same(pod.volumes.find((v: Obj) => v.name === 'db-ca'), { name: 'db-ca', ...source });
      }
      for (const name of ['bootstrap-cert-create', 'bootstrap-cert-patch', 'restart-target']) {
        t.notOk((podSpec(jobNamed(objects, name)).volumes ?? []).some((v: Obj) => v.name === 'db-ca'), `${name} does not get it`);
      }
    }
    for (const name of ['install-trigger', 'uninstall-trigger']) {
      t.notOk(podSpec(jobNamed(defaults, name)).containers[0].env.some((e: Obj) => e.name === 'PGSSLROOTCERT'), `${name}: no PGSSLROOTCERT by default`);
    }
    const doctorDefault = one(defaults, 'Pod', `${FULL}-doctor`).spec;
    t.notOk(doctorDefault.containers[0].env.some((e: Obj) => e.name === 'PGSSLROOTCERT') || (doctorDefault.volumes ?? []).some((v: Obj) => v.name === 'db-ca'), 'doctor: no CA by default');
    const refused = await Promise.all([
      helmRun(['template', RELEASE, chart, '-n', NS, '-f', ciValues, '--set', 'database.tls.caSecret.name=a', '--set', 'database.tls.caConfigMap.name=b']),
      helmRun(['template', RELEASE, chart, '-n', NS, '-f', ciValues, '--set', 'database.tls.caSecret.name=a', '--set', 'database.sslMode=disable']),
      helmRun(['template', RELEASE, chart, '-n', NS, '-f', ciValues, '--set', 'database.tls.caSecret.name=Not_A_Name']),
      helmRun(['template', RELEASE, chart, '-n', NS, '-f', ciValues, '--set', 'database.sslMode=verify']),
    ]);
    t.match(refused[0].stderr, /database\.tls\.caSecret\.name \("a"\) and database\.tls\.caConfigMap\.name \("b"\) are both set/);
    t.match(refused[1].stderr, /database\.tls gives a CA certificate but database\.sslMode is disable, which never uses it/);
    t.match(refused[2].stderr, /database\.tls\.caSecret\.name: Does not match pattern/);
    t.match(refused[3].stderr, /database\.sslMode: database\.sslMode must be one of the following/);
  });
});
