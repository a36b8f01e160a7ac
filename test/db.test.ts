// The tracking-database trigger against a real PostgreSQL: MLflow's exact statement sequences, both modes, installers, faults and secrets.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import pg from 'pg';
import { parseConfig, type Config } from '../src/config/config.js';
import { createLogger } from '../src/log.js';
import { APPLICATION_NAME, TriggerError, classify, scrub, withDatabase } from '../src/db/connect.js';
import { findLegacy, installTrigger, installedDifferences, readInstalled, uninstallTrigger } from '../src/db/install.js';
import { MAX_LOCATION_LENGTH } from '../src/config/artifact-location.js';
import { AUDIT_TABLE_NAME, BACKFILL_BATCH_SIZE, FUNCTION_NAME, POLICY_OFF, TRIGGER_NAME, functionDefinition, installStatements, type Policy } from '../src/db/sql.js';
import { script } from '../src/db/script.js';
import { runCli } from './helpers/cli.js';
import { root } from './helpers/fixtures.js';
import { freePort, startPostgres, type TestPostgres } from './helpers/pg.js';

const BUCKET = 's3://sw-domino-project-based-mlflow';
const fixtures = join(root, 'test/fixtures/mlflow');
/** MLflow's default artifact root when it proxies artifacts (--artifacts-destination): experiment N gets mlflow-artifacts:/N */
const DEFAULT_ROOT = 'mlflow-artifacts:/';
const PROJECT_TAG = 'mlflow.domino.project_id';
const LOCATION_TAG = 'domino.artifacts_location';

function configFor(trigger: Record<string, unknown> = {}): Config {
  return parseConfig({ roleArn: 'arn:aws:iam::111122223333:role/sw-mlflow-full-access', artifactsDestination: BUCKET, trigger });
}
// The location policy enforcing, as most tests here show its refusals; the default (audit) has tests of its own.
const projectMode = configFor({ mode: 'project-id', locationPolicy: 'enforce' });
const customMode = configFor({ mode: 'custom-location', allowedLocationPrefixes: [`${BUCKET}/custom`, 's3://team-bucket/'], locationPolicy: 'enforce' });

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

/**
 * create_experiment(name, artifact_location, tags), as SqlAlchemyStore runs it in one transaction: INSERT ... RETURNING with the
 * given location (NULL when none), one INSERT per tag, and only when the location was empty MLflow's own UPDATE to its default
 * <root>/<id> (`if not artifact_location:` after the first flush).
 */
async function createExperiment(c: pg.Client, name: string, tags: Record<string, string> = {}, artifactLocation: string | null = null): Promise<number> {
  return tx(c, async () => {
    const now = Date.now();
    const { rows } = await c.query<{ experiment_id: number }>(
      "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time) VALUES ($1, $2, 'active', $3, $3) RETURNING experiment_id",
      [name, artifactLocation, now],
    );
    const id = rows[0].experiment_id;
    for (const [key, value] of Object.entries(tags)) {
      await c.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [key, value, id]);
    }
    if (!artifactLocation) {
      await c.query('UPDATE experiments SET artifact_location = $1 WHERE experiments.experiment_id = $2', [`${DEFAULT_ROOT}${id}`, id]);
    }
    return id;
  });
}

/** rename_experiment, delete_experiment, restore_experiment: one UPDATE of the changed columns and last_update_time. */
async function updateExperiment(c: pg.Client, id: number, change: { name?: string; lifecycle_stage?: 'active' | 'deleted' }): Promise<void> {
  const [column, value] = Object.entries(change)[0];
  await tx(c, async () => {
    await c.query(`UPDATE experiments SET ${column} = $1, last_update_time = $2 WHERE experiments.experiment_id = $3`, [value, Date.now(), id]);
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

/** Our objects as pg_trigger/pg_proc list them (by our name prefix), counted independently of readInstalled. */
async function ourObjects(c: pg.Client): Promise<{ triggers: number; functions: number; tables: number }> {
  const { rows } = await c.query<{ triggers: number; functions: number; tables: number }>(
    `SELECT (SELECT count(*)::int FROM pg_trigger WHERE tgname LIKE 'mlflow\\_irsa\\_%') AS triggers,
            (SELECT count(*)::int FROM pg_proc WHERE proname LIKE 'mlflow\\_irsa\\_%') AS functions,
            (SELECT count(*)::int FROM pg_class WHERE relname LIKE 'mlflow\\_irsa\\_%' AND relkind = 'r') AS tables`,
  );
  return rows[0];
}
/** With the location policy auditing or enforcing: the tag trigger and the policy trigger; the trigger function and the WHEN clause's test; the audit table. */
const ALL = { triggers: 2, functions: 2, tables: 1 };
/** With the policy off: no trigger on experiments. */
const OFF = { triggers: 1, functions: 2, tables: 1 };
const NONE = { triggers: 0, functions: 0, tables: 0 };
/** The policy as the installer derives it from the schema's experiment 0 (mlflow-artifacts:/0). */
const DERIVED: Policy = { mode: 'enforce', defaultPrefix: DEFAULT_ROOT };

type PgError = Error & { code?: string; hint?: string };
async function refusal(t: Tap.Test, work: Promise<unknown>, parts: string[]): Promise<PgError | undefined> {
  const err = await work.then(() => undefined, (e: PgError) => e);
  t.ok(err, 'refused');
  t.equal(err?.code, '23514', 'check_violation');
  for (const p of parts) t.match(err?.message ?? '', p, `message names ${p}`);
  return err;
}

async function countExperiments(c: pg.Client): Promise<number> {
  return (await c.query('SELECT count(*)::int AS n FROM experiments')).rows[0].n;
}

/** Anyone's direct write of a location (not an MLflow call): one UPDATE in its own transaction. */
function writeLocation(c: pg.Client, id: number, location: string): Promise<unknown> {
  return tx(c, () => c.query('UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2', [location, id]));
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
  const sql = installStatements(projectMode, DERIVED).join('\n');
  t.match(sql, `CREATE CONSTRAINT TRIGGER "${TRIGGER_NAME}"`);
  t.match(sql, 'DEFERRABLE INITIALLY DEFERRED');
  t.match(sql, `SELECT ($1).key OPERATOR(pg_catalog.=) '${PROJECT_TAG}'`, 'the WHEN test, with its operator schema-qualified');
  t.match(sql, 'WHEN ("public"."mlflow_irsa_is_our_tag"(NEW))', 'WHEN names no column');
  t.match(sql, `'${BUCKET}/mlflow/' || tag_value`);
  t.match(sql, 'SET search_path = pg_catalog, pg_temp');
  t.notMatch(sql, 'CREATE OR REPLACE TRIGGER', 'PostgreSQL 11 has no CREATE OR REPLACE TRIGGER');
  const custom = functionDefinition(customMode, DERIVED);
  t.match(custom, `left(tag_value, ${`${BUCKET}/custom/`.length}) = '${BUCKET}/custom/'`, 'a prefix without its slash gets one');
  t.match(custom, "= 's3://team-bucket/'");
  const noPrefix = functionDefinition(configFor({ prefix: '' }), DERIVED);
  t.match(noPrefix, `'${BUCKET}/' || tag_value`, 'an empty prefix puts projects at the destination root');
  t.notMatch(installStatements(projectMode, POLICY_OFF).join('\n'), 'CREATE CONSTRAINT TRIGGER "mlflow_irsa_location_policy_trg"', 'policy off: no trigger on experiments');
  t.match(script(projectMode, 'uninstall'), /^-- .*\nBEGIN;\n.*pg_advisory_xact_lock.*\nLOCK TABLE "public"\."experiments", "public"\."experiment_tags" IN ACCESS EXCLUSIVE MODE;\n(DROP TRIGGER IF EXISTS .*\n){2}(DROP FUNCTION IF EXISTS .*\n){2}DROP TABLE IF EXISTS "public"\."mlflow_irsa_location_audit";\nCOMMIT;\n$/s);
});

t.test('a password is blanked where it stands as a password, and nowhere else; failures are classified', async (t) => {
  const cases: Array<[string, string]> = [
    // URL userinfo, escaped or not, with an unescaped @ in it (pg takes the last @ before the host)
    ['at postgres://mlflow:p%40ss@db:5432/mlflow?sslmode=disable', 'at postgres://mlflow:[redacted]@db:5432/mlflow?sslmode=disable'],
    ['postgresql://u:p@ss@h/db and more', 'postgresql://u:[redacted]@h/db and more'],
    // key=value forms: libpq's conninfo, the environment, quoted or not, any case
    ["host=db password=s3cr3t user=mlflow", 'host=db password=[redacted] user=mlflow'],
    ["password='with space' port=5432", 'password=[redacted] port=5432'],
    ['PGPASSWORD=mlflow psql -h db', 'PGPASSWORD=[redacted] psql -h db'],
    ['?sslmode=disable&password=hunter2&x=1', '?sslmode=disable&password=[redacted]&x=1'],
    ['{"user":"mlflow","password":"hunter2"}', '{"user":"mlflow","password":"[redacted]"}'],
    // the review's cases: with password mlflow, the user name stays; a one-letter password leaves paths alone
    ['password authentication failed for user "mlflow"', 'password authentication failed for user "mlflow"'],
    ["cannot read the root certificate file (PGSSLROOTCERT /usr/lib/libpq/root.crt): ENOENT", "cannot read the root certificate file (PGSSLROOTCERT /usr/lib/libpq/root.crt): ENOENT"],
    ['authentication failed: check PGUSER and PGPASSWORD (secret mlflow-postgresql)', 'authentication failed: check PGUSER and PGPASSWORD (secret mlflow-postgresql)'],
  ];
  for (const [message, scrubbed] of cases) t.equal(scrub(message), scrubbed, message);
  t.equal(classify(Object.assign(new Error('password authentication failed for user "mlflow"'), { code: '28P01' })).retryable, false);
  t.equal(classify(Object.assign(new Error('the database system is starting up'), { code: '57P03' })).retryable, true);
  t.equal(classify(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })).retryable, true);
  t.equal(classify(new Error('Connection terminated unexpectedly')).retryable, true);
  t.equal(classify(new TriggerError('tables missing')).retryable, false);
  t.equal(classify(Object.assign(new Error('syntax error'), { code: '42601' })).retryable, false);
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
      await refusal(t, createExperiment(c, 'too-long', { [PROJECT_TAG]: long }), [PROJECT_TAG, 'the resulting location is 293 characters (the value 250), over the limit of 157']);
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
  // what MLflow's create_run cannot append a run to ("Invalid query string"), or refuses in an explicit location
  for (const bad of ['s3://team-bucket/x?a=..', 's3://team-bucket/x#f', 's3://team-bucket/x;p', 's3://team-bucket/%2E%2E', 's3://team-bucket/my project']) {
    await refusal(t, createExperiment(c, `chars-${bad}`, { [LOCATION_TAG]: bad }), [LOCATION_TAG, 'may hold only letters, digits']);
  }
  await refusal(t, createExperiment(c, 'long', { [LOCATION_TAG]: `s3://team-bucket/${'x'.repeat(250)}` }), ['the resulting location is 267 characters (the value 267), over the limit of 157']);
});

