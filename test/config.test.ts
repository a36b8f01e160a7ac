// Specification of the config file, the CLI's argument handling, and the patch diff that every caller shares.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_LOCATION_LENGTH, mlflowDefaultPrefix } from '../src/config/artifact-location.js';
import { ConfigError, loadConfig, parseConfig, parseConfigText } from '../src/config/config.js';
import { diff } from '../src/webhook/patch.js';
import { applyStrict } from './helpers/strict-patch.js';
import { exampleConfig, root } from './helpers/fixtures.js';

const base = { roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access', artifactsDestination: 's3://sw-domino-project-based-mlflow' };

function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

t.test('defaults fill every optional key and the result is frozen', async (t) => {
  const c = parseConfig(base);
  t.match(c, {
    namespace: 'domino-platform', deployment: 'mlflow', container: 'mlflow', serviceAccount: 'mlflow',
    token: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, volumeName: 'aws-iam-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount', defaultMode: 420 },
    removeEnv: ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN', 'AWS_PROFILE', 'AWS_DEFAULT_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE'],
    trigger: { mode: 'project-id', locationStyle: 'direct', projectTag: 'mlflow.domino.project_id', locationTag: 'domino.artifacts_location', prefix: 'mlflow', allowedLocationPrefixes: ['s3://sw-domino-project-based-mlflow/'], schema: 'public', locationPolicy: 'audit' },
    migration: { completedFrom: [] },
    server: { port: 8443, tlsMinVersion: 'TLSv1.2', bodyLimitBytes: 3 * 1024 * 1024 },
    logLevel: 'info',
  });
  t.equal(c.region, undefined);
  t.equal(c.credentials, 'irsa', 'IRSA unless told otherwise: what earlier versions did');
  t.equal(c.trigger.defaultArtifactRoot, undefined, 'no default root: install-trigger derives it');
  t.notOk('enforceLocations' in c.trigger, 'the deprecated key is not made up');
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.token) && Object.isFrozen(c.removeEnv), 'deeply frozen');
  const input = { ...base };
  parseConfig(input);
  t.same(input, base, 'the input document is not written to');
});

t.test('trigger.locationPolicy: audit unless set; the deprecated enforceLocations maps true to enforce and false to off', async (t) => {
  const policy = (trigger: Record<string, unknown>) => parseConfig({ ...base, trigger }).trigger;
  t.match(policy({}), { locationPolicy: 'audit' });
  for (const mode of ['off', 'audit', 'enforce']) t.match(policy({ locationPolicy: mode }), { locationPolicy: mode });
  t.match(policy({ enforceLocations: true }), { locationPolicy: 'enforce', enforceLocations: true });
  t.match(policy({ enforceLocations: false }), { locationPolicy: 'off', enforceLocations: false });
  t.match(policy({ enforceLocations: true, locationPolicy: 'enforce' }), { locationPolicy: 'enforce' }, 'both, agreeing');
  const unset = policy({ enforceLocations: null, locationPolicy: 'off' });
  t.equal(unset.locationPolicy, 'off');
  t.notOk('enforceLocations' in unset, 'null is unset (helm --set trigger.enforceLocations=null)');
  const again = parseConfig(JSON.parse(JSON.stringify(parseConfig({ ...base, trigger: { enforceLocations: false } }))));
  t.equal(again.trigger.locationPolicy, 'off', 'a loaded config parses again to the same policy');
});

t.test('the example config is valid and holds the procedure\'s values', async (t) => {
  const c = loadConfig(exampleConfig);
  t.equal(c.roleArn, 'arn:aws:iam::111122223333:role/sw-mlflow-full-access');
  t.equal(c.artifactsDestination, 's3://sw-domino-project-based-mlflow');
  t.equal(c.region, 'us-west-2');
});

