#!/usr/bin/env node
// Command-line entry: parses arguments, loads the one config, and hands over to the command's module.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { UsageError, type CommandModule } from './command.js';

/** Each command lives in its own module, loaded only when run, so `serve` never loads pg or the Kubernetes client. */
const commands: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  serve: { summary: 'run the admission webhook over HTTPS', load: () => import('./serve.js') },
  'install-trigger': { summary: 'install, verify or remove the artifact-location trigger in MLflow\'s tracking database', load: () => import('./db/command.js') },
  'bootstrap-cert': { summary: 'create the webhook\'s CA and serving certificate (create), or write its caBundle (patch)', load: () => import('./k8s/bootstrap-cert.js') },
  'restart-target': { summary: 'restart the mlflow Deployment if it still lacks the mutation', load: () => import('./k8s/restart-target.js') },
  'iam-policy': { summary: 'print the least-privilege IAM trust and S3 policies and the aws commands', load: () => import('./iam-policy.js') },
  doctor: { summary: 'check the whole chain, read-only: webhook, admission, Deployment, pods, trigger, IAM trust, Lease', load: () => import('./doctor/command.js') },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    'usage: mlflow-irsa-webhook <command> --config FILE [options]',
    '       mlflow-irsa-webhook <command> --help',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

/** Returns the exit code (0 ok, 1 failure, 2 bad usage or config), or undefined for a command that keeps running. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? process.stdout : process.stderr).write(`${usage()}\n`);
    return name ? 0 : 2;
  }
  const entry = commands[name];
  if (!entry) {
    process.stderr.write(`unknown command "${name}"\n${usage()}\n`);
    return 2;
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: mlflow-irsa-webhook ${name} ${command.usage}\n`);
    return 0;
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { config: { type: 'string', short: 'c' }, ...command.options },
      strict: true,
      allowPositionals: command.allowPositionals ?? false,
    });
    if (!values.config) throw new UsageError('--config FILE is required');
    const config = loadConfig(values.config as string);
    return await command.run({ values: values as Record<string, string | boolean | undefined>, positionals, config });
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