// ---- issue 11: the 157-character limit and the explicit-location policy, in MLflow's statement order ----

/** A run URI as MLflow's create_run builds it, for a run id of 32 hex characters. */
const runUri = (location: string) => `${location}/${'f'.repeat(32)}/artifacts`;

for (const variant of ['new', 'old'] as const) {
  t.test(`${variant} MLflow schema: 157 characters is the longest location, in both modes`, async (t) => {
    t.equal(MAX_LOCATION_LENGTH, 157);
    const project = await freshDatabase(variant);
    await install(project.name, projectMode);
    const base = `${BUCKET}/mlflow/`;
    const fits = 'p'.repeat(MAX_LOCATION_LENGTH - base.length);
    const id = await createExperiment(project.c, 'longest', { [PROJECT_TAG]: fits });
    t.equal((await locationOf(project.c, id))?.length, 157, 'a 157-character location is set');
    t.equal((await createRun(project.c, id)).length, 200, 'and its runs fill runs.artifact_uri exactly');
    const over = await refusal(t, createExperiment(project.c, 'one-over', { [PROJECT_TAG]: `${fits}p` }), [
      PROJECT_TAG, `the resulting location is 158 characters (the value ${fits.length + 1}), over the limit of 157`, 'runs.artifact_uri, VARCHAR(200)',
    ]);
    t.comment(`158 in project-id mode: ${over?.message.slice(0, 60)}... ${over?.message.slice(-120)}`);
    // Why 157: without the trigger, the 158-character location would be stored and then break every create_run.
    const err = await project.c.query("INSERT INTO runs (run_uuid, artifact_uri, experiment_id) VALUES ('x', $1, 0)", [runUri(`${base}${fits}p`)]).catch((e: PgError) => e);
    t.match(err, { code: '22001', message: /value too long for type character varying\(200\)/ }, 'MLflow\'s runs table cannot take a 158-character location\'s run');

    const custom = await freshDatabase(variant);
    await install(custom.name, customMode);
    const prefix = 's3://team-bucket/';
    const long = `${prefix}${'c'.repeat(MAX_LOCATION_LENGTH - prefix.length)}`;
    const viaTag = await createExperiment(custom.c, 'custom-longest', { [LOCATION_TAG]: long });
    t.equal(await locationOf(custom.c, viaTag), long, 'custom location of 157 through the tag');
    t.equal((await createRun(custom.c, viaTag)).length, 200);
    await refusal(t, createExperiment(custom.c, 'custom-over', { [LOCATION_TAG]: `${long}c` }), [LOCATION_TAG, 'is 158 characters (the value 158), over the limit of 157']);
    const explicit = await createExperiment(custom.c, 'explicit-longest', {}, long);
    t.equal(await locationOf(custom.c, explicit), long, 'an explicit location of 157 under an allowed prefix');
    await refusal(t, createExperiment(custom.c, 'explicit-over', {}, `${long}c`), ['artifact_location', 'is 158 characters', 'over the limit of 157']);
  });

  t.test(`${variant} MLflow schema: the explicit-location policy in project-id mode, replayed in MLflow's order`, async (t) => {
    const { name, c } = await freshDatabase(variant);
    const legacy = await createExperiment(c, 'legacy', {}, 's3://old-bucket/legacy');
    const log = capture();
    await install(name, projectMode, log);
    t.match(log.records().find((r) => String(r.msg).startsWith('location policy enforce')), { source: `experiment 0 (Default), location '${DEFAULT_ROOT}0'`, mlflowDefault: `${DEFAULT_ROOT}<experiment id>` }, 'prints the root it derived');
    t.same(await ourObjects(c), ALL);

    const plain = await createExperiment(c, 'no-location');
    t.equal(await locationOf(c, plain), `${DEFAULT_ROOT}${plain}`, 'create without a location: MLflow\'s own default');
    const empty = await createExperiment(c, 'empty-location', {}, '');
    t.equal(await locationOf(c, empty), `${DEFAULT_ROOT}${empty}`, 'an empty location: MLflow inserts it, then sets its default');
    const ruleLocation = await createExperiment(c, 'explicit-rule', { [PROJECT_TAG]: 'proj-e' }, `${BUCKET}/mlflow/proj-e`);
    t.equal(await locationOf(c, ruleLocation), `${BUCKET}/mlflow/proj-e`, 'an explicit location the rule gives its tag');

    const before = await countExperiments(c);
    for (const foreign of ['s3://evil-bucket/x', `${BUCKET}/mlflow/other-project`, `${DEFAULT_ROOT}99999`, `${BUCKET}/custom/x`]) {
      const err = await refusal(t, createExperiment(c, `foreign ${foreign}`, {}, foreign), [
        'artifact_location', `'${foreign}' refused`, `without the tag ${PROJECT_TAG} an experiment's location may only be empty or MLflow's default (${DEFAULT_ROOT}`,
      ]);
      t.match(err?.hint, /install-trigger --uninstall, run the migration, then install-trigger again/, 'the hint says what an MLflow migration needs');
    }
    t.equal(await countExperiments(c), before, 'no refused experiment was created');

    const both = await createExperiment(c, 'explicit-and-tag', { [PROJECT_TAG]: 'proj-w' }, 's3://evil-bucket/x');
    t.equal(await locationOf(c, both), `${BUCKET}/mlflow/proj-w`, 'an explicit location with the project tag: the tag wins');
    await setExperimentTag(c, plain, PROJECT_TAG, 'proj-later');
    t.equal(await locationOf(c, plain), `${BUCKET}/mlflow/proj-later`, 'set_experiment_tag later');

    for (const id of [legacy, both, empty]) {
      const location = await locationOf(c, id);
      await updateExperiment(c, id, { name: `renamed-${id}` });
      await updateExperiment(c, id, { lifecycle_stage: 'deleted' });
      await updateExperiment(c, id, { lifecycle_stage: 'active' });
      t.equal(await locationOf(c, id), location, `rename, delete and restore of experiment ${id} pass and keep its location`);
    }
    await refusal(t, writeLocation(c, empty, 's3://evil-bucket/y'), [`experiment ${empty} artifact_location = 's3://evil-bucket/y' refused`]);
    await refusal(t, writeLocation(c, legacy, 's3://evil-bucket/y'), ['refused'], );
    t.equal(await locationOf(c, legacy), 's3://old-bucket/legacy', 'a legacy location may stay, but not be rewritten to a foreign one');
    await writeLocation(c, both, 's3://evil-bucket/y');
    t.equal(await locationOf(c, both), `${BUCKET}/mlflow/proj-w`, 'a direct write to a tagged experiment: the tag wins again at commit');
  });

  t.test(`${variant} MLflow schema: the explicit-location policy in custom-location mode`, async (t) => {
    const { name, c } = await freshDatabase(variant);
    await install(name, customMode);
    const plain = await createExperiment(c, 'no-location');
    t.equal(await locationOf(c, plain), `${DEFAULT_ROOT}${plain}`);
    const allowed = await createExperiment(c, 'explicit-allowed', {}, 's3://team-bucket/team-a');
    t.equal(await locationOf(c, allowed), 's3://team-bucket/team-a', 'an explicit location under an allowed prefix');
    for (const [foreign, reason] of [['s3://evil-bucket/x', 'must start with one of'], ['s3://team-bucket-evil/x', 'must start with one of'], ['s3://team-bucket/a/../b', '"." or ".." path segments']]) {
      await refusal(t, createExperiment(c, `foreign ${foreign}`, {}, foreign), ['artifact_location', `MLflow's default (${DEFAULT_ROOT}`, reason]);
    }
    const both = await createExperiment(c, 'explicit-and-tag', { [LOCATION_TAG]: `${BUCKET}/custom/t` }, 's3://evil-bucket/x');
    t.equal(await locationOf(c, both), `${BUCKET}/custom/t`, 'an explicit location with the location tag: the tag wins');
    await setExperimentTag(c, plain, LOCATION_TAG, 's3://team-bucket/later');
    t.equal(await locationOf(c, plain), 's3://team-bucket/later', 'set_experiment_tag later');
    await updateExperiment(c, allowed, { name: 'renamed' });
    await updateExperiment(c, allowed, { lifecycle_stage: 'deleted' });
    await updateExperiment(c, allowed, { lifecycle_stage: 'active' });
    t.equal(await locationOf(c, allowed), 's3://team-bucket/team-a', 'rename, delete, restore');
  });
}