t.test('valid variants are accepted', async (t) => {
  for (const roleArn of ['arn:aws-cn:iam::123456789012:role/x', 'arn:aws-us-gov:iam::123456789012:role/path/to/name+=,.@-_', 'arn:aws:iam::123456789012:role/a/b/c']) {
    t.same(problems({ ...base, roleArn }), [], roleArn);
  }
  for (const dest of ['s3://abc', 's3://my.bucket-1/some/prefix', 's3://my-bucket/prefix/', 's3://a1b2c3/x_y.z-w']) {
    t.same(problems({ ...base, artifactsDestination: dest }), [], dest);
  }
  t.same(problems({ ...base, region: 'us-gov-west-1', token: { expirationSeconds: 600 }, removeEnv: [] }), []);
  t.same(problems({ ...base, credentials: 'pod-identity' }), [], 'pod-identity');
  t.same(problems({ ...base, removeEnv: ['AWS_CONTAINER_CREDENTIALS_FULL_URI'] }), [], 'with IRSA, removing the container provider\'s variable is the operator\'s choice');
  t.same(problems({ ...base, token: { volumeName: 'aws-user-token', mountPath: '/var/run/secrets/mlflow/aws' } }), [], 'another volume name on a directory of its own');
  t.same(problems(parseConfigText(JSON.stringify(base))), [], 'JSON is accepted (JSON is YAML)');
  t.same(parseConfig({ ...base, migration: { completedFrom: ['s3://domino-blobs-mlflow/mlflow/', 's3://old-bucket'] } }).migration.completedFrom,
    ['s3://domino-blobs-mlflow/mlflow', 's3://old-bucket'], 'migration.completedFrom in the spelling the annotation is compared in');
});

