// libpq's sslmode against real PostgreSQL servers (no TLS, self-signed, CA-signed, TLS required): every mode's outcome
// as a table, checked against our connection code and, where psql is installed, against libpq itself; the errors that
// name the mode and the reason; and the chart's trigger Jobs, rendered by helm and run with their exact args and env.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import pg from 'pg';
import { TriggerError, withDatabase } from '../src/db/connect.js';
import { DatabaseTlsError, planConnection, SSL_MODES, type SslMode } from '../src/db/ssl.js';
import { createLogger } from '../src/log.js';
import { createCa, createServingCert } from '../src/webhook/tls.js';
import { FULL, one, render, TARGET_NS, type Obj } from './helpers/chart.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { startPostgres, type TestPostgres } from './helpers/pg.js';

const exec = promisify(execFile);
const HOST = '127.0.0.1';
const SERVERS = ['no TLS', 'self-signed', 'CA-signed', 'TLS required'] as const;
type ServerName = (typeof SERVERS)[number];
type Failure = 'no TLS on server' | 'no root certificate' | 'untrusted' | 'wrong host' | 'pg_hba refuses';
type Outcome = 'plaintext' | 'TLS' | Failure;

// ---- the expected matrix: libpq's outcome of every sslmode against every server ----
//
// Servers: "no TLS" is ssl=off (Domino's bundled mlflow-postgresql as shipped); "self-signed" and "CA-signed" serve TLS
// with a certificate for 127.0.0.1 and accept both transports; "TLS required" accepts only TLS (pg_hba hostssl lines)
// and shows a CA-signed certificate for db.example.test, not for 127.0.0.1. The test CA signed the CA-signed and the
// TLS-required servers' certificates, not the self-signed one.
// Roots: "none" (no PGSSLROOTCERT, and no ~/.postgresql/root.crt) or the test CA as PGSSLROOTCERT / sslrootcert=.
// libpq rules behind the cells: with a root certificate every TLS attempt checks the chain (require then acts as
// verify-ca); prefer falls back to plaintext when the server refuses TLS or the handshake fails; allow retries over TLS
// when pg_hba refuses plaintext. One cell differs from libpq in the wording only: verify-* without a root against the
// server without TLS fails here on the missing root certificate, where libpq first meets the refused SSLRequest.
const MATRIX: ReadonlyArray<readonly [ServerName, 'none' | 'test CA', ...Outcome[]]> = [
  // server         root       disable           allow        prefer       require             verify-ca              verify-full
  ['no TLS',       'none',    'plaintext',      'plaintext', 'plaintext', 'no TLS on server', 'no root certificate', 'no root certificate'],
  ['self-signed',  'none',    'plaintext',      'plaintext', 'TLS',       'TLS',              'no root certificate', 'no root certificate'],
  ['CA-signed',    'none',    'plaintext',      'plaintext', 'TLS',       'TLS',              'no root certificate', 'no root certificate'],
  ['TLS required', 'none',    'pg_hba refuses', 'TLS',       'TLS',       'TLS',              'no root certificate', 'no root certificate'],
  ['no TLS',       'test CA', 'plaintext',      'plaintext', 'plaintext', 'no TLS on server', 'no TLS on server',    'no TLS on server'],
  ['self-signed',  'test CA', 'plaintext',      'plaintext', 'plaintext', 'untrusted',        'untrusted',           'untrusted'],
  ['CA-signed',    'test CA', 'plaintext',      'plaintext', 'TLS',       'TLS',              'TLS',                 'TLS'],
  ['TLS required', 'test CA', 'pg_hba refuses', 'TLS',       'TLS',       'TLS',              'TLS',                 'wrong host'],
];

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The message each refusal must carry: the mode, and the reason in words an operator can act on. */
function expectedError(failure: Failure, mode: SslMode): RegExp {
  const host = escape(`"${HOST}"`);
  switch (failure) {
    case 'no TLS on server': return new RegExp(`^sslmode=${mode}\\b.*: the server at ${host} does not support TLS \\(SSL\\), and this sslmode requires it`);
    case 'no root certificate': return new RegExp(`^sslmode=${mode} \\((PGSSLMODE|sslmode= in --database-url)\\) needs a root certificate to check the server's certificate against`);
    case 'untrusted': return new RegExp(`^sslmode=${mode}\\b.*: server certificate for ${host} is not trusted by (PGSSLROOTCERT |sslrootcert=)${escape(caFile)}.*: self-signed certificate \\[DEPTH_ZERO_SELF_SIGNED_CERT\\]$`);
    case 'wrong host': return new RegExp(`^sslmode=${mode}: server certificate does not name the host ${host}: .*\\[ERR_TLS_CERT_ALTNAME_INVALID\\]$`);
    case 'pg_hba refuses': return /no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption/;
  }
}

