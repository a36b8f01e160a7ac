// The `install-trigger` command: prints the SQL (--dry-run), or installs / uninstalls the trigger in MLflow's tracking database.
import { intOption, stringOption, usageText, UsageError, type CommandArgs, type Values } from '../command.js';
import type { Config } from '../config/config.js';
import { createLogger } from '../log.js';
import { TriggerError, transaction, withDatabase } from './connect.js';
import { installTrigger, missingTables, uninstallTrigger } from './install.js';
import { resolvePolicy, surveyPolicy, type PolicySurvey, type ResolvedPolicy } from './policy.js';
import { script } from './script.js';

export const DEFAULT_WAIT_SECONDS = 300;

export const usage = usageText('--config FILE [--dry-run] [--uninstall] [--backfill] [--wait SECONDS] [--database-url URL]\n'
  + '  connects with PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, or --database-url\n'
  + '  postgres://user@host:port/db?sslmode=...&sslrootcert=...; sslmode as in libpq (disable, allow, prefer (default), require, verify-ca, verify-full)', [
  ['--dry-run', 'print the SQL it would run (with --backfill, the backfill\'s SQL too); given a database, it reads MLflow\'s default root and surveys the location policy first, read-only'],
  ['--uninstall', 'remove our triggers and functions'],
  ['--backfill', 'after installing, apply the rule to experiments that already carry the tag, in short batches, and report how many changed'],
  ['--wait', `keep retrying an unreachable database this many seconds (default ${DEFAULT_WAIT_SECONDS})`],
  ['--database-url', 'postgres://user@host:port/db instead of the PG* variables (the URL is never logged)'],
]);

export const options = {
  'dry-run': { type: 'boolean' as const },
  uninstall: { type: 'boolean' as const },
  backfill: { type: 'boolean' as const },
  wait: { type: 'string' as const },
  'database-url': { type: 'string' as const },
};

/** --database-url, a postgres:// or postgresql:// URL; the value itself may hold a password, so an error does not echo it. */
export function databaseUrlOption(values: Values): string | undefined {
  const databaseUrl = stringOption(values, 'database-url');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  return databaseUrl;
}

export async function run({ values, config }: CommandArgs): Promise<number> {
  const waitSeconds = intOption(values, 'wait', 0, 86_400) ?? DEFAULT_WAIT_SECONDS;
  const databaseUrl = databaseUrlOption(values);
  const action = values.uninstall ? 'uninstall' : 'install';
  if (values.uninstall && values.backfill) throw new UsageError('--backfill goes with an install, not with --uninstall');
  if (values['dry-run']) {
    if (action === 'uninstall') {
      process.stdout.write(script(config, action));
      return 0;
    }
    const { resolved, survey } = await dryRunPolicy(config, databaseUrl);
    if (!resolved.policy) {
      process.stderr.write(`install-trigger --dry-run: ${resolved.refused}\n`);
      return 1;
    }
    process.stdout.write(script(config, action, { policy: resolved.policy, policyNote: policyNote(resolved), survey, backfill: Boolean(values.backfill) }));
    return 0;
  }
  const logger = createLogger(config.logLevel);
  try {
    await withDatabase({ databaseUrl, waitSeconds, waitOption: '--wait' }, logger, (client) =>
      action === 'install' ? installTrigger(client, config, logger, { backfill: Boolean(values.backfill) }) : uninstallTrigger(client, config, logger));
    return 0;
  } catch (err) {
    if (!(err instanceof TriggerError)) throw err;
    logger.error({ reason: err.message }, `install-trigger failed (${action})`);
    return 1;
  }
}

/** libpq variables that name a database to connect to; without one (and without --database-url) --dry-run does not try. */
const CONNECTION_VARIABLES = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER'];

/**
 * The policy --dry-run prints: given a database, resolved as the install would (MLflow's default root from experiment 0)
 * and surveyed, in one read-only transaction and one attempt; otherwise from the config alone, and the survey not run.
 */
async function dryRunPolicy(config: Config, databaseUrl: string | undefined): Promise<{ resolved: ResolvedPolicy; survey: PolicySurvey | string }> {
  if (databaseUrl === undefined && !CONNECTION_VARIABLES.some((v) => process.env[v])) {
    return { resolved: await resolvePolicy(undefined, config), survey: 'no database given (--database-url, or PGHOST and the other libpq variables)' };
  }
  try {
    return await withDatabase({ databaseUrl, waitSeconds: 0 }, createLogger('silent'), (client) => transaction(client, { lock: false, readOnly: true }, async () => {
      const missing = await missingTables(client, config.trigger.schema);
      if (missing.length > 0) return { resolved: await resolvePolicy(undefined, config), survey: `MLflow's tables ${missing.join(', ')} are missing` };
      const resolved = await resolvePolicy(client, config);
      const policy = resolved.policy;
      return { resolved, survey: policy && policy.mode !== 'off' ? await surveyPolicy(client, config, policy, { audited: false }) : 'the policy is off' };
    }));
  } catch (err) {
    if (!(err instanceof TriggerError)) throw err;
    return { resolved: await resolvePolicy(undefined, config), survey: `the database could not be read: ${err.message}` };
  }
}

/** Where the script's policy came from, as comment lines. */
function policyNote(resolved: ResolvedPolicy): string {
  const root = resolved.source ? `MLflow's default root from ${resolved.source}` : resolved.unknownRoot;
  return [`location policy from ${resolved.from}`, ...(root ? [root] : [])].join('\n');
}
