// The `doctor` command: reads the whole chain once (read.ts), judges it (checks.ts) and prints one line per check,
// grouped like `linkerd check`, or JSON for machines. Read-only. Exit 0 when nothing fails, 1 when something does.
import { pino } from 'pino';
import { stringOption, UsageError, usageText, type CommandArgs } from '../command.js';
import { databaseUrlOption } from '../db/command.js';
import { findCredentials, kubeconfigHelp, kubeconfigOption, noCredentials } from '../k8s/args.js';
import type { Config } from '../config/config.js';
import { createLogger } from '../log.js';
import { normaliseOidcProvider, parseRoleArn } from '../iam-policy.js';
import { buildMutators } from '../mutators/index.js';
import { CHECKS, exitCode, GROUP_TITLES, runChecks, summarise, type CheckResult, type Summary } from './checks.js';
import { readFacts, type ReadOptions } from './read.js';
import { BEYOND_C0, C0_CONTROLS } from '../printable.js';

export const DEFAULT_WEBHOOK_CONFIG = 'mlflow-irsa-webhook';
export const DEFAULT_WEBHOOK_NAMESPACE = 'mlflow-irsa-webhook';

export const usage = usageText(
  '--config FILE [--kubeconfig FILE] [--database-url URL] [--trust-policy FILE] [--oidc-provider ISSUER] [--output text|json]\n'
  + '              [--webhook-config NAME] [--webhook-namespace NS] [--tls-secret NAME]\n'
  + '  checks, read-only, from the IAM trust policy to the tracking database; exit 0 when nothing fails, 1 when something does',
  [
    kubeconfigHelp,
    ['--database-url', 'postgres://user@host:port/db; else PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE when PGHOST is set; else the trigger checks skip'],
    ['--trust-policy', 'the role\'s trust policy: aws iam get-role --role-name NAME --query Role.AssumeRolePolicyDocument > trust.json'],
    ['--oidc-provider', 'the cluster\'s OIDC issuer (aws eks describe-cluster --query cluster.identity.oidc.issuer); default: the API server\'s own'],
    ['--webhook-config', `the MutatingWebhookConfiguration, also the chart's object prefix (default ${DEFAULT_WEBHOOK_CONFIG})`],
    ['--webhook-namespace', `the webhook's namespace: its Service, TLS Secret and Lease (default ${DEFAULT_WEBHOOK_NAMESPACE})`],
    ['--tls-secret', 'the webhook\'s TLS Secret, read when its certificate cannot be fetched through the Service (default <webhook-config>-tls)'],
    ['--output', 'text (default) or json: {"checks":[{"id","status","message","fix"}],"summary":{"pass","warn","fail","skip"}}'],
  ],
);

export const options = {
  ...kubeconfigOption,
  'database-url': { type: 'string' as const },
  'trust-policy': { type: 'string' as const },
  'oidc-provider': { type: 'string' as const },
  output: { type: 'string' as const },
  'webhook-config': { type: 'string' as const },
  'webhook-namespace': { type: 'string' as const },
  'tls-secret': { type: 'string' as const },
};

/** The JSON Schema of `--output json`: the shape scripts may rely on. */
export const outputSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['checks', 'summary'],
  properties: {
    checks: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'status', 'message', 'fix', 'docs'],
        properties: {
          id: { type: 'string', enum: CHECKS.map((c) => c.id) },
          status: { type: 'string', enum: ['pass', 'warn', 'fail', 'skip'] },
          message: { type: 'string', minLength: 1 },
          fix: { type: 'string' },
          docs: { type: 'string', pattern: '^https://' },
        },
      },
    },
    summary: {
      type: 'object',
      additionalProperties: false,
      required: ['pass', 'warn', 'fail', 'skip'],
      properties: Object.fromEntries(['pass', 'warn', 'fail', 'skip'].map((k) => [k, { type: 'integer', minimum: 0 }])),
    },
  },
} as const;

