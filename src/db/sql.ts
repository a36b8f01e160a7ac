// Builds the trigger's SQL from the config: one function and one deferred constraint trigger, every configured value quoted by pg.
import pg from 'pg';
import type { Config, TriggerConfig } from '../config.js';

/** Our objects' names; anything else in the database is not ours to change. */
export const FUNCTION_NAME = 'mlflow_irsa_artifact_location';
export const TRIGGER_NAME = 'mlflow_irsa_artifact_location_trg';
/** The manual procedure's objects, which we detect and warn about but never touch. */
export const LEGACY_TRIGGER_NAME = 'update_artifact_location_trg';
export const LEGACY_FUNCTION_NAME = 'update_artifact_location';

/** Two-key advisory lock ("MLFW", 1) taken for the length of the install transaction, so two installers never interleave. */
export const ADVISORY_LOCK = [0x4d4c4657, 1] as const;
/** How long DDL waits for MLflow's own transactions on experiment_tags before giving up (and retrying), so we never queue MLflow behind us for long. */
export const LOCK_TIMEOUT = '10s';
/** experiments.artifact_location is VARCHAR(256) in every MLflow schema. */
export const MAX_LOCATION_LENGTH = 256;
/** Refusal messages show at most this much of a tag value, which MLflow allows up to 5000 characters. */
const SHOWN_VALUE_LENGTH = 200;
const DOLLAR_TAG = '$mlflow_irsa$';
/** The comment on our function, read back by `readInstalled` to tell which mode is installed. */
export const COMMENT_PREFIX = 'mlflow-irsa-webhook';

const lit = (value: string) => pg.escapeLiteral(value);
const ident = (value: string) => pg.escapeIdentifier(value);

export interface TriggerSql {
  readonly schema: string;
  /** schema-qualified, quoted names */
  readonly functionName: string;
  readonly triggerName: string;
  /** the trigger as SET CONSTRAINTS names it (schema-qualified) */
  readonly constraintName: string;
  readonly tagsTable: string;
  readonly experimentsTable: string;
  /** the tag our trigger reacts to in this mode */
  readonly tag: string;
  readonly mode: TriggerConfig['mode'];
  readonly comment: string;
}

export function triggerSql(config: Config): TriggerSql {
  const t = config.trigger;
  const schema = ident(t.schema);
  return {
    schema: t.schema,
    functionName: `${schema}.${ident(FUNCTION_NAME)}`,
    triggerName: ident(TRIGGER_NAME),
    constraintName: `${schema}.${ident(TRIGGER_NAME)}`,
    tagsTable: `${schema}.${ident('experiment_tags')}`,
    experimentsTable: `${schema}.${ident('experiments')}`,
    tag: t.mode === 'project-id' ? t.projectTag : t.locationTag,
    mode: t.mode,
    comment: `${COMMENT_PREFIX} mode=${t.mode} tag=${t.mode === 'project-id' ? t.projectTag : t.locationTag}`,
  };
}

/** Where project-id mode puts a project's artifacts: <artifactsDestination>/<prefix>/ (the id follows). */
export function projectBase(config: Config): string {
  const prefix = config.trigger.prefix;
  return `${config.artifactsDestination}/${prefix ? `${prefix}/` : ''}`;
}

/** Allowed prefixes always end in "/", so s3://bucket cannot admit s3://bucket-other/... */
export function allowedPrefixes(config: Config): string[] {
  return config.trigger.allowedLocationPrefixes.map((p) => (p.endsWith('/') ? p : `${p}/`));
}

function refuse(rule: string, indent = '    '): string {
  return [
    `${indent}RAISE EXCEPTION USING ERRCODE = 'check_violation',`,
    `${indent}  MESSAGE = format('experiment tag %s = %s refused: %s', tag_key, quote_nullable(left(tag_value, ${SHOWN_VALUE_LENGTH})), ${lit(rule)});`,
  ].join('\n');
}

/** The rule of each mode: from the tag's value to the location, or a refusal. */
function ruleBody(config: Config): string {
  if (config.trigger.mode === 'project-id') {
    return [
      '  -- project-id: the value becomes one path segment under the configured base',
      `  IF tag_value IS NULL OR tag_value !~ '^[A-Za-z0-9._-]+$' OR strpos(tag_value, '..') > 0 OR tag_value = '.' THEN`,
      refuse('a project id must be one or more of the characters A-Z a-z 0-9 . _ - with no "/" and no ".."'),
      '  END IF;',
      `  location := ${lit(projectBase(config))} || tag_value;`,
    ].join('\n');
  }
  const prefixes = allowedPrefixes(config);
  const test = prefixes.map((p) => `left(tag_value, ${p.length}) = ${lit(p)}`).join(' OR ');
  return [
    '  -- custom-location: the value itself, if it lies under an allowed prefix',
    `  IF tag_value IS NULL OR NOT (${test}) THEN`,
    refuse(`a custom location must start with one of: ${prefixes.join(', ')}`),
    '  END IF;',
    `  IF tag_value ~ '(^|/)[.][.]?(/|$)' THEN`,
    refuse('a custom location must not contain "." or ".." path segments'),
    '  END IF;',
    '  location := tag_value;',
  ].join('\n');
}

