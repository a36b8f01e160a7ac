// Builds the trigger's SQL from the config: the rule as SQL expressions (one definition, used by the trigger function, --backfill and
// doctor), the function, the two deferred constraint triggers, and the backfill batches; every configured value quoted by pg.
import pg from 'pg';
import { LENGTH_REASON, MAX_LOCATION_LENGTH, mlflowDefaultPrefix, projectBase, withSlash } from '../config/artifact-location.js';
import type { Config, LocationPolicyMode, TriggerConfig } from '../config/config.js';

/** Our objects' names; anything else in the database is not ours to change. */
export const FUNCTION_NAME = 'mlflow_irsa_artifact_location';
export const TRIGGER_NAME = 'mlflow_irsa_artifact_location_trg';
/** The trigger on experiments that applies the explicit-location policy (installed while it audits or enforces). */
export const POLICY_TRIGGER_NAME = 'mlflow_irsa_location_policy_trg';
/** Our table in MLflow's schema where the policy in audit mode records the locations it let through, one row per experiment. */
export const AUDIT_TABLE_NAME = 'mlflow_irsa_location_audit';
/**
 * The audit table's columns, every one NOT NULL, with their types as PostgreSQL's format_type names them: the one
 * definition the CREATE TABLE and the read-back (install.ts) share. experiment_id is the primary key, so a tenant cannot
 * grow the table beyond the number of experiments, however often they write.
 */
export const AUDIT_COLUMNS: ReadonlyArray<readonly [name: string, type: string]> = [
  ['experiment_id', 'integer'],
  ['artifact_location', 'text'],
  ['writes', 'bigint'],
  ['first_written', 'timestamp with time zone'],
  ['last_written', 'timestamp with time zone'],
];
/** The WHEN clause's test: an inlinable SQL function of the whole tag row (see tagTestDefinition). */
export const TAG_TEST_NAME = 'mlflow_irsa_is_our_tag';
/** The manual procedure's objects, which we detect and warn about but never touch. */
export const LEGACY_TRIGGER_NAME = 'update_artifact_location_trg';
export const LEGACY_FUNCTION_NAME = 'update_artifact_location';

/** Two-key advisory lock ("MLFW", 1) taken for the length of the install transaction, so two installers never interleave. */
export const ADVISORY_LOCK = [0x4d4c4657, 1] as const;
/** How long DDL waits for MLflow's own transactions on experiment_tags before giving up (and retrying), so we never queue MLflow behind us for long. */
export const LOCK_TIMEOUT = '10s';
/** Every statement we run, and our function, resolve names in pg_catalog only: a user's schema on the search_path cannot shadow a function or operator. */
export const SAFE_SEARCH_PATH = 'pg_catalog, pg_temp';
/** MLflow's Default experiment, shared by every project: the trigger, --backfill and doctor leave it where MLflow put it. */
export const DEFAULT_EXPERIMENT_ID = 0;
/** SQL: the tag row `t` is one the rule applies to (not the Default experiment's), for the function and --backfill alike. */
export const RULED_TAG_ROW = `t.experiment_id <> ${DEFAULT_EXPERIMENT_ID}`;
/** The schemes a custom location starts with, as a regular-expression group for the refusals' tests. */
const LOCATION_SCHEMES = '(s3://|mlflow-artifacts:/)';
/** Tagged experiments per --backfill transaction: each batch holds row locks on this many tag rows for a few milliseconds. */
export const BACKFILL_BATCH_SIZE = 500;
/** Refusal messages show at most this much of a tag value, which MLflow allows up to 5000 characters. */
const SHOWN_VALUE_LENGTH = 200;
const DOLLAR_TAG = '$mlflow_irsa$';
/** The comment on our function, read back by `readInstalled` to tell which mode is installed. */
export const COMMENT_PREFIX = 'mlflow-irsa-webhook';
/** Shown with every policy refusal: what to do when the writer is MLflow's own schema migration. */
const POLICY_HINT = 'set by the mlflow-irsa-webhook trigger (trigger.locationPolicy: enforce; audit lets such a write through and records it). '
  + 'If an MLflow schema migration is rewriting artifact locations: install-trigger --uninstall, run the migration, then install-trigger again';

export const lit = (value: string) => pg.escapeLiteral(value);
const ident = (value: string) => pg.escapeIdentifier(value);