// ---- servers, certificates, and the helpers that connect ----

const servers = {} as Record<ServerName, TestPostgres>;
let dir: string;
let caFile: string;
/** a HOME without ~/.postgresql/root.crt, so libpq's default root certificate never joins in unasked */
let emptyHome: string;
const MLFLOW_PASSWORD = 'Mlflow-Db-Secret-4c1d9e';
const PLAIN_ONLY_PASSWORD = 'Plain-Only-Secret-93ab07';
// The tables install-trigger needs, as MLflow's migrations leave them (only the columns the trigger touches).
const MLFLOW_TABLES = `CREATE TABLE experiments (experiment_id SERIAL PRIMARY KEY, name VARCHAR(256) NOT NULL UNIQUE, artifact_location VARCHAR(256), lifecycle_stage VARCHAR(32), creation_time BIGINT, last_update_time BIGINT);
  CREATE TABLE experiment_tags (key VARCHAR(250) NOT NULL, value VARCHAR(5000), experiment_id INTEGER NOT NULL REFERENCES experiments, PRIMARY KEY (key, experiment_id));`;

function capture() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (s: string) => void lines.push(s) });
  return { lines, logger, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

interface Connect {
  readonly mode?: string;
  readonly root?: string;
  /** sslmode/sslrootcert as URL parameters instead of PGSSLMODE/PGSSLROOTCERT */
  readonly viaUrl?: boolean;
  readonly user?: string;
  readonly password?: string;
  readonly database?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Connects through withDatabase (as install-trigger does) and asks the server whether this session is encrypted. */
async function connect(server: TestPostgres, opts: Connect = {}) {
  const log = capture();
  const user = opts.user ?? server.user;
  const params = new URLSearchParams();
  const env: NodeJS.ProcessEnv = { HOME: emptyHome, ...opts.env };
  if (opts.viaUrl) {
    if (opts.mode !== undefined) params.set('sslmode', opts.mode);
    if (opts.root !== undefined) params.set('sslrootcert', opts.root);
  } else {
    if (opts.mode !== undefined) env.PGSSLMODE = opts.mode;
    if (opts.root !== undefined) env.PGSSLROOTCERT = opts.root;
  }
  const query = params.size > 0 ? `?${params}` : '';
  const databaseUrl = `postgres://${user}:${encodeURIComponent(opts.password ?? server.password)}@${HOST}:${server.port}/${opts.database ?? 'postgres'}${query}`;
  // A long --wait: a refusal must be reported at once, so a refusal that became retryable would show as "gave up".
  const result = await withDatabase({ databaseUrl, waitSeconds: 30, env }, log.logger, async (c) => {
    const { rows } = await c.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return rows[0].ssl ? 'TLS' : 'plaintext';
  }).then((outcome) => ({ outcome, error: undefined }), (error: Error) => ({ outcome: 'error', error }));
  return { ...result, log };
}

/** libpq's own outcome for the same connection, through psql. */
async function libpqOutcome(server: TestPostgres, mode: string, rootFile: string | undefined, user = server.user, password = server.password): Promise<string> {
  const env = { PATH: process.env.PATH ?? '', HOME: emptyHome, PGPASSWORD: password, PGSSLMODE: mode, PGCONNECT_TIMEOUT: '10', ...(rootFile && { PGSSLROOTCERT: rootFile }) };
  const out = await exec('psql', ['-X', '-A', '-t', '-c', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()', `host=${HOST} port=${server.port} dbname=postgres user=${user}`], { env })
    .then((r) => r.stdout.trim(), () => 'fails');
  return out === 't' ? 'TLS' : out === 'f' ? 'plaintext' : 'fails';
}
const psqlInstalled = await exec('psql', ['--version']).then(() => true, () => false);
// pg-connection-string warns (once per process) when it reads sslmode itself: it never should, so none may appear.
const processWarnings: string[] = [];
process.on('warning', (w) => processWarnings.push(w.message));

t.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mlflow-irsa-db-tls-'));
  emptyHome = join(dir, 'home');
  await mkdir(emptyHome);
  const ca = await createCa('mlflow-irsa-webhook test CA', 2);
  caFile = join(dir, 'ca.crt');
  await writeFile(caFile, ca.cert);
  const [selfSigned, caSigned, otherHost] = await Promise.all([
    createServingCert(['localhost', HOST], 2),
    createServingCert(['localhost', HOST], 2, ca),
    createServingCert(['db.example.test'], 2, ca),
  ]);
  const hba = (type: string) => [`${type} all all 127.0.0.1/32 scram-sha-256`, `${type} all all ::1/128 scram-sha-256`];
  const started = await Promise.all([
    startPostgres(),
    startPostgres({ tls: selfSigned }),
    // the role plainonly may log in in plaintext only: prefer must fall back when pg_hba refuses its TLS connection
    startPostgres({ tls: caSigned, hba: ['hostssl all plainonly 127.0.0.1/32 reject', ...hba('host')] }),
    startPostgres({ tls: otherHost, hba: hba('hostssl') }),
  ]);
  SERVERS.forEach((name, i) => (servers[name] = started[i]));
  for (const server of started) {
    const admin = await server.client();
    await admin.query(`CREATE ROLE mlflow LOGIN PASSWORD ${pg.escapeLiteral(MLFLOW_PASSWORD)}`);
    await admin.query(`CREATE ROLE plainonly LOGIN PASSWORD ${pg.escapeLiteral(PLAIN_ONLY_PASSWORD)}`);
    await admin.query('CREATE DATABASE mlflow OWNER mlflow');
    await admin.end();
    const owner = new pg.Client({ connectionString: `postgres://mlflow:${MLFLOW_PASSWORD}@${HOST}:${server.port}/mlflow`, ssl: server === started[3] ? { rejectUnauthorized: false } : false });
    await owner.connect();
    await owner.query(MLFLOW_TABLES);
    await owner.end();
  }
});
t.teardown(async () => {
  await Promise.all(Object.values(servers).map((s) => s.stop()));
  await rm(dir, { recursive: true, force: true });
});

// ---- the matrix ----

t.test('every sslmode against every server gives libpq\'s outcome (PGSSLMODE/PGSSLROOTCERT and URL parameters alike)', async (t) => {
  const measured: string[] = ['| server | root | ' + SSL_MODES.join(' | ') + ' |', '|---|---|' + SSL_MODES.map(() => '---').join('|') + '|'];
  for (const [serverName, rootName, ...outcomes] of MATRIX) {
    const server = servers[serverName];
    const rootFile = rootName === 'test CA' ? caFile : undefined;
    const row: string[] = [];
    for (const [i, mode] of SSL_MODES.entries()) {
      const expected = outcomes[i];
      for (const viaUrl of [false, true]) {
        const label = `${serverName}, root ${rootName}, sslmode=${mode} via ${viaUrl ? 'URL' : 'environment'}`;
        const r = await connect(server, { mode, root: rootFile, viaUrl });
        if (expected === 'plaintext' || expected === 'TLS') {
          t.equal(r.outcome, expected, `${label}: ${r.error?.message ?? ''}`);
        } else {
          t.equal(r.outcome, 'error', label);
          t.ok(r.error instanceof TriggerError, `${label}: reported as a failure of install-trigger`);
          t.match(r.error?.message, expectedError(expected, mode), label);
          t.notMatch(r.error?.message, /gave up after/, `${label}: refused at once, never retried`);
        }
        t.notMatch(r.log.lines.join(''), server.password, `${label}: the password appears in no log line`);
        if (!viaUrl) row.push(r.outcome === 'error' ? `refused (${expected})` : r.outcome);
      }
    }
    measured.push(`| ${serverName} | ${rootName} | ${row.join(' | ')} |`);
  }
  t.comment(`measured:\n${measured.join('\n')}`);
});

t.test('libpq itself (psql) gives the same outcome in every cell', { skip: !psqlInstalled && 'psql is not installed here; the table is then the only reference' }, async (t) => {
  for (const [serverName, rootName, ...outcomes] of MATRIX) {
    const rootFile = rootName === 'test CA' ? caFile : undefined;
    const actual = await Promise.all(SSL_MODES.map((mode) => libpqOutcome(servers[serverName], mode, rootFile)));
    const expected = outcomes.map((o) => (o === 'plaintext' || o === 'TLS' ? o : 'fails'));
    t.same(actual, expected, `${serverName}, root ${rootName}: ${SSL_MODES.join(', ')}`);
  }
  t.equal(await libpqOutcome(servers['CA-signed'], 'prefer', caFile, 'plainonly', PLAIN_ONLY_PASSWORD), 'plaintext', 'prefer falls back when pg_hba refuses TLS');
});

// ---- the rules behind the cells, one at a time ----

t.test('prefer and allow fall back exactly when libpq does, and say so in the log', async (t) => {
  const noTls = await connect(servers['no TLS'], { mode: 'prefer' });
  t.equal(noTls.outcome, 'plaintext');
  t.ok(noTls.log.records().some((r) => r.level === 'info' && r.msg === 'the server does not support TLS; sslmode=prefer goes on in plaintext'));
  t.match(noTls.log.records().find((r) => r.msg === 'connected to the tracking database'), { tls: false, sslmode: 'prefer' });

  const upgraded = await connect(servers['TLS required'], { mode: 'allow' });
  t.equal(upgraded.outcome, 'TLS', 'allow upgrades to TLS when pg_hba refuses plaintext');
  t.match(upgraded.log.records().find((r) => r.msg === 'the server refused plaintext; sslmode=allow tries TLS'), { reason: /no pg_hba\.conf entry .* no encryption/ });

  const plainOnly = await connect(servers['CA-signed'], { mode: 'prefer', root: caFile, user: 'plainonly', password: PLAIN_ONLY_PASSWORD });
  t.equal(plainOnly.outcome, 'plaintext', 'prefer retries in plaintext when pg_hba refuses the TLS connection');
  t.match(plainOnly.log.records().find((r) => r.level === 'warn'), { msg: 'TLS failed; sslmode=prefer goes on in plaintext', reason: /pg_hba\.conf rejects connection/ });

  const untrusted = await connect(servers['self-signed'], { mode: 'prefer', root: caFile });
  t.equal(untrusted.outcome, 'plaintext', 'prefer with a root certificate: a certificate that fails the check means plaintext, as in libpq');
  t.match(untrusted.log.records().find((r) => r.level === 'warn'), { reason: /not trusted by PGSSLROOTCERT .*DEPTH_ZERO_SELF_SIGNED_CERT/ });

  const unchecked = await connect(servers['CA-signed'], { mode: 'prefer' });
  t.match(unchecked.log.records().find((r) => r.msg === 'connected to the tracking database'), { tls: true, certificateChecked: false });
  const checked = await connect(servers['CA-signed'], { mode: 'verify-full', root: caFile });
  t.match(checked.log.records().find((r) => r.msg === 'connected to the tracking database'), { tls: true, certificateChecked: true });
});

t.test('failures after the server answered: a wrong password under prefer reports both attempts once, allow and a missing database stop where libpq stops', async (t) => {
  const wrong = 'Wrong-Password-0d7e51';
  const r = await connect(servers['self-signed'], { mode: 'prefer', password: wrong });
  t.equal(r.outcome, 'error');
  t.match(r.error?.message, /^authentication failed: check PGUSER and PGPASSWORD .*password authentication failed for user "postgres" \(in plaintext; before that, over TLS: password authentication failed/);
  t.notMatch(r.error?.message, /gave up after/);
  t.notMatch(r.log.lines.join('') + r.error?.message, wrong);
  // allow: plaintext refused, then the TLS retry meets a server without TLS; libpq goes on in plaintext and meets the same refusal
  const allow = await connect(servers['no TLS'], { mode: 'allow', password: wrong });
  t.match(allow.error?.message, /^authentication failed: check PGUSER and PGPASSWORD .*password authentication failed for user "postgres"\)$/, 'only the refusal that matters');
  // an error after authentication (the database is missing) ends the attempts, as libpq's CONNECTION_AUTH_OK state does
  const missing = await connect(servers['self-signed'], { mode: 'prefer', database: 'no_such_db' });
  t.match(missing.error?.message, /^the database does not exist: check PGDATABASE .*database "no_such_db" does not exist\)$/);
  t.notOk(missing.log.records().some((r) => r.msg === 'TLS failed; sslmode=prefer goes on in plaintext'), 'no plaintext retry');
});

t.test('the URL\'s sslmode and sslrootcert win over the environment; node-postgres never reads them', async (t) => {
  const env = { HOME: emptyHome, PGSSLMODE: 'disable', PGSSLROOTCERT: join(dir, 'missing.crt') };
  const plan = await planConnection({ databaseUrl: `postgres://u:p@h:5/db?application_name=x&sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}&connect_timeout=5`, env });
  t.match(plan.tls, { sslMode: 'verify-full', sslModeOrigin: 'sslmode= in --database-url', root: { origin: `sslrootcert=${caFile} in --database-url` } });
  t.equal(plan.connectionString, 'postgres://u:p@h:5/db?application_name=x&connect_timeout=5', 'the other parameters stay as written');
  t.same(plan.attempts, ['tls']);
  const fromEnv = await planConnection({ databaseUrl: 'postgres://u:p@h/db', env: { HOME: emptyHome, PGSSLMODE: 'allow' } });
  t.match(fromEnv, { tls: { sslMode: 'allow', sslModeOrigin: 'PGSSLMODE' }, attempts: ['plaintext', 'tls'] });
  t.notOk(fromEnv.tls.root);
  const byDefault = await planConnection({ env: { HOME: emptyHome } });
  t.match(byDefault, { tls: { sslMode: 'prefer', sslModeOrigin: "libpq's default" }, attempts: ['tls', 'plaintext'] });
  // pg's parser would make sslmode=require "verify-full" and refuse this server's self-signed certificate
  const r = await connect(servers['self-signed'], { mode: 'require', viaUrl: true });
  t.equal(r.outcome, 'TLS', 'sslmode=require in the URL encrypts without checking, as in libpq');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(processWarnings.filter((w) => /ssl ?mode/i.test(w)), [], 'node-postgres never saw an sslmode (it warns when it does)');
});

t.test('bad TLS settings are refused before connecting, with the key, the value and the rule', async (t) => {
  const secretUrl = 'postgres://mlflow:Url-Secret-77@h/db';
  const refusal = async (databaseUrl: string | undefined, env: NodeJS.ProcessEnv) =>
    planConnection({ databaseUrl, env: { HOME: emptyHome, ...env } }).then(() => undefined, (e: Error) => e);
  const cases: Array<[string | undefined, NodeJS.ProcessEnv, RegExp]> = [
    [undefined, { PGSSLMODE: 'verify' }, /^invalid sslmode "verify" \(PGSSLMODE\): use one of disable, allow, prefer, require, verify-ca, verify-full$/],
    [undefined, { PGSSLMODE: '' }, /^invalid sslmode "" \(PGSSLMODE\)/],
    [`${secretUrl}?sslmode=Require`, {}, /^invalid sslmode "Require" \(sslmode= in --database-url\): use one of/],
    [`${secretUrl}?ssl=true`, {}, /^--database-url parameter "ssl" is not supported: the TLS settings understood here are sslmode and sslrootcert/],
    [`${secretUrl}?sslmode=require&uselibpqcompat=true`, {}, /parameter "uselibpqcompat" is not supported/],
    [`${secretUrl}?sslcert=/c.crt&sslkey=/c.key`, {}, /parameter "sslcert" is not supported/],
    [undefined, { PGSSLROOTCERT: join(dir, 'missing.crt') }, new RegExp(`^cannot read the root certificate file \\(PGSSLROOTCERT ${escape(join(dir, 'missing.crt'))}\\): ENOENT`)],
    [undefined, { PGSSLROOTCERT: dir }, /^cannot read the root certificate file \(PGSSLROOTCERT .*\): EISDIR/],
    [undefined, { PGSSLROOTCERT: join(dir, 'not-pem.crt') }, /^the root certificate file \(PGSSLROOTCERT .*not-pem\.crt\) holds no PEM certificate/],
    [undefined, { PGSSLROOTCERT: join(dir, 'broken.crt') }, /^the root certificate file \(PGSSLROOTCERT .*broken\.crt\): certificate 1 of 1 does not parse/],
    [undefined, { PGSSLMODE: 'require', PGSSLROOTCERT: 'system' }, /^weak sslmode "require" may not be used with sslrootcert=system \(use "verify-full"\)$/],
    [`${secretUrl}?sslmode=disable&sslrootcert=system`, {}, /^weak sslmode "disable" may not be used with sslrootcert=system/],
    [undefined, { PGSSLMODE: 'verify-ca' }, new RegExp(`^sslmode=verify-ca \\(PGSSLMODE\\) needs a root certificate .* libpq's default ${escape(join(emptyHome, '.postgresql/root.crt'))} does not exist$`)],
  ];
  await writeFile(join(dir, 'not-pem.crt'), 'not a certificate\n');
  await writeFile(join(dir, 'broken.crt'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  for (const [url, env, pattern] of cases) {
    const err = await refusal(url, env);
    t.ok(err instanceof DatabaseTlsError, `${JSON.stringify(env)} ${url ? 'URL' : ''}: refused`);
    t.match(err?.message, pattern);
    t.notMatch(err?.message, /Url-Secret-77/, 'the URL (it may hold the password) is never quoted');
  }
  // through the CLI: exit 1, the reason in the log's last line, no stack trace
  const config = join(dir, 'config.json');
  await writeFile(config, JSON.stringify({ roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access', artifactsDestination: 's3://sw-domino-project-based-mlflow' }));
  const server = servers['no TLS'];
  const cli = await runCli(['install-trigger', '--config', config, '--wait', '60'], {
    HOME: emptyHome, PGHOST: HOST, PGPORT: String(server.port), PGDATABASE: 'mlflow', PGUSER: 'mlflow', PGPASSWORD: MLFLOW_PASSWORD, PGSSLMODE: 'verify',
  });
  t.equal(cli.code, 1);
  t.match(JSON.parse(cli.stdout.trim().split('\n').at(-1) ?? '{}'), { level: 'error', msg: 'install-trigger failed (install)', reason: /^invalid sslmode "verify" \(PGSSLMODE\): use one of/ });
  t.equal(cli.stderr, '', 'no stack trace');
  // disable never looks at a certificate, as libpq
  t.match(await planConnection({ env: { PGSSLMODE: 'disable', PGSSLROOTCERT: join(dir, 'missing.crt') } }), { tls: { sslMode: 'disable' }, attempts: ['plaintext'] });
});

t.test('sslrootcert=system and libpq\'s default ~/.postgresql/root.crt', async (t) => {
  const system = await planConnection({ env: { HOME: emptyHome, PGSSLROOTCERT: 'system' } });
  t.match(system.tls, { sslMode: 'verify-full', sslModeOrigin: "libpq's default with sslrootcert=system", root: { origin: "the system's trusted roots (sslrootcert=system)" } });
  const bySystem = await connect(servers['CA-signed'], { root: 'system' });
  t.match(bySystem.error?.message, /^sslmode=verify-full: server certificate for "127\.0\.0\.1" is not trusted by the system's trusted roots \(sslrootcert=system\): .*\[UNABLE_TO_VERIFY_LEAF_SIGNATURE\]$/, 'a private CA is not among the system roots');

  const home = join(dir, 'home-with-root');
  await mkdir(join(home, '.postgresql'), { recursive: true });
  await writeFile(join(home, '.postgresql', 'root.crt'), await readFile(caFile, 'utf8'));
  const requireChecks = await connect(servers['self-signed'], { mode: 'require', env: { HOME: home } });
  t.match(requireChecks.error?.message, new RegExp(`^sslmode=require, which checks the chain because a root certificate is given: server certificate for "127\\.0\\.0\\.1" is not trusted by libpq's default root certificate ${escape(join(home, '.postgresql/root.crt'))}: self-signed certificate`), 'the default file makes require check the chain, as in libpq');
  const verified = await connect(servers['CA-signed'], { mode: 'verify-full', env: { HOME: home } });
  t.equal(verified.outcome, 'TLS', 'verify-full finds its root in the default file');
});

// ---- the chart's trigger Jobs, run as the cluster would run them ----

interface External {
  readonly secrets: Record<string, Record<string, string>>;
  readonly configMaps?: Record<string, Record<string, string>>;
}
const PASSWORD_SECRET = { 'mlflow-postgresql': { 'postgresql-password': MLFLOW_PASSWORD } };

/**
 * Runs a rendered Job's container as the kubelet would: the image's entrypoint (node dist/cli.js, from the Dockerfile)
 * with the Job's args and env; each volume written to a directory (ConfigMaps from the render or `external`, Secrets
 * from `external`), and the mount paths in args and env values mapped to those directories.
 */
async function runJob(objects: Obj[], job: Obj, external: External): Promise<CliResult> {
  const pod = job.spec.template.spec;
  const [container] = pod.containers;
  if (container.command) throw new Error(`${job.metadata.name}: the chart overrides the image's entrypoint; this runner knows only the Dockerfile's`);
  const jobDir = await mkdtemp(join(dir, 'job-'));
  const mapped: Array<[string, string]> = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
    const source = volume.configMap ?? volume.secret;
    const data: Record<string, string> | undefined = volume.configMap
      ? objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === source.name && o.metadata.namespace === job.metadata.namespace)?.data ?? external.configMaps?.[source.name]
      : volume.secret && external.secrets[source.secretName];
    if (!data) throw new Error(`${job.metadata.name}: volume ${mount.name} has no source here: ${JSON.stringify(volume)}`);
    const local = join(jobDir, mount.name);
    await mkdir(local);
    for (const { key, path } of source.items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
      // the kubelet would not start the pod without the key
      if (data[key] === undefined) throw new Error(`${job.metadata.name}: volume ${mount.name} lacks key ${key}`);
      await writeFile(join(local, path), data[key]);
    }
    mapped.push([mount.mountPath, local]);
  }
  const local = (s: string) => mapped.reduce((acc, [from, to]) => acc.split(`${from}/`).join(`${to}/`), s);
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = local(e.value);
    else if (e.valueFrom?.secretKeyRef) env[e.name] = external.secrets[e.valueFrom.secretKeyRef.name][e.valueFrom.secretKeyRef.key];
    else throw new Error(`${job.metadata.name}: env ${e.name} has a source this runner does not know`);
  }
  return runCli(container.args.map(local), { HOME: emptyHome, ...env });
}

const records = (stdout: string) => stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
async function triggers(server: TestPostgres): Promise<number> {
  const c = await server.client('mlflow');
  const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'public.experiment_tags'::regclass AND NOT tgisinternal");
  await c.end();
  return rows[0].n;
}
/** The chart with default values, pointed at a test server (its address is all that differs from a Domino install). */
const renderFor = (server: TestPostgres, set: string[] = []) => render([`database.host=${HOST}`, `database.port=${server.port}`, ...set]);

t.test('the chart\'s trigger Jobs with default values succeed against a server without TLS and one with a self-signed certificate', async (t) => {
  for (const name of ['no TLS', 'self-signed'] as const) {
    const server = servers[name];
    const objects = await renderFor(server);
    const install = await runJob(objects, one(objects, 'Job', `${FULL}-install-trigger`, TARGET_NS), { secrets: PASSWORD_SECRET });
    t.equal(install.code, 0, `${name}: install-trigger exits 0\n${install.stdout}${install.stderr}`);
    t.match(records(install.stdout).find((r) => r.msg === 'connected to the tracking database'), { sslmode: 'prefer', tls: name === 'self-signed' }, `${name}: ${name === 'self-signed' ? 'encrypted' : 'plaintext, as the server offers no TLS'}`);
    t.equal(await triggers(server), 1, `${name}: the trigger is installed`);
    const uninstall = await runJob(objects, one(objects, 'Job', `${FULL}-uninstall-trigger`, TARGET_NS), { secrets: PASSWORD_SECRET });
    t.equal(uninstall.code, 0, `${name}: the pre-delete Job exits 0\n${uninstall.stdout}`);
    t.equal(await triggers(server), 0, `${name}: the trigger is removed`);
    t.notMatch(install.stdout + install.stderr + uninstall.stdout + uninstall.stderr, MLFLOW_PASSWORD, 'the password appears nowhere');
  }
});

t.test('with database.tls (Secret or ConfigMap) and verify-full the Jobs check the server: its CA passes, a self-signed certificate is refused by name', async (t) => {
  const ca = { 'ca.crt': await readFile(caFile, 'utf8') };
  const server = servers['CA-signed'];
  for (const [label, set, external] of [
    ['caSecret', ['database.tls.caSecret.name=mlflow-postgresql-ca'], { secrets: { ...PASSWORD_SECRET, 'mlflow-postgresql-ca': ca } }],
    ['caConfigMap', ['database.tls.caConfigMap.name=mlflow-postgresql-ca', 'database.tls.caConfigMap.key=root.pem'], { secrets: PASSWORD_SECRET, configMaps: { 'mlflow-postgresql-ca': { 'root.pem': ca['ca.crt'] } } }],
  ] as const) {
    const objects = await renderFor(server, ['database.sslMode=verify-full', ...set]);
    const job = one(objects, 'Job', `${FULL}-install-trigger`, TARGET_NS);
    const r = await runJob(objects, job, external);
    t.equal(r.code, 0, `${label}: verified and installed\n${r.stdout}`);
    t.match(records(r.stdout).find((x) => x.msg === 'connected to the tracking database'), { tls: true, certificateChecked: true, sslmode: 'verify-full' });
    t.equal(await triggers(server), 1);
    t.equal((await runJob(objects, one(objects, 'Job', `${FULL}-uninstall-trigger`, TARGET_NS), external)).code, 0);
  }
  const selfSigned = await renderFor(servers['self-signed'], ['database.sslMode=verify-full', 'database.tls.caSecret.name=mlflow-postgresql-ca']);
  const refused = await runJob(selfSigned, one(selfSigned, 'Job', `${FULL}-install-trigger`, TARGET_NS), { secrets: { ...PASSWORD_SECRET, 'mlflow-postgresql-ca': ca } });
  t.equal(refused.code, 1, 'the Job fails');
  const error = records(refused.stdout).find((r) => r.level === 'error');
  t.match(error, { msg: 'install-trigger failed (install)', reason: /^sslmode=verify-full: server certificate for "127\.0\.0\.1" is not trusted by PGSSLROOTCERT \/.*\/db-ca\/ca\.crt: self-signed certificate \[DEPTH_ZERO_SELF_SIGNED_CERT\]$/ });
  t.notMatch(refused.stdout, /retrying/, 'a refused certificate is not retried');
});
