// The chart's ValidatingAdmissionPolicy, rendered by the real helm and its CEL evaluated against Deployments: what the
// webhook's own mutator produces passes, an unmutated mlflow fails, and each missing part fails exactly its validation.
//
// CEL evaluator: @bufbuild/cel (0.6.1). It is tested against the CEL spec's conformance suite, is pure ECMAScript with
// no native parts, and runs on Node 20. (@marcbachmann/cel-js 8 also installs, but only on Node >= 20.19.) It has only
// the standard CEL library, none of Kubernetes' extensions, which is the point: the policy keeps to core CEL, so what
// passes here means the same on the API server. JSON numbers would be CEL doubles, so the policy compares no numbers.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCelError, run } from '@bufbuild/cel';
import { stringify } from 'yaml';
import { parseConfigText, type Config } from '../src/config/config.js';
import { deploymentPlan, mutateDeployment } from '../src/mutators/deployment.js';
import { admissionFixtures, exampleConfig, fixture, root } from './helpers/fixtures.js';
import { find, FULL, NS, one, render, TARGET_NS, validateAll, WITH_POLICY_API, type Obj } from './helpers/chart.js';

interface Validation { expression: string; message: string }

/** A CEL expression's value for this object; an evaluation error fails the test with the expression named. */
function evaluate(expression: string, object: Obj): boolean {
  const result = run(expression, { object });
  if (isCelError(result)) throw new Error(`CEL error in ${expression}: ${result.message}`);
  if (typeof result !== 'boolean') throw new Error(`CEL expression is not a bool (${typeof result}): ${expression}`);
  return result;
}

/** The messages of the validations this object fails, in the policy's order. */
const failing = (policy: Obj, object: Obj): string[] =>
  (policy.spec.validations as Validation[]).filter((v) => !evaluate(v.expression, object)).map((v) => v.message);

const matches = (policy: Obj, object: Obj): boolean => policy.spec.matchConditions.every((c: Obj) => evaluate(c.expression, object));

const unmutated = () => structuredClone(fixture('deployment-create').review.request.object);
const container = (d: Obj, name: string) => d.spec.template.spec.containers.find((c: Obj) => c.name === name);

/** Renders the chart with the policy API present and these values files; the policy and the config file it renders. */
async function policyFor(t: any, valuesFiles: string[]): Promise<{ policy: Obj; config: Config; objects: Obj[] }> {
  const objects = await render([], [...valuesFiles.flatMap((f) => ['-f', f]), ...WITH_POLICY_API]);
  const policy = one(objects, 'ValidatingAdmissionPolicy', FULL);
  const config = parseConfigText(one(objects, 'ConfigMap', FULL, NS).data['config.yaml'], 'ConfigMap config.yaml');
  validateAll(t, find(objects, 'ValidatingAdmissionPolicy').concat(find(objects, 'ValidatingAdmissionPolicyBinding')));
  return { policy, config, objects };
}

/** One missing or wrong part of a mutated Deployment, and the words of the one message that must name it. */
interface Part { part: string; names: string; edit: (d: Obj) => void }

