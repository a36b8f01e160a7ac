#!/usr/bin/env node
// Command-line entry: parses arguments, loads the one config, and hands over to the command's module.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, loadConfigEnv, type Config } from './config/config.js';
import { COMMON_OPTIONS, UsageError, usageText, type CommandModule, type Values } from './command.js';
import { version } from './version.js';

/** Each command lives in its own module, loaded only when run, so `serve` never loads pg or the Kubernetes client. */
const commands: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  serve: { summary: 'run the admission webhook over HTTPS', load: () => import('./webhook/serve.js') },
  'install-trigger': { summary: 'install, verify or remove the artifact-location trigger in MLflow\'s tracking database', load: () => import('./db/command.js') },
  'bootstrap-cert': { summary: 'create the webhook\'s CA and serving certificate (create), or write its caBundle (patch)', load: () => import('./k8s/bootstrap-cert.js') },
  'restart-target': { summary: 'restart the mlflow Deployment if it still lacks the mutation', load: () => import('./k8s/restart-target.js') },
  'iam-policy': { summary: 'print the least-privilege IAM trust and S3 policies and the aws commands', load: () => import('./iam-policy.js') },
  'migrate-artifacts': { summary: 'print the aws script that copies the artifacts the tracking database references from the old destination', load: () => import('./migrate/command.js') },
  doctor: { summary: 'check the whole chain, read-only: webhook, admission, Deployment, pods, trigger, IAM trust, Lease', load: () => import('./doctor/command.js') },
};

/** The options every command takes, after each command's own in its --help. */
const COMMON_HELP = usageText('every command:', [
  ['--config, -c', 'the config file, YAML or JSON (the chart mounts it at /etc/mlflow-irsa-webhook/config.yaml)'],
  ['--values, -f', 'instead of --config: the Helm chart\'s values file(s), merged as Helm merges them, rendered as the chart renders the config'],
  ['--config-env', 'instead of --config: the name of an environment variable holding the config text (the chart\'s hook Jobs and helm test carry it in their own spec)'],
  ['--help, -h', 'this text'],
]);

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    'usage: mlflow-irsa-webhook <command> (--config FILE | --values FILE...) [options]',
    '       mlflow-irsa-webhook <command> --help',
    '       mlflow-irsa-webhook --version',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

/** Edit distance, for "did you mean" (the few command names are short, so the plain table is fine). */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

/** The command a mistyped name most likely meant, when one is close enough to suggest. */
export function nearestCommand(name: string): string | undefined {
  const [best] = Object.keys(commands).map((c) => [c, distance(name, c)] as const).sort((x, y) => x[1] - y[1]);
  return best && best[1] <= Math.max(2, Math.floor(best[0].length / 3)) ? best[0] : undefined;
}

/**
 * The one config: from --config FILE, or from --values FILE... rendered as the chart renders its config file. Never
 * both: two sources that could disagree are refused, not merged.
 */
async function commandConfig(values: Values, valuesFiles: string[] | undefined): Promise<Config> {
  const configFile = values.config as string | undefined;
  const configEnv = values['config-env'] as string | undefined;
  if (configFile !== undefined && configEnv !== undefined) {
    throw new UsageError('--config and --config-env are mutually exclusive: give the config as a file or in an environment variable, not both');
  }
  if ((configFile ?? configEnv) !== undefined && valuesFiles !== undefined) {
    throw new UsageError(`${configFile !== undefined ? '--config' : '--config-env'} and --values are mutually exclusive: give the program's config file, or the chart's values file(s) it is rendered from, not both`);
  }
  // loaded only here: the chart's schema and defaults are no part of `serve`'s start
  if (valuesFiles !== undefined) return (await import('./config/chart-values.js')).loadChartValues(valuesFiles);
  if (configEnv !== undefined) return loadConfigEnv(configEnv);
  if (configFile === undefined) throw new UsageError('--config FILE or --values FILE is required');
  try {
    return loadConfig(configFile);
  } catch (err) {
    // the chart's values file given as the config: say so, instead of one "unknown key" line per chart value
    if (err instanceof ConfigError && (await import('./config/chart-values.js')).looksLikeChartValues(configFile)) {
      throw new ConfigError(configFile, [`(file): this is the Helm chart's values file, not the program's config: give it with --values ${configFile}`]);
    }
    throw err;
  }
}

/** Moves each deprecated option's value to its new name, with a note; both at once is a usage error. */
function renameDeprecated(name: string, values: Values, deprecated: Readonly<Record<string, string>>): void {
  for (const [old, now] of Object.entries(deprecated)) {
    if (values[old] === undefined) continue;
    if (values[now] !== undefined) throw new UsageError(`--${old} is the old name of --${now}; give one of them`);
    process.stderr.write(`${name}: note: --${old} is deprecated; use --${now}\n`);
    values[now] = values[old];
    delete values[old];
  }
}

/** Returns the exit code (0 ok, 1 failure, 2 bad usage or config), or undefined for a command that keeps running. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [name, ...rest] = argv;
  if (name === '--version') {
    process.stdout.write(`${version}\n`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? process.stdout : process.stderr).write(`${usage()}\n`);
    return name ? 0 : 2;
  }
  const entry = commands[name];
  if (!entry) {
    const near = nearestCommand(name);
    process.stderr.write(`unknown command "${name}"${near ? `; did you mean "${near}"?` : ''}\n${usage()}\n`);
    return 2;
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: mlflow-irsa-webhook ${name} ${command.usage}\n${COMMON_HELP}\n`);
    return 0;
  }
  try {
    const deprecated = command.deprecatedOptions ?? {};
    const { values: parsed, positionals } = parseArgs({
      args: rest,
      options: {
        ...COMMON_OPTIONS,
        ...command.options,
        ...Object.fromEntries(Object.entries(deprecated).map(([old, now]) => [old, command.options[now]])),
      },
      strict: true,
      allowPositionals: command.allowPositionals ?? false,
    });
    const { values: valuesFiles, ...values } = parsed as Values & { values?: string[] };
    renameDeprecated(name, values, deprecated);
    const config = await commandConfig(values, valuesFiles);
    return await command.run({ values, positionals, config });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    const code = (err as { code?: unknown }).code;
    if (err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`${name}: ${(err as Error).message}\nusage: mlflow-irsa-webhook ${name} ${command.usage}\n`);
      return 2;
    }
    process.stderr.write(`${name}: ${(err as Error).message}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
if (code !== undefined) process.exitCode = code;