// ---- issue 23: the location policy learns from history, never from the newest row ----

const auditMode = configFor({ mode: 'project-id' });
const offMode = configFor({ mode: 'project-id', locationPolicy: 'off' });

/** Our audit table's rows, by experiment. */
async function auditRows(c: pg.Client): Promise<Array<{ experiment_id: number; artifact_location: string; writes: number }>> {
  const { rows } = await c.query(`SELECT experiment_id, artifact_location, writes::int FROM ${AUDIT_TABLE_NAME} ORDER BY experiment_id`);
  return rows;
}

/** The next id MLflow's INSERT will get (the sequence; experiment 0 was inserted with an explicit id). */
async function nextId(c: pg.Client): Promise<number> {
  return (await c.query("SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END AS id FROM experiments_experiment_id_seq")).rows[0].id;
}

/**
 * History as a Domino install has it before the trigger: experiment 0 (MLflow's first start), experiments Domino created
 * with its project tag at MLflow's default location, Domino's own explicit shared locations, and one a user created
 * with an explicit location ending in its own id under another root.
 */
async function seedHistory(c: pg.Client): Promise<{ tagged: number; sharedProxied: number; sharedS3: number; otherRoot: number; plain: number }> {
  const tagged = await createExperiment(c, 'domino-project', { [PROJECT_TAG]: 'proj-hist', 'mlflow.note.content': 'old' });
  const sharedProxied = await createExperiment(c, 'domino-shared-proxied', {}, 'mlflow-artifacts:/mlflow');
  const sharedS3 = await createExperiment(c, 'domino-shared-s3', {}, `${BUCKET}/mlflow`);
  const id = await nextId(c);
  const otherRoot = await createExperiment(c, 'user-other-root', {}, `/mnt/old-root/${id}`);
  const plain = await createExperiment(c, 'plain');
  return { tagged, sharedProxied, sharedS3, otherRoot, plain };
}

t.test('the replay: a user shapes their experiments, and the next install-trigger puts exactly the same policy in place', async (t) => {
  for (const config of [projectMode, auditMode]) {
    const mode = config.trigger.locationPolicy;
    t.test(`locationPolicy ${mode}`, async (t) => {
      const { name, c } = await freshDatabase();
      await seedHistory(c);
      await install(name, config);
      const first = await readInstalled(c, 'public');
      t.equal(first.policy, mode);

      // an ordinary MLflow user tags their own experiment with its own id: its location becomes <bucket>/mlflow/<id>,
      // which ends in its id and is not <experiment 0's root>/<id>
      const own = await createExperiment(c, 'mine');
      await setExperimentTag(c, own, PROJECT_TAG, String(own));
      t.equal(await locationOf(c, own), `${BUCKET}/mlflow/${own}`);
      // and creates one with an explicit <something>/<id> (refused by enforce, let through by audit)
      const id = await nextId(c);
      const explicit = createExperiment(c, 'mine-explicit', {}, `s3://elsewhere/${id}`);
      if (mode === 'enforce') await refusal(t, explicit, [`'s3://elsewhere/${id}' refused`]);
      else t.equal(await locationOf(c, await explicit), `s3://elsewhere/${id}`, 'audit lets it through');

      const log = capture();
      await install(name, config, log);
      const again = await readInstalled(c, 'public');
      t.equal(again.policy, mode, 'the same mode');
      t.equal(again.function?.body, first.function?.body, 'the same function: the same root and rules');
      t.match(log.records().find((r) => String(r.msg).startsWith(`location policy ${mode}`)), { source: `experiment 0 (Default), location '${DEFAULT_ROOT}0'` });
      t.same(await ourObjects(c), ALL, 'the policy trigger is still on experiments');
      const foreign = createExperiment(c, 'foreign-after', {}, 'mlflow-artifacts://other-host/x');
      if (mode === 'enforce') {
        await refusal(t, foreign, ['empty or MLflow\'s default (mlflow-artifacts:/']);
      } else {
        const recorded = await foreign;
        t.same((await auditRows(c)).map((r) => r.artifact_location), [`s3://elsewhere/${id}`, 'mlflow-artifacts://other-host/x'], `both recorded, the second as experiment ${recorded}`);
      }
    });
  }
});