t.test('each invalid value is reported with key, value and rule, all at once', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['missing roleArn', { artifactsDestination: base.artifactsDestination }, /^roleArn: is required \(IAM role/],
    ['missing artifactsDestination', { roleArn: base.roleArn }, /^artifactsDestination: is required/],
    ['short account', { ...base, roleArn: 'arn:aws:iam::12345:role/x' }, /^roleArn: "arn:aws:iam::12345:role\/x" is not valid \(IAM role .*12-digit account/],
    ['user not role', { ...base, roleArn: 'arn:aws:iam::123456789012:user/x' }, /^roleArn: .* is not valid/],
    ['other partition', { ...base, roleArn: 'arn:aws-xx:iam::123456789012:role/x' }, /^roleArn: /],
    ['http destination', { ...base, artifactsDestination: 'https://bucket' }, /^artifactsDestination: "https:\/\/bucket" is not valid \(S3 location/],
    ['uppercase bucket', { ...base, artifactsDestination: 's3://Bucket' }, /^artifactsDestination: /],
    ['bucket too short', { ...base, artifactsDestination: 's3://ab' }, /^artifactsDestination: /],
    ['adjacent periods', { ...base, artifactsDestination: 's3://my..bucket' }, /^artifactsDestination: "s3:\/\/my..bucket" is not valid \(bucket "my..bucket" has two adjacent periods\)/],
    ['IP address bucket', { ...base, artifactsDestination: 's3://192.168.5.4' }, /formatted as an IP address/],
    ['reserved prefix', { ...base, artifactsDestination: 's3://xn--bucket' }, /reserved prefix/],
    ['reserved suffix', { ...base, artifactsDestination: 's3://bucket-s3alias' }, /reserved suffix/],
    ['dot segment', { ...base, artifactsDestination: 's3://bucket/a/../b' }, /no "\." or "\.\." path segments/],
    ['expiration too low', { ...base, token: { expirationSeconds: 599 } }, /^token\.expirationSeconds: 599 must be >= 600 \(token lifetime, 600\.\.86400\)/],
    ['expiration too high', { ...base, token: { expirationSeconds: 86401 } }, /^token\.expirationSeconds: 86401 must be <= 86400/],
    ['expiration not an integer', { ...base, token: { expirationSeconds: '1h' } }, /^token\.expirationSeconds: "1h" must be integer/],
    ['unknown key', { ...base, rolArn: 'x' }, /^rolArn: unknown key; allowed keys here are roleArn, artifactsDestination/],
    ['unknown nested key', { ...base, token: { audiance: 'x' } }, /^token\.audiance: unknown key; allowed keys here are audience/],
    ['__proto__ at the top (as a YAML or JSON parser makes it: an own key)', { ...base, ...JSON.parse('{"__proto__":{"logLevel":"debug"}}') }, /^__proto__: unknown key; allowed keys here are roleArn/],
    ['relative mountPath', { ...base, token: { mountPath: 'var/run' } }, /^token\.mountPath: "var\/run" is not valid/],
    ['another token volume on the EKS webhook\'s directory', { ...base, token: { volumeName: 'aws-user-token' } },
      /^token\.volumeName: "aws-user-token" with token\.mountPath "\/var\/run\/secrets\/eks\.amazonaws\.com\/serviceaccount" is not valid \(the EKS pod-identity webhook mounts its own volume aws-iam-token/],
    ['the same, written with a trailing slash', { ...base, token: { volumeName: 'aws-user-token', mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount/' } }, /^token\.volumeName: "aws-user-token" with token\.mountPath/],
    ['bad namespace', { ...base, namespace: 'Domino_Platform' }, /^namespace: "Domino_Platform" is not valid/],
    ['removing our own env', { ...base, removeEnv: ['AWS_ROLE_ARN'] }, /^removeEnv: "AWS_ROLE_ARN" is set by the webhook itself/],
    ['bad env name', { ...base, removeEnv: ['A B'] }, /^removeEnv\.0: "A B" is not valid/],
    ['unknown credentials mode', { ...base, credentials: 'kiam' }, /^credentials: "kiam" is not one of "irsa", "pod-identity" \(how MLflow gets the role: irsa .* or pod-identity/],
    ['removing what Pod Identity needs', { ...base, credentials: 'pod-identity', removeEnv: ['AWS_CONFIG_FILE', 'AWS_CONTAINER_CREDENTIALS_FULL_URI'] },
      /^removeEnv: "AWS_CONTAINER_CREDENTIALS_FULL_URI" cannot be removed with credentials pod-identity \(EKS's webhook puts it in the pod/],
    ['bad region', { ...base, region: 'uswest2' }, /^region: "uswest2" is not valid/],
    ['bad trigger mode', { ...base, trigger: { mode: 'both' } }, /^trigger\.mode: "both" is not one of "project-id", "custom-location"/],
    ['tag with a quote', { ...base, trigger: { projectTag: "x'; drop table experiments; --" } }, /^trigger\.projectTag: .* is not valid/],
    ['same tag twice', { ...base, trigger: { projectTag: 'a.b', locationTag: 'a.b' } }, /^trigger\.locationTag: "a.b" must differ from trigger\.projectTag/],
    ['bad allowed prefix', { ...base, trigger: { allowedLocationPrefixes: ['s3://OK'] } }, /^trigger\.allowedLocationPrefixes\.0: /],
    ['dot-dot prefix', { ...base, trigger: { prefix: '../../other' } }, /^trigger\.prefix: "\.\.\/\.\.\/other" is not valid \(no "\." or "\.\." path segments\)/],
    ['dot prefix segment', { ...base, trigger: { prefix: 'mlflow/./x' } }, /^trigger\.prefix: "mlflow\/\.\/x" is not valid \(no "\." or "\.\." path segments\)/],
    ['dot-dot allowed prefix', { ...base, trigger: { mode: 'custom-location', allowedLocationPrefixes: ['s3://team-bucket/a/..'] } }, /^trigger\.allowedLocationPrefixes\.0: .* \(no "\." or "\.\." path segments\)/],
    ['relative default root', { ...base, trigger: { defaultArtifactRoot: './mlruns' } }, /^trigger\.defaultArtifactRoot: "\.\/mlruns" is not valid \(MLflow's --default-artifact-root \(absolute path or URI/],
    ['default root with a query', { ...base, trigger: { defaultArtifactRoot: 's3://b/p?x=1' } }, /^trigger\.defaultArtifactRoot: .* is not valid/],
    ['unknown location style', { ...base, trigger: { locationStyle: 'presigned' } }, /^trigger\.locationStyle: "presigned" is not one of "direct", "proxied"/],
    ['proxied prefix naming another server', { ...base, trigger: { allowedLocationPrefixes: ['mlflow-artifacts://host/x'] } }, /^trigger\.allowedLocationPrefixes\.0: "mlflow-artifacts:\/\/host\/x" is not valid/],
    ['dot-dot proxied prefix', { ...base, trigger: { allowedLocationPrefixes: ['mlflow-artifacts:/a/..'] } }, /^trigger\.allowedLocationPrefixes\.0: "mlflow-artifacts:\/a\/\.\." is not valid \(no "\." or "\.\." path segments\)/],
    ['a migration source that is not a destination', { ...base, migration: { completedFrom: ['mlflow-artifacts:/x'] } }, /^migration\.completedFrom\.0: "mlflow-artifacts:\/x" is not valid \(an old artifacts destination, s3:\/\/<bucket>\[\/prefix\]\)$/],
    ['a migration source with two periods', { ...base, migration: { completedFrom: ['s3://domino..blobs/mlflow'] } }, /^migration\.completedFrom\.0: "s3:\/\/domino\.\.blobs\/mlflow" is not valid \(bucket "domino\.\.blobs" has two adjacent periods\)/],
    ['enforceLocations not a boolean', { ...base, trigger: { enforceLocations: 'yes' } }, /^trigger\.enforceLocations: "yes" must be boolean,null/],
    ['unknown location policy', { ...base, trigger: { locationPolicy: 'on' } }, /^trigger\.locationPolicy: "on" is not one of "off", "audit", "enforce"/],
    ['enforceLocations disagreeing with locationPolicy', { ...base, trigger: { enforceLocations: true, locationPolicy: 'audit' } },
      /^trigger\.enforceLocations: true is deprecated and means locationPolicy enforce, which disagrees with trigger\.locationPolicy: "audit"; remove trigger\.enforceLocations \(helm upgrade --reuse-values keeps it/],
    ['enforceLocations false beside enforce', { ...base, trigger: { enforceLocations: false, locationPolicy: 'enforce' } }, /^trigger\.enforceLocations: false is deprecated and means locationPolicy off, which disagrees/],
    ['tls 1.1', { ...base, server: { tlsMinVersion: 'TLSv1.1' } }, /^server\.tlsMinVersion: "TLSv1.1" is not one of "TLSv1.2", "TLSv1.3"/],
    ['metrics on the HTTPS port', { ...base, server: { port: 9443, metricsPort: 9443 } }, /^server\.metricsPort: 9443 must differ from server\.port \(the metrics listener is a second port; 0 turns it off\)/],
    ['metrics port out of range', { ...base, server: { metricsPort: 70000 } }, /^server\.metricsPort: 70000 must be <= 65535/],
  ];
  for (const [what, input, expected] of cases) {
    const found = problems(input);
    t.equal(found.length, 1, `${what}: one problem (${found.join(' | ')})`);
    t.match(found[0], expected, what);
  }
  const many = problems({ roleArn: 'nope', artifactsDestination: 'nope', extra: 1, token: { defaultMode: 9999 } });
  t.equal(many.length, 4, `every problem is listed: ${many.join(' | ')}`);
  t.same(problems(null), ['(top level): the config must be a mapping of keys to values']);
  t.same(problems(['a']), ['(top level): the config must be a mapping of keys to values']);
  t.throws(() => parseConfigText('roleArn: [unclosed'), /not valid YAML or JSON/);
  t.throws(() => loadConfig('/nonexistent/config.yaml'), /cannot read: ENOENT/);
});

t.test('the location base must leave room for a project id within MLflow\'s 157 characters', async (t) => {
  // s3://<bucket>/ plus prefix/ : pick lengths around the limit
  const dest = `s3://${'b'.repeat(40)}`;
  const prefixFor = (baseLength: number) => 'p'.repeat(baseLength - dest.length - 2);
  t.same(problems({ ...base, artifactsDestination: dest, trigger: { prefix: prefixFor(MAX_LOCATION_LENGTH - 1) } }), [], 'a 156-character base leaves one character');
  const full = problems({ ...base, artifactsDestination: dest, trigger: { prefix: prefixFor(MAX_LOCATION_LENGTH) } });
  t.equal(full.length, 1);
  t.match(full[0], /^trigger\.prefix: "p+\.\.\. is not valid \(the project location base "s3:\/\/b+\/p+\/" is 157 characters, which leaves no room within the 157-character limit on experiment locations: MLflow stores each run's <location>\/<32-hex run id>\/artifacts in runs\.artifact_uri, VARCHAR\(200\)\)/);
  const longDest = `s3://${'b'.repeat(60)}/${'d'.repeat(100)}`;
  t.match(problems({ ...base, artifactsDestination: longDest, trigger: { prefix: '' } }), [/^artifactsDestination: .*\(the project location base .* is 167 characters/]);
  t.match(problems({ ...base, artifactsDestination: longDest, trigger: { mode: 'custom-location' } }), [/^artifactsDestination: .*\(the allowed location prefix .* is 167 characters/], 'custom mode: the default allowed prefix');
  t.match(problems({ ...base, trigger: { mode: 'custom-location', allowedLocationPrefixes: ['s3://team-bucket/', longDest] } }), [/^trigger\.allowedLocationPrefixes\.1: /]);
  t.same(problems({ ...base, artifactsDestination: longDest, trigger: { mode: 'custom-location', allowedLocationPrefixes: ['s3://team-bucket/'] } }), [], 'custom mode does not use the project base');
});

t.test('the proxied location style', async (t) => {
  const proxied = parseConfig({ ...base, trigger: { locationStyle: 'proxied' } });
  t.same(proxied.trigger.allowedLocationPrefixes, ['mlflow-artifacts:/'], 'custom locations default to anything the proxy serves');
  t.same(problems({ ...base, trigger: { locationStyle: 'proxied', mode: 'custom-location', allowedLocationPrefixes: ['mlflow-artifacts:/teams', 's3://team-bucket/x/', 'mlflow-artifacts:/'] } }), []);
  // the proxied base does not contain artifactsDestination: a destination too long for direct locations leaves room here
  const longDest = `s3://${'b'.repeat(60)}/${'d'.repeat(100)}`;
  t.match(problems({ ...base, artifactsDestination: longDest }), [/the project location base/], 'direct: no room');
  t.same(problems({ ...base, artifactsDestination: longDest, trigger: { locationStyle: 'proxied', prefix: 'p'.repeat(128) } }), [], 'proxied: room even with the longest prefix');
});

t.test('MLflow\'s default location for an experiment, joined as MLflow joins it', async (t) => {
  const vectors = JSON.parse(readFileSync(join(root, 'test/fixtures/mlflow/default-locations.json'), 'utf8')) as { cases: Array<{ root: string; experiment0: string; experiment42: string }> };
  t.ok(vectors.cases.length >= 20);
  for (const v of vectors.cases) {
    t.equal(`${mlflowDefaultPrefix(v.root)}0`, v.experiment0, `${v.root} → ${v.experiment0}`);
    t.equal(`${mlflowDefaultPrefix(v.root)}42`, v.experiment42);
  }
  t.equal(parseConfig({ ...base, trigger: { defaultArtifactRoot: 'mlflow-artifacts:/' } }).trigger.defaultArtifactRoot, 'mlflow-artifacts:/');
});

t.test('one voice in the CLI: allowed values listed, the bucket rule stated, the chart\'s values file recognised, kubeconfigs named with their source', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { NODE_OPTIONS: _loaders, KUBECONFIG: _kc, ...env } = process.env;
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(root, 'dist/cli.js'), ...args], { encoding: 'utf8', timeout: 20_000, env: { ...env, HOME: dir, ...extra } });
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'roleArn: arn:aws:iam::111122223333:role/x\nartifactsDestination: s3://My_Bucket\nlogLevel: verbose\n');
  let r = cli(['serve', '--config', bad]);
  t.equal(r.status, 2);
  t.match(r.stderr, /logLevel: "verbose" is not one of "fatal", "error", "warn", "info", "debug", "trace", "silent"/, 'an enum lists its values');
  t.match(r.stderr, /artifactsDestination: "s3:\/\/My_Bucket" is not valid \(.*a bucket name is 3 to 63 lowercase letters, digits, "\." and "-"/, 'the bucket rule is stated');

  r = cli(['doctor', '--config', join(root, 'charts/mlflow-irsa-webhook/values.yaml')]);
  t.equal(r.status, 2);
  t.match(r.stderr, /this is the Helm chart's values file, not the program's config: give it with --values .*values\.yaml/);
  t.notMatch(r.stderr, /unknown key/, 'not one line per chart value');

  // an unreadable kubeconfig is exit 2 naming the file and where it came from, on every command, serve included
  const missing = join(dir, 'missing-kubeconfig');
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['serve', '--config', exampleConfig, '--kubeconfig', missing], {}, /serve: --kubeconfig .*missing-kubeconfig: cannot read it \(ENOENT\)/],
    [['serve', '--config', exampleConfig], { KUBECONFIG: missing }, /serve: .*missing-kubeconfig, named by \$KUBECONFIG, cannot be read \(ENOENT\)/],
    [['doctor', '--config', exampleConfig], { KUBECONFIG: missing }, /doctor: .*missing-kubeconfig, named by \$KUBECONFIG, cannot be read/],
    [['restart-target', '--config', exampleConfig, '--kubeconfig', missing], {}, /restart-target: --kubeconfig .*: cannot read it/],
    [['bootstrap-cert', 'create', '--config', exampleConfig, '--webhook-namespace', 'n', '--tls-secret', 's', '--service', 's'], { KUBECONFIG: missing }, /bootstrap-cert: .*named by \$KUBECONFIG, cannot be read/],
  ];
  for (const [args, extra, message] of cases) {
    const res = cli(args, extra);
    t.equal(res.status, 2, `${args[0]} ${JSON.stringify(extra)}: exit 2`);
    t.match(res.stderr, message);
    t.equal(res.stdout, '', 'it never started');
  }
  // none at all: where it looked
  r = cli(['bootstrap-cert', 'patch', '--config', exampleConfig, '--webhook-namespace', 'n', '--tls-secret', 's', '--webhook-config', 'w']);
  t.equal(r.status, 2);
  t.match(r.stderr, /no cluster credentials: no --kubeconfig, no \$KUBECONFIG, no .*\.kube\/config, and not in a pod/);
});

t.test('the CLI exits 2 before listening, one line per problem', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'roleArn: arn:aws:iam::1:role/x\nartifactsDestination: s3://Bad\nfoo: 1\n');
  const cli = (...args: string[]) => spawnSync(process.execPath, [join(root, 'dist/cli.js'), ...args], { encoding: 'utf8', timeout: 20_000 });
  const r = cli('serve', '--config', bad, '--port', '0');
  t.equal(r.status, 2);
  t.equal(r.stdout, '', 'nothing on stdout: it never started');
  const lines = r.stderr.trim().split('\n');
  t.match(lines[0], /^invalid config .*bad\.yaml:$/);
  t.equal(lines.length, 4, 'a header and three problems');
  t.match(r.stderr, /foo: unknown key/);
  t.match(r.stderr, /roleArn: "arn:aws:iam::1:role\/x" is not valid/);
  t.match(r.stderr, /artifactsDestination: "s3:\/\/Bad" is not valid/);

  const usage: Array<[string[], RegExp]> = [
    [['serve'], /--config FILE or --values FILE is required/],
    [['serve', '--config', exampleConfig, '--port', 'abc'], /--port: "abc" is not a whole number in 1\.\.65535/],
    [['serve', '--config', exampleConfig, '--port', '70000'], /--port: "70000" is not a whole number/],
    [['serve', '--config', exampleConfig, '--tls-cert', 'a.pem'], /--tls-cert and --tls-key go together/],
    [['serve', '--config', exampleConfig, '--bogus'], /Unknown option '--bogus'/],
    [['frobnicate'], /unknown command "frobnicate"\nusage:/],
    [['instal-trigger'], /unknown command "instal-trigger"; did you mean "install-trigger"\?/],
    [['docter'], /unknown command "docter"; did you mean "doctor"\?/],
    [[], /usage: mlflow-irsa-webhook <command>/],
  ];
  for (const [args, message] of usage) {
    const res = cli(...args);
    t.equal(res.status, 2, `${args.join(' ')} → exit 2`);
    t.match(res.stderr, message, args.join(' '));
  }
  const help = cli('--help');
  t.equal(help.status, 0);
  t.match(help.stdout, /serve\s+run the admission webhook over HTTPS/);
  t.match(cli('serve', '--help').stdout, /--tls-cert FILE --tls-key FILE/);
  const missingCert = cli('serve', '--config', exampleConfig, '--port', '1', '--tls-cert', join(dir, 'none.pem'), '--tls-key', join(dir, 'none.key'));
  t.equal(missingCert.status, 1);
  t.match(missingCert.stderr, /ENOENT.*none\.pem/);
});

t.test('--config-env NAME: the config text from an environment variable (the chart\'s hook Jobs carry it in their spec), validated the same', async (t) => {
  const cli = (env: Record<string, string>, ...args: string[]) =>
    spawnSync(process.execPath, [join(root, 'dist/cli.js'), ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
  const provider = ['--oidc-provider', 'oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE'];
  const text = readFileSync(exampleConfig, 'utf8');
  const viaEnv = cli({ MLFLOW_IRSA_WEBHOOK_CONFIG: text }, 'iam-policy', '--config-env', 'MLFLOW_IRSA_WEBHOOK_CONFIG', ...provider);
  const viaFile = cli({}, 'iam-policy', '--config', exampleConfig, ...provider);
  t.equal(viaEnv.status, 0, viaEnv.stderr);
  t.equal(viaEnv.stdout, viaFile.stdout, 'the same config as from the file');
  const bad = cli({ CFG: 'roleArn: arn:aws:iam::1:role/x\nartifactsDestination: s3://bkt\n' }, 'serve', '--config-env', 'CFG');
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^invalid config \$CFG:\n {2}- roleArn: "arn:aws:iam::1:role\/x" is not valid/, 'problems name the variable as the source');
  const unset = cli({}, 'serve', '--config-env', 'NO_SUCH_CONFIG_VARIABLE');
  t.equal(unset.status, 2);
  t.match(unset.stderr, /^invalid config \$NO_SUCH_CONFIG_VARIABLE:\n {2}- \(environment\): not set/);
  const both = cli({ CFG: text }, 'serve', '--config', exampleConfig, '--config-env', 'CFG');
  t.equal(both.status, 2);
  t.match(both.stderr, /serve: --config and --config-env are mutually exclusive/);
  const withValues = cli({ CFG: text }, 'iam-policy', '--config-env', 'CFG', '--values', exampleConfig, ...provider);
  t.match(withValues.stderr, /iam-policy: --config-env and --values are mutually exclusive/);
});

t.test('diff: the patch mechanism', async (t) => {
  const cases: Array<[string, any, any, any[]]> = [
    ['equal', { a: [1, { name: 'x' }] }, { a: [1, { name: 'x' }] }, []],
    ['add key with escaping', { m: {} }, { m: { 'a/b~c': 1 } }, [{ op: 'add', path: '/m/a~1b~0c', value: 1 }]],
    ['remove key', { a: 1, b: 2 }, { a: 1 }, [{ op: 'remove', path: '/b' }]],
    ['replace scalar', { a: 1 }, { a: '1' }, [{ op: 'replace', path: '/a', value: '1' }]],
    ['object to array', { a: {} }, { a: [] }, [{ op: 'replace', path: '/a', value: [] }]],
    ['remove from the middle of a named list', { env: [{ name: 'A' }, { name: 'B', value: 's' }, { name: 'C' }] }, { env: [{ name: 'A' }, { name: 'C' }] }, [{ op: 'remove', path: '/env/1' }]],
    ['edit inside a kept entry after a removal', { env: [{ name: 'X' }, { name: 'A', value: '1' }] }, { env: [{ name: 'A', value: '2' }] },
      [{ op: 'remove', path: '/env/0' }, { op: 'replace', path: '/env/0/value', value: '2' }]],
    ['append', { v: [{ name: 'a' }] }, { v: [{ name: 'a' }, { name: 'b' }] }, [{ op: 'add', path: '/v/1', value: { name: 'b' } }]],
    ['scalar lists by value', { args: ['a', 'b', 'c'] }, { args: ['a', 'c', 'd'] }, [{ op: 'remove', path: '/args/1' }, { op: 'add', path: '/args/2', value: 'd' }]],
    ['undefined means absent', { a: 1 }, { a: 1, b: undefined }, []],
  ];
  for (const [what, a, b, expected] of cases) {
    const ops = diff(a, b);
    t.same(ops, expected, what);
    t.same(applyStrict(a, ops), JSON.parse(JSON.stringify(b)), `${what}: applies strictly`);
  }
  // reorders, duplicates and insertions in the middle still give a correct (if longer) patch
  const a = { l: [{ name: 'a' }, { name: 'b' }, { name: 'a', v: 2 }, { name: 'c' }, 5, 'x'] };
  const b = { l: [{ name: 'c' }, { name: 'new' }, { name: 'a', v: 3 }, 'x', { name: 'b' }] };
  t.same(applyStrict(a, diff(a, b)), b, 'arbitrary list edits apply strictly to the target');
});

t.test('the precompiled validator is the schema\'s', async (t) => {
  // scripts/gen-config-validator.mjs reads dist/config/schema.js, which `npm test` builds first
  const r = spawnSync(process.execPath, [join(root, 'scripts/gen-config-validator.mjs'), '--check'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0, `run \`npm run gen:validator\` after changing src/config/schema.ts: ${r.stderr}`);
});