/**
 * The explicit-location policy as installed: its mode and the prefix of MLflow's own default location (the default for
 * experiment N is defaultPrefix || N; see mlflowDefaultPrefix). Enforce always knows the prefix. Audit may not: then a
 * location ending in the experiment's own id may be MLflow's default and is not judged.
 */
export type Policy =
  | { readonly mode: 'off' }
  | { readonly mode: 'audit'; readonly defaultPrefix?: string }
  | { readonly mode: 'enforce'; readonly defaultPrefix: string };
/** A policy that judges locations: audit or enforce. */
export type JudgingPolicy = Exclude<Policy, { mode: 'off' }>;
export const POLICY_OFF: Policy = { mode: 'off' };

/** A policy from its mode and MLflow's default prefix (undefined: unknown); undefined for enforce without a prefix, which cannot be installed. */
export function policyOf(mode: LocationPolicyMode, defaultPrefix: string | undefined): Policy | undefined {
  if (mode === 'off') return POLICY_OFF;
  if (mode === 'audit') return defaultPrefix === undefined ? { mode } : { mode, defaultPrefix };
  return defaultPrefix === undefined ? undefined : { mode, defaultPrefix };
}

/** MLflow's default prefix from trigger.defaultArtifactRoot, or undefined when the config does not give it. */
export function configuredPrefix(config: Config): string | undefined {
  const root = config.trigger.defaultArtifactRoot;
  return root ? mlflowDefaultPrefix(root) : undefined;
}

export interface TriggerSql {
  readonly schema: string;
  /** schema-qualified, quoted names */
  readonly functionName: string;
  readonly tagTestName: string;
  readonly triggerName: string;
  readonly policyTriggerName: string;
  readonly auditTable: string;
  readonly tagsTable: string;
  readonly experimentsTable: string;
  /** the tag our trigger reacts to in this mode */
  readonly tag: string;
  readonly mode: TriggerConfig['mode'];
}

export function triggerSql(config: Config): TriggerSql {
  const t = config.trigger;
  const schema = ident(t.schema);
  return {
    schema: t.schema,
    functionName: `${schema}.${ident(FUNCTION_NAME)}`,
    tagTestName: `${schema}.${ident(TAG_TEST_NAME)}`,
    triggerName: ident(TRIGGER_NAME),
    policyTriggerName: ident(POLICY_TRIGGER_NAME),
    auditTable: `${schema}.${ident(AUDIT_TABLE_NAME)}`,
    tagsTable: `${schema}.${ident('experiment_tags')}`,
    experimentsTable: `${schema}.${ident('experiments')}`,
    tag: t.mode === 'project-id' ? t.projectTag : t.locationTag,
    mode: t.mode,
  };
}

/** What our function's comment records: mode, tag, the location policy's mode, and the location style. */
export function functionComment(config: Config, policy: Policy): string {
  const s = triggerSql(config);
  return `${COMMENT_PREFIX} mode=${s.mode} tag=${s.tag} policy=${policy.mode} style=${config.trigger.locationStyle}`;
}

/** What our audit table's comment says (an operator who finds it in MLflow's schema learns whose it is). */
export const AUDIT_TABLE_COMMENT = `${COMMENT_PREFIX}: experiment locations the location policy in audit mode let through and enforce would refuse, `
  + 'one row per experiment; doctor counts them; install-trigger --uninstall drops it';

/** Allowed prefixes always end in "/", so s3://bucket cannot admit s3://bucket-other/... */
export function allowedPrefixes(config: Config): string[] {
  return config.trigger.allowedLocationPrefixes.map(withSlash);
}

/** The rule as SQL over an expression holding the tag's value. */
export interface RuleSql {
  /** text: why the value is refused, or NULL when it is accepted */
  readonly refusal: string;
  /** text: the experiment's location for an accepted value */
  readonly location: string;
}

/** The refusal when a location is longer than MLflow's runs can take; `value` is the tag value it came from. */
function lengthRefusal(location: string, value: string): string {
  return `WHEN pg_catalog.length(${location}) > ${MAX_LOCATION_LENGTH} THEN pg_catalog.format(${lit(
    `the resulting location is %s characters (the value %s), over the limit of ${MAX_LOCATION_LENGTH}: ${LENGTH_REASON}`,
  )}, pg_catalog.length(${location}), pg_catalog.length(${value}))`;
}

