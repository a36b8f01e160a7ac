// Installs, reads back and removes our trigger in one locked transaction, and reports the manual procedure's trigger if it is still there.
import type pg from 'pg';
import type { Config, TriggerMode } from '../config.js';
import type { Logger } from '../log.js';
import { TriggerError } from './connect.js';
import {
  FUNCTION_NAME, LEGACY_FUNCTION_NAME, LEGACY_TRIGGER_NAME, TRIGGER_NAME,
  installStatements, preamble, triggerSql, uninstallStatements,
} from './sql.js';

export interface InstalledTrigger {
  readonly table: string;
  readonly enabled: boolean;
  readonly deferrable: boolean;
  readonly initiallyDeferred: boolean;
  readonly function: string;
  readonly definition: string;
}

export interface Installed {
  /** our trigger on <schema>.experiment_tags, if present */
  readonly trigger?: InstalledTrigger;
  /** our function, if present */
  readonly function?: { readonly signature: string; readonly comment: string | null };
  /** the mode and tag our function's comment records */
  readonly mode?: TriggerMode;
  readonly tag?: string;
}

export interface Legacy {
  readonly triggers: ReadonlyArray<{ readonly table: string }>;
  readonly functions: readonly string[];
  /** what an operator runs to remove them; we never do it ourselves */
  readonly removal: string;
}

/** The MLflow tables the trigger needs that this database lacks (a wrong database, or MLflow never started). */
export async function missingTables(client: pg.Client, schema: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT name FROM unnest(ARRAY['experiments', 'experiment_tags']) AS name WHERE to_regclass(format('%I.%I', $1::text, name)) IS NULL ORDER BY name",
    [schema],
  );
  return rows.map((r) => `${schema}.${r.name}`);
}

/** What of ours is in the database now, from pg_trigger and pg_proc. */
export async function readInstalled(client: pg.Client, schema: string): Promise<Installed> {
  const trig = await client.query<{ table: string; tgenabled: string; tgdeferrable: boolean; tginitdeferred: boolean; fn: string; definition: string }>(
    `SELECT tg.tgrelid::regclass::text AS table, tg.tgenabled, tg.tgdeferrable, tg.tginitdeferred,
            format('%I.%I()', n.nspname, p.proname) AS fn, pg_get_triggerdef(tg.oid) AS definition
       FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE tg.tgname = $1 AND tg.tgrelid = to_regclass(format('%I.experiment_tags', $2::text))`,
    [TRIGGER_NAME, schema],
  );
  const fn = await client.query<{ signature: string; comment: string | null }>(
    `SELECT format('%I.%I()', n.nspname, p.proname) AS signature, obj_description(p.oid, 'pg_proc') AS comment
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname = $2`,
    [schema, FUNCTION_NAME],
  );
  const t = trig.rows[0];
  const f = fn.rows[0];
  const recorded = /^\S+ mode=(project-id|custom-location) tag=(\S+)$/.exec(f?.comment ?? '');
  return {
    ...(t && {
      trigger: {
        table: t.table,
        enabled: t.tgenabled !== 'D',
        deferrable: t.tgdeferrable,
        initiallyDeferred: t.tginitdeferred,
        function: t.fn,
        definition: t.definition,
      },
    }),
    ...(f && { function: { signature: f.signature, comment: f.comment } }),
    ...(recorded && { mode: recorded[1] as TriggerMode, tag: recorded[2] }),
  };
}

/** The manual procedure's trigger and function, wherever they are. */
export async function findLegacy(client: pg.Client): Promise<Legacy | undefined> {
  const trig = await client.query<{ table: string }>(
    'SELECT tgrelid::regclass::text AS table FROM pg_trigger WHERE tgname = $1 AND NOT tgisinternal ORDER BY 1',
    [LEGACY_TRIGGER_NAME],
  );
  const fn = await client.query<{ signature: string }>(
    "SELECT format('%I.%I()', n.nspname, p.proname) AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = $1 ORDER BY 1",
    [LEGACY_FUNCTION_NAME],
  );
  if (trig.rows.length === 0 && fn.rows.length === 0) return undefined;
  const removal = [
    ...trig.rows.map((r) => `DROP TRIGGER ${LEGACY_TRIGGER_NAME} ON ${r.table};`),
    ...fn.rows.map((r) => `DROP FUNCTION ${r.signature};`),
  ].join(' ');
  return { triggers: trig.rows, functions: fn.rows.map((r) => r.signature), removal };
}

