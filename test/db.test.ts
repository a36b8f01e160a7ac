// The tracking-database trigger against a real PostgreSQL: MLflow's exact statement sequences, both modes, installers, faults and secrets.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { APPLICATION_NAME, TriggerError, classify, scrub, secretsOf, withDatabase } from '../src/db/connect.js';
import { findLegacy, installTrigger, readInstalled, uninstallTrigger } from '../src/db/install.js';
import { FUNCTION_NAME, TRIGGER_NAME, functionDefinition, installStatements, script } from '../src/db/sql.js';
import { runCli } from './helpers/cli.js';
import { freePort, startPostgres, type TestPostgres } from './helpers/pg.js';

const BUCKET = 's3://sw-domino-project-based-mlflow';
/** MLflow's default artifact root when it proxies artifacts (--artifacts-destination): experiment N gets mlflow-artifacts:/N */
const DEFAULT_ROOT = 'mlflow-artifacts:/';
const PROJECT_TAG = 'mlflow.domino.project_id';
const LOCATION_TAG = 'domino.artifacts_location';

function configFor(trigger: Record<string, unknown> = {}): Config {
  return parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access', artifactsDestination: BUCKET, trigger });
}
const projectMode = configFor({ mode: 'project-id' });
const customMode = configFor({ mode: 'custom-location', allowedLocationPrefixes: [`${BUCKET}/custom`, 's3://team-bucket/'] });

// ---- MLflow's PostgreSQL schema, as its migrations leave it ----

type Variant = 'old' | 'new';

function mlflowSchema(variant: Variant): string {
  const workspace = variant === 'new' ? ", workspace VARCHAR(63) NOT NULL DEFAULT 'default', UNIQUE (workspace, name)" : ', UNIQUE (name)';
  const valueType = variant === 'new' ? 'TEXT' : 'VARCHAR(5000)';
  return `
    CREATE TABLE experiments (
      experiment_id SERIAL PRIMARY KEY, name VARCHAR(256) NOT NULL, artifact_location VARCHAR(256),
      lifecycle_stage VARCHAR(32) CHECK (lifecycle_stage IN ('active','deleted')),
      creation_time BIGINT, last_update_time BIGINT${workspace});
    CREATE TABLE experiment_tags (
      key VARCHAR(250) NOT NULL, value ${valueType}, experiment_id INTEGER NOT NULL REFERENCES experiments,
      PRIMARY KEY (key, experiment_id));
    CREATE TABLE runs (
      run_uuid VARCHAR(32) PRIMARY KEY, name VARCHAR(250), status VARCHAR(9), start_time BIGINT, end_time BIGINT,
      lifecycle_stage VARCHAR(20), artifact_uri VARCHAR(200), experiment_id INTEGER REFERENCES experiments);
    -- MLflow's first start: experiment 0 with an explicit id, the sequence stays at 1
    INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
      VALUES (0, 'Default', '${DEFAULT_ROOT}0', 'active', 0, 0);`;
}

// ---- MLflow's SqlAlchemyStore statement sequences, replayed exactly ----

async function tx<T>(c: pg.Client, work: () => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const result = await work();
    await c.query('COMMIT');
    return result;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

/** create_experiment(name, tags): INSERT ... RETURNING, one INSERT per tag, then MLflow's own UPDATE of artifact_location, one transaction. */
async function createExperiment(c: pg.Client, name: string, tags: Record<string, string> = {}): Promise<number> {
  return tx(c, async () => {
    const now = Date.now();
    const { rows } = await c.query<{ experiment_id: number }>(
      "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES ($1, NULL, 'active', $2, $2) RETURNING experiment_id",
      [name, now],
    );
    const id = rows[0].experiment_id;
    for (const [key, value] of Object.entries(tags)) {
      await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [key, value, id]);
    }
    await c.query('UPDATE experiments SET artifact_location = $1 WHERE experiments.experiment_id = $2', [`${DEFAULT_ROOT}${id}`, id]);
    return id;
  });
}