/** The refusals of custom-location mode, as CASE branches over a location expression. */
export function customRefusals(config: Config, value: string): string[] {
  const prefixes = allowedPrefixes(config);
  const under = prefixes.map((p) => `pg_catalog.left(${value}, ${p.length}) = ${lit(p)}`).join(' OR ');
  return [
    `WHEN ${value} IS NULL OR NOT (${under}) THEN ${lit(`a custom location must start with one of: ${prefixes.join(', ')}`)}`,
    `WHEN ${value} ~ '(^|/)[.][.]?(/|$)' THEN ${lit('a custom location must not contain "." or ".." path segments')}`,
    // mlflow-artifacts://host/... would name another tracking server; an empty segment anywhere is a different S3 key
    `WHEN ${value} ~ '^${LOCATION_SCHEMES}(/|.*//)' THEN ${lit('a custom location must not contain empty path segments ("//")')}`,
    // MLflow refuses a query, a fragment or parameters in a location, and its create_run then fails in the experiment
    `WHEN ${value} !~ '^${LOCATION_SCHEMES}[A-Za-z0-9._/-]*$' THEN ${lit('after its scheme a custom location may hold only letters, digits, ".", "_", "-" and "/" (MLflow refuses "?", "#", ";" and %-escapes in a location)')}`,
    lengthRefusal(value, value),
  ];
}

/**
 * The configured rule as SQL: from the tag's value to the location (in the configured style), or a refusal. This is the one
 * definition of the rule: the trigger function, --backfill and doctor's drift count use it (backfillSql's `survey` counts
 * the tagged experiments whose location differs from it). Needs search_path = SAFE_SEARCH_PATH for its
 * operators (the function pins it; installer transactions set it).
 */
export function ruleSql(config: Config, value: string): RuleSql {
  if (config.trigger.mode === 'project-id') {
    const location = `${lit(projectBase(config.trigger.locationStyle, config.artifactsDestination, config.trigger.prefix))} || ${value}`;
    const refusal = [
      'CASE',
      `  WHEN ${value} IS NULL OR ${value} !~ '^[A-Za-z0-9._-]+$' OR pg_catalog.strpos(${value}, '..') > 0 OR ${value} = '.'`,
      `    THEN ${lit('a project id must be one or more of the characters A-Z a-z 0-9 . _ - with no "/" and no ".."')}`,
      `  ${lengthRefusal(location, value)}`,
      'END',
    ].join('\n');
    return { refusal, location };
  }
  return { refusal: ['CASE', ...customRefusals(config, value).map((b) => `  ${b}`), 'END'].join('\n'), location: value };
}

/** text: the message a refused tag value raises (and --backfill reports), naming the tag, the value and the reason. */
export function refusalMessageSql(tagKey: string, value: string, reason: string): string {
  return `pg_catalog.format('experiment tag %s = %s refused: %s', ${tagKey}, pg_catalog.quote_nullable(pg_catalog.left(${value}, ${SHOWN_VALUE_LENGTH})), ${reason})`;
}

/**
 * The explicit-location policy as SQL: why a location written to an experiment without our tag is refused, or NULL.
 * Accepted: empty or NULL (MLflow inserts first and sets its default afterwards), MLflow's own default for the experiment,
 * and in custom-location mode anything the custom rule accepts. Without MLflow's default prefix (audit only), any location
 * ending in "/<id>" or ":<id>" might be MLflow's default, so it is accepted: that much cannot be judged.
 */
export function policyRefusalSql(config: Config, policy: JudgingPolicy, location: string, experimentId: string): string {
  const s = triggerSql(config);
  const id = `${experimentId}::text`;
  const known = policy.defaultPrefix !== undefined;
  const mlflowDefault = known ? `${lit(policy.defaultPrefix)} || ${id}` : `${lit('<default artifact root, unknown>/')} || ${id}`;
  const isDefault = known ? `${location} = ${mlflowDefault}`
    : `pg_catalog.right(${location}, pg_catalog.length(${id}) + 1) IN ('/' || ${id}, ':' || ${id})`;
  const otherwise = config.trigger.mode === 'project-id'
    ? `pg_catalog.format(${lit(`without the tag ${s.tag} an experiment's location may only be empty or MLflow's default (%s); set the tag to choose the project's location`)}, ${mlflowDefault})`
    : `pg_catalog.format(${lit(`an experiment's location may only be empty, MLflow's default (%s), or a custom location, and %s`)}, ${mlflowDefault}, CASE ${customRefusals(config, location).join(' ')} END)`;
  const acceptedCustom = config.trigger.mode === 'project-id' ? [] : [`  WHEN (CASE ${customRefusals(config, location).join(' ')} END) IS NULL THEN NULL`];
  return [
    'CASE',
    `  WHEN ${location} IS NULL OR ${location} = '' OR ${isDefault} THEN NULL`,
    ...acceptedCustom,
    `  ELSE ${otherwise}`,
    'END',
  ].join('\n');
}