t.test('audit lets a refused location through and records it; enforce refuses it; off records nothing', async (t) => {
  t.test('audit (the default)', async (t) => {
    t.equal(auditMode.trigger.locationPolicy, 'audit');
    const { name, c } = await freshDatabase();
    const installed = await install(name, auditMode);
    t.match(installed, { policy: 'audit', auditTable: { name: `public.${AUDIT_TABLE_NAME}` } });
    t.same(await ourObjects(c), ALL);
    const foreign = await createExperiment(c, 'foreign', {}, 's3://evil-bucket/x');
    t.equal(await locationOf(c, foreign), 's3://evil-bucket/x', 'create_experiment with the location went through');
    t.match(await auditRows(c), [{ experiment_id: foreign, artifact_location: 's3://evil-bucket/x', writes: 1 }]);
    await writeLocation(c, foreign, 's3://evil-bucket/y');
    for (let i = 0; i < 20; i++) await updateExperiment(c, foreign, { name: `renamed-${i}` });
    t.match(await auditRows(c), [{ experiment_id: foreign, artifact_location: 's3://evil-bucket/y', writes: 2 }], 'one row per experiment; renames are no writes of a location');
    for (let i = 0; i < 30; i++) await writeLocation(c, foreign, `s3://evil-bucket/${i}`);
    t.equal((await auditRows(c)).length, 1, 'however often a tenant writes, one row per experiment');
    t.equal((await auditRows(c))[0].writes, 32);
    // what the policy accepts is not recorded: MLflow's default, the tag's location, and a write with the tag
    const plain = await createExperiment(c, 'plain');
    const tagged = await createExperiment(c, 'tagged', { [PROJECT_TAG]: 'proj-a' }, 's3://evil-bucket/with-tag');
    t.equal(await locationOf(c, tagged), `${BUCKET}/mlflow/proj-a`, 'the tag wins');
    t.equal((await auditRows(c)).length, 1, `experiments ${plain} and ${tagged} were not recorded`);
    // a role that may write experiments but not our table: audit still lets the write through, and says so in a WARNING
    const admin = await server.client(name);
    clients.push(admin);
    await admin.query(`CREATE ROLE writer_${name} LOGIN PASSWORD 'w'; GRANT SELECT, INSERT, UPDATE ON experiments, experiment_tags TO writer_${name};
      GRANT USAGE ON SEQUENCE experiments_experiment_id_seq TO writer_${name}`);
    const writer = new pg.Client({ connectionString: `postgres://writer_${name}:w@127.0.0.1:${server.port}/${name}` });
    await writer.connect();
    clients.push(writer);
    const notices: string[] = [];
    writer.on('notice', (n) => notices.push(`${n.severity}: ${n.message}`));
    const unrecorded = await createExperiment(writer, 'by-another-role', {}, 's3://evil-bucket/z');
    t.equal(await locationOf(c, unrecorded), 's3://evil-bucket/z', 'let through');
    t.match(notices, [/^WARNING: mlflow-irsa-webhook: experiment \d+ artifact_location let through \(audit\) but not recorded: permission denied for table mlflow_irsa_location_audit/]);
  });
  t.test('enforce', async (t) => {
    const { name, c } = await freshDatabase();
    await install(name, projectMode);
    const plain = await createExperiment(c, 'plain');
    await refusal(t, createExperiment(c, 'foreign', {}, 's3://evil-bucket/x'), ["artifact_location = 's3://evil-bucket/x' refused"]);
    await refusal(t, writeLocation(c, plain, 's3://evil-bucket/y'), [`experiment ${plain} artifact_location = 's3://evil-bucket/y' refused`]);
    t.same(await auditRows(c), [], 'nothing recorded: nothing was let through');
  });
  t.test('off', async (t) => {
    const { name, c } = await freshDatabase();
    const log = capture();
    const installed = await install(name, offMode, log);
    t.equal(installed.policy, 'off');
    t.same(await ourObjects(c), OFF, 'no trigger on experiments');
    t.match(log.records().find((r) => String(r.msg).startsWith('location policy off')), { from: 'trigger.locationPolicy: off' });
    const foreign = await createExperiment(c, 'foreign', {}, 's3://evil-bucket/x');
    await writeLocation(c, foreign, 's3://evil-bucket/y');
    t.equal(await locationOf(c, foreign), 's3://evil-bucket/y');
    t.same(await auditRows(c), [], 'off records nothing');
  });
});

