// Reads the tracking database's artifact references for migrate-artifacts (every one, in batches) and for doctor (a
// count of the proxied ones). Read-only: callers run these inside a READ ONLY transaction (db/install.ts transaction),
// whose search_path is pg_catalog, so every table is named with its schema.
import pg from 'pg';
import { TriggerError } from '../db/connect.js';
import { REFERENCE_KINDS, type Reference, type ReferenceKind } from './plan.js';

interface Source {
  readonly table: string;
  readonly column: string;
  /** the row's identity, as text, for the unmapped list */
  readonly id: string;
  /** the order the rows are read in (the primary key), so the plan is the same on every run */
  readonly order: string;
  readonly where?: string;
}

/**
 * Where MLflow keeps artifact references (mlflow/store/tracking/dbmodels/models.py and
 * mlflow/store/model_registry/dbmodels/models.py): an experiment's location (its runs', logged models' and traces'
 * default root), each run's artifact_uri, a model version's source and, since MLflow 2.13, storage_location (what
 * get_model_version_download_uri serves), MLflow 3's logged models, and each trace's artifact location (a trace tag).
 * Experiments come first: their directories then absorb the runs under them without a node per run.
 */
const SOURCES: Readonly<Record<ReferenceKind, Source>> = {
  'experiments.artifact_location': { table: 'experiments', column: 'artifact_location', id: 'experiment_id::text', order: 'experiment_id' },
  'runs.artifact_uri': { table: 'runs', column: 'artifact_uri', id: 'run_uuid::text', order: 'run_uuid' },
  'model_versions.source': { table: 'model_versions', column: 'source', id: "name || ' version ' || version::text", order: 'name, version' },
  'model_versions.storage_location': { table: 'model_versions', column: 'storage_location', id: "name || ' version ' || version::text", order: 'name, version' },
  'logged_models.artifact_location': { table: 'logged_models', column: 'artifact_location', id: 'model_id::text', order: 'model_id' },
  'trace_tags.value': { table: 'trace_tags', column: 'value', id: 'request_id::text', order: 'request_id', where: "key = 'mlflow.artifactLocation'" },
};

/** The tables without which this is not MLflow's tracking database. */
const REQUIRED = ['experiments', 'runs'];

/** Rows per FETCH: bounded memory whatever the number of runs. */
export const BATCH_ROWS = 5000;

const ident = (value: string) => pg.escapeIdentifier(value);

export interface Catalog {
  /** the reference kinds whose table and column exist, in REFERENCE_KINDS order */
  readonly kinds: ReferenceKind[];
  /** schema-qualified tables without which this is not MLflow's tracking database */
  readonly missing: string[];
}

/** Which reference tables and columns exist in `schema` (MLflow versions differ: storage_location, logged_models, trace_tags). */
export async function readCatalog(client: pg.Client, schema: string): Promise<Catalog> {
  const { rows } = await client.query<{ table: string; column: string }>(
    `SELECT c.relname::text AS table, a.attname::text AS column
       FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped`,
    [schema],
  );
  const has = new Set(rows.map((r) => `${r.table}.${r.column}`));
  return {
    kinds: REFERENCE_KINDS.filter((kind) => has.has(`${SOURCES[kind].table}.${SOURCES[kind].column}`)),
    missing: REQUIRED.filter((table) => !rows.some((r) => r.table === table)).map((t) => `${schema}.${t}`),
  };
}

/** The catalog of a database that must be MLflow's: its reference kinds, or an error naming the missing tables. */
export async function requireCatalog(client: pg.Client, schema: string): Promise<ReferenceKind[]> {
  const { kinds, missing } = await readCatalog(client, schema);
  if (missing.length > 0) {
    throw new TriggerError(`MLflow's tables ${missing.join(', ')} are missing from database "${client.database}": `
      + 'this is not MLflow\'s tracking database, or MLflow has not started against it yet; check PGDATABASE and trigger.schema');
  }
  return kinds;
}

function selectSql(schema: string, kind: ReferenceKind, what: string): string {
  const s = SOURCES[kind];
  const column = ident(s.column);
  return `SELECT ${what} FROM ${ident(schema)}.${ident(s.table)} WHERE ${column} IS NOT NULL AND ${column} <> ''${s.where ? ` AND ${s.where}` : ''}`;
}

/** Hands every reference of the present kinds to `add`, kind by kind, each in its primary key's order, in batches through a cursor. */
export async function readReferences(client: pg.Client, schema: string, kinds: readonly ReferenceKind[], add: (ref: Reference) => void): Promise<void> {
  for (const kind of kinds) {
    const s = SOURCES[kind];
    await client.query(`DECLARE mlflow_irsa_references NO SCROLL CURSOR FOR ${selectSql(schema, kind, `${s.id} AS id, ${ident(s.column)}::text AS uri`)} ORDER BY ${s.order}`);
    for (;;) {
      const { rows } = await client.query<{ id: string; uri: string }>(`FETCH ${BATCH_ROWS} FROM mlflow_irsa_references`);
      for (const row of rows) add({ kind, id: row.id, uri: row.uri });
      if (rows.length < BATCH_ROWS) break;
    }
    await client.query('CLOSE mlflow_irsa_references');
  }
}

/**
 * How many references resolve through this server's artifact proxy (mlflow-artifacts: without a host), over every
 * present kind: what a migration of its destination has to carry.
 */
export async function countProxied(client: pg.Client, schema: string): Promise<{ readonly total: number; readonly unreadable: readonly string[] }> {
  const { kinds } = await readCatalog(client, schema);
  // a read-only login (doctor's) may lack SELECT on some of them: count the rest, and say which
  const { rows: may } = await client.query<{ ok: boolean }>(
    'SELECT has_column_privilege(format(\'%I.%I\', $1::text, t), c, \'SELECT\') AS ok FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(t, c, n) ORDER BY n',
    [schema, kinds.map((k) => SOURCES[k].table), kinds.map((k) => SOURCES[k].column)],
  );
  const unreadable = kinds.filter((_, i) => !may[i].ok).map((k) => `${SOURCES[k].table}.${SOURCES[k].column}`);
  let total = 0;
  for (const kind of kinds.filter((_, i) => may[i].ok)) {
    const column = ident(SOURCES[kind].column);
    const { rows: [row] } = await client.query<{ n: string }>(
      `${selectSql(schema, kind, 'count(*) AS n')} AND ${column} ~* '^mlflow-artifacts:(?!//[^/])'`);
    total += Number(row.n);
  }
  return { total, unreadable };
}