/**
 * Audit mode: the write goes through, and the experiment's row in our audit table says what was written, when, and how
 * often. A failure to record (a role that may write experiments but not our table) must not turn audit into a refusal:
 * it becomes a WARNING in the server's log, and the write goes through as audit promises.
 */
function auditRecord(s: TriggerSql): string[] {
  return [
    '      BEGIN',
    `        INSERT INTO ${s.auditTable} AS a (${AUDIT_COLUMNS.map(([name]) => name).join(', ')})`,
    '          VALUES (experiment, location, 1, pg_catalog.now(), pg_catalog.now())',
    '          ON CONFLICT (experiment_id) DO UPDATE',
    '            SET artifact_location = EXCLUDED.artifact_location, writes = a.writes + 1, last_written = EXCLUDED.last_written;',
    '      EXCEPTION WHEN OTHERS THEN',
    `        RAISE WARNING USING MESSAGE = pg_catalog.format('mlflow-irsa-webhook: experiment %s artifact_location let through (audit) but not recorded: %s', experiment, SQLERRM);`,
    '      END;',
  ];
}

function raise(message: string, hint?: string): string {
  return [
    `    RAISE EXCEPTION USING ERRCODE = 'check_violation',`,
    `      MESSAGE = ${message}${hint ? `,\n      HINT = ${lit(hint)}` : ''};`,
  ].join('\n');
}

/**
 * CREATE OR REPLACE FUNCTION ... of the WHEN clause's test. Why a function: `WHEN (NEW.key = ...)` makes the trigger depend
 * on the column, and PostgreSQL then refuses `ALTER TABLE experiment_tags ALTER COLUMN key TYPE ...`, which would stop an MLflow
 * migration. A function of the whole row depends on no column; being plain SQL without SET options, the planner inlines it
 * into the WHEN clause, so a foreign tag still queues no event and costs what the column test cost (bench/trigger-cost.mjs).
 * It cannot pin search_path (that would stop the inlining), so its one operator is schema-qualified.
 */
export function tagTestDefinition(config: Config): string {
  const s = triggerSql(config);
  return `CREATE OR REPLACE FUNCTION ${s.tagTestName}(${s.tagsTable}) RETURNS boolean LANGUAGE sql IMMUTABLE AS ${DOLLAR_TAG} ${tagTestBody(config)} ${DOLLAR_TAG}`;
}

/** The tag test's body: what PostgreSQL keeps as its prosrc (fingerprint.ts). */
export function tagTestBody(config: Config): string {
  return `SELECT ($1).key OPERATOR(pg_catalog.=) ${lit(triggerSql(config).tag)}`;
}

/** CREATE OR REPLACE FUNCTION ...: the trigger function for the configured mode and policy, with every configured value baked in as a quoted literal. */
export function functionDefinition(config: Config, policy: Policy): string {
  const s = triggerSql(config);
  return `CREATE OR REPLACE FUNCTION ${s.functionName}() RETURNS trigger LANGUAGE plpgsql\n  SET search_path = ${SAFE_SEARCH_PATH}\n  AS ${DOLLAR_TAG}\n${functionBody(config, policy)}\n${DOLLAR_TAG}`;
}

