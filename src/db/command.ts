// The `install-trigger` command: prints the SQL (--dry-run), or installs / uninstalls the trigger in MLflow's tracking database.
import { intOption, stringOption, usageText, UsageError, type CommandArgs, type Values } from '../command.js';
import { createLogger } from '../log.js';
import { TriggerError, withDatabase } from './connect.js';
import { installTrigger, uninstallTrigger } from './install.js';
import { configuredPolicy, script } from './sql.js';

export const DEFAULT_WAIT_SECONDS = 300;

export const usage = usageText('--config FILE [--dry-run] [--uninstall] [--backfill] [--wait SECONDS] [--database-url URL]\n'
  + '  connects with PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, or --database-url\n'
  + '  postgres://user@host:port/db?sslmode=...&sslrootcert=...; sslmode as in libpq (disable, allow, prefer (default), require, verify-ca, verify-full)', [
  ['--dry-run', 'print the SQL it would run, without connecting (with --backfill, the backfill\'s SQL too)'],
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
    // Without a connection MLflow's default root cannot be derived from experiment 0: the script says so and leaves the policy off.
    const resolved = configuredPolicy(config) ?? {
      policy: { enforced: false } as const,
      off: 'trigger.defaultArtifactRoot is not set: install-trigger derives MLflow\'s default root from experiment 0 when it connects,\n'
        + 'which --dry-run does not, so this script installs without the location policy; set trigger.defaultArtifactRoot to see it',
    };
    process.stdout.write(script(config, action, { policy: resolved.policy, policyNote: action === 'install' ? resolved.off : undefined, backfill: Boolean(values.backfill) }));
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