t.test('where MLflow\'s default root comes from: trigger.defaultArtifactRoot, else experiment 0 alone', async (t) => {
  t.test('trigger.defaultArtifactRoot wins over experiment 0', async (t) => {
    const { name, c } = await freshDatabase();
    const log = capture();
    await install(name, configFor({ defaultArtifactRoot: 's3://other-root/artifacts', locationPolicy: 'enforce' }), log);
    t.match(log.records().find((r) => String(r.msg).startsWith('location policy enforce')), { source: 'trigger.defaultArtifactRoot', mlflowDefault: 's3://other-root/artifacts/<experiment id>' });
    const next = await nextId(c);
    const id = await createExperiment(c, 'explicit-default', {}, `s3://other-root/artifacts/${next}`);
    t.equal(await locationOf(c, id), `s3://other-root/artifacts/${id}`, 'the configured root\'s default for the experiment');
    await refusal(t, createExperiment(c, 'mlflow-default'), [`MLflow's default (s3://other-root/artifacts/`]);
  });
  t.test('a newer experiment at another root is listed by the survey, and changes nothing', async (t) => {
    const { name, c } = await freshDatabase();
    const { otherRoot } = await seedHistory(c);
    const log = capture();
    const installed = await install(name, projectMode, log);
    t.equal(installed.policy, 'enforce');
    t.match(log.records().find((r) => r.msg === 'location policy survey: refused location' && r.experimentId === otherRoot),
      { level: 'warn', location: `'/mnt/old-root/${otherRoot}'`, admitWith: /^trigger\.defaultArtifactRoot: '\/mnt\/old-root\/', if that is MLflow's --default-artifact-root$/ });
    const next = await createExperiment(c, 'next');
    t.equal(await locationOf(c, next), `${DEFAULT_ROOT}${next}`, 'experiment 0\'s root admits MLflow\'s own default');
  });
  t.test('no root at all: enforce fails naming trigger.defaultArtifactRoot and leaves the install as it was; audit judges what it can', async (t) => {
    const { name, c } = await freshDatabase();
    await c.query('DELETE FROM experiments WHERE experiment_id = 0');
    const log = capture();
    const audited = await install(name, auditMode, log);
    t.match(audited, { policy: 'audit', resolved: { unknownRoot: /the Default experiment \(id 0\) is not in the database/ } });
    t.match(log.records().find((r) => r.level === 'warn'), { msg: /location policy audit without MLflow's default root: a location ending in the experiment's own id is not judged; set trigger\.defaultArtifactRoot/ });
    const next = await nextId(c);
    await createExperiment(c, 'own-id', {}, `s3://anywhere/${next}`);
    const foreign = await createExperiment(c, 'foreign', {}, 's3://evil-bucket/x');
    t.match(await auditRows(c), [{ experiment_id: foreign }], 'only <root>/<id> is unknowable; everything else is recorded');
    const before = await readInstalled(c, 'public');
    const err = await install(name, projectMode).catch((e: Error) => e);
    t.type(err, TriggerError);
    t.match((err as Error).message, /^trigger\.locationPolicy: enforce, but MLflow's default artifact root is unknown: the Default experiment \(id 0\) is not in the database; set trigger\.defaultArtifactRoot to MLflow's --default-artifact-root/);
    t.same(await readInstalled(c, 'public'), before, 'rolled back: the audit install is untouched, not turned off');
  });
  t.test('trigger.enforceLocations (deprecated): true is enforce, false is off, with a warning naming trigger.locationPolicy', async (t) => {
    for (const [enforceLocations, policy] of [[true, 'enforce'], [false, 'off']] as const) {
      const { name } = await freshDatabase();
      const log = capture();
      const installed = await install(name, configFor({ enforceLocations }), log);
      t.equal(installed.policy, policy);
      t.match(log.records().find((r) => r.level === 'warn'), { msg: `trigger.enforceLocations is deprecated: set trigger.locationPolicy: ${policy} (what it means) and remove trigger.enforceLocations` });
      t.match(installed.resolved, { from: `trigger.enforceLocations: ${enforceLocations} (deprecated; it means trigger.locationPolicy: ${policy})` });
    }
  });
});

t.test('the survey before the policy takes effect: existing conflicts, bounded, escaped, each with the setting that admits it', async (t) => {
  const { name, c } = await freshDatabase();
  const history = await seedHistory(c);
  const hostile = await createExperiment(c, 'hostile', {}, 's3://x/\u001b[2J\u001b[31mred\nDROP TABLE runs;\u202e');
  const many: number[] = [];
  for (let i = 0; i < 25; i++) many.push(await createExperiment(c, `explicit-${i}`, {}, `s3://team-bucket-2/teams/t${i}`));
  const log = capture();
  const installed = await install(name, projectMode, log);
  const conflicts = [history.sharedProxied, history.sharedS3, history.otherRoot, hostile, ...many];
  t.match(installed.survey, { held: conflicts.length });
  t.same(installed.survey?.shown.map((e) => e.experimentId), conflicts.slice(0, 20), 'the first 20 by id; the tagged, the plain and experiment 0 are not conflicts');
  t.match(log.records().find((r) => r.msg === 'location policy survey: more experiments than listed'), { level: 'warn', notListed: conflicts.length - 20 });
  const entries = log.records().filter((r) => r.msg === 'location policy survey: refused location');
  t.equal(entries.length, 20);
  const entry = (id: number) => entries.find((r) => r.experimentId === id)!;
  t.match(entry(history.sharedProxied), { location: "'mlflow-artifacts:/mlflow'", admitWith: /^trigger\.locationPolicy: audit \(or the tag mlflow\.domino\.project_id on the experiment/ });
  t.match(entry(history.sharedS3), { location: `'${BUCKET}/mlflow'`, reason: /without the tag mlflow\.domino\.project_id an experiment's location may only be empty or MLflow's default \(mlflow-artifacts:\/\d+\)/ });
  t.equal(entry(hostile).location, "'s3://x/\\x1b[2J\\x1b[31mred\\x0aDROP TABLE runs;\\u{202e}'", 'control characters, line breaks and bidi overrides are escaped');
  t.notMatch(log.lines.filter((l) => l.includes('location policy survey')).join(''), /\\u001b|\\n|\u202e/, 'the survey\'s lines carry none of them raw, nor as JSON escapes a terminal could be fed');
  const order = log.records().map((r) => r.msg);
  t.ok(order.indexOf('location policy survey: refused location') < order.indexOf('trigger installed'), 'surveyed before the policy takes effect');

  // custom-location mode: a location an allowed prefix would admit gets that entry
  const custom = await install(name, customMode);
  t.match(custom.survey?.shown.find((e) => e.experimentId === many[0]), { admitWith: "a trigger.allowedLocationPrefixes entry holding it, such as 's3://team-bucket-2/teams/'" });
  const admitted = await install(name, configFor({ ...customMode.trigger, allowedLocationPrefixes: [...customMode.trigger.allowedLocationPrefixes, 's3://team-bucket-2/teams/'] }));
  t.notOk(admitted.survey?.shown.some((e) => many.includes(e.experimentId)), 'and that entry admits them');
});

t.test('an install by an earlier build (policy=on, policy=off) is read as enforce and off, and upgraded', async (t) => {
  for (const [recorded, mode] of [['on', 'enforce'], ['off', 'off']] as const) {
    t.test(`policy=${recorded}`, async (t) => {
      const { name, c } = await freshDatabase();
      await seedHistory(c);
      await c.query(await readFile(join(fixtures, `install-2ced421-policy-${recorded}.sql`), 'utf8'));
      const old = await readInstalled(c, 'public');
      t.match(old, { mode: 'project-id', policy: mode, style: 'direct' });
      t.notOk(old.auditTable, 'earlier builds had no audit table');
      const problems = installedDifferences(old, auditMode, { mode: 'audit', defaultPrefix: DEFAULT_ROOT }).map((d) => d.problem);
      t.ok(problems.includes('our table public.mlflow_irsa_location_audit is missing'), problems.join('; '));
      t.ok(problems.includes(`it records the location policy ${mode}, this config installs audit`), 'the recorded policy is read as a mode');
      // the same values as then (trigger.enforceLocations), and the default: each is installed, read back and recorded as a mode
      const legacy = configFor({ enforceLocations: recorded === 'on' });
      const same = await install(name, legacy);
      t.match(same, { policy: mode, auditTable: { name: `public.${AUDIT_TABLE_NAME}` } });
      t.same(installedDifferences(same, legacy, same.resolved.policy), []);
      t.match((await readInstalled(c, 'public')).function?.comment, new RegExp(` policy=${mode} `));
      const log = capture();
      const upgraded = await install(name, auditMode, log);
      t.equal(upgraded.policy, 'audit');
      if (mode !== 'audit') t.match(log.records().find((r) => r.msg === 'replacing the installed location policy'), { from: mode, to: 'audit' });
      t.same(await ourObjects(c), ALL);
    });
  }
});

t.test('a function or operator shadowed on the search_path does not change the outcome', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, projectMode);
  await c.query(`CREATE SCHEMA shadow;
    CREATE FUNCTION shadow.strpos(text, text) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 0';
    CREATE FUNCTION shadow.length(text) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 1';
    CREATE FUNCTION shadow.never(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
    CREATE OPERATOR shadow.!~ (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow.never);`);
  await c.query('SET search_path = shadow, public, pg_catalog');
  t.teardown(() => c.query('RESET search_path'));
  const shadowed = (await c.query("SELECT strpos('a..b', '..') AS strpos, length('abc') AS length, 'a/b' !~ '^[a-z]+$' AS mismatch")).rows[0];
  t.same(shadowed, { strpos: 0, length: 1, mismatch: false }, 'in this session, plain SQL sees the shadows');
  for (const bad of ['a/b', '../x', 'a..b']) {
    await refusal(t, createExperiment(c, `shadowed ${bad}`, { [PROJECT_TAG]: bad }), [PROJECT_TAG, 'project id must be']);
  }
  await refusal(t, createExperiment(c, 'shadowed long', { [PROJECT_TAG]: 'p'.repeat(200) }), ['over the limit of 157']);
  await refusal(t, createExperiment(c, 'shadowed foreign', {}, 's3://evil-bucket/x'), ['artifact_location']);
  const ok = await createExperiment(c, 'shadowed ok', { [PROJECT_TAG]: 'proj-s' });
  t.equal(await locationOf(c, ok), `${BUCKET}/mlflow/proj-s`);
});

t.test('MLflow migrations can change the type of the columns the trigger reads', async (t) => {
  const { name, c } = await freshDatabase('old');
  await install(name, projectMode);
  await c.query('ALTER TABLE experiment_tags ALTER COLUMN key TYPE VARCHAR(500)');
  await c.query('ALTER TABLE experiment_tags ALTER COLUMN value TYPE TEXT');
  await c.query('ALTER TABLE experiments ALTER COLUMN artifact_location TYPE VARCHAR(1000)');
  for (const r of await runReplays(c, projectReplays)) t.equal(r.actual, r.expected, `after the migration: ${r.name}`);
  const foreign = await createExperiment(c, 'foreign-after', { 'mlflow.note.content': '../x' });
  t.equal(await locationOf(c, foreign), `${DEFAULT_ROOT}${foreign}`);
  t.match(await readInstalled(c, 'public'), { mode: 'project-id', policy: 'enforce', trigger: { initiallyDeferred: true }, policyTrigger: { initiallyDeferred: true } });
  // The WHEN clause this replaces (NEW.key = ...) would have stopped the first ALTER: PostgreSQL says so.
  await c.query(`CREATE TRIGGER column_bound AFTER INSERT ON experiment_tags FOR EACH ROW WHEN (NEW.key = 'x') EXECUTE FUNCTION mlflow_irsa_artifact_location()`);
  await t.rejects(c.query('ALTER TABLE experiment_tags ALTER COLUMN key TYPE VARCHAR(600)'), /cannot alter type of a column used in a trigger definition/);
  await c.query('DROP TRIGGER column_bound ON experiment_tags');
});

t.test('--backfill of 20,000 experiments: MLflow\'s tag writes wait at most about one batch', async (t) => {
  const { name, c } = await freshDatabase();
  const BULK = 20_000;
  await c.query(`INSERT INTO experiments (name, lifecycle_stage, creation_time, last_update_time) SELECT 'bulk-' || i, 'active', 0, 0 FROM generate_series(1, ${BULK}) i`);
  await c.query(`UPDATE experiments SET artifact_location = '${DEFAULT_ROOT}' || experiment_id WHERE artifact_location IS NULL`);
  await c.query(`INSERT INTO experiment_tags (key, value, experiment_id) SELECT $1, 'proj-' || experiment_id, experiment_id FROM experiments WHERE name LIKE 'bulk-%'`, [PROJECT_TAG]);
  const busy = await createExperiment(c, 'busy');
  const mlflow = await server.client(name);
  clients.push(mlflow);
  // MLflow on its own connection, all through the install and the backfill: a tag insert on an existing experiment, and a
  // create_experiment with our tag (which the freshly committed trigger must already handle).
  const waits: number[] = [];
  const created: number[] = [];
  let running = true;
  const writer = (async () => {
    for (let i = 0; running; i++) {
      const began = process.hrtime.bigint();
      if (i % 2 === 0) await setExperimentTag(mlflow, busy, `note.${i}`, 'x');
      else created.push(await createExperiment(mlflow, `during-${i}`, { [PROJECT_TAG]: `proj-during-${i}` }));
      waits.push(Number(process.hrtime.bigint() - began) / 1e6);
      await sleep(2);
    }
  })();
  const log = capture();
  const began = process.hrtime.bigint();
  const installed = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, projectMode, log.logger, { backfill: true }));
  const totalMs = Number(process.hrtime.bigint() - began) / 1e6;
  running = false;
  await writer;
  const filled = installed.backfill!;
  // MLflow's experiments created meanwhile are tagged too: due when created before the install committed, right already after.
  t.ok(filled.tagged >= BULK && filled.tagged <= BULK + created.length, `all tagged experiments counted (${filled.tagged})`);
  t.ok(filled.due >= BULK && filled.due <= filled.tagged, `the bulk is due (${filled.due})`);
  t.match(filled, { changed: filled.due, batches: Math.ceil(filled.due / BACKFILL_BATCH_SIZE), remaining: 0, refusedCount: 0 });
  const { rows: [{ right }] } = await c.query(
    "SELECT count(*)::int AS right FROM experiments e JOIN experiment_tags t ON t.experiment_id = e.experiment_id AND t.key = $1 WHERE e.artifact_location = $2 || t.value",
    [PROJECT_TAG, `${BUCKET}/mlflow/`],
  );
  t.equal(right, BULK + created.length, 'every tagged experiment, bulk and created meanwhile, has the rule\'s location');
  t.equal(log.records().filter((r) => r.msg === 'backfill progress').length, filled.batches, 'each batch logged its progress');
  const sorted = [...waits].sort((a, b) => a - b);
  const worst = sorted[sorted.length - 1];
  t.comment(`backfill of ${BULK}: ${filled.batches} batches of ${BACKFILL_BATCH_SIZE}, slowest ${filled.slowestBatchMs.toFixed(0)} ms, install + backfill ${totalMs.toFixed(0)} ms; `
    + `${waits.length} MLflow writes meanwhile, median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms, worst ${worst.toFixed(1)} ms`);
  t.ok(waits.length >= filled.batches, 'MLflow kept writing through the backfill');
  t.ok(worst <= 5 * filled.slowestBatchMs + 250, `no MLflow write waited much more than a batch (worst ${worst.toFixed(0)} ms, slowest batch ${filled.slowestBatchMs.toFixed(0)} ms)`);
  t.ok(worst < totalMs / 4, 'nor anywhere near the whole backfill');
});