/** set_experiment_tag: session.merge() reads the row by primary key, then INSERTs a new key or UPDATEs an existing one. */
async function setExperimentTag(c: pg.Client, id: number, key: string, value: string): Promise<void> {
  await tx(c, async () => {
    await c.query("SELECT experiment_id FROM experiments WHERE experiment_id = $1 AND lifecycle_stage = 'active'", [id]);
    const existing = await c.query('SELECT key FROM experiment_tags WHERE key = $1 AND experiment_id = $2', [key, id]);
    if (existing.rowCount === 0) {
      await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [key, value, id]);
    } else {
      await c.query('UPDATE experiment_tags SET value = $1 WHERE experiment_tags.key = $2 AND experiment_tags.experiment_id = $3', [value, key, id]);
    }
  });
}

let runCounter = 0;
/** create_run: reads the experiment, then copies its artifact_location into runs.artifact_uri. */
async function createRun(c: pg.Client, id: number): Promise<string> {
  return tx(c, async () => {
    const { rows } = await c.query<{ artifact_location: string }>('SELECT artifact_location FROM experiments WHERE experiment_id = $1', [id]);
    const runId = (++runCounter).toString(16).padStart(32, '0');
    const uri = `${rows[0].artifact_location}/${runId}/artifacts`;
    await c.query(
      "INSERT INTO runs (run_uuid, name, status, start_time, lifecycle_stage, artifact_uri, experiment_id) VALUES ($1, 'run', 'RUNNING', $2, 'active', $3, $4)",
      [runId, Date.now(), uri, id],
    );
    return uri;
  });
}

async function locationOf(c: pg.Client, id: number): Promise<string | null> {
  const { rows } = await c.query<{ artifact_location: string | null }>('SELECT artifact_location FROM experiments WHERE experiment_id = $1', [id]);
  return rows[0].artifact_location;
}

/** The paths an MLflow user takes in project-id mode, each with the artifact_location they expect at the end. */
interface Replay {
  readonly name: string;
  run(c: pg.Client, suffix: string): Promise<{ actual: string | null; expected: string }>;
}
const projectReplays: Replay[] = [
  {
    name: 'create_experiment with tags (INSERT, tag INSERTs, MLflow\'s UPDATE, COMMIT)',
    async run(c, suffix) {
      const id = await createExperiment(c, `with-tags${suffix}`, { 'mlflow.note.content': 'hello', [PROJECT_TAG]: 'proj-a' });
      return { actual: await locationOf(c, id), expected: `${BUCKET}/mlflow/proj-a` };
    },
  },
  {
    name: 'set_experiment_tag with a new key on an existing experiment',
    async run(c, suffix) {
      const id = await createExperiment(c, `new-key${suffix}`);
      await setExperimentTag(c, id, PROJECT_TAG, 'proj-b');
      return { actual: await locationOf(c, id), expected: `${BUCKET}/mlflow/proj-b` };
    },
  },
  {
    name: 'set_experiment_tag on a key that exists (UPDATE)',
    async run(c, suffix) {
      const id = await createExperiment(c, `existing-key${suffix}`, { [PROJECT_TAG]: 'proj-c' });
      await setExperimentTag(c, id, PROJECT_TAG, 'proj-d');
      return { actual: await locationOf(c, id), expected: `${BUCKET}/mlflow/proj-d` };
    },
  },
];

async function runReplays(c: pg.Client, replays: Replay[], suffix = ''): Promise<Array<{ name: string; actual: string | null; expected: string }>> {
  const out = [];
  for (const r of replays) out.push({ name: r.name, ...(await r.run(c, suffix)) });
  return out;
}

// ---- the server and per-scenario databases ----

let server: TestPostgres;
let dbCount = 0;
const clients: pg.Client[] = [];

/** A fresh database holding MLflow's schema, and a client connected to it. */
async function freshDatabase(variant: Variant = 'new', name = `mlflow_${++dbCount}`): Promise<{ name: string; c: pg.Client }> {
  const admin = await server.client();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await admin.end();
  const c = await server.client(name);
  clients.push(c);
  await c.query(mlflowSchema(variant));
  return { name, c };
}

