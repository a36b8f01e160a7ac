// Specification of `iam-policy`: documents against hand-written expectations (test/fixtures/iam), the CLI, its aws script.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig, type Config } from '../src/config.js';
import { UsageError } from '../src/command.js';
import { iamPlan, normaliseOidcProvider, renderJson, type PolicyDocument } from '../src/iam-policy.js';
import { root } from './helpers/fixtures.js';

const cli = join(root, 'dist/cli.js');
const dir = join(root, 'test/fixtures/iam');
const PROVIDER = 'oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE';

interface IamCase {
  name: string;
  about: string;
  /** a path relative to the repository, or the config itself */
  config: string | object;
  args: string[];
  expected: any;
}

const cases: IamCase[] = readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
  .map((f) => ({ name: f.slice(0, -'.json'.length), ...JSON.parse(readFileSync(join(dir, f), 'utf8')) }));

const tmp = mkdtempSync(join(tmpdir(), 'iam-policy-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

function configFile(c: IamCase): string {
  if (typeof c.config === 'string') return join(root, c.config);
  const file = join(tmp, `${c.name}.config.json`);
  writeFileSync(file, JSON.stringify(c.config));
  return file;
}

const configOf = (c: IamCase): Config => (typeof c.config === 'string' ? loadConfig(join(root, c.config)) : parseConfig(c.config));
const argOf = (c: IamCase, flag: string) => { const i = c.args.indexOf(flag); return i < 0 ? undefined : c.args[i + 1]; };

function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Properties of AWS's policy grammar every generated permissions policy must keep, whatever the goldens say. */
function checkLeastPrivilege(t: Test, doc: PolicyDocument, bucketArn: string) {
  const bucketActions = new Set(['s3:ListBucket', 's3:GetBucketLocation']);
  const objectActions = new Set(['s3:GetObject', 's3:PutObject', 's3:DeleteObject']);
  const granted = new Set<string>();
  for (const st of doc.Statement) {
    t.match(st.Sid ?? '', /^[A-Za-z0-9]*$/, 'Sid is alphanumeric, as the grammar requires');
    const actions = ([] as string[]).concat(st.Action);
    const resources = ([] as string[]).concat(st.Resource ?? []);
    t.notOk(actions.some((a) => a.includes('*')), 'no wildcard action');
    actions.forEach((a) => granted.add(a));
    if (actions.every((a) => bucketActions.has(a))) t.same(resources, [bucketArn], `${actions} on the bucket ARN only`);
    else if (actions.every((a) => objectActions.has(a))) t.ok(resources.every((r) => r.startsWith(`${bucketArn}/`) && r.endsWith('/*')), `${actions} on object ARNs only`);
    else t.fail(`statement mixes bucket and object actions: ${actions}`);
  }
  t.same([...granted].sort(), [...bucketActions, ...objectActions].sort(), 'exactly the five actions MLflow needs');
}

t.test('documents equal the hand-written expectations', async (t) => {
  t.ok(cases.length >= 4, `cases found: ${cases.length}`);
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const plan = iamPlan(configOf(c), argOf(c, '--oidc-provider')!, argOf(c, '--prefix'));
      t.same(JSON.parse(renderJson(plan)), c.expected, c.about);
      checkLeastPrivilege(t, plan.permissionsPolicy, `arn:${plan.role.partition}:s3:::${plan.bucket}`);
      const cond = plan.trustPolicy.Statement[0].Condition!;
      t.same(Object.keys(cond), ['StringEquals'], 'exact matching only (no StringLike wildcard on sub)');
      t.same(Object.keys(cond.StringEquals).sort(), [`${plan.oidcProvider}:aud`, `${plan.oidcProvider}:sub`], 'both aud and sub are pinned');
    });
  }
});

