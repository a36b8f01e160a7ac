// Installs, reads back and removes our trigger in one locked transaction, backfills in short batches after it, and reports the manual procedure's trigger if it is still there.
import type pg from 'pg';
import type { LocationStyle } from '../config/artifact-location.js';
import type { Config, LocationPolicyMode, TriggerMode } from '../config/config.js';
import type { Logger } from '../log.js';
import { backfill, type Backfill } from './backfill.js';
import { TriggerError, transaction } from './connect.js';
import { expectedFingerprints, fingerprint } from './fingerprint.js';
import { SURVEY_SHOWN, resolvePolicy, surveyPolicy, type PolicySurvey, type ResolvedPolicy } from './policy.js';
import {
  AUDIT_TABLE_NAME, FUNCTION_NAME, LEGACY_FUNCTION_NAME, LEGACY_TRIGGER_NAME, POLICY_TRIGGER_NAME, TAG_TEST_NAME, TRIGGER_NAME,
  installStatements, triggerSql, uninstallStatements,
  type JudgingPolicy, type Policy,
} from './sql.js';

/** Where callers found it before it moved to connect.ts. */
export { transaction } from './connect.js';

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
  /** our location-policy trigger on <schema>.experiments, if present */
  readonly policyTrigger?: InstalledTrigger;
  /** our function, if present, with its body as PostgreSQL keeps it (pg_proc.prosrc) */
  readonly function?: { readonly signature: string; readonly comment: string | null; readonly body: string };
  /** the WHEN clause's test function, if present, with its SQL body */
  readonly tagTest?: { readonly signature: string; readonly body: string };
  /** our audit table, if present, with its shape as auditTableShape spells it */
  readonly auditTable?: { readonly name: string; readonly shape: string };
  /** the mode, tag, policy and location style our function's comment records */
  readonly mode?: TriggerMode;
  readonly tag?: string;
  readonly policy?: LocationPolicyMode;
  readonly style?: LocationStyle;
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

async function readTrigger(client: pg.Client, schema: string, name: string, table: string): Promise<InstalledTrigger | undefined> {
  const { rows: [t] } = await client.query<{ table: string; tgenabled: string; tgdeferrable: boolean; tginitdeferred: boolean; fn: string; definition: string }>(
    `SELECT tg.tgrelid::regclass::text AS table, tg.tgenabled, tg.tgdeferrable, tg.tginitdeferred,
            format('%I.%I()', n.nspname, p.proname) AS fn, pg_get_triggerdef(tg.oid) AS definition
       FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE tg.tgname = $1 AND tg.tgrelid = to_regclass(format('%I.%I', $2::text, $3::text))`,
    [name, schema, table],
  );
  return t && { table: t.table, enabled: t.tgenabled !== 'D', deferrable: t.tgdeferrable, initiallyDeferred: t.tginitdeferred, function: t.fn, definition: t.definition };
}

/**
 * A table's shape, one line: its kind, columns (name, type as format_type spells it, not null) in order, and primary
 * key, so that the audit table read back compares with what auditTableDefinition creates (fingerprint.ts).
 */
async function readTableShape(client: pg.Client, schema: string, name: string): Promise<string | undefined> {
  const { rows: [t] } = await client.query<{ shape: string }>(
    `SELECT format('%s (%s) primary key (%s)', CASE c.relkind WHEN 'r' THEN 'table' ELSE 'relkind ' || c.relkind::text END,
              (SELECT string_agg(format('%s %s%s', a.attname, format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' ELSE '' END), ', ' ORDER BY a.attnum)
                 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
              (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                WHERE i.indrelid = c.oid AND i.indisprimary)) AS shape
       FROM pg_class c WHERE c.oid = to_regclass(format('%I.%I', $1::text, $2::text))`,
    [schema, name],
  );
  return t?.shape;
}