function capture() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (s: string) => void lines.push(s) });
  return { lines, logger, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function install(db: string, config: Config, log = capture()) {
  return withDatabase({ databaseUrl: server.url(db), waitSeconds: 0 }, log.logger, (c) => installTrigger(c, config, log.logger));
}
async function uninstall(db: string, config: Config, log = capture()) {
  return withDatabase({ databaseUrl: server.url(db), waitSeconds: 0 }, log.logger, (c) => uninstallTrigger(c, config, log.logger));
}

/** Our objects as pg_trigger/pg_proc list them, counted independently of readInstalled. */
async function ourObjects(c: pg.Client): Promise<{ triggers: number; functions: number }> {
  const { rows } = await c.query<{ triggers: number; functions: number }>(
    `SELECT (SELECT count(*)::int FROM pg_trigger WHERE tgname = $1) AS triggers,
            (SELECT count(*)::int FROM pg_proc WHERE proname = $2) AS functions`,
    [TRIGGER_NAME, FUNCTION_NAME],
  );
  return rows[0];
}

async function refusal(t: Tap.Test, work: Promise<unknown>, parts: string[]): Promise<void> {
  const err = await work.then(() => undefined, (e: Error & { code?: string }) => e);
  t.ok(err, 'refused');
  t.equal(err?.code, '23514', 'check_violation');
  for (const p of parts) t.match(err?.message ?? '', p, `message names ${p}`);
}

// The procedure's original trigger, verbatim (its `mlflow.public.experiments` needs the database to be named mlflow).
const ORIGINAL_TRIGGER = `
CREATE OR REPLACE FUNCTION public.update_artifact_location()
returns trigger
language plpgsql
as $$
begin
	if new.key='mlflow.domino.project_id' then
		UPDATE mlflow.public.experiments
		set artifact_location = concat('s3://sw-domino-project-based-mlflow/mlflow/',new.value)
		where mlflow.public.experiments.experiment_id = new.experiment_id ;
		return new;
	else
		return null;
	end if;
end;
$$;
create trigger update_artifact_location_trg
   after insert
      on public.experiment_tags
      for each row
      execute function update_artifact_location();`;

let workDir: string;

async function writeConfig(name: string, config: Record<string, unknown>): Promise<string> {
  const file = join(workDir, name);
  await writeFile(file, JSON.stringify({ roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access', artifactsDestination: BUCKET, ...config }));
  return file;
}

/** Runs `install-trigger` through the built CLI with only the environment given (plus PATH). */
const cli = (args: string[], env: Record<string, string> = {}) => runCli(['install-trigger', ...args], env);

t.before(async () => {
  server = await startPostgres();
  workDir = await mkdtemp(join(tmpdir(), 'mlflow-irsa-db-test-'));
});
t.teardown(async () => {
  for (const c of clients) await c.end();
  await server.stop();
  await rm(workDir, { recursive: true, force: true });
});

// ---- the SQL itself ----

t.test('the SQL quotes every configured value and bakes in the mode', async (t) => {
  const sql = installStatements(projectMode).join('\n');
  t.match(sql, `CREATE CONSTRAINT TRIGGER "${TRIGGER_NAME}"`);
  t.match(sql, 'DEFERRABLE INITIALLY DEFERRED');
  t.match(sql, `WHEN (NEW.key = '${PROJECT_TAG}')`);
  t.match(sql, `'${BUCKET}/mlflow/' || tag_value`);
  t.notMatch(sql, 'CREATE OR REPLACE TRIGGER', 'PostgreSQL 11 has no CREATE OR REPLACE TRIGGER');
  const custom = functionDefinition(customMode);
  t.match(custom, `left(tag_value, ${`${BUCKET}/custom/`.length}) = '${BUCKET}/custom/'`, 'a prefix without its slash gets one');
  t.match(custom, "= 's3://team-bucket/'");
  const noPrefix = functionDefinition(configFor({ prefix: '' }));
  t.match(noPrefix, `'${BUCKET}/' || tag_value`, 'an empty prefix puts projects at the destination root');
  t.match(script(projectMode, 'uninstall'), /^-- .*\nBEGIN;\n.*pg_advisory_xact_lock.*\nDROP TRIGGER IF EXISTS .*\nDROP FUNCTION IF EXISTS .*\nCOMMIT;\n$/s);
});

t.test('secrets are scrubbed from messages, and failures are classified', async (t) => {
  const secrets = secretsOf({ databaseUrl: 'postgres://mlflow:p%40ss@db:5432/mlflow', waitSeconds: 0, env: { PGPASSWORD: 'envpw' } });
  t.same(new Set(secrets), new Set(['postgres://mlflow:p%40ss@db:5432/mlflow', 'p%40ss', 'p@ss', 'envpw']));
  t.equal(scrub('bad p@ss and envpw at postgres://u:other@h/db', secrets), 'bad [redacted] and [redacted] at postgres://u:[redacted]@h/db');
  t.equal(classify(Object.assign(new Error('password authentication failed for user "mlflow"'), { code: '28P01' }), []).retryable, false);
  t.equal(classify(Object.assign(new Error('the database system is starting up'), { code: '57P03' }), []).retryable, true);
  t.equal(classify(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), []).retryable, true);
  t.equal(classify(new Error('Connection terminated unexpectedly'), []).retryable, true);
  t.equal(classify(new TriggerError('tables missing'), []).retryable, false);
  t.equal(classify(Object.assign(new Error('syntax error'), { code: '42601' }), []).retryable, false);
});

// ---- MLflow's replays against our trigger ----

for (const variant of ['new', 'old'] as const) {
  t.test(`project-id mode, ${variant} MLflow schema: every replay ends where the user expects`, async (t) => {
    const { name, c } = await freshDatabase(variant);
    const log = capture();
    const installed = await install(name, projectMode, log);
    t.equal(installed.mode, 'project-id');
    t.equal(installed.tag, PROJECT_TAG);
    t.ok(installed.trigger?.initiallyDeferred);
    t.match(log.records().find((r) => r.msg === 'trigger installed'), { mode: 'project-id', trigger: TRIGGER_NAME, definition: /DEFERRABLE INITIALLY DEFERRED/ }, 'prints what is installed');

    for (const r of await runReplays(c, projectReplays)) t.equal(r.actual, r.expected, r.name);

    t.test('create_run copies the location: only runs created after the change see it', async (t) => {
      const id = await createExperiment(c, 'runs');
      const before = await createRun(c, id);
      t.match(before, new RegExp(`^${DEFAULT_ROOT}${id}/`));
      await setExperimentTag(c, id, PROJECT_TAG, 'proj-runs');
      const after = await createRun(c, id);
      t.match(after, new RegExp(`^${BUCKET}/mlflow/proj-runs/[0-9a-f]{32}/artifacts$`));
      const { rows } = await c.query('SELECT artifact_uri FROM runs WHERE experiment_id = $1 ORDER BY run_uuid', [id]);
      t.same(rows.map((r) => r.artifact_uri), [before, after], 'the earlier run keeps its location; MLflow\'s data is not rewritten');
    });

    t.test('tags that are not ours never fail and never change anything', async (t) => {
      const id = await createExperiment(c, 'foreign', { [LOCATION_TAG]: 's3://elsewhere/x', 'mlflow.note.content': '../../ü/evil', 'x': '' });
      t.equal(await locationOf(c, id), `${DEFAULT_ROOT}${id}`);
      await setExperimentTag(c, id, 'mlflow.note.content', 'changed / ..');
      t.equal(await locationOf(c, id), `${DEFAULT_ROOT}${id}`);
      const tagged = await createExperiment(c, 'foreign-after-ours', { [PROJECT_TAG]: 'proj-f' });
      await setExperimentTag(c, tagged, 'mlflow.note.content', 'note');
      t.equal(await locationOf(c, tagged), `${BUCKET}/mlflow/proj-f`);
    });

    t.test('the value at commit counts, not the value at the event', async (t) => {
      const id = await createExperiment(c, 'changed-in-tx');
      await tx(c, async () => {
        await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [PROJECT_TAG, '../refused-if-read', id]);
        await c.query('UPDATE experiment_tags SET value = $1 WHERE key = $2 AND experiment_id = $3', ['proj-final', PROJECT_TAG, id]);
      });
      t.equal(await locationOf(c, id), `${BUCKET}/mlflow/proj-final`);
      const gone = await createExperiment(c, 'deleted-in-tx');
      await tx(c, async () => {
        await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [PROJECT_TAG, 'proj-gone', gone]);
        await c.query('DELETE FROM experiment_tags WHERE key = $1 AND experiment_id = $2', [PROJECT_TAG, gone]);
      });
      t.equal(await locationOf(c, gone), `${DEFAULT_ROOT}${gone}`, 'a tag deleted before commit changes nothing');
    });

    t.test('refused project ids: the whole MLflow call fails with a message naming tag, value and rule', async (t) => {
      const before = (await c.query('SELECT count(*)::int AS n FROM experiments')).rows[0].n;
      for (const bad of ['../other', 'a/b', 'proj..x', '.', '', 'prö', 'a b', "x'; DROP TABLE runs; --"]) {
        await refusal(t, createExperiment(c, `bad-${bad}`, { [PROJECT_TAG]: bad }), [PROJECT_TAG, 'project id must be']);
      }
      t.equal((await c.query('SELECT count(*)::int AS n FROM experiments')).rows[0].n, before, 'no refused experiment was created');
      const long = 'p'.repeat(250);
      await refusal(t, createExperiment(c, 'too-long', { [PROJECT_TAG]: long }), [PROJECT_TAG, 'longer than 256']);
      const id = await createExperiment(c, 'update-refused', { [PROJECT_TAG]: 'proj-ok' });
      await refusal(t, setExperimentTag(c, id, PROJECT_TAG, '../x'), ["'../x'", 'no "/"']);
      t.equal(await locationOf(c, id), `${BUCKET}/mlflow/proj-ok`);
      t.equal((await c.query('SELECT value FROM experiment_tags WHERE experiment_id = $1 AND key = $2', [id, PROJECT_TAG])).rows[0].value, 'proj-ok', 'the refused UPDATE rolled back');
    });
  });
}

t.test('custom-location mode', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, customMode);
  const id = await createExperiment(c, 'custom', { [LOCATION_TAG]: `${BUCKET}/custom/my-test-project/` });
  t.equal(await locationOf(c, id), `${BUCKET}/custom/my-test-project/`, 'create-with-tags');
  await setExperimentTag(c, id, LOCATION_TAG, 's3://team-bucket/x');
  t.equal(await locationOf(c, id), 's3://team-bucket/x', 'existing key (UPDATE)');
  const later = await createExperiment(c, 'custom-later');
  await setExperimentTag(c, later, LOCATION_TAG, 's3://team-bucket/later');
  t.equal(await locationOf(c, later), 's3://team-bucket/later', 'new key');
  const proj = await createExperiment(c, 'project-tag-is-foreign-here', { [PROJECT_TAG]: '../whatever' });
  t.equal(await locationOf(c, proj), `${DEFAULT_ROOT}${proj}`, 'the project tag is not ours in this mode');
  for (const bad of ['s3://evil-bucket/x', `${BUCKET}/mlflow/x`, `${BUCKET}/custom`, 's3://team-bucket-evil/x', 's3://other/s3://team-bucket/']) {
    await refusal(t, createExperiment(c, `bad-${bad}`, { [LOCATION_TAG]: bad }), [LOCATION_TAG, bad, 'must start with one of']);
  }
  for (const bad of ['s3://team-bucket/../x', 's3://team-bucket/a/./b', 's3://team-bucket/a/..']) {
    await refusal(t, createExperiment(c, `dots-${bad}`, { [LOCATION_TAG]: bad }), [LOCATION_TAG, '"." or ".." path segments']);
  }
  await refusal(t, createExperiment(c, 'long', { [LOCATION_TAG]: `s3://team-bucket/${'x'.repeat(250)}` }), ['longer than 256']);
});