/** The trigger function's body (plpgsql): what PostgreSQL keeps as its prosrc (fingerprint.ts). */
export function functionBody(config: Config, policy: Policy): string {
  const s = triggerSql(config);
  const rule = ruleSql(config, 'tag_value');
  const body = [
    'DECLARE',
    `  tag_key constant text := ${lit(s.tag)};`,
    '  experiment integer := NEW.experiment_id;',
    '  tag_value text;',
    '  location text;',
    '  reason text;',
    'BEGIN',
    '  -- Runs at commit (deferred), after MLflow\'s own UPDATE of artifact_location in create_experiment, for a write of our tag',
    '  -- or (policy audit or enforce) of an experiment row. Reads the tag and the location as they stand now, not as they were when queued.',
    '  IF TG_TABLE_NAME = \'experiments\' AND TG_OP = \'UPDATE\' THEN',
    '    -- only a written location is judged: renames, deletes and restores of any experiment pass',
    '    IF NEW.artifact_location IS NOT DISTINCT FROM OLD.artifact_location THEN',
    '      RETURN NULL;',
    '    END IF;',
    '  END IF;',
    '  -- the Default experiment (0) is every project\'s: MLflow\'s fluent API tags it when no experiment was set, and it stays put',
    `  SELECT t.value INTO tag_value FROM ${s.tagsTable} t WHERE t.experiment_id = experiment AND t.key = tag_key AND ${RULED_TAG_ROW};`,
    '  IF FOUND THEN',
    '    -- the tag decides the location, whatever was written to artifact_location (the tag wins)',
    `    reason := ${rule.refusal.replace(/\n/g, '\n      ')};`,
    '    IF reason IS NOT NULL THEN',
    raise(refusalMessageSql('tag_key', 'tag_value', 'reason')).replace(/^/gm, '  '),
    '    END IF;',
    `    location := ${rule.location};`,
    `    UPDATE ${s.experimentsTable} SET artifact_location = location`,
    '     WHERE experiment_id = experiment AND artifact_location IS DISTINCT FROM location;',
    '    RETURN NULL;',
    '  END IF;',
    ...(policy.mode === 'off' ? [] : [
      '  IF TG_TABLE_NAME = \'experiments\' THEN',
      `    SELECT e.artifact_location INTO location FROM ${s.experimentsTable} e WHERE e.experiment_id = experiment;`,
      `    reason := ${policyRefusalSql(config, policy, 'location', 'experiment').replace(/\n/g, '\n      ')};`,
      '    IF reason IS NOT NULL THEN',
      ...(policy.mode === 'enforce' ? [raise(
        `pg_catalog.format('experiment %s artifact_location = %s refused: %s', experiment, pg_catalog.quote_nullable(pg_catalog.left(location, ${SHOWN_VALUE_LENGTH})), reason)`,
        POLICY_HINT,
      ).replace(/^/gm, '  ')] : auditRecord(s)),
      '    END IF;',
      '  END IF;',
    ]),
    '  RETURN NULL;',
    'END;',
  ].join('\n');
  // Dollar quoting is only safe if the tag cannot occur inside; configured values are quoted literals, but check all the same.
  if (body.includes(DOLLAR_TAG)) throw new Error(`the trigger function body contains its own dollar-quote tag ${DOLLAR_TAG}`);
  return body;
}

/**
 * The DDL of an install, in order. PostgreSQL 11+ (no CREATE OR REPLACE TRIGGER): drop and create inside the one transaction.
 * WHEN clauses are evaluated when the row is written, so other tags queue no event at all. The policy trigger's WHEN clause
 * names no column (that would pin artifact_location's type): it skips writes made by triggers, so our own UPDATE of the
 * location queues no second event (a role able to write from a trigger owns the tables and could drop ours anyway).
 * Experiments are written seldom, and the function returns at once for updates that leave the location alone.
 */
export function installStatements(config: Config, policy: Policy): string[] {
  const s = triggerSql(config);
  const constraintTrigger = (name: string, table: string, when: string) => [
    `CREATE CONSTRAINT TRIGGER ${name}`,
    `  AFTER INSERT OR UPDATE ON ${table}`,
    '  DEFERRABLE INITIALLY DEFERRED',
    '  FOR EACH ROW',
    `  WHEN (${when})`,
    `  EXECUTE FUNCTION ${s.functionName}()`,
  ].join('\n');
  return [
    auditTableDefinition(config),
    `COMMENT ON TABLE ${s.auditTable} IS ${lit(AUDIT_TABLE_COMMENT)}`,
    tagTestDefinition(config),
    functionDefinition(config, policy),
    `COMMENT ON FUNCTION ${s.functionName}() IS ${lit(functionComment(config, policy))}`,
    lockTables(config),
    `DROP TRIGGER IF EXISTS ${s.triggerName} ON ${s.tagsTable}`,
    constraintTrigger(s.triggerName, s.tagsTable, `${s.tagTestName}(NEW)`),
    `DROP TRIGGER IF EXISTS ${s.policyTriggerName} ON ${s.experimentsTable}`,
    ...(policy.mode === 'off' ? [] : [constraintTrigger(s.policyTriggerName, s.experimentsTable, 'pg_catalog.pg_trigger_depth() = 0')]),
  ];
}