/** What of ours is in the database now, from pg_trigger, pg_proc and pg_class. */
export async function readInstalled(client: pg.Client, schema: string): Promise<Installed> {
  const trigger = await readTrigger(client, schema, TRIGGER_NAME, 'experiment_tags');
  const policyTrigger = await readTrigger(client, schema, POLICY_TRIGGER_NAME, 'experiments');
  const fns = await client.query<{ name: string; signature: string; comment: string | null; body: string }>(
    `SELECT p.proname AS name, format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS signature,
            obj_description(p.oid, 'pg_proc') AS comment, p.prosrc AS body
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname IN ($2, $3)`,
    [schema, FUNCTION_NAME, TAG_TEST_NAME],
  );
  const f = fns.rows.find((r) => r.name === FUNCTION_NAME);
  const test = fns.rows.find((r) => r.name === TAG_TEST_NAME);
  const auditShape = await readTableShape(client, schema, AUDIT_TABLE_NAME);
  const recorded = /^\S+ mode=(project-id|custom-location) tag=(\S+)(?: policy=(on|off|audit|enforce))?(?: style=(direct|proxied))?$/.exec(f?.comment ?? '');
  return {
    ...(trigger && { trigger }),
    ...(policyTrigger && { policyTrigger }),
    ...(f && { function: { signature: f.signature, comment: f.comment, body: f.body } }),
    ...(test && { tagTest: { signature: test.signature, body: test.body } }),
    ...(auditShape !== undefined && { auditTable: { name: `${schema}.${AUDIT_TABLE_NAME}`, shape: auditShape } }),
    ...(recorded && { mode: recorded[1] as TriggerMode, tag: recorded[2], policy: recordedPolicy(recorded[3]), style: (recorded[4] ?? 'direct') as LocationStyle }),
  };
}

/**
 * The policy mode a comment records. Earlier versions wrote policy=on (it refused, as enforce does) or policy=off, and
 * the first ones no policy= at all (there was no policy: off).
 */
function recordedPolicy(field: string | undefined): LocationPolicyMode {
  if (field === 'on') return 'enforce';
  return (field ?? 'off') as LocationPolicyMode;
}

/** Which part of an install a difference concerns: doctor reports each under its own check. */
export type Aspect = 'present' | 'enabled' | 'deferred' | 'function' | 'policy';

export interface Difference {
  readonly aspect: Aspect;
  readonly problem: string;
}

/** A constraint trigger runs at COMMIT, after MLflow's own UPDATE of artifact_location, only when it is both. */
const deferred = (t: InstalledTrigger) => t.deferrable && t.initiallyDeferred;

/**
 * How what is installed differs from what installing this config with this location policy leaves behind; empty when it
 * is exactly that. The one definition of "installed": install-trigger's read-back refuses any difference, and doctor's
 * trigger checks report them, each its aspects. The functions and the audit table are compared by fingerprint (function
 * bodies whitespace-normalised, the table's shape), the rest by what pg_trigger and our function's comment record.
 * `policy` undefined (the config's policy cannot be installed, see ResolvedPolicy.refused): what depends on it is not compared.
 */
