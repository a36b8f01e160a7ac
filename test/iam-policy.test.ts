// Specification of `iam-policy`: documents against hand-written expectations (test/fixtures/iam), judged by an IAM
// policy evaluator (test/helpers/iam-eval.ts), the CLI and its aws script, and --values against the real helm.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { loadConfig, parseConfig, parseConfigText, type Config } from '../src/config/config.js';
import { UsageError } from '../src/command.js';
import { loadChartValues, renderChartConfig } from '../src/config/chart-values.js';
import { ACTION_CALLS, iamPlan, normaliseOidcProvider, options as iamOptions, parseRoleArn, renderJson, splitS3Uri, type IamPlan, type PolicyDocument } from '../src/iam-policy.js';
import { root } from './helpers/fixtures.js';
import { chart, helmRun } from './helpers/chart.js';
import { allowAll, identityPolicyErrors, judgePermissions, judgeTrust, permissionCases, podIdentityTrustCases, sessionArn, subjectOf, trustCases, type IamCase, type Subject, type Verdict } from './helpers/iam-eval.js';

const cli = join(root, 'dist/cli.js');
const dir = join(root, 'test/fixtures/iam');
const PROVIDER = 'oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE';

interface GoldenCase {
  name: string;
  about: string;
  /** a path relative to the repository, or the config itself */
  config: string | object;
  args: string[];
  expected: any;
}

const cases: GoldenCase[] = readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
  .map((f) => ({ name: f.slice(0, -'.json'.length), ...JSON.parse(readFileSync(join(dir, f), 'utf8')) }));

const tmp = mkdtempSync(join(tmpdir(), 'iam-policy-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

// a stand-in `aws` on PATH (plain sh, so it costs no node start-up) that records, per call, its arguments one a line
// and copies the documents its file:// arguments point at
const bin = join(tmp, 'bin');
mkdirSync(bin);
writeFileSync(join(bin, 'aws'), [
  '#!/bin/sh',
  'n=$(ls "$AWS_RECORD" | wc -l); call="$AWS_RECORD/$n"; mkdir "$call"',
  'printf \'%s\\n\' "$@" > "$call/args"',
  'for a in "$@"; do case "$a" in file://*) cp "${a#file://}" "$call/";; esac; done',
  // as AWS answers: get-role fails for a role that does not exist; the lists print what AWS_INLINE/AWS_ATTACHED hold;
  // the association list prints AWS_ASSOCIATIONS' ids (text output of an empty list: nothing), describe its role and
  // whether its session tags are off
  'case "$2" in get-role) [ -n "${AWS_ROLE_EXISTS:-}" ] || exit 254; printf \'%s\\n\' "${AWS_TRUST:-}";; list-role-policies) printf \'%s\\n\' "${AWS_INLINE:-}";; list-attached-role-policies) printf \'%s\\n\' "${AWS_ATTACHED:-}";;',
  '  list-pod-identity-associations) printf \'%s\\n\' "${AWS_ASSOCIATIONS:-}";; describe-pod-identity-association) printf \'%s\\t%s\\n\' "$AWS_ASSOCIATION_ROLE" "${AWS_ASSOCIATION_TAGS_OFF:-False}";; esac',
  '',
].join('\n'));
chmodSync(join(bin, 'aws'), 0o755);

function configFile(c: GoldenCase): string {
  if (typeof c.config === 'string') return join(root, c.config);
  const file = join(tmp, `${c.name}.config.json`);
  writeFileSync(file, JSON.stringify(c.config));
  return file;
}

const configOf = (c: GoldenCase): Config => (typeof c.config === 'string' ? loadConfig(join(root, c.config)) : parseConfig(c.config));
const argOf = (c: GoldenCase, flag: string) => { const i = c.args.indexOf(flag); return i < 0 ? undefined : c.args[i + 1]; };
const planOf = (c: GoldenCase): IamPlan => iamPlan(configOf(c), argOf(c, '--oidc-provider'), {
  prefix: argOf(c, '--prefix'), kmsKeyArn: argOf(c, '--kms-key-arn'), credentials: argOf(c, '--credentials') as IamPlan['credentials'] | undefined, clusterName: argOf(c, '--cluster-name'),
});

function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Grammar every generated permissions policy keeps: what IAM's put-role-policy checks, and no wildcard actions. */
function checkGrammar(t: Test, doc: PolicyDocument) {
  t.same(identityPolicyErrors(doc), [], 'a valid identity policy');
  for (const st of doc.Statement) {
    t.match(st.Sid ?? '', /^[A-Za-z0-9]*$/, 'Sid is alphanumeric, as the grammar requires');
    const actions = ([] as string[]).concat(st.Action);
    t.notOk(actions.some((a) => a.includes('*')), 'no wildcard action');
    t.same(actions.filter((a) => !(a in ACTION_CALLS)), [], 'every action is one whose calls ACTION_CALLS (and the docs) name');
  }
}

t.test('documents equal the hand-written expectations', async (t) => {
  t.ok(cases.length >= 6, `cases found: ${cases.length}`);
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const plan = planOf(c);
      t.same(JSON.parse(renderJson(plan)), c.expected, c.about);
      checkGrammar(t, plan.permissionsPolicy);
      t.equal(plan.trustPolicy.Statement.length, (plan.credentials === 'pod-identity' ? 1 : 0) + (plan.oidcProvider ? 1 : 0), 'a statement for each mode the plan trusts');
      for (const st of plan.trustPolicy.Statement) {
        const cond = st.Condition!;
        t.same(Object.keys(cond), ['StringEquals'], 'exact matching only (no StringLike wildcard on sub or a tag)');
        const pinned = 'Federated' in st.Principal! ? [`${plan.oidcProvider}:aud`, `${plan.oidcProvider}:sub`]
          : ['aws:RequestTag/kubernetes-namespace', 'aws:RequestTag/kubernetes-service-account', 'aws:SourceAccount'];
        t.same(Object.keys(cond.StringEquals).sort(), pinned.sort(), `pinned: ${pinned.join(', ')}`);
      }
    });
  }
});