t.test('switching modes replaces the one function and trigger; uninstall removes exactly ours', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, projectMode);
  t.same(await ourObjects(c), { triggers: 1, functions: 1 });
  const again = capture();
  await install(name, projectMode, again);
  t.same(await ourObjects(c), { triggers: 1, functions: 1 }, 'installing twice is idempotent');
  const switchLog = capture();
  const installed = await install(name, customMode, switchLog);
  t.equal(installed.mode, 'custom-location');
  t.same(await ourObjects(c), { triggers: 1, functions: 1 }, 'still one of each after switching');
  t.match(switchLog.records().find((r) => r.msg === 'replacing the installed mode'), { from: 'project-id', to: 'custom-location' });
  const id = await createExperiment(c, 'after-switch', { [PROJECT_TAG]: 'proj', [LOCATION_TAG]: 's3://team-bucket/z' });
  t.equal(await locationOf(c, id), 's3://team-bucket/z');

  const removed = await uninstall(name, customMode);
  t.equal(removed.mode, 'custom-location');
  t.same(await ourObjects(c), { triggers: 0, functions: 0 });
  const untouched = await createExperiment(c, 'after-uninstall', { [PROJECT_TAG]: 'proj', [LOCATION_TAG]: 's3://team-bucket/z' });
  t.equal(await locationOf(c, untouched), `${DEFAULT_ROOT}${untouched}`);
  const log = capture();
  await uninstall(name, customMode, log);
  t.ok(log.records().some((r) => /nothing of ours was installed/.test(String(r.msg))), 'uninstalling twice is fine');
});

