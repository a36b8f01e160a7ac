// The psql script --dry-run prints: exactly the transactions an install (and its backfill) or an uninstall runs, headed
// by comment lines saying which policy it installs and what the location policy's survey found.
import type { Config } from '../config/config.js';
import type { PolicySurvey } from './policy.js';
import { backfillSql } from './backfill.js';
import { BACKFILL_BATCH_SIZE, POLICY_OFF, installStatements, preamble, uninstallStatements, type Policy } from './sql.js';

export interface ScriptOptions {
  /** the location policy to install; from config or resolved against the database by the installer */
  readonly policy: Policy;
  /** notes on the policy (where MLflow's root came from, what could not be read), printed as comments */
  readonly policyNote?: string;
  /** the survey of experiments the policy refuses, or why it was not run */
  readonly survey?: PolicySurvey | string;
  readonly backfill?: boolean;
}

/** One transaction of a psql script, as transaction() in connect.ts runs it: the preamble (the lock when `lock`), the statements. */
function transactionScript(lock: boolean, ...statements: string[]): string[] {
  return ['BEGIN', ...preamble({ lock }), ...statements, 'COMMIT'].map((st) => `${st};`);
}

/** The survey as comment lines. Tenant bytes arrive escaped (policy.ts), so no line break can end a comment early. */
function surveyComments(survey: PolicySurvey | string | undefined, policy: Policy): string[] {
  if (policy.mode === 'off' || survey === undefined) return [];
  if (typeof survey === 'string') return [`location policy survey not run: ${survey}`];
  if (survey.held === 0) return ['location policy survey: no experiment holds a location this policy refuses'];
  return [
    `location policy survey: ${survey.held} experiment(s) hold a location this policy refuses${survey.held > survey.shown.length ? ` (the first ${survey.shown.length} listed)` : ''}:`,
    ...survey.shown.map((e) => `  experiment ${e.experimentId} at ${e.location}; admit with ${e.admitWith}`),
  ];
}

/** A psql-runnable script of exactly what an install (and its backfill) or an uninstall runs, for --dry-run. */
export function script(config: Config, action: 'install' | 'uninstall', opts: ScriptOptions = { policy: POLICY_OFF }): string {
  const ddl = action === 'install' ? installStatements(config, opts.policy) : uninstallStatements(config);
  // Only enums go into the header: configured strings appear in SQL as quoted literals and identifiers only.
  const header = `-- mlflow-irsa-webhook install-trigger: ${action === 'install'
    ? `install, mode ${config.trigger.mode}, style ${config.trigger.locationStyle}, location policy ${opts.policy.mode}` : 'uninstall'}`;
  const notes = action === 'install' ? [...(opts.policyNote?.split('\n') ?? []), ...surveyComments(opts.survey, opts.policy)] : [];
  const lines = [header, ...notes.map((l) => `-- ${l.replace(/[\r\n]/g, ' ')}`), ...transactionScript(true, ...ddl)];
  if (action === 'install' && opts.backfill) {
    const b = backfillSql(config);
    lines.push(
      '',
      '-- backfill, after the install above has committed. How many experiments carry the tag, how many differ from the rule, how many are refused;',
      '-- then the refused ones (left as they are):',
      ...transactionScript(false, b.survey, b.refused.replace('$1', 'ALL')),
      `-- then the batches of ${BACKFILL_BATCH_SIZE}, each its own transaction: our trigger sets each location at COMMIT. Run the EXECUTE block`,
      '-- with -1, then again with the "last" it returned, until it reports changed = 0.',
      ...transactionScript(false, `PREPARE mlflow_irsa_backfill(integer) AS\n${b.batch}`),
      ...transactionScript(false, 'EXECUTE mlflow_irsa_backfill(-1)'),
    );
  }
  return `${lines.join('\n')}\n`;
}