// ---- issue 16: the two location styles, in MLflow's statement order ----

const PROXY = 'mlflow-artifacts:/';
const styles = {
  direct: { base: `${BUCKET}/mlflow/`, project: projectMode },
  proxied: { base: `${PROXY}mlflow/`, project: configFor({ locationStyle: 'proxied', locationPolicy: 'enforce' }) },
} as const;

for (const variant of ['new', 'old'] as const) {
  for (const [style, { base, project }] of Object.entries(styles)) {
    t.test(`${variant} MLflow schema, ${style} style, project-id mode: locations, runs and refusals`, async (t) => {
      const { name, c } = await freshDatabase(variant);
      const installed = await install(name, project);
      t.match(installed, { style, policy: 'enforce' });
      const id = await createExperiment(c, 'tagged', { [PROJECT_TAG]: 'proj-123' });
      t.equal(await locationOf(c, id), `${base}proj-123`, 'create_experiment with the tag');
      t.match(await createRun(c, id), new RegExp(`^${base}proj-123/[0-9a-f]{32}/artifacts$`), 'its runs');
      const later = await createExperiment(c, 'untagged');
      await setExperimentTag(c, later, PROJECT_TAG, 'proj-456');
      t.equal(await locationOf(c, later), `${base}proj-456`, 'set_experiment_tag later');
      const fits = 'p'.repeat(MAX_LOCATION_LENGTH - base.length);
      const longest = await createExperiment(c, 'longest', { [PROJECT_TAG]: fits });
      t.equal((await createRun(c, longest)).length, 200, `a ${base.length}-character base takes a ${fits.length}-character id, and runs fit`);
      await refusal(t, createExperiment(c, 'over', { [PROJECT_TAG]: `${fits}p` }), [PROJECT_TAG, `is 158 characters (the value ${fits.length + 1}), over the limit of 157`]);
      await refusal(t, createExperiment(c, 'dots', { [PROJECT_TAG]: '../x' }), [PROJECT_TAG, 'project id must be']);
      const other = style === 'direct' ? `${PROXY}mlflow/proj-123` : `${BUCKET}/mlflow/proj-123`;
      await refusal(t, createExperiment(c, 'other style, no tag', {}, other), ['artifact_location', `'${other}' refused`]);
      const both = await createExperiment(c, 'other style with the tag', { [PROJECT_TAG]: 'proj-789' }, other);
      t.equal(await locationOf(c, both), `${base}proj-789`, 'an explicit location plus the tag: the tag wins, in this style');
      const same = await createExperiment(c, 'explicit in this style', { [PROJECT_TAG]: 'proj-0' }, `${base}proj-0`);
      t.equal(await locationOf(c, same), `${base}proj-0`);
    });
  }
}

t.test('proxied style without a prefix: mlflow-artifacts:/<project id>', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, configFor({ locationStyle: 'proxied', prefix: '' }));
  const id = await createExperiment(c, 'no-prefix', { [PROJECT_TAG]: 'proj-123' });
  t.equal(await locationOf(c, id), `${PROXY}proj-123`);
});

t.test('proxied style, custom-location mode: mlflow-artifacts:/ prefixes follow the same rules as s3:// ones', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, configFor({ mode: 'custom-location', locationStyle: 'proxied', allowedLocationPrefixes: [`${PROXY}teams`, 's3://team-bucket/'] }));
  const id = await createExperiment(c, 'team', { [LOCATION_TAG]: `${PROXY}teams/a` });
  t.equal(await locationOf(c, id), `${PROXY}teams/a`);
  const s3 = await createExperiment(c, 'team-s3', { [LOCATION_TAG]: 's3://team-bucket/b' });
  t.equal(await locationOf(c, s3), 's3://team-bucket/b');
  for (const [bad, reason] of [
    [`${PROXY}teamsevil/x`, 'must start with one of'], [`${PROXY}teams/../x`, '"." or ".." path segments'],
    [`${PROXY}teams//x`, 'empty path segments'], [`${PROXY}teams/${'x'.repeat(140)}`, 'over the limit of 157'],
  ]) {
    await refusal(t, createExperiment(c, `bad ${bad}`, { [LOCATION_TAG]: bad }), [LOCATION_TAG, reason]);
  }
  const defaults = await freshDatabase();
  await install(defaults.name, configFor({ mode: 'custom-location', locationStyle: 'proxied', locationPolicy: 'enforce' }));
  const anywhere = await createExperiment(defaults.c, 'anywhere', { [LOCATION_TAG]: `${PROXY}team-x/y` });
  t.equal(await locationOf(defaults.c, anywhere), `${PROXY}team-x/y`, 'the default allowed prefix is mlflow-artifacts:/');
  await refusal(t, createExperiment(defaults.c, 'other server', { [LOCATION_TAG]: 'mlflow-artifacts://evil-host/x' }), [LOCATION_TAG, 'empty path segments']);
  await refusal(t, createExperiment(defaults.c, 'other server, explicit', {}, 'mlflow-artifacts://evil-host/x'), ['artifact_location', 'empty path segments']);
  await refusal(t, createExperiment(defaults.c, 'direct is not allowed by default', { [LOCATION_TAG]: `${BUCKET}/x` }), [LOCATION_TAG, `must start with one of: ${PROXY}`]);
});

t.test('switching style leaves existing experiments alone; --backfill moves tagged ones to the new style', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, projectMode);
  const id = await createExperiment(c, 'direct first', { [PROJECT_TAG]: 'proj-s' });
  t.equal(await locationOf(c, id), `${BUCKET}/mlflow/proj-s`);
  const proxied = configFor({ locationStyle: 'proxied' });
  const log = capture();
  await install(name, proxied, log);
  t.match(log.records().find((r) => String(r.msg).startsWith('replacing the installed location style')), { from: 'direct', to: 'proxied' });
  t.equal(await locationOf(c, id), `${BUCKET}/mlflow/proj-s`, 'unchanged by the install');
  const filled = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, proxied, log.logger, { backfill: true }));
  t.match(filled.backfill, { tagged: 1, due: 1, changed: 1 });
  t.equal(await locationOf(c, id), `${PROXY}mlflow/proj-s`, 'moved by --backfill');
});