t.test('the procedure\'s original trigger fails MLflow\'s replays; ours, installed beside it, does not', async (t) => {
  const admin = await server.client();
  await admin.query('CREATE DATABASE mlflow');
  await admin.end();
  const c = await server.client('mlflow');
  clients.push(c);
  await c.query(mlflowSchema('new'));
  await c.query(ORIGINAL_TRIGGER);
  const results = await runReplays(c, projectReplays);
  t.equal(results[0].actual, `${DEFAULT_ROOT}${1}`, 'create-with-tags: MLflow\'s UPDATE overwrites the original trigger\'s value');
  t.not(results[0].actual, results[0].expected);
  t.not(results[2].actual, results[2].expected, 'changing an existing tag (UPDATE) never fires an AFTER INSERT trigger');
  t.equal(results[1].actual, results[1].expected, 'only a brand-new tag on an existing experiment works');

  const log = capture();
  await install('mlflow', projectMode, log);
  const warning = log.records().find((r) => r.level === 'warn');
  t.match(warning, { msg: /update_artifact_location_trg/, removeWith: 'DROP TRIGGER update_artifact_location_trg ON experiment_tags; DROP FUNCTION public.update_artifact_location();' });
  for (const r of await runReplays(c, projectReplays, ' again')) t.equal(r.actual, r.expected, `with ours installed too: ${r.name}`);
  await uninstall('mlflow', projectMode);
  t.ok(await findLegacy(c), 'the procedure\'s objects are not ours and were left in place');
});