// Values files for the --values tests: the fixtures alone and layered, and each examples/values-*.yaml.
const valuesDir = join(root, 'test/fixtures/iam/values');
const exampleValues = readdirSync(join(root, 'examples')).filter((f) => /^values-.*\.ya?ml$/.test(f)).sort().map((f) => [join(root, 'examples', f)]);
const valuesSets: string[][] = [[join(valuesDir, 'operator.yaml')], [join(valuesDir, 'operator.yaml'), join(valuesDir, 'overlay.yaml')], ...exampleValues];

/** Every case of one subject under its policies: the verdicts, for the caller to compare with the expectations. */
async function judgeAll(s: Subject, trust: object, permissions: object, cases: IamCase[]): Promise<Verdict[]> {
  return Promise.all(cases.map((c) => (c.request.action.startsWith('sts:') ? judgeTrust(s, trust, c.request) : judgePermissions(s, permissions, c.request))));
}

const casesOf = (s: Subject) => [...trustCases(s), ...podIdentityTrustCases(s), ...permissionCases(s)];

t.test('judged by an IAM policy evaluator: every call MLflow and boto3 make is allowed, every neighbour denied', async (t) => {
  const subjects: Array<[string, IamPlan, Config]> = cases.map((c) => [c.name, planOf(c), configOf(c)]);
  for (const files of valuesSets) {
    const config = loadChartValues(files);
    const name = `--values ${files.map((f) => f.slice(root.length)).join(' ')}`;
    subjects.push([name, iamPlan(config, 'oidc.eks.eu-central-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF'), config]);
    subjects.push([`${name} --credentials pod-identity`, iamPlan(config, undefined, { credentials: 'pod-identity' }), config]);
  }
  const counts = { allow: 0, deny: 0 };
  for (const [name, plan, config] of subjects) {
    const s = subjectOf(plan, config);
    const all = casesOf(s);
    const [verdicts, control] = await Promise.all([judgeAll(s, plan.trustPolicy, plan.permissionsPolicy, all), judgeAll(s, allowAll.trust, allowAll.permissions, all)]);
    t.test(name, async (t) => {
      all.forEach((c, i) => {
        t.equal(verdicts[i], c.expect, `${c.expect}: ${c.request.what} (${c.request.action} ${c.request.resource})`);
        t.equal(control[i], 'allow', `${c.request.id}: allowed under allow-all policies, so a deny above comes from the policy judged`);
        counts[c.expect] += 1;
      });
    });
  }
  t.ok(counts.allow >= 120 && counts.deny >= 600, `evaluated ${counts.allow} allowed and ${counts.deny} denied cases over ${subjects.length} configurations`);
  t.comment(`evaluated ${counts.allow} allowed and ${counts.deny} denied cases over ${subjects.length} configurations`);
});

t.test('the procedure\'s own policies, judged the same way, fail three ways', async (t) => {
  const procedure = JSON.parse(readFileSync(join(root, 'test/fixtures/iam/procedure/policies.json'), 'utf8'));
  const config = loadConfig(join(root, 'examples/config.yaml'));
  const s = subjectOf(iamPlan(config, PROVIDER), config);
  const all = casesOf(s);
  const verdicts = await judgeAll(s, procedure.trustPolicy, procedure.permissionsPolicy, all);
  const verdict = (id: string) => verdicts[all.findIndex((c) => c.request.id === id)];
  // 1. any ServiceAccount of the cluster may assume the role: the trust policy checks only aud
  for (const id of ['trust.other-service-account', 'trust.other-namespace', 'trust.name-extension']) t.equal(verdict(id), 'allow', `${id}: allowed by the procedure`);
  // 2. object reads and writes are denied: s3:* on the bucket ARN matches no object
  for (const id of ['s3.get', 's3.put', 's3.multipart-create-upload-complete', 's3.multipart-abort', 's3.delete']) t.equal(verdict(id), 'deny', `${id}: denied by the procedure`);
  // 3. bucket management is allowed
  for (const id of ['s3.DeleteBucket', 's3.PutBucketPolicy', 's3.PutBucketAcl']) t.equal(verdict(id), 'allow', `${id}: allowed by the procedure`);
  // what it does get right
  for (const id of ['trust.mlflow', 's3.list-artifacts']) t.equal(verdict(id), 'allow', `${id}: allowed by the procedure too`);
  for (const id of ['trust.other-provider', 'trust.other-audience']) t.equal(verdict(id), 'deny', `${id}: denied by the procedure too`);
});