function parts(config: Config): Part[] {
  const c = (d: Obj) => container(d, config.container);
  const env = (d: Obj, name: string) => c(d).env.find((e: Obj) => e.name === name);
  const dropEnv = (name: string) => (d: Obj) => { c(d).env = c(d).env.filter((e: Obj) => e.name !== name); };
  const token = (d: Obj) => d.spec.template.spec.volumes.find((v: Obj) => v.name === config.token.volumeName).projected.sources[0].serviceAccountToken;
  const mount = (d: Obj) => c(d).volumeMounts.find((m: Obj) => m.name === config.token.volumeName);
  return [
    { part: 'token volume', names: `lacks volume "${config.token.volumeName}"`, edit: (d) => { d.spec.template.spec.volumes = d.spec.template.spec.volumes.filter((v: Obj) => v.name !== config.token.volumeName); } },
    { part: 'token audience', names: `lacks volume "${config.token.volumeName}"`, edit: (d) => { token(d).audience = 'sts.example.com'; } },
    { part: 'token without audience', names: `lacks volume "${config.token.volumeName}"`, edit: (d) => { delete token(d).audience; } },
    { part: 'mount', names: 'lacks the volumeMount', edit: (d) => { c(d).volumeMounts = c(d).volumeMounts.filter((m: Obj) => m.name !== config.token.volumeName); } },
    { part: 'mount path', names: 'lacks the volumeMount', edit: (d) => { mount(d).mountPath = '/var/run/secrets/other'; } },
    { part: 'AWS_ROLE_ARN', names: 'lacks env AWS_ROLE_ARN=', edit: dropEnv('AWS_ROLE_ARN') },
    { part: 'AWS_ROLE_ARN value', names: 'lacks env AWS_ROLE_ARN=', edit: (d) => { env(d, 'AWS_ROLE_ARN').value = 'arn:aws:iam::111122223333:role/other'; } },
    { part: 'AWS_ROLE_ARN from a Secret', names: 'lacks env AWS_ROLE_ARN=', edit: (d) => { env(d, 'AWS_ROLE_ARN').valueFrom = { secretKeyRef: { name: 's', key: 'k' } }; delete env(d, 'AWS_ROLE_ARN').value; } },
    { part: 'AWS_WEB_IDENTITY_TOKEN_FILE', names: 'lacks env AWS_WEB_IDENTITY_TOKEN_FILE=', edit: dropEnv('AWS_WEB_IDENTITY_TOKEN_FILE') },
    { part: 'MLFLOW_ARTIFACTS_DESTINATION', names: 'lacks env MLFLOW_ARTIFACTS_DESTINATION=', edit: dropEnv('MLFLOW_ARTIFACTS_DESTINATION') },
    // the config loader strips the trailing slash, and so does the policy: the slashed form is not what the webhook writes
    { part: 'MLFLOW_ARTIFACTS_DESTINATION with a slash', names: 'lacks env MLFLOW_ARTIFACTS_DESTINATION=', edit: (d) => { env(d, 'MLFLOW_ARTIFACTS_DESTINATION').value = `${config.artifactsDestination}/`; } },
    ...config.removeEnv.map((name) => ({ part: `${name} present`, names: `still has env ${name},`, edit: (d: Obj) => { c(d).env.push({ name, value: '/etc/aws/config' }); } })),
  ];
}

/** The mutated Deployment passes; each part taken away fails exactly the one validation that names it. */
function specify(t: any, policy: Obj, config: Config, mutated: Obj): void {
  t.same(failing(policy, mutated), [], 'the mutated Deployment passes every validation');
  for (const p of parts(config)) {
    const copy = structuredClone(mutated);
    p.edit(copy);
    const expected = (policy.spec.validations as Validation[]).filter((v) => v.message.includes(p.names)).map((v) => v.message);
    t.equal(expected.length, 1, `${p.part}: exactly one validation message says "${p.names}"`);
    t.same(failing(policy, copy), expected, `${p.part}: fails with "${expected[0]}"`);
  }
}