t.test('--backfill applies the rule to experiments tagged before the install, and skips refused values', async (t) => {
  const { name, c } = await freshDatabase('old');
  const ok = await createExperiment(c, 'pre-ok', { [PROJECT_TAG]: 'proj-old' });
  const bad = await createExperiment(c, 'pre-bad', { [PROJECT_TAG]: '../escape' });
  const untagged = await createExperiment(c, 'pre-untagged', { 'mlflow.note.content': 'x' });
  const log = capture();
  const installed = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, projectMode, log.logger, { backfill: true }));
  t.match(installed.backfill, { tagged: 2, changed: 1, refused: [{ experimentId: bad, reason: /'\.\.\/escape' refused/ }] });
  t.equal(await locationOf(c, ok), `${BUCKET}/mlflow/proj-old`);
  t.equal(await locationOf(c, bad), `${DEFAULT_ROOT}${bad}`, 'a refused value leaves its experiment as it was');
  t.equal(await locationOf(c, untagged), `${DEFAULT_ROOT}${untagged}`);
  t.match(log.records().find((r) => r.msg === 'backfill applied the rule to existing experiments'), { tagged: 2, changed: 1, refused: 1 });
  const again = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, projectMode, log.logger, { backfill: true }));
  t.match(again.backfill, { tagged: 2, changed: 0 }, 'a second backfill changes nothing');
  t.same(await ourObjects(c), { triggers: 1, functions: 1 });
  const later = await createExperiment(c, 'post', { [PROJECT_TAG]: 'proj-new' });
  t.equal(await locationOf(c, later), `${BUCKET}/mlflow/proj-new`, 'the trigger is deferred again after the backfill');
});

t.test('two installers at once never interleave', async (t) => {
  const { name, c } = await freshDatabase();
  const configs = [projectMode, customMode, projectMode, customMode];
  const results = await Promise.all(configs.map((config) => install(name, config)));
  t.same(results.map((r) => r.mode), configs.map((config) => config.trigger.mode), 'each saw its own install complete');
  t.same(await ourObjects(c), { triggers: 1, functions: 1 });
  const state = await readInstalled(c, 'public');
  t.ok(state.mode, 'the function records one mode');
  // Whichever committed last, the function and the trigger's WHEN clause belong to the same mode.
  t.match(state.trigger?.definition, `WHEN (((new.key)::text = '${state.tag}'::text))`);
});