t.test('ListBucketMultipartUploads has no s3:prefix to confine it, so a prefixed policy leaves it out', async (t) => {
  const config = loadConfig(join(root, 'examples/config.yaml'));
  const plan = iamPlan(config, PROVIDER, { prefix: 'mlflow' });
  const s = subjectOf(plan, config);
  const request = { id: 'mpu', what: 'ListMultipartUploads with Prefix mlflow/', action: 's3:ListBucketMultipartUploads', resource: `arn:aws:s3:::${plan.bucket}`, principal: sessionArn(s) };
  // the evaluator's service data (AWS's service authorization reference) defines no s3:prefix for the action: the
  // condition the issue sketched would be a statement that never matches
  await t.rejects(judgePermissions(s, plan.permissionsPolicy, { ...request, context: { 's3:prefix': 'mlflow/' } }), /ignores context keys s3:prefix/);
  const withCondition = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:ListBucketMultipartUploads', Resource: request.resource, Condition: { StringLike: { 's3:prefix': 'mlflow/*' } } }] };
  t.equal(await judgePermissions(s, withCondition, request), 'deny', 'a prefix condition on it denies every request');
  t.notOk(JSON.stringify(plan.permissionsPolicy).includes('ListBucketMultipartUploads'), 'so the prefixed policy does not grant it');
  t.ok(JSON.stringify(iamPlan(config, PROVIDER).permissionsPolicy).includes('ListBucketMultipartUploads'), 'the whole-bucket policy does');
});

t.test('the CLI prints the same JSON, and the aws-cli script creates exactly these documents', async (t) => {

  const outputs = await Promise.all(cases.map((c) => Promise.all([
    runCli(['iam-policy', '--config', configFile(c), ...c.args]),
    runCli(['iam-policy', '--config', configFile(c), ...c.args, '--output', 'aws-cli']),
  ])));
  for (const [n, c] of cases.entries()) {
    const [json, script] = outputs[n];
    t.equal(json.code, 0, `${c.name}: exit 0 (${json.stderr})`);
    t.same(JSON.parse(json.stdout), c.expected, `${c.name}: --output json (the default)`);
    t.equal(json.stderr, c.expected.notes.map((note: string) => `iam-policy: note: ${note}\n`).join(''), `${c.name}: notes go to stderr`);

    t.equal(script.code, 0, `${c.name}: aws-cli exit 0`);
    const scriptFile = join(tmp, `${c.name}.sh`);
    writeFileSync(scriptFile, script.stdout);
    const record = mkdtempSync(join(tmp, `${c.name}-calls-`));
    const ran = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile('sh', [scriptFile], { env: { ...process.env, AWS_RECORD: record, PATH: `${bin}:${process.env.PATH}` } }, (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }));
    });
    t.equal(ran.code, 0, `${c.name}: the script runs (${ran.stderr})`);
    const calls = readdirSync(record).sort((a, b) => Number(a) - Number(b)).map((n) => {
      const at = (f: string) => join(record, n, f);
      const args = readFileSync(at('args'), 'utf8').split('\n').slice(0, -1);
      const files = Object.fromEntries(readdirSync(join(record, n)).filter((f) => f.endsWith('.json')).map((f) => [`file://${f}`, JSON.parse(readFileSync(at(f), 'utf8'))]));
      return { args, files };
    });
    const role = c.expected.role;
    const association = c.expected.association;
    t.same(calls.map((x) => x.args.slice(0, 2).join(' ')), ['iam get-role', 'iam create-role', 'iam put-role-policy', 'iam list-role-policies', 'iam list-attached-role-policies',
      ...(association ? ['eks list-pod-identity-associations', 'eks create-pod-identity-association'] : [])],
      `${c.name}: a new role: create-role then put-role-policy, then the role's other policies listed${association ? ', then the association looked up and made' : ''}`);
    t.same(calls[1].args, ['iam', 'create-role', '--role-name', role.name, '--path', role.path, '--assume-role-policy-document', 'file://trust-policy.json',
      '--description', `MLflow artifacts in S3 via ${association ? 'EKS Pod Identity' : 'IRSA'} (mlflow-irsa-webhook)`], `${c.name}: role name and path from roleArn`);
    if (association) {
      const { clusterName, namespace, serviceAccount, roleArn } = association;
      t.same(calls[5].args, ['eks', 'list-pod-identity-associations', '--cluster-name', clusterName, '--namespace', namespace, '--service-account', serviceAccount,
        '--query', 'associations[].associationId', '--output', 'text'], `${c.name}: the association of our ServiceAccount looked up first`);
      t.same(calls[6].args, ['eks', 'create-pod-identity-association', '--cluster-name', clusterName, '--namespace', namespace, '--service-account', serviceAccount,
        '--role-arn', roleArn], `${c.name}: then made, for our ServiceAccount and role`);
      t.equal(calls[6].args.join(' '), c.expected.commands.at(-1).replace(/^aws /, ''), `${c.name}: the command the JSON names`);
    }
    t.same(calls[1].files['file://trust-policy.json'], c.expected.trustPolicy, `${c.name}: create-role gets the trust policy`);
    t.same(calls[2].args.slice(2, 6), ['--role-name', role.name, '--policy-name', c.expected.policyName]);
    t.same(calls[2].files['file://s3-policy.json'], c.expected.permissionsPolicy, `${c.name}: put-role-policy gets the S3 policy`);
    t.same(calls[3].args, ['iam', 'list-role-policies', '--role-name', role.name, '--query', `PolicyNames[?@ != '${c.expected.policyName}']`, '--output', 'text'], `${c.name}: inline policies but ours`);
    t.equal(ran.stderr, '', `${c.name}: a new role holds nothing else, and nothing is said`);
  }

  // the role the manual procedure made: its trust policy replaced, ours put, and what else it holds named with the command
  // that removes it (the script removes nothing itself)
  const c = cases[0];
  const scriptFile = join(tmp, 'existing.sh');
  writeFileSync(scriptFile, outputs[0][1].stdout);
  const record = mkdtempSync(join(tmp, 'existing-calls-'));
  // the procedure's role, whose trust policy also lets an EC2 instance role assume it: update-assume-role-policy drops that
  const oldTrust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/sw-mlflow-ec2"},"Action":"sts:AssumeRole"}]}';
  const env = { ...process.env, AWS_RECORD: record, PATH: `${bin}:${process.env.PATH}`, AWS_ROLE_EXISTS: '1', AWS_TRUST: oldTrust, AWS_INLINE: 'sw-mlflow-s3-all', AWS_ATTACHED: 'arn:aws:iam::aws:policy/AmazonS3FullAccess' };
  const ran = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile('sh', [scriptFile], { env }, (err, _out, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
  t.equal(ran.code, 0, `an existing role: the script runs (${ran.stderr})`);
  const calls = readdirSync(record).sort((a, b) => Number(a) - Number(b)).map((n) => ({
    args: readFileSync(join(record, n, 'args'), 'utf8').split('\n').slice(0, -1),
    trust: readdirSync(join(record, n)).includes('trust-policy.json') ? JSON.parse(readFileSync(join(record, n, 'trust-policy.json'), 'utf8')) : undefined,
  }));
  t.same(calls.map((x) => x.args.slice(0, 2).join(' ')), ['iam get-role', 'iam update-assume-role-policy', 'iam put-role-policy', 'iam list-role-policies', 'iam list-attached-role-policies'],
    'an existing role: update-assume-role-policy instead of create-role');
  t.same(calls[1].trust, c.expected.trustPolicy, 'with the same trust policy');
  const role = c.expected.role.name;
  t.same(calls[0].args, ['iam', 'get-role', '--role-name', role, '--query', 'Role.AssumeRolePolicyDocument', '--output', 'json'], 'the old trust policy is read');
  t.match(outputs[0][1].stdout, '# A role that already exists (the manual procedure\'s) keeps its name, but update-assume-role-policy REPLACES ITS\n# WHOLE TRUST POLICY', 'the script says so before it runs');
  t.equal(ran.stderr, [
    `role ${role} exists: replacing its whole trust policy (update-assume-role-policy keeps none of its statements); it was:`,
    oldTrust,
    `role ${role} also holds these policies, and IAM grants their permissions too; review each, and remove what this role no longer needs:`,
    `  inline sw-mlflow-s3-all: aws iam delete-role-policy --role-name ${role} --policy-name sw-mlflow-s3-all`,
    `  attached arn:aws:iam::aws:policy/AmazonS3FullAccess: aws iam detach-role-policy --role-name ${role} --policy-arn arn:aws:iam::aws:policy/AmazonS3FullAccess`,
    '',
  ].join('\n'), 'the other policies named, each with the command that removes it');

  // Pod Identity: an association of our ServiceAccount that exists already is not made again; one naming another role,
  // or with its session tags off (the trust policy's tag conditions then deny it), is named with the commands that fix it
  const pi = cases.findIndex((x) => x.name === 'pod-identity');
  const piScript = join(tmp, 'pod-identity-existing.sh');
  writeFileSync(piScript, outputs[pi][1].stdout);
  const ours = cases[pi].expected.association.roleArn;
  const runPi = async (extra: Record<string, string>) => {
    const rec = mkdtempSync(join(tmp, 'pod-identity-calls-'));
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile('sh', [piScript], { env: { ...process.env, AWS_RECORD: rec, PATH: `${bin}:${process.env.PATH}`, ...extra } }, (err, _out, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
    });
    const eks = readdirSync(rec).sort((x, y) => Number(x) - Number(y)).map((n) => readFileSync(join(rec, n, 'args'), 'utf8').split('\n').slice(0, -1)).filter((x) => x[0] === 'eks');
    return { ...r, eks };
  };
  const fix = (call: string, tail: string) => `  aws eks ${call} --cluster-name domino-green --association-id a-4f2c9e${tail}`;
  let r = await runPi({ AWS_ASSOCIATIONS: 'a-4f2c9e', AWS_ASSOCIATION_ROLE: ours });
  t.equal(r.code, 0, r.stderr);
  t.same(r.eks.map((x) => x[1]), ['list-pod-identity-associations', 'describe-pod-identity-association'], 'ours exists: looked up and described, not made again');
  t.same(r.eks[1].slice(2, 6), ['--cluster-name', 'domino-green', '--association-id', 'a-4f2c9e']);
  t.equal(r.stderr, `the Pod Identity association a-4f2c9e of domino-platform/mlflow in cluster domino-green exists, with role ${ours}\n`);
  r = await runPi({ AWS_ASSOCIATIONS: 'a-4f2c9e', AWS_ASSOCIATION_ROLE: 'arn:aws:iam::111122223333:role/old-mlflow-role' });
  t.same(r.eks.map((x) => x[1]), ['list-pod-identity-associations', 'describe-pod-identity-association'], 'another role: nothing made or changed');
  t.equal(r.stderr, [
    `the Pod Identity association a-4f2c9e of domino-platform/mlflow in cluster domino-green names another role, arn:aws:iam::111122223333:role/old-mlflow-role; point it at ${ours}, or delete it and run this script again:`,
    fix('update-pod-identity-association', ` --role-arn ${ours}`),
    fix('delete-pod-identity-association', ''),
    '',
  ].join('\n'), 'the association named, with the commands that point it at our role or delete it');
  r = await runPi({ AWS_ASSOCIATIONS: 'a-4f2c9e', AWS_ASSOCIATION_ROLE: ours, AWS_ASSOCIATION_TAGS_OFF: 'True' });
  t.equal(r.stderr, [
    'the Pod Identity association a-4f2c9e of domino-platform/mlflow in cluster domino-green has its session tags off, so the trust policy\'s conditions deny it; turn them on:',
    fix('update-pod-identity-association', ' --no-disable-session-tags'),
    '',
  ].join('\n'), 'session tags off: named with the command that turns them on');
  r = await runPi({ AWS_ASSOCIATIONS: 'None' });
  t.same(r.eks.map((x) => x[1]), ['list-pod-identity-associations', 'create-pod-identity-association'], 'the CLI\'s "None" for no association: made');
});

t.test('--credentials and --cluster-name: the mode from the config unless given, and bad combinations refused with exit 2', async (t) => {
  const example = join(root, 'examples/config.yaml');
  const piConfig = join(tmp, 'pod-identity-config.yaml');
  writeFileSync(piConfig, `${readFileSync(example, 'utf8')}\ncredentials: pod-identity\n`);
  const [fromConfig, fromFlag] = await Promise.all([
    runCli(['iam-policy', '--config', piConfig, '--cluster-name', 'domino-green']),
    runCli(['iam-policy', '--config', example, '--credentials', 'pod-identity', '--cluster-name', 'domino-green']),
  ]);
  t.equal(fromConfig.code, 0, fromConfig.stderr);
  t.same(fromConfig, fromFlag, 'credentials: pod-identity in the config is --credentials pod-identity');
  const back = await runCli(['iam-policy', '--config', piConfig, '--credentials', 'irsa', '--oidc-provider', PROVIDER]);
  t.same(JSON.parse(back.stdout), cases.find((c) => c.name === 'procedure-example')!.expected, '--credentials irsa beats the config, and gives the irsa document unchanged');
  const bad: Array<[string[], RegExp]> = [
    [['--config', example, '--credentials', 'kiam'], /iam-policy: --credentials "kiam" is not one of irsa, pod-identity/],
    [['--config', piConfig, '--format', 'aws-cli'], /iam-policy: --cluster-name is required with credentials pod-identity and --output aws-cli: the script makes the Pod Identity association/],
    [['--config', piConfig, '--cluster-name', 'blue green'], /iam-policy: --cluster-name "blue green" is not an EKS cluster name \(1 to 100 letters, digits, - and _/],
    [['--config', example, '--oidc-provider', PROVIDER, '--cluster-name', 'domino-green'], /iam-policy: --cluster-name names the cluster of a Pod Identity association, which credentials irsa has none of/],
    [['--config', example], /iam-policy: --oidc-provider is required with credentials irsa/],
  ];
  const ran = await Promise.all(bad.map(([args]) => runCli(['iam-policy', ...args])));
  bad.forEach(([args, message], i) => {
    t.equal(ran[i].code, 2, `${args.slice(2).join(' ')} → exit 2`);
    t.match(ran[i].stderr, message);
    t.equal(ran[i].stdout, '', 'nothing on stdout');
  });
  // a role path may hold any printable character: the script quotes the ARN, and prints it without evaluating it
  const odd = join(tmp, 'odd-role.yaml');
  const oddRole = 'arn:aws:iam::111122223333:role/team$(touch${IFS}pwned)`touch${IFS}pwned`\\c"x\'/mlflow';
  writeFileSync(odd, stringify({ roleArn: oddRole, artifactsDestination: 's3://sw-domino-project-based-mlflow', credentials: 'pod-identity' }));
  const oddScript = await runCli(['iam-policy', '--config', odd, '--cluster-name', 'domino-green', '--format', 'aws-cli']);
  t.equal(oddScript.code, 0, oddScript.stderr);
  const work = mkdtempSync(join(tmp, 'odd-'));
  writeFileSync(join(work, 'create-role.sh'), oddScript.stdout);
  const oddRun = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile('sh', ['create-role.sh'], { cwd: work, env: { ...process.env, AWS_RECORD: mkdtempSync(join(tmp, 'odd-calls-')), PATH: `${bin}:${process.env.PATH}`, AWS_ASSOCIATIONS: 'a-1', AWS_ASSOCIATION_ROLE: 'arn:aws:iam::111122223333:role/old' } },
      (err, _out, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
  t.equal(oddRun.code, 0, oddRun.stderr);
  t.ok(oddRun.stderr.includes(`point it at ${oddRole}, or delete it`), 'the ARN printed as it is');
  t.ok(oddRun.stderr.includes(`--association-id a-1 --role-arn ${oddRole}\n`));
  t.same(readdirSync(work), ['create-role.sh'], 'nothing in it ran');

  const noCluster = await runCli(['iam-policy', '--config', piConfig]);
  t.equal(noCluster.code, 0, 'the JSON needs no cluster');
  t.notOk('association' in JSON.parse(noCluster.stdout), 'and then names no association');
});

t.test('a malformed OIDC provider, prefix or KMS key is refused with exit 2 naming the value and the rule', async (t) => {
  const config = loadConfig(join(root, 'examples/config.yaml'));
  const bad: Array<[string, string | undefined, RegExp]> = [
    ['oidc.eks.us-west-2.amazonaws.com', undefined, /--oidc-provider "oidc\.eks\.us-west-2\.amazonaws\.com" is not an EKS OIDC issuer \(oidc\.eks\.<region>/],
    ['oidc.eks.us-west-2.amazonaws.com/id/tooshort', undefined, /"oidc\.eks\.us-west-2\.amazonaws\.com\/id\/tooshort" is not an EKS OIDC issuer/],
    ['oidc.eks.us-west-2.amazonaws.com/id/exampled539d4633e53de1b71example', undefined, /is not an EKS OIDC issuer .*32 upper-case/],
    ['http://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE', undefined, /"http:\/\/oidc\.eks.*" is not an EKS OIDC issuer/],
    ['oidc.eks.us-west-2.evil.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE', undefined, /is not an EKS OIDC issuer/],
    [`${PROVIDER}:sub`, undefined, /is not an EKS OIDC issuer/],
    [`arn:aws:iam::111122223333:oidc-provider/${PROVIDER}`, undefined, /is not an EKS OIDC issuer/],
    ['oidc.eks.cn-north-1.amazonaws.com.cn/id/EXAMPLED539D4633E53DE1B71EXAMPLE', undefined, /is in partition aws-cn, but roleArn is in aws/],
    ['', undefined, /is not an EKS OIDC issuer/],
    [PROVIDER, '../other', /--prefix "\.\.\/other" is not a key prefix/],
    [PROVIDER, 'a b', /--prefix "a b" is not a key prefix/],
  ];
  for (const [provider, prefix, message] of bad) {
    t.throws(() => iamPlan(config, provider, { prefix }), { name: 'UsageError', message }, `${JSON.stringify([provider, prefix])} refused`);
    t.throws(() => iamPlan(config, provider, { prefix }), UsageError, 'a UsageError, which cli.ts turns into exit 2');
  }
  const prefixed = parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/m', artifactsDestination: 's3://bkt/team' });
  t.throws(() => iamPlan(prefixed, PROVIDER, { prefix: 'other' }), /--prefix "other" is outside artifactsDestination s3:\/\/bkt\/team/);
  t.throws(() => iamPlan(prefixed, PROVIDER, { prefix: 'teamX' }), /outside artifactsDestination/, 'a sibling that merely starts with the same letters is outside');
  t.equal(iamPlan(prefixed, PROVIDER, { prefix: '/team/runs/' }).objectPrefix, 'team/runs', 'slashes at the ends are dropped');

  const key = 'arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
  const badKeys: Array<[string, RegExp]> = [
    ['arn:aws:kms:us-west-2:111122223333:alias/aws/s3', /--kms-key-arn "arn:aws:kms:us-west-2:111122223333:alias\/aws\/s3" is an alias ARN; an IAM policy grants a key only by its key ARN \(aws kms describe-key --key-id alias\/aws\/s3 --query KeyMetadata\.Arn\)/],
    ['1234abcd-12ab-34cd-56ef-1234567890ab', /--kms-key-arn "1234abcd-12ab-34cd-56ef-1234567890ab" is not a KMS key ARN \(arn:<partition>:kms:<region>:<12-digit account>:key\/<key id>, the id a UUID or mrk-<32 hex digits>\)/],
    ['arn:aws:kms:us-west-2:111122223333:key/not-a-key-id', /is not a KMS key ARN/],
    ['arn:aws:kms:us-west-2:111122223333:key/1234ABCD-12AB-34CD-56EF-1234567890AB', /is not a KMS key ARN/],
    [`${key}/extra`, /is not a KMS key ARN/],
    ['arn:aws:kms:us-west-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab', /is not a KMS key ARN/],
    ['arn:aws:s3:::bucket', /is not a KMS key ARN/],
    ['', /is not a KMS key ARN/],
    ['arn:aws-cn:kms:cn-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', /is in partition aws-cn, but roleArn is in aws; the key and the role must be in one partition/],
  ];
  for (const [kmsKeyArn, message] of badKeys) {
    t.throws(() => iamPlan(config, PROVIDER, { kmsKeyArn }), { name: 'UsageError', message }, `${JSON.stringify(kmsKeyArn)} refused`);
  }
  t.equal(iamPlan(config, PROVIDER, { kmsKeyArn: ` ${key}\n` }).kmsKey?.arn, key, 'surrounding white space is dropped');

  // and through the real CLI: exit 2, the message on stderr, nothing on stdout
  const viaCli: Array<[string[], RegExp]> = [
    [['--oidc-provider', 'oidc.eks.us-west-2.amazonaws.com/id/tooshort'], /iam-policy: --oidc-provider "oidc\.eks\.us-west-2\.amazonaws\.com\/id\/tooshort" is not an EKS OIDC issuer \(oidc\.eks\.<region>\.amazonaws\.com\[\.cn\]\/id\/<32 upper-case letters or digits>, optionally with https:\/\/\)/],
    [[], /--oidc-provider is required/],
    [['--oidc-provider', PROVIDER, '--output', 'yaml'], /--output "yaml" is not one of json, aws-cli/],
    [['--oidc-provider', PROVIDER, '--kms-key-arn', 'alias/s3'], /iam-policy: --kms-key-arn "alias\/s3" is not a KMS key ARN/],
  ];
  const results = await Promise.all(viaCli.map(([args]) => runCli(['iam-policy', '--config', join(root, 'examples/config.yaml'), ...args])));
  viaCli.forEach(([args, message], i) => {
    t.equal(results[i].code, 2, `${JSON.stringify(args)} → exit 2`);
    t.match(results[i].stderr, message, `${JSON.stringify(args)}: ${results[i].stderr.split('\n')[0]}`);
    t.equal(results[i].stdout, '', 'nothing half-printed on stdout');
  });
});

t.test('provider normalisation', async (t) => {
  for (const v of [PROVIDER, `https://${PROVIDER}`, `https://${PROVIDER}/`, `  ${PROVIDER}\n`, `HTTPS://OIDC.EKS.US-WEST-2.AMAZONAWS.COM/id/EXAMPLED539D4633E53DE1B71EXAMPLE`]) {
    t.equal(normaliseOidcProvider(v, 'aws'), PROVIDER, JSON.stringify(v));
  }
  t.equal(normaliseOidcProvider('oidc.eks.us-gov-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF', 'aws-us-gov'), 'oidc.eks.us-gov-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF');
  t.throws(() => normaliseOidcProvider('oidc.eks.us-gov-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF', 'aws'), /partition aws-us-gov, but roleArn is in aws/);
});

/** The config the chart renders from these values files, read back from the ConfigMap `helm template` writes. */
async function helmRenderedConfig(files: string[]): Promise<string> {
  const r = await helmRun(['template', 'wh', chart, '--namespace', 'mlflow-irsa-webhook', ...files.flatMap((f) => ['-f', f])]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  const cm = parseAllDocuments(r.stdout).map((d) => d.toJS()).find((o) => o?.kind === 'ConfigMap' && o.metadata.name === 'wh-mlflow-irsa-webhook');
  return cm.data['config.yaml'];
}

t.test('--values: the config, and so the policies, equal --config on the ConfigMap helm renders from the same files', async (t) => {
  t.ok(valuesSets.length >= 2, `values sets: ${valuesSets.length}`);
  for (const files of valuesSets) {
    const name = files.map((f) => f.slice(root.length)).join(' + ');
    const rendered = await helmRenderedConfig(files);
    t.same(renderChartConfig(files), parseYaml(rendered), `${name}: the same config document as the chart writes, key for key`);
    t.same(loadChartValues(files), parseConfigText(rendered, 'rendered'), `${name}: so the same Config`);
    const configFile = join(tmp, `rendered-${valuesSets.indexOf(files)}.yaml`);
    writeFileSync(configFile, rendered);
    // --prefix at the trigger's experiment root, and a key in the role's partition and account
    const config = loadConfig(configFile);
    const role = parseRoleArn(config.roleArn);
    const prefix = [splitS3Uri(config.artifactsDestination).prefix, config.trigger.prefix].filter(Boolean).join('/');
    const extra = ['--oidc-provider', `https://${PROVIDER}`, ...(prefix ? ['--prefix', prefix] : []),
      '--kms-key-arn', `arn:${role.partition}:kms:eu-central-1:${role.account}:key/0b5d2c1e-7a3f-4e9b-8c6d-5f4e3d2c1b0a`];
    for (const args of [['--oidc-provider', PROVIDER], [...extra, '--output', 'aws-cli']]) {
      const [viaValues, viaConfig] = await Promise.all([
        runCli(['iam-policy', ...files.flatMap((f, i) => [i % 2 ? '-f' : '--values', f]), ...args]),
        runCli(['iam-policy', '--config', configFile, ...args]),
      ]);
      t.equal(viaConfig.code, 0, `${name} ${args.join(' ')}: --config exit 0 (${viaConfig.stderr})`);
      t.same(viaValues, viaConfig, `${name} ${args.join(' ')}: the same exit code, stdout and notes`);
    }
  }
  // the fixtures exercise what differs from a plain merge: null removing a default, key-by-key table merges, lists
  // replaced whole, YAML 1.1 octal and booleans
  const layered = loadChartValues(valuesSets[1]);
  t.equal(layered.token.defaultMode, 0o440, 'defaultMode: 0440 is octal, as Helm reads it');
  t.equal(layered.token.audience, 'mlflow.acme.internal', 'the second file wins');
  t.equal(layered.token.expirationSeconds, 86400, 'keys the files do not set keep the chart default');
  t.equal(layered.reconcile.enabled, false, '"off" is a YAML 1.1 boolean');
  t.same(layered.trigger.allowedLocationPrefixes, ['s3://acme-mlflow-artifacts/tracking/', 's3://acme-shared/ml/'], 'a list is replaced whole');
});

t.test('--values errors name the file, the key and the rule; --config and --values together are refused', async (t) => {
  const write = (name: string, text: string) => { const f = join(tmp, name); writeFileSync(f, text); return f; };
  const required = 'roleArn: arn:aws:iam::111122223333:role/m\nartifactsDestination: s3://bkt-a\n';
  const bad: Array<[string[], RegExp]> = [
    [[write('typo.yaml', `${required}serviceaccount: mlflow-server\n`)], /invalid values .*typo\.yaml:\n {2}- serviceaccount: unknown key; neither a config key nor one of the chart's values/],
    [[write('nested.yaml', `${required}token:\n  audiense: x\n`)], /invalid values .*nested\.yaml:\n {2}- token\.audiense: unknown key; allowed keys here are audience,/],
    // helm refuses __proto__ as an unknown key too; an assignment to it would set the merged object's prototype instead
    [[write('proto.yaml', `${required}__proto__:\n  roleArn: arn:aws:iam::111122223333:role/other\n`)], /invalid values .*proto\.yaml:\n {2}- __proto__: unknown key; neither a config key nor one of the chart's values/],
    [[write('proto-a.yaml', `${required}trigger:\n  prefix: a\n`), write('proto-b.yaml', 'trigger:\n  __proto__:\n    prefix: b\n')], /- trigger\.__proto__: unknown key; allowed keys here are mode,/],
    [[write('missing.yaml', 'image:\n  repository: r\n')], /- roleArn: is required .*\n {2}- artifactsDestination: is required/],
    [[write('list.yaml', '- a\n- b\n')], /list\.yaml:\n {2}- \(top level\): a values file must be a mapping of keys to values/],
    [[write('broken.yaml', 'roleArn: [\n')], /broken\.yaml:\n {2}- \(file\): not valid YAML: /],
    [[join(tmp, 'absent.yaml')], /absent\.yaml:\n {2}- \(file\): cannot read: ENOENT/],
    [[write('null-region.yaml', `${required}region: null\n`)], /- region: null is not allowed here \(null removes a chart default, and the chart has none for region; leave the key out\)/],
    [[write('bad-value.yaml', required), write('bad-overlay.yaml', 'namespace: Domino_Platform\n')], /invalid values .*bad-value\.yaml, .*bad-overlay\.yaml:\n {2}- namespace: "Domino_Platform" is not valid/],
  ];
  for (const [files, message] of bad) {
    t.throws(() => loadChartValues(files), { name: 'ConfigError', message }, files.map((f) => f.slice(tmp.length + 1)).join(', '));
  }
  // and through the real CLI: a ConfigError is exit 2, the message on stderr, nothing on stdout
  const viaCli = await runCli(['iam-policy', '--values', bad[0][0][0], '--oidc-provider', PROVIDER]);
  t.equal(viaCli.code, 2, 'exit 2');
  t.match(viaCli.stderr, bad[0][1]);
  t.equal(viaCli.stdout, '', 'nothing on stdout');

  const usage: Array<[string[], RegExp]> = [
    [['iam-policy', '--config', join(root, 'examples/config.yaml'), '--values', valuesSets[0][0], '--oidc-provider', PROVIDER], /iam-policy: --config and --values are mutually exclusive/],
    [['iam-policy', '--oidc-provider', PROVIDER], /iam-policy: --config FILE or --values FILE is required/],
    // every command reads --values: serve gets as far as its own options with the values' config
    [['serve', '--values', valuesSets[0][0], '--port', 'x'], /serve: --port: "x" is not a whole number in 1\.\.65535/],
    [['serve'], /serve: --config FILE or --values FILE is required/],
  ];
  const ran = await Promise.all(usage.map(([args]) => runCli(args)));
  usage.forEach(([args, message], i) => {
    t.equal(ran[i].code, 2, `${args[0]} ${args.slice(1).filter((a) => a.startsWith('-')).join(' ')}: exit 2`);
    t.match(ran[i].stderr, message);
    t.match(ran[i].stderr, new RegExp(`usage: mlflow-irsa-webhook ${args[0]} `), 'with the usage line');
  });
});

t.test('the chart data --values uses is current, --help lists every option, the docs name every action', async (t) => {
  const check = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [join(root, 'scripts/gen-chart-values.mjs'), '--check'], (err, _out, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
  t.equal(check.code, 0, `src/config/chart-values.gen.ts matches the chart's values.yaml and values.schema.json ${check.stderr}`);

  const help = await runCli(['iam-policy', '--help']);
  t.equal(help.code, 0);
  for (const option of ['config', 'values', ...Object.keys(iamOptions)]) t.match(help.stdout, new RegExp(`\\n {2}--${option}[ ,]`), `--help explains --${option}`);

  const security = readFileSync(join(root, 'docs/security.md'), 'utf8');
  for (const action of Object.keys(ACTION_CALLS)) t.match(security, new RegExp(`\\| \`${action}\` \\|`), `docs/security.md has a row for ${action}`);
  // the operator guide's lifecycle rule: the JSON its heredoc writes, and the command that applies that file
  const guide = readFileSync(join(root, 'docs/operator-guide.md'), 'utf8');
  const heredoc = /cat > lifecycle\.json <<'EOF'\n([\s\S]*?)\n\s*EOF\n/.exec(guide);
  t.ok(heredoc, 'the operator guide writes lifecycle.json');
  const rules = JSON.parse(heredoc?.[1] ?? '{}').Rules ?? [];
  t.match(rules, [{ Status: 'Enabled', Filter: { Prefix: String }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: Number } }], 'a rule that aborts incomplete multipart uploads');
  t.match(guide, /aws s3api put-bucket-lifecycle-configuration --bucket \S+ \\\n\s+--lifecycle-configuration file:\/\/lifecycle\.json/, 'and the command that applies it');
});