t.test('chart defaults with examples/config.yaml as the values: the recorded fixtures', async (t) => {
  const { policy, config } = await policyFor(t, [exampleConfig]);

  t.test('the mutated fixture passes; each part missing fails exactly its validation, with its message', async (t) => {
    const patched = fixture('deployment-create').patched;
    specify(t, policy, config, patched);
    t.match(policy.spec.validations.map((v: Validation) => v.message), [
      /Deployment domino-platform\/mlflow lacks volume "aws-iam-token" \(projected serviceAccountToken, audience "sts.amazonaws.com"/,
      /container "mlflow" lacks the volumeMount of "aws-iam-token" at "\/var\/run\/secrets\/eks.amazonaws.com\/serviceaccount"/,
      /container "mlflow" lacks env AWS_ROLE_ARN="arn:aws:iam::111122223333:role\/sw-mlflow-full-access"/,
      /container "mlflow" lacks env AWS_WEB_IDENTITY_TOKEN_FILE="\/var\/run\/secrets\/eks.amazonaws.com\/serviceaccount\/token"/,
      /container "mlflow" lacks env MLFLOW_ARTIFACTS_DESTINATION="s3:\/\/sw-domino-project-based-mlflow"/,
      ...config.removeEnv.map((name) => new RegExp(`container "mlflow" still has env ${name}, which the webhook removes`)),
    ]);
    t.ok(config.removeEnv.includes('AWS_CONFIG_FILE'), 'the procedure\'s AWS_CONFIG_FILE among them');
  });

  t.test('the unmutated Deployment fails every validation but those for removeEnv names it never had', async (t) => {
    const original = unmutated();
    t.ok(matches(policy, original), 'it is the target');
    const carried = new Set(container(original, 'mlflow').env.map((e: Obj) => e.name));
    const expected = policy.spec.validations.map((v: Validation) => v.message).filter((m: string) => {
      const removed = /still has env (\S+),/.exec(m)?.[1];
      return removed === undefined || carried.has(removed);
    });
    t.ok(expected.some((m: string) => m.includes('still has env AWS_CONFIG_FILE,')), 'Domino\'s AWS_CONFIG_FILE is among them');
    t.same(failing(policy, original), expected);
  });

  t.test('without the target container, every container check fails and the pod-level ones still hold', async (t) => {
    const copy = structuredClone(fixture('deployment-create').patched);
    container(copy, 'mlflow').name = 'tracking';
    const messages = failing(policy, copy);
    t.same(messages, policy.spec.validations.map((v: Validation) => v.message).filter((m: string) => /lacks the volumeMount|lacks env/.test(m)));
    t.equal(messages.length, 4);
  });

  t.test('every recorded admission of a target Deployment: the webhook\'s answer passes, unless it could not mutate', async (t) => {
    const deployments = admissionFixtures().filter((f) => f.review.request?.resource?.resource === 'deployments' && !f.review.request.subResource && f.patched);
    t.ok(deployments.length >= 5, 'the fixtures hold target Deployments');
    for (const f of deployments) {
      const target = f.review.request.namespace === TARGET_NS && f.patched.metadata.name === 'mlflow';
      t.equal(matches(policy, f.patched), f.patched.metadata.name === 'mlflow', `${f.name}: matchConditions select by name`);
      if (!target) continue;
      const notMutated = f.warnings.some((w) => /not mutated/.test(w));
      if (notMutated) t.not(failing(policy, f.patched).length, 0, `${f.name}: left unmutated, so the policy warns`);
      else t.same(failing(policy, f.patched), [], `${f.name}: the webhook's answer passes`);
    }
    t.notOk(matches(policy, fixture('nontarget-other-name').review.request.object), 'another Deployment of the namespace is not checked');
  });

  t.test('the expressions keep to core CEL: only has(), exists(), all() are called', async (t) => {
    const expressions = [...policy.spec.validations.map((v: Validation) => v.expression), ...policy.spec.matchConditions.map((c: Obj) => c.expression)];
    for (const e of expressions) {
      const code = e.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
      const calls = [...code.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*\(/g)].map((m) => m[1]);
      t.same(calls.filter((f) => !['has', 'exists', 'all'].includes(f)), [], `only core macros in ${e.slice(0, 60)}...`);
      t.notMatch(code, /[<>]|\d/, 'no numeric comparison (JSON numbers are CEL doubles)');
    }
  });
});

t.test('other values: every value is an escaped CEL string, and the policy accepts what the mutator makes of them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'policy-values-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'values.yaml');
  // quotes and backslashes in the role's path, a tab and a non-ASCII letter in the audience, a trailing slash on the
  // mount path and the destination, one more env to remove: all legal in the config schema
  writeFileSync(file, stringify({
    roleArn: 'arn:aws:iam::111122223333:role/team"a\'b\\c/sw-mlflow',
    artifactsDestination: 's3://sw-domino-project-based-mlflow/team/',
    token: { audience: 'sts "é"\t\\n', volumeName: 'irsa-token', mountPath: '/var/run/irsa "x"/' },
    removeEnv: ['AWS_CONFIG_FILE', 'AWS_PROFILE'],
  }));
  const { policy, config } = await policyFor(t, [exampleConfig, file]);
  t.equal(config.roleArn, 'arn:aws:iam::111122223333:role/team"a\'b\\c/sw-mlflow', 'the config file carries the value unchanged');
  t.equal(config.artifactsDestination, 's3://sw-domino-project-based-mlflow/team', 'the loader strips the slash');

  const { object: mutated, warnings } = mutateDeployment(unmutated(), deploymentPlan(config));
  t.match(warnings, [/removed env AWS_CONFIG_FILE from container "mlflow"/], 'the one removal is named');
  t.equal(warnings.length, 1);
  specify(t, policy, config, mutated);
  t.same(failing(policy, unmutated()), policy.spec.validations.map((v: Validation) => v.message).filter((m: string) => !m.includes('AWS_PROFILE')),
    'the unmutated Deployment fails every validation but the one for AWS_PROFILE, which it never had');

  // The literal is the exact value, not something that merely looks like it after unescaping once more. (The mutated
  // copy shares the plan's frozen entries, so the edit is made on a copy of it.)
  const edited = structuredClone(mutated);
  const env = container(edited, 'mlflow').env.find((e: Obj) => e.name === 'AWS_ROLE_ARN');
  env.value = env.value.replace('\\', '\\\\');
  t.same(failing(policy, edited).length, 1, 'a doubled backslash is another role');
  t.notMatch(policy.spec.validations.map((v: Validation) => v.message).join(''), /\n/, 'no line break in any message');
});