/** Runs `work` in one transaction under our advisory lock; any failure rolls all of it back. */
async function locked<T>(client: pg.Client, work: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    for (const statement of preamble()) await client.query(statement);
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // On a lost connection the server has rolled back already and this fails too; the original error is the one to report.
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

async function requireTables(client: pg.Client, schema: string): Promise<void> {
  const missing = await missingTables(client, schema);
  if (missing.length > 0) {
    throw new TriggerError(
      `MLflow's tables ${missing.join(', ')} are missing from database "${client.database}": this is not MLflow's tracking database, `
      + `or MLflow has not started against it yet (it creates them); check PGDATABASE and trigger.schema`,
    );
  }
}

function warnLegacy(logger: Logger, legacy: Legacy | undefined): void {
  if (!legacy) return;
  logger.warn(
    { legacyTriggers: legacy.triggers.map((t) => t.table), legacyFunctions: legacy.functions, removeWith: legacy.removal },
    `the manual procedure's trigger ${LEGACY_TRIGGER_NAME} / function ${LEGACY_FUNCTION_NAME} is still installed; `
    + 'it is not ours so it was left alone, but it rewrites artifact locations on its own rules: remove it with the SQL in removeWith',
  );
}

export interface Backfill {
  /** experiments that carry the mode's tag */
  readonly tagged: number;
  /** of those, how many got a new artifact_location */
  readonly changed: number;
  /** tag values the rule refuses; those experiments were left as they were */
  readonly refused: ReadonlyArray<{ readonly experimentId: number; readonly reason: string }>;
}

/**
 * Applies the rule to experiments that already carry the tag, by firing our own trigger on each (a same-value UPDATE of the tag row),
 * so the rule lives in one place. Each experiment gets a savepoint: a refused value is reported and skipped, not fatal.
 */
async function backfill(client: pg.Client, config: Config): Promise<Backfill> {
  const s = triggerSql(config);
  const { rows } = await client.query<{ experiment_id: number; artifact_location: string | null }>(
    `SELECT e.experiment_id, e.artifact_location FROM ${s.experimentsTable} e JOIN ${s.tagsTable} t ON t.experiment_id = e.experiment_id
      WHERE t.key = $1 ORDER BY e.experiment_id`,
    [s.tag],
  );
  // Fire at the end of each statement instead of at commit, so each experiment's refusal can be caught at its savepoint.
  await client.query(`SET CONSTRAINTS ${s.constraintName} IMMEDIATE`);
  let changed = 0;
  const refused: Array<{ experimentId: number; reason: string }> = [];
  for (const row of rows) {
    await client.query('SAVEPOINT mlflow_irsa_backfill');
    try {
      await client.query(`UPDATE ${s.tagsTable} SET value = value WHERE key = $1 AND experiment_id = $2`, [s.tag, row.experiment_id]);
      const after = await client.query<{ artifact_location: string | null }>(`SELECT artifact_location FROM ${s.experimentsTable} WHERE experiment_id = $1`, [row.experiment_id]);
      if (after.rows[0].artifact_location !== row.artifact_location) changed++;
      await client.query('RELEASE SAVEPOINT mlflow_irsa_backfill');
    } catch (err) {
      if ((err as { code?: string }).code !== '23514') throw err;
      await client.query('ROLLBACK TO SAVEPOINT mlflow_irsa_backfill');
      refused.push({ experimentId: row.experiment_id, reason: (err as Error).message });
    }
  }
  await client.query(`SET CONSTRAINTS ${s.constraintName} DEFERRED`);
  return { tagged: rows.length, changed, refused };
}

export interface InstallOptions {
  /** also apply the rule to experiments that already carry the tag */
  readonly backfill?: boolean;
}

/** Installs (or replaces) our function and trigger for the configured mode, and returns what was read back inside the same transaction. */
export async function installTrigger(client: pg.Client, config: Config, logger: Logger, opts: InstallOptions = {}): Promise<Installed & { backfill?: Backfill }> {
  const s = triggerSql(config);
  const { installed, legacy, filled } = await locked(client, async () => {
    await requireTables(client, s.schema);
    const before = await readInstalled(client, s.schema);
    for (const statement of installStatements(config)) await client.query(statement);
    const after = await readInstalled(client, s.schema);
    const t = after.trigger;
    if (!t || !t.enabled || !t.deferrable || !t.initiallyDeferred || after.mode !== s.mode || after.tag !== s.tag) {
      throw new TriggerError(`the trigger read back from pg_trigger/pg_proc is not what was installed: ${JSON.stringify(after)}`);
    }
    if (before.mode && before.mode !== s.mode) logger.info({ from: before.mode, to: s.mode }, 'replacing the installed mode');
    return { installed: after, legacy: await findLegacy(client), filled: opts.backfill ? await backfill(client, config) : undefined };
  });
  logger.info(
    { mode: installed.mode, tag: installed.tag, trigger: TRIGGER_NAME, table: installed.trigger?.table, function: installed.function?.signature, definition: installed.trigger?.definition },
    'trigger installed',
  );
  if (filled) {
    logger.info({ tagged: filled.tagged, changed: filled.changed, refused: filled.refused.length }, 'backfill applied the rule to existing experiments');
    for (const r of filled.refused) logger.warn({ experimentId: r.experimentId, reason: r.reason }, 'backfill left an experiment unchanged: its tag value is refused');
  }
  warnLegacy(logger, legacy);
  return { ...installed, ...(filled && { backfill: filled }) };
}

/** Removes exactly our trigger and function, and checks nothing of ours remains. */
export async function uninstallTrigger(client: pg.Client, config: Config, logger: Logger): Promise<Installed> {
  const s = triggerSql(config);
  const { before, legacy } = await locked(client, async () => {
    await requireTables(client, s.schema);
    const was = await readInstalled(client, s.schema);
    for (const statement of uninstallStatements(config)) await client.query(statement);
    const after = await readInstalled(client, s.schema);
    if (after.trigger || after.function) throw new TriggerError(`after uninstall something of ours remains: ${JSON.stringify(after)}`);
    return { before: was, legacy: await findLegacy(client) };
  });
  logger.info(
    { removedTrigger: before.trigger ? TRIGGER_NAME : null, removedFunction: before.function?.signature ?? null, mode: before.mode ?? null },
    before.trigger || before.function ? 'trigger uninstalled' : 'nothing of ours was installed; nothing to remove',
  );
  warnLegacy(logger, legacy);
  return before;
}