/** CREATE OR REPLACE FUNCTION ...: the trigger function for the configured mode, with every configured value baked in as a quoted literal. */
export function functionDefinition(config: Config): string {
  const s = triggerSql(config);
  const body = [
    'DECLARE',
    `  tag_key constant text := ${lit(s.tag)};`,
    '  tag_value text;',
    '  location text;',
    'BEGIN',
    '  -- Runs at commit (deferred), after MLflow\'s own UPDATE of artifact_location in create_experiment.',
    '  -- Read the tag as it stands now: it may have changed again, or been deleted, since this event was queued.',
    `  SELECT t.value INTO tag_value FROM ${s.tagsTable} t WHERE t.experiment_id = NEW.experiment_id AND t.key = tag_key;`,
    '  IF NOT FOUND THEN',
    '    RETURN NULL;',
    '  END IF;',
    ruleBody(config),
    `  IF length(location) > ${MAX_LOCATION_LENGTH} THEN`,
    refuse(`the resulting location is longer than ${MAX_LOCATION_LENGTH} characters (the size of experiments.artifact_location)`),
    '  END IF;',
    `  UPDATE ${s.experimentsTable} SET artifact_location = location`,
    '   WHERE experiment_id = NEW.experiment_id AND artifact_location IS DISTINCT FROM location;',
    '  RETURN NULL;',
    'END;',
  ].join('\n');
  // Dollar quoting is only safe if the tag cannot occur inside; configured values are quoted literals, but check all the same.
  if (body.includes(DOLLAR_TAG)) throw new Error(`the trigger function body contains its own dollar-quote tag ${DOLLAR_TAG}`);
  return `CREATE OR REPLACE FUNCTION ${s.functionName}() RETURNS trigger LANGUAGE plpgsql AS ${DOLLAR_TAG}\n${body}\n${DOLLAR_TAG}`;
}

/**
 * The DDL of an install, in order. PostgreSQL 11+ (no CREATE OR REPLACE TRIGGER): drop and create inside the one transaction.
 * The WHEN clause is evaluated when the row is written, so other tags queue no event at all.
 */
export function installStatements(config: Config): string[] {
  const s = triggerSql(config);
  return [
    functionDefinition(config),
    `COMMENT ON FUNCTION ${s.functionName}() IS ${lit(s.comment)}`,
    `DROP TRIGGER IF EXISTS ${s.triggerName} ON ${s.tagsTable}`,
    [
      `CREATE CONSTRAINT TRIGGER ${s.triggerName}`,
      `  AFTER INSERT OR UPDATE ON ${s.tagsTable}`,
      '  DEFERRABLE INITIALLY DEFERRED',
      '  FOR EACH ROW',
      `  WHEN (NEW.key = ${lit(s.tag)})`,
      `  EXECUTE FUNCTION ${s.functionName}()`,
    ].join('\n'),
  ];
}

/** The DDL of an uninstall: exactly our trigger and our function. */
export function uninstallStatements(config: Config): string[] {
  const s = triggerSql(config);
  return [
    `DROP TRIGGER IF EXISTS ${s.triggerName} ON ${s.tagsTable}`,
    `DROP FUNCTION IF EXISTS ${s.functionName}()`,
  ];
}

/** The statements that open every install or uninstall transaction. */
export function preamble(): string[] {
  return [`SET LOCAL lock_timeout = ${lit(LOCK_TIMEOUT)}`, `SELECT pg_advisory_xact_lock(${ADVISORY_LOCK[0]}, ${ADVISORY_LOCK[1]})`];
}

/** A psql-runnable script of exactly what an install or uninstall runs, for --dry-run. */
export function script(config: Config, action: 'install' | 'uninstall'): string {
  const ddl = action === 'install' ? installStatements(config) : uninstallStatements(config);
  // Only the mode (an enum) goes into the comment line: configured strings appear in SQL as quoted literals and identifiers only.
  const header = `-- mlflow-irsa-webhook install-trigger: ${action === 'install' ? `install, mode ${config.trigger.mode}` : 'uninstall'}`;
  return [header, ...['BEGIN', ...preamble(), ...ddl, 'COMMIT'].map((s) => `${s};`)].join('\n') + '\n';
}
