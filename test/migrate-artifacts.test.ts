// Specification of `migrate-artifacts`: on a real PostgreSQL seeded with MLflow's tables and a Domino's history
// (test/fixtures/migrate), local directories stand in for the two S3 destinations, a stand-in `aws` first on PATH
// (helpers/aws-standin.mjs) performs the generated script's `aws s3 sync`, and a stand-in of MLflow's artifact proxy
// serves mlflow-artifacts:/ references from the *current* destination, as MLflow's handlers do. Then the CLI's
// usage, the old destination's two sources, the JSON plan, the unmapped references and the quoting; and the pure rules.
// Last, the generated script as the real AWS CLI runs it against a local S3 (s3rver), for what a stand-in cannot prove.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config/config.js';
import { run as runCommand } from '../src/migrate/command.js';
import { destination, destinationProblem, dispose, escaped, overlaps, PrefixSet, renderAwsCli, UNMAPPED_REASONS } from '../src/migrate/plan.js';
import { PREVIOUS_DESTINATION_ANNOTATION } from '../src/mutators/deployment.js';
import { exampleConfig, root } from './helpers/fixtures.js';
import { runCli } from './helpers/cli.js';
import { k8sFixture, startK8sStub } from './helpers/k8s-stub.js';
import { startPostgres, type TestPostgres } from './helpers/pg.js';

const fixtures = join(root, 'test/fixtures/migrate');
/** Domino's destination before the install (the fixtures' Deployment), and ours (examples/config.yaml) */
const A = 's3://domino-blobs-mlflow/mlflow';
const B = 's3://sw-domino-project-based-mlflow';
const DEPLOYMENT = '/apis/apps/v1/namespaces/domino-platform/deployments/mlflow';