t.test('missing MLflow tables: refused with a message saying so, nothing created', async (t) => {
  const admin = await server.client();
  await admin.query('CREATE DATABASE not_mlflow');
  await admin.end();
  const err = await install('not_mlflow', projectMode).catch((e: Error) => e);
  t.type(err, TriggerError);
  t.match((err as Error).message, /MLflow's tables public.experiment_tags, public.experiments are missing from database "not_mlflow"/);
  const c = await server.client('not_mlflow');
  t.same(await ourObjects(c), { triggers: 0, functions: 0 });
  await c.end();
});

// ---- faults (issue 6 section 2) ----

t.test('a connection cut mid-install leaves nothing half-installed, and a rerun succeeds', async (t) => {
  const { name, c } = await freshDatabase();
  // MLflow in the middle of create_experiment holds a row lock on experiment_tags; the installer waits for it at the trigger DDL,
  // with its function already created in the install transaction.
  const blocker = await server.client(name);
  await blocker.query('BEGIN');
  const { rows: [{ experiment_id: pending }] } = await blocker.query("INSERT INTO experiments (name, lifecycle_stage) VALUES ('pending', 'active') RETURNING experiment_id");
  await blocker.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [PROJECT_TAG, 'proj-pending', pending]);
  const log = capture();
  const running = install(name, projectMode, log).then(() => undefined, (e: Error) => e);
  let waiting: { pid: number; query: string } | undefined;
  while (!waiting) {
    const { rows } = await c.query("SELECT pid, query FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [APPLICATION_NAME]);
    waiting = rows[0];
    if (!waiting) await sleep(50);
  }
  t.match(waiting.query, /^(DROP|CREATE CONSTRAINT) TRIGGER/, 'cut after CREATE FUNCTION ran in the install transaction');
  await c.query('SELECT pg_terminate_backend($1)', [waiting.pid]);
  const err = await running;
  t.type(err, TriggerError, 'the install fails');
  t.match((err as Error).message, /gave up after 1 attempt/);
  await blocker.query('COMMIT');
  await blocker.end();
  t.same(await ourObjects(c), { triggers: 0, functions: 0 }, 'rolled back: no function without its trigger');
  const installed = await install(name, projectMode);
  t.equal(installed.mode, 'project-id', 'the rerun succeeds');
  t.same(await ourObjects(c), { triggers: 1, functions: 1 });
});

t.test('a database that comes up late: the retry succeeds', async (t) => {
  const late = await startPostgres();
  t.teardown(() => late.stop());
  const setup = await late.client();
  await setup.query(mlflowSchema('new'));
  await setup.end();
  await late.pause();
  const log = capture();
  const installing = withDatabase({ databaseUrl: late.url(), waitSeconds: 60 }, log.logger, (client) => installTrigger(client, projectMode, log.logger));
  while (!log.records().some((r) => r.msg === 'tracking database not ready; retrying')) await sleep(50);
  await late.resume();
  const installed = await installing;
  t.equal(installed.mode, 'project-id');
  const retries = log.records().filter((r) => r.msg === 'tracking database not ready; retrying');
  t.ok(retries.length >= 1, 'each failed attempt was logged');
  t.match(retries[0], { attempt: 1, reason: /ECONNREFUSED/ });
  t.notMatch(log.lines.join(''), late.password, 'the password appears in no log line');
});

// ---- the CLI: exit codes, --dry-run, connection failures, secrets (issue 6 section 3) ----

t.test('the install-trigger CLI', async (t) => {
  const MARKER = 'Marker-Secret-7f3a9c';
  const WRONG = 'Wrong-Marker-Secret-b81e04';
  const admin = await server.client();
  await admin.query(`CREATE ROLE mlflow LOGIN PASSWORD ${pg.escapeLiteral(MARKER)}`);
  await admin.query('CREATE DATABASE mlflow_cli OWNER mlflow');
  await admin.query('CREATE DATABASE mlflow_empty OWNER mlflow');
  await admin.end();
  const owner = new pg.Client({ connectionString: `postgres://mlflow:${MARKER}@127.0.0.1:${server.port}/mlflow_cli` });
  await owner.connect();
  clients.push(owner);
  await owner.query(mlflowSchema('new'));
  const configFile = await writeConfig('project.json', { trigger: { mode: 'project-id' } });
  const libpq = (password: string, database = 'mlflow_cli') => ({
    PGHOST: '127.0.0.1', PGPORT: String(server.port), PGDATABASE: database, PGUSER: 'mlflow', PGPASSWORD: password, PGSSLMODE: 'disable',
  });
  const noMarker = (t: Tap.Test, r: { stdout: string; stderr: string }) => {
    for (const secret of [MARKER, WRONG]) {
      t.notOk(`${r.stdout}${r.stderr}`.includes(secret), `the marker ${secret.slice(0, 6)}... appears nowhere in the output`);
    }
  };

  t.test('--dry-run prints the SQL, needs no database and touches none', async (t) => {
    const r = await cli(['--config', configFile, '--dry-run'], { PGHOST: '127.0.0.1', PGPORT: String(await freePort()) });
    t.equal(r.code, 0);
    t.equal(r.stdout, script(configFor({ mode: 'project-id' }), 'install'));
    t.match(r.stdout, /CREATE CONSTRAINT TRIGGER/);
    const withDb = await cli(['--config', configFile, '--dry-run'], libpq(MARKER));
    t.equal(withDb.code, 0);
    t.same(await ourObjects(owner), { triggers: 0, functions: 0 }, 'the database is untouched');
  });

  t.test('the printed SQL is what an install runs', async (t) => {
    const { name, c } = await freshDatabase();
    await c.query(script(customMode, 'install'));
    t.match(await readInstalled(c, 'public'), { mode: 'custom-location', trigger: { initiallyDeferred: true } });
    t.equal(name.length > 0, true);
  });

  t.test('usage errors exit 2', async (t) => {
    for (const args of [['--wait', 'soon'], ['--uninstall', '--backfill'], ['--database-url', `mysql://mlflow:${MARKER}@h/db`]]) {
      const r = await cli(['--config', configFile, ...args]);
      t.equal(r.code, 2, args.join(' '));
      t.match(r.stderr, /usage: mlflow-irsa-webhook install-trigger/);
      noMarker(t, r);
    }
  });

  t.test('installs with the marker password, which appears nowhere', async (t) => {
    const r = await cli(['--config', configFile, '--wait', '5'], libpq(MARKER));
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /"msg":"trigger installed"/);
    t.match(r.stdout, /"user":"mlflow"/);
    noMarker(t, r);
    t.same(await ourObjects(owner), { triggers: 1, functions: 1 });
    const url = await cli(['--config', configFile, '--uninstall', '--database-url', `postgres://mlflow:${encodeURIComponent(MARKER)}@127.0.0.1:${server.port}/mlflow_cli?sslmode=disable`]);
    t.equal(url.code, 0, url.stderr);
    t.match(url.stdout, /"msg":"trigger uninstalled"/);
    noMarker(t, url);
    t.same(await ourObjects(owner), { triggers: 0, functions: 0 });
  });

  t.test('a wrong password fails at once, without retrying and without the password', async (t) => {
    const r = await cli(['--config', configFile, '--wait', '300'], libpq(WRONG));
    t.equal(r.code, 1);
    t.match(r.stdout, /authentication failed: check PGUSER and PGPASSWORD/);
    t.notMatch(r.stdout, /retrying/, 'no retry for a wrong password');
    noMarker(t, r);
    const url = await cli(['--config', configFile, '--database-url', `postgres://mlflow:${WRONG}@127.0.0.1:${server.port}/mlflow_cli`]);
    t.equal(url.code, 1);
    t.match(url.stdout, /authentication failed/);
    noMarker(t, url);
  });

  t.test('a missing database fails at once', async (t) => {
    const r = await cli(['--config', configFile], libpq(MARKER, 'no_such_db'));
    t.equal(r.code, 1);
    t.match(r.stdout, /the database does not exist/);
    noMarker(t, r);
  });

  t.test('missing MLflow tables exit 1 with a message saying so', async (t) => {
    const r = await cli(['--config', configFile], libpq(MARKER, 'mlflow_empty'));
    t.equal(r.code, 1);
    t.match(JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}'), { level: 'error', reason: /MLflow's tables .* are missing from database "mlflow_empty"/ });
    noMarker(t, r);
  });

  t.test('an unreachable host is retried, logged, and given up after --wait', async (t) => {
    const r = await cli(['--config', configFile, '--wait', '2'], { ...libpq(MARKER), PGPORT: String(await freePort()) });
    t.equal(r.code, 1);
    t.match(r.stdout, /"msg":"tracking database not ready; retrying"/);
    t.match(r.stdout, /gave up after \d+ attempt\(s\) over 2 s \(--wait\)/);
    noMarker(t, r);
  });
});