/** What a terminal acts on instead of showing (printable.ts holds the one definition). */
const TERMINAL_CONTROLS = new RegExp(`[${C0_CONTROLS}${BEYOND_C0}]`, 'g');
/** those JSON.stringify leaves as they are */
const JSON_UNESCAPED_CONTROLS = new RegExp(`[${BEYOND_C0}]`, 'g');
const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * A value as text safe to print to a terminal: each control character written as a visible escape (\n, \x1b,
 * \u202e). Messages carry strings a tenant wrote (an experiment's location, a Lease holder, a rollout message);
 * printed raw, escape sequences could erase or forge report lines, or set the operator's clipboard (OSC 52).
 */
export function visible(text: string): string {
  return text.replace(TERMINAL_CONTROLS, (ch) => {
    const code = ch.charCodeAt(0);
    return SHORT_ESCAPES[ch] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
  });
}

/**
 * The report for machines. JSON escapes the C0 controls itself; the others a terminal acts on are written as \u
 * escapes too, which parse to the same strings, so the JSON is as safe to print as the text.
 */
export function renderJson(results: readonly CheckResult[], summary: Summary): string {
  const json = JSON.stringify({ checks: results.map((r) => ({ id: r.id, status: r.status, message: r.message, fix: r.fix ?? '', docs: r.docs })), summary }, null, 2);
  return `${json.replace(JSON_UNESCAPED_CONTROLS, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
}

/** The report for a terminal. Every value passes through `visible` here, in one place, so that no check can forget it. */
export function renderText(results: readonly CheckResult[], summary: Summary, config: Config, webhook: string): string {
  const lines = [visible(`mlflow-irsa-webhook doctor: Deployment ${config.namespace}/${config.deployment}, role ${parseRoleArn(config.roleArn).name}, webhook ${webhook}`)];
  const width = Math.max(...results.map((r) => r.id.length));
  let group = '';
  for (const r of results) {
    if (r.group !== group) {
      group = r.group;
      const title = GROUP_TITLES[group] ?? group;
      lines.push('', title, '-'.repeat(title.length));
    }
    lines.push(`${r.status.toUpperCase().padEnd(4)}  ${r.id.padEnd(width)}  ${visible(r.message)}`);
    if (r.status === 'warn' || r.status === 'fail') {
      if (r.fix) lines.push(`${' '.repeat(6 + width + 2)}fix: ${visible(r.fix)}`);
      lines.push(`${' '.repeat(6 + width + 2)}see: ${r.docs}`);
    }
  }
  lines.push('', `Status: ${summary.pass} pass, ${summary.warn} warn, ${summary.fail} fail, ${summary.skip} skip`);
  return `${lines.join('\n')}\n`;
}

export async function run({ values, config }: CommandArgs): Promise<number> {
  const output = stringOption(values, 'output') ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`--output ${JSON.stringify(output)} is not one of text, json`);
  const databaseUrl = databaseUrlOption(values);
  const providerArg = stringOption(values, 'oidc-provider');
  const oidcProvider = providerArg === undefined ? undefined : normaliseOidcProvider(providerArg, parseRoleArn(config.roleArn).partition);
  // an unreadable kubeconfig is a usage error (exit 2); none at all fails kubernetes.api, and the database checks still run
  const credentials = findCredentials(values);
  const webhookConfig = stringOption(values, 'webhook-config') ?? DEFAULT_WEBHOOK_CONFIG;
  const webhookNamespace = stringOption(values, 'webhook-namespace') ?? DEFAULT_WEBHOOK_NAMESPACE;
  const tlsSecret = stringOption(values, 'tls-secret') ?? `${webhookConfig}-tls`;

  // database retries and the like go to stderr, so that stdout stays the report (and valid JSON)
  const logger = createLogger('warn', pino.destination({ dest: 2, sync: true }));
  let kube: ReadOptions['kube'];
  let kubeError: string | undefined;
  if (!credentials) kubeError = noCredentials();
  else {
    try {
      const { kubeClient } = await import('../k8s/client.js');
      kube = await kubeClient(credentials.file);
    } catch (err) {
      // the message names --kubeconfig's file; the other sources are named here
      kubeError = `no usable kubeconfig: ${(err as Error).message}${credentials.file === undefined ? ` (from ${credentials.from})` : ''}`;
    }
  }
  const { facts, timedOut } = await readFacts({
    config, kube, kubeError, logger, webhookConfig, webhookNamespace, tlsSecret, oidcProvider,
    trustPolicyFile: stringOption(values, 'trust-policy'),
    database: databaseUrl !== undefined || process.env.PGHOST ? { databaseUrl, env: process.env } : undefined,
  });
  const results = runChecks(facts, {
    config, mutators: buildMutators(config), now: Date.now(), configFile: stringOption(values, 'config') ?? '', webhookConfig, webhookNamespace, tlsSecret,
  });
  const summary = summarise(results);
  process.stdout.write(output === 'json' ? renderJson(results, summary) : renderText(results, summary, config, `${webhookNamespace}/${webhookConfig}`));
  const code = exitCode(results);
  // a read that never answered may hold its socket open; the report is out, so do not wait for it
  if (timedOut) process.exit(code);
  return code;
}