t.test('switching modes replaces the one function and trigger; uninstall removes exactly ours', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, projectMode);
  t.same(await ourObjects(c), ALL);
  const again = capture();
  await install(name, projectMode, again);
  t.same(await ourObjects(c), ALL, 'installing twice is idempotent');
  const switchLog = capture();
  const installed = await install(name, customMode, switchLog);
  t.equal(installed.mode, 'custom-location');
  t.same(await ourObjects(c), ALL, 'still one of each after switching');
  t.match(switchLog.records().find((r) => r.msg === 'replacing the installed mode'), { from: 'project-id', to: 'custom-location' });
  const id = await createExperiment(c, 'after-switch', { [PROJECT_TAG]: 'proj', [LOCATION_TAG]: 's3://team-bucket/z' });
  t.equal(await locationOf(c, id), 's3://team-bucket/z');

  const removed = await uninstall(name, customMode);
  t.equal(removed.mode, 'custom-location');
  t.same(await ourObjects(c), NONE);
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
  t.match(warning, { msg: /update_artifact_location_trg/, removeWith: 'DROP TRIGGER update_artifact_location_trg ON public.experiment_tags; DROP FUNCTION public.update_artifact_location();' });
  for (const r of await runReplays(c, projectReplays, ' again')) t.equal(r.actual, r.expected, `with ours installed too: ${r.name}`);
  await uninstall('mlflow', projectMode);
  t.ok(await findLegacy(c), 'the procedure\'s objects are not ours and were left in place');
});

t.test('--backfill applies the rule to experiments tagged before the install, and skips refused values', async (t) => {
  const { name, c } = await freshDatabase('old');
  const ok = await createExperiment(c, 'pre-ok', { [PROJECT_TAG]: 'proj-old' });
  const bad = await createExperiment(c, 'pre-bad', { [PROJECT_TAG]: '../escape' });
  const untagged = await createExperiment(c, 'pre-untagged', { 'mlflow.note.content': 'x' });
  // MLflow's fluent API tags the Default experiment when no experiment was set: it is every project's, so it stays put
  await setExperimentTag(c, 0, PROJECT_TAG, 'proj-default');
  const log = capture();
  const installed = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, projectMode, log.logger, { backfill: true }));
  t.match(installed.backfill, { tagged: 2, due: 1, changed: 1, batches: 1, remaining: 0, refusedCount: 1, refused: [{ experimentId: bad, reason: /'\.\.\/escape' refused/ }] });
  t.equal(await locationOf(c, ok), `${BUCKET}/mlflow/proj-old`);
  t.equal(await locationOf(c, bad), `${DEFAULT_ROOT}${bad}`, 'a refused value leaves its experiment as it was');
  t.equal(await locationOf(c, untagged), `${DEFAULT_ROOT}${untagged}`);
  t.equal(await locationOf(c, 0), `${DEFAULT_ROOT}0`, 'the Default experiment is neither counted nor moved by the backfill');
  await setExperimentTag(c, 0, PROJECT_TAG, 'proj-later');
  t.equal(await locationOf(c, 0), `${DEFAULT_ROOT}0`, 'nor by the trigger when its tag changes');
  t.match(log.records().find((r) => r.msg === 'backfill applied the rule to existing experiments'), { tagged: 2, changed: 1, refused: 1 });
  const order = log.records().map((r) => r.msg);
  t.ok(order.indexOf('trigger installed') < order.indexOf('backfill progress'), 'the install is committed and reported before the first batch');
  t.match(log.records().find((r) => r.msg === 'backfill progress'), { batch: 1, changed: 1, done: 1, of: 1 });
  const again = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, projectMode, log.logger, { backfill: true }));
  t.match(again.backfill, { tagged: 2, due: 0, changed: 0, batches: 0 }, 'a second backfill changes nothing');
  t.same(await ourObjects(c), ALL);
  const later = await createExperiment(c, 'post', { [PROJECT_TAG]: 'proj-new' });
  t.equal(await locationOf(c, later), `${BUCKET}/mlflow/proj-new`, 'the trigger is deferred again after the backfill');
});

t.test('--backfill says so when its batches do not stick, and still ends', async (t) => {
  const { name, c } = await freshDatabase();
  const id = await createExperiment(c, 'tagged-before', { [PROJECT_TAG]: 'proj-r' });
  // In replica mode a session fires no ordinary trigger (as under some replication tools): the batches re-set the tag
  // rows, but our trigger never applies the rule.
  await c.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} SET session_replication_role = replica`);
  const log = capture();
  const installed = await withDatabase({ databaseUrl: server.url(name), waitSeconds: 0 }, log.logger, (client) => installTrigger(client, projectMode, log.logger, { backfill: true }));
  await c.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} RESET session_replication_role`);
  t.match(installed.backfill, { due: 1, changed: 1, batches: 1, remaining: 1 });
  t.match(log.records().find((r) => r.level === 'warn'), { remaining: 1, msg: /still differ from the rule .* rerun --backfill/ });
  t.equal(await locationOf(c, id), `${DEFAULT_ROOT}${id}`);
});

t.test('two installers at once never interleave', async (t) => {
  const { name, c } = await freshDatabase();
  const configs = [projectMode, customMode, projectMode, customMode];
  const results = await Promise.all(configs.map((config) => install(name, config)));
  t.same(results.map((r) => r.mode), configs.map((config) => config.trigger.mode), 'each saw its own install complete');
  t.same(await ourObjects(c), ALL);
  const state = await readInstalled(c, 'public');
  t.ok(state.mode, 'the function records one mode');
  // Whichever committed last, the function and the trigger's WHEN test belong to the same mode.
  t.match(state.tagTest?.body, `'${state.tag}'`);
});