const tmp = mkdtempSync(join(tmpdir(), 'migrate-artifacts-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

// ---- the world: a tracking database with history, two destinations, the aws stand-in, MLflow's proxy ----------------

let server: TestPostgres;
let db: pg.Client;
const s3 = join(tmp, 's3');
const bin = join(tmp, 'bin');

t.before(async () => {
  server = await startPostgres();
  const admin = await server.client();
  await admin.query('CREATE DATABASE mlflow');
  await admin.end();
  db = await server.client('mlflow');
  await db.query(readFileSync(join(fixtures, 'mlflow-schema.sql'), 'utf8'));
  await db.query(readFileSync(join(fixtures, 'history.sql'), 'utf8'));
  mkdirSync(s3, { recursive: true });
  mkdirSync(bin, { recursive: true });
  // without the coverage hooks tap passes to child processes: the stand-in is test code, and runs 18 times per script
  writeFileSync(join(bin, 'aws'), `#!/bin/sh\nunset NODE_OPTIONS\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(root, 'test/helpers/aws-standin.mjs'))} "$@"\n`);
  chmodSync(join(bin, 'aws'), 0o755);
  for (const line of readFileSync(join(fixtures, 'old-destination.txt'), 'utf8').split('\n')) {
    const key = line.replace(/^#- /, '');
    if (key === '' || key.startsWith('#')) continue;
    writeObject(key, key);
  }
});
t.teardown(async () => {
  await db?.end();
  await server?.stop();
});

/** The directory standing in for s3://<bucket>/<key>, as the aws stand-in maps it. */
const dirOf = (uri: string) => join(s3, uri.replace(/^s3:\/\//, ''));

function writeObject(bucketKey: string, content: string): void {
  const file = join(s3, bucketKey);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
}

/** Every object under a destination, as "<key>" relative to it. */
function objects(uri: string): string[] {
  const base = dirOf(uri);
  const out: string[] = [];
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) (e.isDirectory() ? walk(join(dir, e.name)) : out.push(relative(base, join(dir, e.name)).split(sep).join('/')));
  };
  walk(base);
  return out.sort();
}

/**
 * MLflow's artifact proxy, standing in: GET /api/2.0/mlflow-artifacts/artifacts/<path> answers <current destination>/<path>
 * (handlers.py _download_artifact with the repository of MLFLOW_ARTIFACTS_DESTINATION), 404 when there is no such object.
 */
interface Proxy {
  /** the server's MLFLOW_ARTIFACTS_DESTINATION: what the webhook switches, and an uninstall switches back */
  destination: string;
  /** a run's artifact as a client loads it: runs.artifact_uri, resolved the way MlflowArtifactsRepository does */
  runArtifact(runId: string, file: string): Promise<number>;
  /** a registered model version's MLmodel: get_model_version_download_uri (storage_location or source), then /MLmodel */
  modelVersion(name: string, version: number): Promise<number>;
}

async function startProxy(t: Test): Promise<Proxy> {
  const anchor = '/api/2.0/mlflow-artifacts/artifacts/';
  const proxy = { destination: A } as Proxy;
  const http: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://proxy').pathname;
    const file = path.startsWith(anchor) ? join(dirOf(proxy.destination), decodeURIComponent(path.slice(anchor.length))) : '';
    if (file && existsSync(file)) res.writeHead(200).end(readFileSync(file));
    else res.writeHead(404).end('{"error_code": "RESOURCE_DOES_NOT_EXIST"}');
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => http.close(() => resolve())));
  const base = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
  // resolve_uri: the URI's path under the route, "//" collapsed; a netloc would name another server (not loaded here)
  const load = async (uri: string): Promise<number> => {
    const m = /^mlflow-artifacts:(?:\/\/([^/]*))?(.*)$/.exec(uri);
    if (!m || m[1]) throw new Error(`the stand-in loads only this server's mlflow-artifacts: URIs, not ${uri}`);
    const path = `${anchor}${m[2]}`.replace(/\/\/+/g, '/').split('/').map(encodeURIComponent).join('/');
    return (await fetch(`${base}${path}`)).status;
  };
  proxy.runArtifact = async (runId, file) => {
    const { rows: [run] } = await db.query<{ artifact_uri: string }>('SELECT artifact_uri FROM runs WHERE run_uuid = $1', [runId]);
    return load(`${run.artifact_uri}/${file}`);
  };
  proxy.modelVersion = async (name, version) => {
    const { rows: [mv] } = await db.query<{ uri: string }>('SELECT COALESCE(storage_location, source) AS uri FROM model_versions WHERE name = $1 AND version = $2', [name, version]);
    return load(`${mv.uri}/MLmodel`);
  };
  return proxy;
}

const run = (n: number) => `d${n.toString(16).padStart(31, '0')}`;

/** What users load: runs' artifacts and registered models, each with its status code. */
async function loads(proxy: Proxy): Promise<Record<string, number>> {
  return {
    'run 1 metrics.json': await proxy.runArtifact(run(1), 'metrics.json'),
    'run 2 sklearn-model/model.pkl': await proxy.runArtifact(run(2), 'sklearn-model/model.pkl'),
    'run 4 notes.txt': await proxy.runArtifact(run(4), 'notes.txt'),
    'run 6 (an older root) model/MLmodel': await proxy.runArtifact(run(6), 'model/MLmodel'),
    'run 12 (deleted experiment) restorable.txt': await proxy.runArtifact(run(12), 'restorable.txt'),
    'model churn 1 (Domino\'s sample)': await proxy.modelVersion('churn', 1),
    'model churn 2 (a logged model)': await proxy.modelVersion('churn', 2),
    'model forecast 1 (mlflow-artifacts:///)': await proxy.modelVersion('forecast', 1),
  };
}

const allAre = (statuses: Record<string, number>, code: number) => Object.fromEntries(Object.keys(statuses).map((k) => [k, code]));

const cliEnv = () => ({ PATH: `${bin}:${process.env.PATH ?? ''}`, AWS_STANDIN_ROOT: s3, HOME: tmp });

/** Runs a generated script with bash in a directory of its own (where a `touch pwned` would land), the stand-in first on PATH. */
function runScript(script: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string; cwd: string }> {
  const cwd = mkdtempSync(join(tmp, 'run-'));
  writeFileSync(join(cwd, 'migrate.sh'), script);
  return new Promise((resolve) => {
    execFile('bash', ['migrate.sh'], { cwd, env: { ...cliEnv(), ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr, cwd }));
  });
}

const migrate = (args: string[], env: Record<string, string> = {}) =>
  runCli(['migrate-artifacts', '--config', exampleConfig, '--database-url', server.url('mlflow'), ...args], { ...cliEnv(), ...env });

/** The keys expected under the new destination after the copy: the old destination's referenced objects, same relative keys. */
function referencedKeys(): string[] {
  return readFileSync(join(fixtures, 'old-destination.txt'), 'utf8').split('\n')
    .filter((l) => l.startsWith('domino-blobs-mlflow/mlflow/')).map((l) => l.slice('domino-blobs-mlflow/mlflow/'.length)).sort();
}

// ---------------------------------------------------------------------------------------------------------------

t.test('the switch, both ways: artifacts and models logged under A fail after the switch to B until the script runs, then load; --reverse brings back what B got', async (t) => {
  const proxy = await startProxy(t);
  const state = 'SELECT (SELECT max(xmin::text) FROM runs) AS runs, (SELECT max(xmin::text) FROM experiments) AS experiments, '
    + '(SELECT max(xmin::text) FROM model_versions) AS versions, (SELECT count(*)::int FROM pg_class) AS relations';
  const unread = (await db.query(state)).rows[0];
  const before = await loads(proxy);
  t.same(before, allAre(before, 200), 'under A, everything loads');

  // the plan and the script, reviewed: the golden files beside the fixtures
  const plan = await migrate(['--from', A, '--output', 'json']);
  t.equal(plan.code, 0, plan.stderr);
  t.same(JSON.parse(plan.stdout), JSON.parse(readFileSync(join(fixtures, 'plan.json'), 'utf8')), 'the plan is test/fixtures/migrate/plan.json');
  t.match(plan.stderr, /^migrate-artifacts: 7 reference\(s\) cannot be mapped to s3:\/\/domino-blobs-mlflow\/mlflow; the plan lists them\n$/);
  const script = await migrate(['--from', A]);
  t.equal(script.code, 0, script.stderr);
  t.equal(script.stdout, readFileSync(join(fixtures, 'migrate.sh'), 'utf8'), 'the script is test/fixtures/migrate/migrate.sh');
  t.notMatch(`${plan.stdout}${plan.stderr}${script.stdout}${script.stderr}`, server.password, 'the database password appears nowhere');
  t.same((await db.query(state)).rows[0], unread, 'the database is only read: no row, table or catalog entry changed');

  // the webhook switches the destination; nothing was copied yet: every proxied artifact 404s
  proxy.destination = B;
  const switched = await loads(proxy);
  t.same(switched, allAre(switched, 404), 'under B before the copy, nothing loads');

  const ran = await runScript(script.stdout);
  t.equal(ran.code, 0, ran.stderr);
  t.match(ran.stdout, /migrate-artifacts: verified: nothing left to copy under 9 prefix\(es\) from s3:\/\/domino-blobs-mlflow\/mlflow to s3:\/\/sw-domino-project-based-mlflow\n$/);
  const after = await loads(proxy);
  t.same(after, allAre(after, 200), 'under B after the copy, everything loads');
  t.same(objects(B), referencedKeys(), 'exactly the referenced objects arrived, under the same keys: no sibling (30/, an unreferenced run of legacy/4/), nothing outside');
  t.equal(readFileSync(join(dirOf(B), 'mlflow/d0000000000000000000000000000002/artifacts/sklearn-model/model.pkl'), 'utf8'),
    'domino-blobs-mlflow/mlflow/mlflow/d0000000000000000000000000000002/artifacts/sklearn-model/model.pkl', 'the object itself, not just its name');
  t.ok(existsSync(join(dirOf(B), 'it\'s $(touch pwned) "x"; rm -rf ~/d000000000000000000000000000000a/artifacts/result.txt')), 'the hostile path is copied as a path');
  t.notOk(existsSync(join(ran.cwd, 'pwned')), 'and nothing in it ran');
  t.same(objects(A).length, referencedKeys().length + 3, 'the source is untouched: nothing is deleted');
  const calls = readFileSync(join(s3, 'calls.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[]);
  t.same(calls.filter((c) => c.some((a) => /delete|rm|mv/.test(a) && !a.startsWith('s3://'))), [], 'no call deletes or moves');

  // written in between (A still current for a client that had it cached, or a second replica): the second run copies
  // exactly that, and leaves the rest alone (idempotent)
  writeObject('domino-blobs-mlflow/mlflow/2/d0000000000000000000000000000004/artifacts/late.txt', 'written after the first copy');
  const again = await runScript(script.stdout);
  t.equal(again.code, 0, again.stderr);
  t.same(again.stdout.split('\n').filter((l) => l.startsWith('copy: ')),
    ['copy: s3://domino-blobs-mlflow/mlflow/2/d0000000000000000000000000000004/artifacts/late.txt to s3://sw-domino-project-based-mlflow/2/d0000000000000000000000000000004/artifacts/late.txt'],
    'the second run copies only what is new');
  t.equal(await proxy.runArtifact(run(4), 'late.txt'), 200);

  // --reverse, for an uninstall, the old destination read from the annotation the webhook recorded: MLflow wrote a
  // new run and registered a model under B; after the switch back they load from A
  await db.query(`INSERT INTO runs (run_uuid, name, source_type, status, start_time, lifecycle_stage, artifact_uri, experiment_id)
    VALUES ($1, 'after-the-install', 'LOCAL', 'FINISHED', 1800000000000, 'active', $2, 3)`, [run(0x20), `mlflow-artifacts:/3/${run(0x20)}/artifacts`]);
  await db.query(`INSERT INTO model_versions (name, version, creation_time, current_stage, source, storage_location, run_id, status)
    VALUES ('forecast', 2, 1800000000000, 'None', $1, $1, $2, 'READY')`, [`mlflow-artifacts:/3/${run(0x20)}/artifacts/model`, run(0x20)]);
  writeObject(`sw-domino-project-based-mlflow/3/${run(0x20)}/artifacts/model/MLmodel`, 'logged under B');
  writeObject(`sw-domino-project-based-mlflow/3/${run(0x20)}/artifacts/summary.txt`, 'logged under B');
  t.equal(await proxy.modelVersion('forecast', 2), 200, 'under B the new model loads');
  const stub = await startK8sStub();
  t.teardown(() => stub.close());
  const deployment = k8sFixture('deployment-mlflow-mutated');
  deployment.metadata.annotations[PREVIOUS_DESTINATION_ANNOTATION] = A;
  stub.seed(DEPLOYMENT, deployment);
  const back = await migrate(['--reverse', '--kubeconfig', stub.kubeconfig]);
  t.equal(back.code, 0, back.stderr);
  t.match(back.stdout, /\n# --reverse: for an uninstall\./);
  t.match(back.stdout, new RegExp(`\\n#   from: ${B}\\n#   to:   ${A}\\n#   \\(the old destination: the ${PREVIOUS_DESTINATION_ANNOTATION.replace(/\./g, '\\.')} annotation on Deployment domino-platform/mlflow\\)\\n`));
  t.match(back.stdout, /\naws s3 sync s3:\/\/sw-domino-project-based-mlflow\/3\/ s3:\/\/domino-blobs-mlflow\/mlflow\/3\/\n/);
  const reversed = await runScript(back.stdout);
  t.equal(reversed.code, 0, reversed.stderr);
  proxy.destination = A;
  t.equal(await proxy.modelVersion('forecast', 2), 200, 'the model registered under B loads from A after the switch back');
  t.equal(await proxy.runArtifact(run(0x20), 'summary.txt'), 200, 'and the run logged under B');
  const old = await loads(proxy);
  t.same(old, allAre(old, 200), 'and everything from before still does');
  t.same(stub.requests.map((r) => `${r.method} ${r.path}`), [`GET ${DEPLOYMENT}`], 'the cluster is only read: the one Deployment');
});

t.test('the verification: an object that did not arrive fails the script, naming it; an interrupted copy resumes', async (t) => {
  writeObject('domino-blobs-mlflow/mlflow/0/d0000000000000000000000000000001/artifacts/missed.txt', 'the copy will miss this');
  const { stdout: script } = await migrate(['--from', A]);
  const missed = await runScript(script, { AWS_STANDIN_SKIP: 'missed.txt' });
  t.equal(missed.code, 1, 'the verification fails');
  t.match(missed.stderr, /\(dryrun\) copy: s3:\/\/domino-blobs-mlflow\/mlflow\/0\/d0000000000000000000000000000001\/artifacts\/missed\.txt to s3:\/\/sw-domino-project-based-mlflow\/0\/d0000000000000000000000000000001\/artifacts\/missed\.txt\n/);
  t.match(missed.stderr, /migrate-artifacts: 1 of 9 prefixes still have objects to copy \(listed above\): run this script again\n$/);
  t.notMatch(missed.stdout, /verified/);

  writeObject('domino-blobs-mlflow/mlflow/2/d0000000000000000000000000000004/artifacts/another.txt', 'another');
  const cut = await runScript(script, { AWS_STANDIN_FAIL_AFTER: '0' });
  t.equal(cut.code, 1, 'a failed aws call stops the script (set -e)');
  t.notMatch(cut.stdout, /verified/);
  const resumed = await runScript(script);
  t.equal(resumed.code, 0, resumed.stderr);
  t.same(resumed.stdout.split('\n').filter((l) => l.startsWith('copy: ')).length, 2, 'the rerun copies the two missing objects, nothing else');
  t.match(resumed.stdout, /verified: nothing left to copy/);
});

t.test('an older MLflow: tables and columns it lacks are listed as absent, not an error', async (t) => {
  const admin = await server.client();
  await admin.query('CREATE DATABASE mlflow216');
  await admin.end();
  const old = await server.client('mlflow216');
  t.teardown(() => old.end());
  await old.query(readFileSync(join(fixtures, 'mlflow-schema.sql'), 'utf8'));
  await old.query('DROP TABLE logged_models; DROP TABLE trace_tags; ALTER TABLE model_versions DROP COLUMN storage_location');
  await old.query(`INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active');
    INSERT INTO runs (run_uuid, artifact_uri, experiment_id, lifecycle_stage) VALUES ('${run(1)}', 'mlflow-artifacts:/0/${run(1)}/artifacts', 0, 'active')`);
  const r = await runCli(['migrate-artifacts', '--config', exampleConfig, '--database-url', server.url('mlflow216'), '--from', A, '--output', 'json'], cliEnv());
  t.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout);
  t.same(plan.absent, ['model_versions.storage_location', 'logged_models.artifact_location', 'trace_tags.value']);
  t.same(Object.keys(plan.references), ['experiments.artifact_location', 'runs.artifact_uri', 'model_versions.source']);
  t.same(plan.prefixes, [{ path: '0', source: `${A}/0/`, target: `${B}/0/`, references: 2 }]);
  t.match(renderAwsCli(plan), /\n#   logged_models\.artifact_location +- +\(no such table or column in this database\)\n/, 'the script\'s header says so');
});

t.test('the CLI: usage errors exit 2, failures 1; the old destination comes from --from or the annotation, or the error says how to get it', async (t) => {
  const usage = async (args: string[], message: RegExp) => {
    const r = await migrate(args);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2 (${r.stderr})`);
    t.match(r.stderr, message);
    t.equal(r.stdout, '', 'no script');
  };
  await usage(['--from', A, '--output', 'yaml'], /--output "yaml" is not one of aws-cli, json\nusage: mlflow-irsa-webhook migrate-artifacts --config FILE/);
  await usage(['--from', A, '--reverse=yes'], /Option '--reverse' does not take an argument/);
  // the command's own refusals, in-process: each a UsageError, which cli.ts turns into exit 2 as above
  const refused = (values: Record<string, string | boolean>, message: RegExp) =>
    t.rejects(runCommand({ values: { 'database-url': server.url('mlflow'), ...values }, positionals: [], config: loadConfig(exampleConfig) }), { name: 'UsageError', message }, message.source);
  await refused({ from: 'http://domino-blobs-mlflow/mlflow' }, /^--from "http:\/\/domino-blobs-mlflow\/mlflow" is not valid \(not s3:\/\/<bucket>\[\/prefix\]/);
  await refused({ from: `${B}/` }, /^the old destination s3:\/\/sw-domino-project-based-mlflow \(--from\) is artifactsDestination itself: there is nothing to copy$/);
  await refused({ from: `${B}/old`, reverse: true }, /^the old destination s3:\/\/sw-domino-project-based-mlflow\/old \(--from\) and artifactsDestination s3:\/\/sw-domino-project-based-mlflow overlap \(one lies inside the other\)/);
  await refused({ from: A, output: 'text' }, /^--output "text" is not one of aws-cli, json$/);
  const secret = await runCli(['migrate-artifacts', '--config', exampleConfig, '--from', A, '--database-url', 'mysql://u:hunter2@h/db'], cliEnv());
  t.equal(secret.code, 2);
  t.notMatch(secret.stderr, /hunter2|mysql/, 'the URL is not echoed');
  const noConfig = await runCli(['migrate-artifacts', '--from', A], cliEnv());
  t.equal(noConfig.code, 2);
  t.match(noConfig.stderr, /--config FILE or --values FILE is required/);

  // no --from: the annotation, read with the kubeconfig
  const stub = await startK8sStub();
  t.teardown(() => stub.close());
  stub.seed(DEPLOYMENT, k8sFixture('deployment-mlflow'));
  const none = await migrate(['--kubeconfig', stub.kubeconfig]);
  t.equal(none.code, 2, 'no annotation and no --from: bad usage');
  t.match(none.stderr, /no old destination: --from is not given and Deployment domino-platform\/mlflow has no mlflow-irsa-webhook\.io\/previous-artifacts-destination annotation/);
  t.match(none.stderr, /pass Domino's current value as --from; it is what kubectl -n domino-platform get deployment mlflow -o jsonpath='\{\.spec\.template\.spec\.containers\[\?\(@\.name=="mlflow"\)\]\.env\[\?\(@\.name=="MLFLOW_ARTIFACTS_DESTINATION"\)\]\.value\}' prints/);
  const annotated = k8sFixture('deployment-mlflow-mutated');
  annotated.metadata.annotations[PREVIOUS_DESTINATION_ANNOTATION] = 'file:///var/mlflow';
  stub.seed(DEPLOYMENT, annotated);
  await t.rejects(runCommand({ values: { kubeconfig: stub.kubeconfig }, positionals: [], config: loadConfig(exampleConfig) }),
    { message: /^the mlflow-irsa-webhook\.io\/previous-artifacts-destination annotation on Deployment domino-platform\/mlflow is not an s3:\/\/ destination \(not s3:\/\/<bucket>\[\/prefix\]/ },
    'an annotation that is not a destination: a failure (exit 1), the value not echoed');
  annotated.metadata.annotations[PREVIOUS_DESTINATION_ANNOTATION] = `${A}/`;
  stub.seed(DEPLOYMENT, annotated);
  const fromAnnotation = await migrate(['--kubeconfig', stub.kubeconfig, '--output', 'json']);
  t.equal(fromAnnotation.code, 0, fromAnnotation.stderr);
  t.match(JSON.parse(fromAnnotation.stdout), { from: A, to: B, reverse: false, oldDestinationFrom: `the ${PREVIOUS_DESTINATION_ANNOTATION} annotation on Deployment domino-platform/mlflow` });
  const withFrom = await migrate(['--kubeconfig', join(tmp, 'no-such-kubeconfig'), '--from', A, '--output', 'json']);
  t.equal(withFrom.code, 0, '--from needs no cluster');
  stub.seed(DEPLOYMENT, undefined);
  const gone = await migrate(['--kubeconfig', stub.kubeconfig]);
  t.equal(gone.code, 1);
  t.match(gone.stderr, /^migrate-artifacts: no --from, and the old destination could not be read from Deployment domino-platform\/mlflow: get deployment domino-platform\/mlflow: 404 NotFound.*; pass --from s3:\/\/<old bucket>\[\/prefix\]\n$/);

  // the database: a wrong password fails at once, without it; a database that is not MLflow's says so
  const wrong = await migrate(['--from', A, '--database-url', server.url('mlflow').replace(server.password, 'not-the-password')]);
  t.equal(wrong.code, 1);
  t.match(wrong.stderr, /migrate-artifacts: authentication failed/);
  t.notMatch(wrong.stderr, /not-the-password|test-superuser-password/);
  await t.rejects(runCommand({ values: { from: A, 'database-url': server.url('postgres') }, positionals: [], config: loadConfig(exampleConfig) }),
    { name: 'TriggerError', message: /^MLflow's tables public\.experiments, public\.runs are missing from database "postgres"/ });

  // --values: the chart's values file gives the config (and so the target)
  const values = await runCli(['migrate-artifacts', '--values', join(root, 'test/fixtures/iam/values/operator.yaml'), '--database-url', server.url('mlflow'), '--from', A, '--output', 'json'], cliEnv());
  t.equal(values.code, 0, values.stderr);
  t.equal(JSON.parse(values.stdout).to, 's3://acme-mlflow-artifacts/tracking');

  const help = await runCli(['migrate-artifacts', '--help'], cliEnv());
  for (const option of ['--values', '--database-url', '--from', '--kubeconfig', '--reverse', '--output']) t.match(help.stdout, new RegExp(`\\n  ${option}[ ,]`), `--help explains ${option}`);
  t.match((await runCli(['--help'], cliEnv())).stdout, /\n  migrate-artifacts +print the aws script/);
});

// ---- the pure rules ------------------------------------------------------------------------------------------------

t.test('each reference\'s meaning for the copy, as MLflow resolves it', async (t) => {
  const from = destination(A);
  const to = destination(B);
  const cases: Array<[string, object]> = [
    ['mlflow-artifacts:/3/abc/artifacts', { kind: 'proxied', path: '3/abc/artifacts' }],
    ['mlflow-artifacts:3/abc', { kind: 'proxied', path: '3/abc' }],
    ['MLFLOW-ARTIFACTS:/3', { kind: 'proxied', path: '3' }],
    ['mlflow-artifacts:///3/abc/', { kind: 'proxied', path: '3/abc' }],
    ['mlflow-artifacts:////3', { kind: 'proxied', path: '3' }],
    ['mlflow-artifacts:/', { kind: 'proxied', path: '' }],
    ['mlflow-artifacts://', { kind: 'proxied', path: '' }],
    ['mlflow-artifacts://mlflow.domino-platform:5000/3', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherServer }],
    ['https://mlflow.example/api/2.0/mlflow-artifacts/artifacts/3', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherServer }],
    ['mlflow-artifacts:/3//abc', { kind: 'unmapped', reason: UNMAPPED_REASONS.emptySegment }],
    ['mlflow-artifacts:/3/../4', { kind: 'unmapped', reason: UNMAPPED_REASONS.dotSegment }],
    ['mlflow-artifacts:/3/a%20b', { kind: 'unmapped', reason: UNMAPPED_REASONS.percentEscape }],
    ['mlflow-artifacts:/3/a?b', { kind: 'unmapped', reason: UNMAPPED_REASONS.queryOrFragment }],
    ['mlflow-artifacts:/3/a\u202eb', { kind: 'unmapped', reason: UNMAPPED_REASONS.controlCharacters }],
    ['mlflow-artifacts:/3/a\tb', { kind: 'unmapped', reason: UNMAPPED_REASONS.controlCharacters }],
    ['mlflow-artifacts:/3/é büro', { kind: 'proxied', path: '3/é büro' }],
    ['s3://domino-blobs-mlflow/mlflow/5/abc/artifacts', { kind: 'direct', path: '5/abc/artifacts' }],
    ['s3://domino-blobs-mlflow/mlflow', { kind: 'direct', path: '' }],
    ['s3://domino-blobs-mlflow/mlflow/', { kind: 'direct', path: '' }],
    ['s3://domino-blobs-mlflow/mlflow//5', { kind: 'unmapped', reason: UNMAPPED_REASONS.emptySegment }],
    ['s3://domino-blobs-mlflow/mlflowx/5', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherLocation }],
    ['s3://domino-blobs-mlflow/other/5', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherLocation }],
    ['s3://sw-domino-project-based-mlflow/mlflow/proj', { kind: 'atTarget' }],
    ['s3:bucket/x', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherLocation }],
    ['runs:/abc/model', { kind: 'indirect' }],
    ['models:/m-123', { kind: 'indirect' }],
    ['file:///mlruns/1', { kind: 'unmapped', reason: UNMAPPED_REASONS.localPath }],
    ['/mnt/mlruns/1', { kind: 'unmapped', reason: UNMAPPED_REASONS.localPath }],
    ['gs://bucket/1', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherScheme }],
    ['mlruns/1', { kind: 'unmapped', reason: UNMAPPED_REASONS.otherScheme }],
  ];
  for (const [uri, expected] of cases) t.same(dispose(uri, from, to), expected, uri);
  t.same(dispose('s3://domino-blobs-mlflow/any/key', destination('s3://domino-blobs-mlflow'), to), { kind: 'direct', path: 'any/key' }, 'a bucket-root source holds every key of its bucket');

  // --from and the annotation: what artifactsDestination itself may be
  t.equal(destinationProblem('s3://domino-blobs-mlflow/mlflow/'), undefined);
  t.equal(destinationProblem('s3://domino..blobs/mlflow'), 'bucket "domino..blobs" has two adjacent periods');
  t.equal(destinationProblem('s3://domino-blobs-mlflow/a/../b'), 'no "." or ".." path segments');
  t.match(destinationProblem('mlflow-artifacts:/x'), /^not s3:\/\/<bucket>\[\/prefix\]/);
  t.ok(overlaps(destination('s3://b/mlflow'), destination('s3://b/mlflow/new')) && overlaps(destination('s3://b'), destination('s3://b/x')));
  t.notOk(overlaps(destination('s3://b/mlflow'), destination('s3://b/mlflow-new')) || overlaps(destination('s3://b/x'), destination('s3://c/x')));
});

t.test('the fewest prefixes: topmost referenced directories, in any order, never a sibling', async (t) => {
  const paths = ['3/r1/artifacts', '3', '30/r2/artifacts', '3/r3/artifacts/model', 'legacy/4/r6/artifacts', 'legacy/4/r7/artifacts', 'mlflow/r8/artifacts', 'mlflow'];
  const expected = [
    { path: '3', references: 3 }, { path: '30/r2/artifacts', references: 1 }, { path: 'legacy/4/r6/artifacts', references: 1 },
    { path: 'legacy/4/r7/artifacts', references: 1 }, { path: 'mlflow', references: 2 },
  ];
  for (const order of [paths, [...paths].reverse(), [...paths].sort()]) {
    const set = new PrefixSet();
    for (const p of order) set.add(p);
    t.same(set.prefixes(), expected, order.join(' '));
  }
  const whole = new PrefixSet();
  for (const p of [...paths, '']) whole.add(p);
  t.same(whole.prefixes(), [{ path: '', references: paths.length + 1 }], 'a reference to the destination itself covers everything');
});

t.test('tenant text is shown escaped: printable ASCII only, cut', async (t) => {
  t.equal(escaped('s3://a/b c'), 's3://a/b c');
  t.equal(escaped('a"b\\c'), 'a\\"b\\\\c');
  t.equal(escaped('\u001b[31mred\nline\u202e\u00e9'), '\\u001b[31mred\\nline\\u202e\\u00e9');
  t.equal(escaped('x'.repeat(200)).length, 160);
  t.match(escaped('x'.repeat(200)), /x\.\.\.$/);
});

t.test('the script as the real AWS CLI runs it, against a local S3 (s3rver): server-side copies of exactly the referenced objects, verified, idempotent', async (t) => {
  // the real `aws` (Debian's awscli or pip's; .ci/run installs it where missing), not the stand-in
  const which = await new Promise<string>((resolve) => execFile('sh', ['-c', 'command -v aws'], { env: { PATH: process.env.PATH ?? '' } }, (_e, out) => resolve(out.trim())));
  if (!which) {
    t.fail('no aws CLI on PATH (.ci/run installs awscli)');
    return;
  }
  const { default: S3rver } = await import('s3rver');
  const s3dir = mkdtempSync(join(tmp, 's3rver-'));
  const s3server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: s3dir, configureBuckets: [{ name: 'domino-blobs-mlflow' }, { name: 'sw-domino-project-based-mlflow' }] });
  const { port } = await s3server.run();
  t.teardown(() => s3server.close());
  // the real CLI, pointed at the local S3 by its global --endpoint-url (every aws CLI version has it), with throwaway keys
  const realBin = mkdtempSync(join(tmp, 'real-aws-'));
  writeFileSync(join(realBin, 'aws'), `#!/bin/sh\nunset NODE_OPTIONS\nexec ${JSON.stringify(which)} --endpoint-url http://127.0.0.1:${port} "$@"\n`);
  chmodSync(join(realBin, 'aws'), 0o755);
  const env = {
    PATH: `${realBin}:${process.env.PATH ?? ''}`, HOME: tmp, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(tmp, 'no-aws-config'), AWS_SHARED_CREDENTIALS_FILE: join(tmp, 'no-aws-credentials'), AWS_EC2_METADATA_DISABLED: 'true',
  };
  const aws = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile('aws', args, { env, cwd: tmp }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr })));
  // Domino's bucket as the fixtures describe it, referenced objects and unreferenced ones; but the key that holds shell
  // syntax, which s3rver's CopyObject cannot find (it decodes the copy source differently from S3; the stand-in's test
  // covers that key's quoting), so the script's sync of its prefix has nothing to copy here
  const hostile = (k: string) => k.includes('$(');
  const seedDir = mkdtempSync(join(tmp, 'seed-'));
  for (const key of referencedKeys().map((k) => `domino-blobs-mlflow/mlflow/${k}`).concat(['domino-blobs-mlflow/mlflow/unreferenced.txt', 'domino-blobs-mlflow/mlflow/30/x.txt'])) {
    if (hostile(key)) continue;
    mkdirSync(dirname(join(seedDir, key)), { recursive: true });
    writeFileSync(join(seedDir, key), key);
  }
  const seeded = await aws('s3', 'sync', '--quiet', join(seedDir, 'domino-blobs-mlflow'), 's3://domino-blobs-mlflow/');
  t.equal(seeded.code, 0, `seeded the old bucket: ${seeded.stderr}`);
  const keysIn = async (bucket: string) => (await aws('s3api', 'list-objects-v2', '--bucket', bucket, '--query', 'Contents[].Key', '--output', 'json')).stdout;
  t.ok(JSON.parse(await keysIn('domino-blobs-mlflow')).length > referencedKeys().length, 'the old bucket holds unreferenced objects too');

  const generated = await migrate(['--from', A]);
  t.equal(generated.code, 0, generated.stderr);
  const first = await runScript(generated.stdout, env);
  t.equal(first.code, 0, `the real CLI ran the script: ${first.stderr}`);
  t.match(first.stdout, /migrate-artifacts: verified: nothing left to copy under 9 prefix\(es\)/, 'and its dry-run verification found nothing left');
  const copied = (JSON.parse(await keysIn('sw-domino-project-based-mlflow')) as string[]).sort();
  t.same(copied, referencedKeys().filter((k) => !hostile(k)), 'exactly the referenced objects, under the same relative keys');
  t.notOk(existsSync(join(first.cwd, 'pwned')), 'a hostile path was quoted, never run');
  const fetched = join(tmp, 'fetched.json');
  const one = await aws('s3', 'cp', '--quiet', `${B}/0/${run(1)}/artifacts/metrics.json`, fetched);
  t.equal(one.code, 0, one.stderr);
  t.equal(readFileSync(fetched, 'utf8'), `domino-blobs-mlflow/mlflow/0/${run(1)}/artifacts/metrics.json`, 'with their content');
  // run again, as the guide says after the rollout: only what changed is copied, and it verifies again
  writeFileSync(join(tmp, 'late.txt'), 'written between the two runs');
  const late = await aws('s3', 'cp', '--quiet', join(tmp, 'late.txt'), `${A}/2/${run(4)}/artifacts/late.txt`);
  t.equal(late.code, 0, late.stderr);
  const second = await runScript(generated.stdout, env);
  t.equal(second.code, 0, second.stderr);
  t.match(second.stdout, /copy: s3:\/\/domino-blobs-mlflow\/mlflow\/2\/d0+4\/artifacts\/late\.txt to s3:\/\/sw-domino-project-based-mlflow\/2\/d0+4\/artifacts\/late\.txt/);
  t.equal(second.stdout.match(/^copy: /gm)?.length, 1, 'the written-in-between object alone');
});