t.test('the CLI prints the same JSON, and the aws-cli script creates exactly these documents', async (t) => {
  // a stand-in `aws` on PATH (plain sh, so it costs no node start-up) that records, per call, its arguments one a line
  // and copies the documents its file:// arguments point at
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'aws'), [
    '#!/bin/sh',
    'n=$(ls "$AWS_RECORD" | wc -l); call="$AWS_RECORD/$n"; mkdir "$call"',
    'printf \'%s\\n\' "$@" > "$call/args"',
    'for a in "$@"; do case "$a" in file://*) cp "${a#file://}" "$call/";; esac; done',
    '',
  ].join('\n'));
  chmodSync(join(bin, 'aws'), 0o755);

  const outputs = await Promise.all(cases.map((c) => Promise.all([
    runCli(['iam-policy', '--config', configFile(c), ...c.args]),
    runCli(['iam-policy', '--config', configFile(c), ...c.args, '--format', 'aws-cli']),
  ])));
  for (const [n, c] of cases.entries()) {
    const [json, script] = outputs[n];
    t.equal(json.code, 0, `${c.name}: exit 0 (${json.stderr})`);
    t.same(JSON.parse(json.stdout), c.expected, `${c.name}: --format json (the default)`);
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
    const calls = readdirSync(record).sort().map((n) => {
      const at = (f: string) => join(record, n, f);
      const args = readFileSync(at('args'), 'utf8').split('\n').slice(0, -1);
      const files = Object.fromEntries(readdirSync(join(record, n)).filter((f) => f.endsWith('.json')).map((f) => [`file://${f}`, JSON.parse(readFileSync(at(f), 'utf8'))]));
      return { args, files };
    });
    const role = c.expected.role;
    t.same(calls.map((x) => x.args.slice(0, 2).join(' ')), ['iam create-role', 'iam put-role-policy'], `${c.name}: create-role then put-role-policy`);
    t.same(calls[0].args, ['iam', 'create-role', '--role-name', role.name, '--path', role.path, '--assume-role-policy-document', 'file://trust-policy.json',
      '--description', 'MLflow artifacts in S3 via IRSA (mlflow-irsa-webhook)'], `${c.name}: role name and path from roleArn`);
    t.same(calls[0].files['file://trust-policy.json'], c.expected.trustPolicy, `${c.name}: create-role gets the trust policy`);
    t.same(calls[1].args.slice(2, 6), ['--role-name', role.name, '--policy-name', c.expected.policyName]);
    t.same(calls[1].files['file://s3-policy.json'], c.expected.permissionsPolicy, `${c.name}: put-role-policy gets the S3 policy`);
  }
});

t.test('a malformed OIDC provider or prefix is refused with exit 2 naming the value and the rule', async (t) => {
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
    t.throws(() => iamPlan(config, provider, prefix), { name: 'UsageError', message }, `${JSON.stringify([provider, prefix])} refused`);
    t.throws(() => iamPlan(config, provider, prefix), UsageError, 'a UsageError, which cli.ts turns into exit 2');
  }
  const prefixed = parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/m', artifactsDestination: 's3://bkt/team' });
  t.throws(() => iamPlan(prefixed, PROVIDER, 'other'), /--prefix "other" is outside artifactsDestination s3:\/\/bkt\/team/);
  t.throws(() => iamPlan(prefixed, PROVIDER, 'teamX'), /outside artifactsDestination/, 'a sibling that merely starts with the same letters is outside');
  t.equal(iamPlan(prefixed, PROVIDER, '/team/runs/').objectPrefix, 'team/runs', 'slashes at the ends are dropped');

  // and through the real CLI: exit 2, the message on stderr, nothing on stdout
  const viaCli: Array<[string[], RegExp]> = [
    [['--oidc-provider', 'oidc.eks.us-west-2.amazonaws.com/id/tooshort'], /iam-policy: --oidc-provider "oidc\.eks\.us-west-2\.amazonaws\.com\/id\/tooshort" is not an EKS OIDC issuer \(oidc\.eks\.<region>\.amazonaws\.com\[\.cn\]\/id\/<32 upper-case letters or digits>, optionally with https:\/\/\)/],
    [[], /--oidc-provider is required/],
    [['--oidc-provider', PROVIDER, '--format', 'yaml'], /--format "yaml" is not one of json, aws-cli/],
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