t.test('missing MLflow tables: refused with a message saying so, nothing created', async (t) => {
  const admin = await server.client();
  await admin.query('CREATE DATABASE not_mlflow');
  await admin.end();
  const err = await install('not_mlflow', projectMode).catch((e: Error) => e);
  t.type(err, TriggerError);
  t.match((err as Error).message, /MLflow's tables public.experiment_tags, public.experiments are missing from database "not_mlflow"/);
  const c = await server.client('not_mlflow');
  t.same(await ourObjects(c), NONE);
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
  t.match(waiting.query, /^LOCK TABLE/, 'cut after CREATE FUNCTION ran in the install transaction, waiting to lock the tables');
  await c.query('SELECT pg_terminate_backend($1)', [waiting.pid]);
  const err = await running;
  t.type(err, TriggerError, 'the install fails');
  t.match((err as Error).message, /gave up after 1 attempt/);
  await blocker.query('COMMIT');
  await blocker.end();
  t.same(await ourObjects(c), NONE, 'rolled back: no function without its trigger');
  const installed = await install(name, projectMode);
  t.equal(installed.mode, 'project-id', 'the rerun succeeds');
  t.same(await ourObjects(c), ALL);
});

t.test('an install that meets MLflow halfway through create_experiment waits for it, and neither fails', async (t) => {
  const { name, c } = await freshDatabase();
  await install(name, projectMode);
  const mlflow = await server.client(name);
  clients.push(mlflow);
  // MLflow has inserted the experiment (a lock on experiments) and is about to insert its tags (a lock on experiment_tags).
  await mlflow.query('BEGIN');
  const { rows: [{ experiment_id: id }] } = await mlflow.query("INSERT INTO experiments (name, lifecycle_stage) VALUES ('halfway', 'active') RETURNING experiment_id");
  const installing = install(name, configFor({ mode: 'project-id', prefix: 'reinstalled' }));
  while ((await c.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [APPLICATION_NAME])).rowCount === 0) await sleep(20);
  await mlflow.query('INSERT INTO experiment_tags (key, value, experiment_id) VALUES ($1, $2, $3)', [PROJECT_TAG, 'proj-h', id]);
  await mlflow.query('UPDATE experiments SET artifact_location = $1 WHERE experiment_id = $2', [`${DEFAULT_ROOT}${id}`, id]);
  await mlflow.query('COMMIT');
  t.equal(await locationOf(c, id), `${BUCKET}/mlflow/proj-h`, 'MLflow\'s call went through, under the trigger installed before');
  t.match(await installing, { mode: 'project-id' }, 'and the install after it');
  const after = await createExperiment(c, 'after', { [PROJECT_TAG]: 'proj-a' });
  t.equal(await locationOf(c, after), `${BUCKET}/reinstalled/proj-a`);
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
  await admin.query('CREATE DATABASE mlflow_nodefault OWNER mlflow');
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
    t.match(r.stdout, new RegExp('^-- mlflow-irsa-webhook install-trigger: install, mode project-id, style direct, location policy audit\n'
      + '-- location policy from trigger\\.locationPolicy: audit\n'
      + '-- MLflow\'s default artifact root is unknown: experiment 0 was not read \\(no connection\\)\n'
      + '-- location policy survey not run: the database could not be read: gave up after 1 attempt\\(s\\) over 0 s: .*ECONNREFUSED.*\nBEGIN;\n'));
    t.match(r.stdout, /CREATE CONSTRAINT TRIGGER "mlflow_irsa_artifact_location_trg"/);
    t.match(r.stdout, /CREATE CONSTRAINT TRIGGER "mlflow_irsa_location_policy_trg"/, 'audit needs the trigger on experiments too');
    t.match(r.stdout, /CREATE TABLE IF NOT EXISTS "public"\."mlflow_irsa_location_audit"/);
    t.notMatch(r.stdout, /-- backfill/);
    t.match(r.stdout, /COMMIT;\n$/);
    const unnamed = await cli(['--config', configFile, '--dry-run']);
    t.match(unnamed.stdout, /\n-- location policy survey not run: no database given \(--database-url, or PGHOST and the other libpq variables\)\n/, 'without a database it does not try');
    const enforcing = await writeConfig('enforcing.json', { trigger: { locationPolicy: 'enforce' } });
    const refused = await cli(['--config', enforcing, '--dry-run']);
    t.equal(refused.code, 1, 'enforce without a root cannot be printed');
    t.equal(refused.stdout, '');
    t.match(refused.stderr, /^install-trigger --dry-run: trigger\.locationPolicy: enforce, but MLflow's default artifact root is unknown: experiment 0 was not read \(no connection\); set trigger\.defaultArtifactRoot/);
    const rooted = await writeConfig('rooted.json', { trigger: { defaultArtifactRoot: DEFAULT_ROOT, locationPolicy: 'enforce' } });
    const full = await cli(['--config', rooted, '--dry-run', '--backfill']);
    t.equal(full.code, 0);
    t.match(full.stdout, /location policy enforce\n-- location policy from trigger\.locationPolicy: enforce\n-- MLflow's default root from trigger\.defaultArtifactRoot\n/);
    t.match(full.stdout, /CREATE CONSTRAINT TRIGGER "mlflow_irsa_location_policy_trg"/);
    t.match(full.stdout, /COMMIT;\n\n-- backfill, after the install above has committed[^]*SELECT count\(\*\)::int AS tagged[^]*BEGIN;\nSET LOCAL lock_timeout = '10s';\nSET LOCAL search_path = pg_catalog, pg_temp;\nPREPARE mlflow_irsa_backfill\(integer\) AS\nWITH due AS [^]*AND t\.experiment_id > \$1 [^]*LIMIT 500\),\ntouched AS \(UPDATE "public"\."experiment_tags" AS tag SET value = tag\.value[^]*EXECUTE mlflow_irsa_backfill\(-1\);\nCOMMIT;\n$/, '--dry-run --backfill prints the backfill batch too');
    // with a database: MLflow's root read from experiment 0 and the survey run, read-only
    const hostile = await createExperiment(owner, 'hostile', {}, 's3://evil/x\nDROP TABLE runs; --\u001b]0;title\u0007');
    const withDb = await cli(['--config', configFile, '--dry-run'], libpq(MARKER));
    t.equal(withDb.code, 0, withDb.stderr);
    t.match(withDb.stdout, `\n-- MLflow's default root from experiment 0 (Default), location '${DEFAULT_ROOT}0'\n`
      + '-- location policy survey: 1 experiment(s) hold a location this policy refuses:\n'
      + `--   experiment ${hostile} at 's3://evil/x\\x0aDROP TABLE runs; --\\x1b]0;title\\x07'; admit with trigger.locationPolicy: audit `);
    t.notMatch(withDb.stdout, /\u001b|\u0007|\nDROP TABLE runs/, 'nothing raw: the tenant\'s line break cannot end the comment');
    noMarker(t, withDb);
    t.same(await ourObjects(owner), NONE, 'the database is untouched');
    const { c } = await freshDatabase();
    await c.query(withDb.stdout);
    t.match(await readInstalled(c, 'public'), { policy: 'audit', auditTable: {} }, 'the printed script, survey comments and all, is what psql runs');
    await owner.query('DELETE FROM experiments WHERE experiment_id = $1', [hostile]);
  });

  t.test('the printed SQL is what an install and a backfill run', async (t) => {
    const { c } = await freshDatabase();
    const before = await createExperiment(c, 'tagged-before', { [LOCATION_TAG]: 's3://team-bucket/before' });
    await c.query(script(customMode, 'install', { policy: DERIVED, backfill: true }));
    t.match(await readInstalled(c, 'public'), { mode: 'custom-location', policy: 'enforce', trigger: { initiallyDeferred: true }, policyTrigger: { initiallyDeferred: true } });
    t.equal(await locationOf(c, before), 's3://team-bucket/before', 'one batch applied the rule');
    await refusal(t, createExperiment(c, 'foreign', {}, 's3://evil-bucket/x'), ['artifact_location', 'must start with one of']);
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
    t.same(await ourObjects(owner), ALL);
    const url = await cli(['--config', configFile, '--uninstall', '--database-url', `postgres://mlflow:${encodeURIComponent(MARKER)}@127.0.0.1:${server.port}/mlflow_cli?sslmode=disable`]);
    t.equal(url.code, 0, url.stderr);
    t.match(url.stdout, /"msg":"trigger uninstalled"/);
    noMarker(t, url);
    t.same(await ourObjects(owner), NONE);
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

  t.test('a wrong password equal to the user name: the message still names the user, and is not altered', async (t) => {
    // the review's reproduction: PGPASSWORD=mlflow turned `user "mlflow"` into `user "[redacted]"`
    const r = await cli(['--config', configFile, '--wait', '5'], libpq('mlflow'));
    t.equal(r.code, 1);
    t.match(r.stdout, /authentication failed: check PGUSER and PGPASSWORD .*\(password authentication failed for user \\"mlflow\\"\)/);
    t.notMatch(r.stdout, /\[redacted\]/, 'nothing was blanked: no password stood in the message');
  });

  t.test('a one-letter password leaves file paths in messages alone', async (t) => {
    // the review's reproduction: PGPASSWORD=p made a path read lib[redacted]q, revealing the password
    const rootCert = '/nonexistent/usr/lib/libpq/root.crt';
    const r = await cli(['--config', configFile, '--wait', '5'], { ...libpq('p'), PGSSLMODE: 'verify-full', PGSSLROOTCERT: rootCert });
    t.equal(r.code, 1);
    t.match(r.stdout, `cannot read the root certificate file (PGSSLROOTCERT ${rootCert})`);
    t.notMatch(r.stdout, /\[redacted\]/);
    const url = await cli(['--config', configFile, '--wait', '5', '--database-url', `postgres://mlflow:p@127.0.0.1:${server.port}/mlflow_cli?sslmode=verify-full&sslrootcert=${rootCert}`]);
    t.equal(url.code, 1);
    t.match(url.stdout, `cannot read the root certificate file (sslrootcert=${rootCert} in --database-url)`);
    t.notMatch(url.stdout, /\[redacted\]/);
  });

  t.test('a missing database fails at once', async (t) => {
    const r = await cli(['--config', configFile], libpq(MARKER, 'no_such_db'));
    t.equal(r.code, 1);
    t.match(r.stdout, /the database does not exist/);
    noMarker(t, r);
  });

  t.test('enforce without MLflow\'s default root exits 1, naming trigger.defaultArtifactRoot (the chart\'s Job fails)', async (t) => {
    const c = new pg.Client({ connectionString: `postgres://mlflow:${MARKER}@127.0.0.1:${server.port}/mlflow_nodefault` });
    await c.connect();
    clients.push(c);
    await c.query(mlflowSchema('new'));
    await c.query('DELETE FROM experiments WHERE experiment_id = 0');
    const enforcing = await writeConfig('enforcing-db.json', { trigger: { locationPolicy: 'enforce' } });
    const r = await cli(['--config', enforcing], libpq(MARKER, 'mlflow_nodefault'));
    t.equal(r.code, 1);
    t.match(JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}'), {
      level: 'error', msg: 'install-trigger failed (install)',
      reason: /^trigger\.locationPolicy: enforce, but MLflow's default artifact root is unknown: the Default experiment \(id 0\) is not in the database; set trigger\.defaultArtifactRoot/,
    });
    t.same(await ourObjects(c), NONE, 'nothing installed');
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

  t.test('a caller without a --wait option (doctor) is not told of one', async (t) => {
    const port = await freePort();
    const err = await withDatabase({ databaseUrl: `postgres://mlflow@127.0.0.1:${port}/mlflow`, waitSeconds: 0 }, createLogger('silent'), async () => undefined).then(() => undefined, (e: Error) => e);
    t.match(err?.message, /^gave up after 1 attempt\(s\) over 0 s: /);
    t.notMatch(err?.message, /--wait/);
  });
});