t.test('credentials pod-identity: the webhook\'s answers pass; IRSA left in the container fails, each part with its message', async (t) => {
  const { policy, config } = await policyFor(t, [exampleConfig, join(root, 'test/fixtures/admission/pod-identity/config.yaml')]);
  t.equal(config.credentials, 'pod-identity');
  const messages = policy.spec.validations.map((v: Validation) => v.message);
  t.notOk(messages.some((m: string) => /lacks volume|lacks the volumeMount|lacks env AWS_/.test(m)), 'no IRSA part is required');
  const answers = admissionFixtures('pod-identity').filter((f) => f.review.request?.resource?.resource === 'deployments' && f.patched);
  t.ok(answers.length >= 4, 'the pod-identity fixtures hold target Deployments');
  for (const f of answers) t.same(failing(policy, f.patched), [], `${f.name}: the webhook's answer passes`);

  // what IRSA mode left, before the webhook's pod-identity answer: exactly the IRSA parts fail
  const irsa = fixture('deployment-update-irsa-mutated', 'pod-identity').review.request.object;
  t.same(failing(policy, irsa), messages.filter((m: string) => /still mounts IRSA's token|still has env AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE),/.test(m)), 'the IRSA-mutated Deployment fails for its token mount and web identity');

  const mutated = fixture('deployment-create', 'pod-identity').patched;
  const c = (d: Obj) => container(d, config.container);
  const cases: Array<[string, string, (d: Obj) => void]> = [
    ['destination missing', 'lacks env MLFLOW_ARTIFACTS_DESTINATION=', (d) => { c(d).env = c(d).env.filter((e: Obj) => e.name !== 'MLFLOW_ARTIFACTS_DESTINATION'); }],
    ['AWS_ROLE_ARN back', 'still has env AWS_ROLE_ARN,', (d) => { c(d).env.push({ name: 'AWS_ROLE_ARN', value: config.roleArn }); }],
    ['AWS_WEB_IDENTITY_TOKEN_FILE back', 'still has env AWS_WEB_IDENTITY_TOKEN_FILE,', (d) => { c(d).env.push({ name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: `${config.token.mountPath}/token` }); }],
    ['the manual procedure\'s token mount', 'still mounts IRSA\'s token', (d) => { c(d).volumeMounts.push({ name: 'aws-user-token', mountPath: `${config.token.mountPath}/` }); }],
    ['our token volume mounted elsewhere', 'still mounts IRSA\'s token', (d) => { c(d).volumeMounts.push({ name: config.token.volumeName, mountPath: '/tmp/token' }); }],
    ...config.removeEnv.map((name): [string, string, (d: Obj) => void] => [`${name} present`, `still has env ${name},`, (d) => { c(d).env.push({ name, value: 'x' }); }]),
  ];
  for (const [part, names, edit] of cases) {
    const copy = structuredClone(mutated);
    edit(copy);
    const expected = messages.filter((m: string) => m.includes(names));
    t.equal(expected.length, 1, `${part}: exactly one validation message says "${names}"`);
    t.same(failing(policy, copy), expected, `${part}: fails with "${expected[0]}"`);
  }
  // a sidecar's own mount of the token volume is no concern of the policy (the webhook keeps that volume)
  t.same(failing(policy, fixture('deployment-update-sidecar-mounts-token', 'pod-identity').patched), []);
});