/**
 * CREATE TABLE IF NOT EXISTS of the audit table, in every mode: its rows outlive a switch between modes (doctor re-judges
 * them against the policy of the day), and an install never empties it. No foreign key to experiments: that would pin
 * the experiment_id column's type against MLflow's migrations and stop `mlflow gc` deleting experiments.
 */
export function auditTableDefinition(config: Config): string {
  const columns = AUDIT_COLUMNS.map(([name, type]) => `  ${name} ${type} NOT NULL`);
  return `CREATE TABLE IF NOT EXISTS ${triggerSql(config).auditTable} (\n${columns.join(',\n')},\n  PRIMARY KEY (experiment_id))`;
}

/**
 * DROP TRIGGER locks its table ACCESS EXCLUSIVE. Taking both locks first, in the order MLflow's create_experiment takes
 * them (experiments, then experiment_tags), keeps an install from deadlocking with an MLflow call that is halfway through.
 */
function lockTables(config: Config): string {
  const s = triggerSql(config);
  return `LOCK TABLE ${s.experimentsTable}, ${s.tagsTable} IN ACCESS EXCLUSIVE MODE`;
}

/** The DDL of an uninstall: exactly our triggers, functions and audit table (its records go with it). */
export function uninstallStatements(config: Config): string[] {
  const s = triggerSql(config);
  return [
    lockTables(config),
    `DROP TRIGGER IF EXISTS ${s.triggerName} ON ${s.tagsTable}`,
    `DROP TRIGGER IF EXISTS ${s.policyTriggerName} ON ${s.experimentsTable}`,
    `DROP FUNCTION IF EXISTS ${s.functionName}()`,
    `DROP FUNCTION IF EXISTS ${s.tagTestName}(${s.tagsTable})`,
    `DROP TABLE IF EXISTS ${s.auditTable}`,
  ];
}

/** The statements that open every install, uninstall or backfill transaction. */
export function preamble(opts: { lock: boolean } = { lock: true }): string[] {
  return [
    `SET LOCAL lock_timeout = ${lit(LOCK_TIMEOUT)}`,
    `SET LOCAL search_path = ${SAFE_SEARCH_PATH}`,
    ...(opts.lock ? [`SELECT pg_advisory_xact_lock(${ADVISORY_LOCK[0]}, ${ADVISORY_LOCK[1]})`] : []),
  ];
}

export interface PolicySurveySql {
  /** one row: `held`, how many experiments hold a location the policy refuses */
  readonly count: string;
  /** the first $1 of them by id: experiment_id, location (its first SHOWN_VALUE_LENGTH characters), reason */
  readonly list: string;
}

/**
 * The experiments whose location the policy would refuse if it were written now: without our tag (the tag decides a
 * tagged experiment's location instead), judged by policyRefusalSql, so neither the install's survey (before the policy
 * takes effect) nor doctor's audit count (`audited`: only those our audit table recorded) can disagree with the trigger.
 */
export function policySurveySql(config: Config, policy: JudgingPolicy, opts: { audited: boolean }): PolicySurveySql {
  const s = triggerSql(config);
  const held = [
    `${s.experimentsTable} e`,
    ...(opts.audited ? [`  JOIN ${s.auditTable} a ON a.experiment_id = e.experiment_id`] : []),
    `  CROSS JOIN LATERAL (SELECT ${policyRefusalSql(config, policy, 'e.artifact_location', 'e.experiment_id').replace(/\n/g, '\n    ')} AS reason) r`,
    ' WHERE r.reason IS NOT NULL',
    `   AND NOT EXISTS (SELECT FROM ${s.tagsTable} t WHERE t.experiment_id = e.experiment_id AND t.key = ${lit(s.tag)} AND ${RULED_TAG_ROW})`,
  ].join('\n');
  return {
    count: `SELECT count(*)::int AS held\n  FROM ${held}`,
    list: `SELECT e.experiment_id, pg_catalog.left(e.artifact_location, ${SHOWN_VALUE_LENGTH}) AS location, r.reason\n  FROM ${held}\n ORDER BY e.experiment_id LIMIT $1`,
  };
}