export function installedDifferences(installed: Installed, config: Config, policy: Policy | undefined): Difference[] {
  const s = triggerSql(config);
  const differences: Difference[] = [];
  const add = (aspect: Aspect, problem: string) => differences.push({ aspect, problem });
  const { trigger, policyTrigger, tagTest, auditTable } = installed;
  if (!trigger) add('present', `our trigger ${TRIGGER_NAME} is not installed on ${s.schema}.experiment_tags`);
  if (!installed.function) add('present', `our function ${s.schema}.${FUNCTION_NAME}() is missing`);
  if (!tagTest) add('present', `our function ${s.schema}.${TAG_TEST_NAME}(experiment_tags) is missing`);
  if (!auditTable) add('present', `our table ${s.schema}.${AUDIT_TABLE_NAME} is missing`);
  if (trigger && !trigger.enabled) add('enabled', `the trigger ${TRIGGER_NAME} on ${trigger.table} is disabled`);
  if (trigger && !deferred(trigger)) add('deferred', `the trigger ${TRIGGER_NAME} on ${trigger.table} is not DEFERRABLE INITIALLY DEFERRED`);

  const expected = expectedFingerprints(config, policy);
  if (installed.function) {
    const recorded: string[] = [];
    if (installed.mode !== s.mode || installed.tag !== s.tag) {
      recorded.push(`it is for mode ${installed.mode ?? '?'} on tag ${installed.tag ?? '?'}, this config installs mode ${s.mode} on tag ${s.tag}`);
    }
    if (installed.style !== config.trigger.locationStyle) recorded.push(`it records location style ${installed.style ?? '?'}, this config's is ${config.trigger.locationStyle}`);
    if (policy && installed.policy !== policy.mode) recorded.push(`it records the location policy ${installed.policy ?? '?'}, this config installs ${policy.mode}`);
    for (const problem of recorded) add('function', problem);
    // with the recorded fields equal, only the body can tell another prefix, destination, root or version apart
    const actual = fingerprint(installed.function.body);
    if (expected.function && recorded.length === 0 && actual !== expected.function) {
      add('function', `its body has fingerprint ${actual}, this config's has ${expected.function}: another config or version installed it`);
    }
  }
  if (tagTest && fingerprint(tagTest.body) !== expected.tagTest) {
    add('function', `${TAG_TEST_NAME} does not test for the tag ${s.tag}`);
  }
  if (auditTable && fingerprint(auditTable.shape) !== expected.auditTable) {
    add('policy', `our table ${auditTable.name} is not the one install-trigger creates (${auditTable.shape}): drop it, then install-trigger again`);
  }

  if (policy && policy.mode !== 'off') {
    if (!policyTrigger) add('policy', `the location policy is ${policy.mode}, but our trigger ${POLICY_TRIGGER_NAME} is not installed on ${s.schema}.experiments`);
    else if (!policyTrigger.enabled) add('policy', `the trigger ${POLICY_TRIGGER_NAME} on ${policyTrigger.table} is disabled`);
    else if (!deferred(policyTrigger)) add('policy', `the trigger ${POLICY_TRIGGER_NAME} on ${policyTrigger.table} is not DEFERRABLE INITIALLY DEFERRED`);
  } else if (policy && policyTrigger) {
    add('policy', `the location policy is off, but our trigger ${POLICY_TRIGGER_NAME} is installed on ${policyTrigger.table}`);
  }
  return differences;
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

export interface InstallOptions {
  /** also apply the rule to experiments that already carry the tag */
  readonly backfill?: boolean;
}

/**
 * Installs (or replaces) our function and triggers for the configured mode and policy in one locked transaction, and returns
 * what was read back inside it; then, after that has committed, the backfill if asked for.
 */
export async function installTrigger(client: pg.Client, config: Config, logger: Logger, opts: InstallOptions = {}): Promise<Installed & { backfill?: Backfill; resolved: ResolvedPolicy; survey?: PolicySurvey }> {
  const s = triggerSql(config);
  if (config.trigger.enforceLocations !== undefined) {
    logger.warn({ enforceLocations: config.trigger.enforceLocations, locationPolicy: config.trigger.locationPolicy },
      `trigger.enforceLocations is deprecated: set trigger.locationPolicy: ${config.trigger.locationPolicy} (what it means) and remove trigger.enforceLocations`);
  }
  const { installed, legacy, resolved, survey } = await transaction(client, { lock: true }, async () => {
    await requireTables(client, s.schema);
    const resolved = await resolvePolicy(client, config);
    // enforce without a root fails the install (and the chart's Job): whatever was installed before stays as it was
    if (!resolved.policy) throw new TriggerError(resolved.refused!);
    const policy = resolved.policy;
    // before the policy takes effect: which experiments hold a location it refuses, so none of them is a surprise
    let survey: PolicySurvey | undefined;
    if (policy.mode !== 'off') {
      survey = await surveyPolicy(client, config, policy, { audited: false });
      logSurvey(logger, policy, survey);
    }
    const before = await readInstalled(client, s.schema);
    for (const statement of installStatements(config, policy)) await client.query(statement);
    const after = await readInstalled(client, s.schema);
    const differences = installedDifferences(after, config, policy);
    if (differences.length > 0) {
      throw new TriggerError(`the trigger read back from pg_trigger/pg_proc/pg_class is not what was installed: ${differences.map((d) => d.problem).join('; ')}`);
    }
    if (before.mode && before.mode !== s.mode) logger.info({ from: before.mode, to: s.mode }, 'replacing the installed mode');
    if (before.style && before.style !== after.style) {
      logger.info({ from: before.style, to: after.style }, 'replacing the installed location style: existing experiments keep their locations; --backfill moves tagged ones to the new style');
    }
    if (before.policy && before.function && before.policy !== after.policy) logger.info({ from: before.policy, to: after.policy }, 'replacing the installed location policy');
    return { installed: after, legacy: await findLegacy(client), resolved, survey };
  });
  logPolicy(logger, resolved, s.auditTable);
  logger.info(
    {
      mode: installed.mode, tag: installed.tag, style: installed.style, policy: installed.policy, trigger: TRIGGER_NAME, table: installed.trigger?.table,
      function: installed.function?.signature, definition: installed.trigger?.definition, policyTrigger: installed.policyTrigger?.definition ?? null,
      auditTable: installed.auditTable?.name,
    },
    'trigger installed',
  );
  warnLegacy(logger, legacy);
  const result = { ...installed, resolved, ...(survey && { survey }) };
  if (!opts.backfill) return result;
  const filled = await backfill(client, config, logger);
  logger.info(
    { tagged: filled.tagged, changed: filled.changed, batches: filled.batches, slowestBatchMs: Math.round(filled.slowestBatchMs), refused: filled.refusedCount, remaining: filled.remaining },
    'backfill applied the rule to existing experiments',
  );
  return { ...result, backfill: filled };
}

/** The installed policy, one line: what it does, where MLflow's default root came from, and what it cannot judge. */
function logPolicy(logger: Logger, resolved: ResolvedPolicy, auditTable: string): void {
  const policy = resolved.policy!;
  const root = 'defaultPrefix' in policy && policy.defaultPrefix !== undefined
    ? { source: resolved.source, mlflowDefault: `${policy.defaultPrefix}<experiment id>` } : {};
  if (policy.mode === 'enforce') {
    logger.info({ from: resolved.from, ...root }, 'location policy enforce: a location written without our tag must be empty, MLflow\'s default, or allowed; anything else is refused');
  } else if (policy.mode === 'audit') {
    logger.info({ from: resolved.from, ...root, auditTable },
      'location policy audit: a location written without our tag that enforce would refuse is let through and recorded for doctor');
    if (resolved.unknownRoot) {
      logger.warn({ reason: resolved.unknownRoot },
        'location policy audit without MLflow\'s default root: a location ending in the experiment\'s own id is not judged; set trigger.defaultArtifactRoot');
    }
  } else {
    logger.info({ from: resolved.from }, 'location policy off: explicit artifact locations are not checked');
  }
}

/** The survey, bounded: a summary, the first SURVEY_SHOWN experiments with the setting that admits each, and how many more. */
function logSurvey(logger: Logger, policy: JudgingPolicy, survey: PolicySurvey): void {
  if (survey.held === 0) {
    logger.info({ held: 0 }, 'location policy survey: no experiment holds a location the policy refuses');
    return;
  }
  const level = policy.mode === 'enforce' ? 'warn' : 'info';
  logger[level](
    { held: survey.held, listed: survey.shown.length },
    policy.mode === 'enforce'
      ? 'location policy survey: experiments hold a location enforce refuses; they keep working (renames, deletes, runs), but MLflow refuses (400) a create or update that writes such a location'
      : 'location policy survey: experiments hold a location enforce would refuse; audit lets such writes through and doctor counts those written from now on',
  );
  for (const e of survey.shown) logger[level]({ experimentId: e.experimentId, location: e.location, reason: e.reason, admitWith: e.admitWith }, 'location policy survey: refused location');
  if (survey.held > survey.shown.length) logger[level]({ notListed: survey.held - survey.shown.length, listed: SURVEY_SHOWN }, 'location policy survey: more experiments than listed');
}

/** Removes exactly our triggers, functions and audit table, and checks nothing of ours remains. */
export async function uninstallTrigger(client: pg.Client, config: Config, logger: Logger): Promise<Installed> {
  const s = triggerSql(config);
  const { before, legacy } = await transaction(client, { lock: true }, async () => {
    await requireTables(client, s.schema);
    const was = await readInstalled(client, s.schema);
    for (const statement of uninstallStatements(config)) await client.query(statement);
    const after = await readInstalled(client, s.schema);
    if (Object.keys(after).length > 0) throw new TriggerError(`after uninstall something of ours remains: ${JSON.stringify(after)}`);
    return { before: was, legacy: await findLegacy(client) };
  });
  const removed = Boolean(before.trigger || before.policyTrigger || before.function || before.tagTest || before.auditTable);
  logger.info(
    {
      removedTrigger: before.trigger ? TRIGGER_NAME : null, removedPolicyTrigger: before.policyTrigger ? POLICY_TRIGGER_NAME : null,
      removedFunction: before.function?.signature ?? null, removedAuditTable: before.auditTable?.name ?? null, mode: before.mode ?? null,
    },
    removed ? 'trigger uninstalled' : 'nothing of ours was installed; nothing to remove',
  );
  warnLegacy(logger, legacy);
  return before;
}
