#!/usr/bin/env node
// Writes the chart's values.schema.json and templates/_config-keys.tpl from the config schema the program validates with.
// Run after `npm run build` (it reads dist/config-schema.js): `node scripts/gen-chart-schema.mjs`, or `--check` to
// exit 1 when the committed files differ from what it would write.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const chart = join(root, 'charts/mlflow-irsa-webhook');
export const schemaFile = join(chart, 'values.schema.json');
export const keysFile = join(chart, 'templates/_config-keys.tpl');

const str = (description, extra = {}) => ({ type: 'string', description, ...extra });
const int = (description, extra = {}) => ({ type: 'integer', description, ...extra });
const bool = (description) => ({ type: 'boolean', description });
const obj = (description, properties, extra = {}) => ({ type: 'object', description, additionalProperties: false, properties, ...extra });
const k8s = (description) => ({ type: 'object', description });
const resources = obj('container resources (requests/limits)', {
  requests: k8s('resource requests'),
  limits: k8s('resource limits'),
  claims: { type: 'array', description: 'resource claims' },
});
const dnsLabel = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const dnsSubdomain = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** The chart's own keys, beside the config keys. */
export const chartProperties = {
  global: { type: 'object', description: 'Helm global values (for use as a subchart)' },
  nameOverride: str('overrides the chart name in object names and labels', { pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$', maxLength: 40 }),
  fullnameOverride: str('overrides the full object name prefix', { pattern: '^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$', maxLength: 52 }),
  image: obj('webhook and job image', {
    repository: str('image repository', { minLength: 1 }),
    tag: str('image tag; empty means the chart appVersion'),
    digest: str('sha256 digest; pins the image when set', { pattern: '^(sha256:[a-f0-9]{64})?$' }),
    pullPolicy: { type: 'string', enum: ['Always', 'IfNotPresent', 'Never'], description: 'image pull policy' },
  }, { required: ['repository'] }),
  imagePullSecrets: { type: 'array', description: 'image pull secrets, [{name: ...}]', items: { type: 'object' } },
  replicas: int('webhook pods', { minimum: 1 }),
  resources,
  terminationGracePeriodSeconds: int('seconds a webhook pod may take to stop; must exceed server.drainSeconds', { minimum: 1 }),
  podAnnotations: k8s('extra pod annotations'),
  podLabels: k8s('extra pod labels'),
  nodeSelector: k8s('pod nodeSelector'),
  tolerations: { type: 'array', description: 'pod tolerations', items: { type: 'object' } },
  affinity: k8s('extra pod affinity'),
  priorityClassName: str('pod priorityClassName'),
  podDisruptionBudget: obj('PodDisruptionBudget of the webhook pods', {
    enabled: bool('render the PodDisruptionBudget'),
    minAvailable: { type: ['integer', 'string'], description: 'pods kept through voluntary disruptions' },
  }),
  failurePolicy: { type: 'string', enum: ['Ignore', 'Fail'], description: 'what the API server does when the webhook cannot be reached' },
  matchConditions: obj('CEL matchConditions on the object name (Kubernetes 1.28+)', { enabled: bool('render matchConditions') }),
  tls: obj('the TLS Secret', { secretName: str('Secret with tls.crt, tls.key, ca.crt; empty means <fullname>-tls', { pattern: `^(${dnsSubdomain.slice(1, -1)})?$`, maxLength: 253 }) }),
  certManager: obj('cert-manager instead of the bootstrap-cert Jobs', {
    enabled: bool('use cert-manager'),
    issuerRef: obj('existing issuer; empty makes a self-signed CA', {
      name: str('issuer name', { minLength: 1 }),
      kind: { type: 'string', enum: ['Issuer', 'ClusterIssuer'], description: 'issuer kind' },
      group: str('issuer API group'),
    }),
    duration: str('certificate lifetime, Go duration', { pattern: '^[0-9]+(h|m|s)$' }),
    renewBefore: str('renew this long before expiry, Go duration', { pattern: '^[0-9]+(h|m|s)$' }),
  }),
  jobs: obj('hook Jobs', {
    backoffLimit: int('retries of a failed Job pod', { minimum: 0 }),
    ttlSecondsAfterFinished: int('finished Jobs are removed after this', { minimum: 0 }),
    activeDeadlineSeconds: int('a Job is stopped after this', { minimum: 60 }),
    resources,
    bootstrapCert: obj('self-managed certificates', {
      days: int('validity in days', { minimum: 2, maximum: 36500 }),
      renewDays: int('renew at this many days left or fewer', { minimum: 0, maximum: 36500 }),
    }),
    restart: obj('restart of the mlflow Deployment after install/upgrade', {
      enabled: bool('run the restart Job'),
      waitSeconds: int('wait this long for the webhook to answer', { minimum: 0, maximum: 3600 }),
    }),
    trigger: obj('the tracking-database trigger Jobs', {
      enabled: bool('install the trigger after install/upgrade'),
      uninstallOnDelete: bool('remove the trigger on helm uninstall'),
      waitSeconds: int('retry an unreachable database this long', { minimum: 0 }),
      backfill: bool('apply the rule to existing experiments too'),
      namespace: str('namespace the trigger Jobs run in (holds the password Secret); empty means `namespace`', { pattern: `^(${dnsLabel.slice(1, -1)})?$`, maxLength: 63 }),
    }),
  }),
  database: obj('MLflow tracking database for the trigger Jobs', {
    host: str('PGHOST', { minLength: 1 }),
    port: int('PGPORT', { minimum: 1, maximum: 65535 }),
    name: str('PGDATABASE', { minLength: 1 }),
    user: str('PGUSER', { minLength: 1 }),
    sslMode: { type: 'string', enum: ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'], description: 'PGSSLMODE' },
    passwordSecret: obj('Secret holding PGPASSWORD', {
      name: str('Secret name', { pattern: dnsSubdomain }),
      key: str('key in the Secret', { minLength: 1 }),
    }, { required: ['name', 'key'] }),
  }),
};

/** values.schema.json: the config schema's properties verbatim, plus the chart's keys. */
export function chartSchema(configSchema) {
  const overlap = Object.keys(configSchema.properties).filter((k) => k in chartProperties);
  if (overlap.length > 0) throw new Error(`chart keys shadow config keys: ${overlap.join(', ')}`);
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'mlflow-irsa-webhook chart values',
    description: 'Generated by scripts/gen-chart-schema.mjs from src/config-schema.ts; do not edit by hand.',
    type: 'object',
    additionalProperties: false,
    required: configSchema.required,
    properties: { ...structuredClone(configSchema.properties), ...chartProperties },
  };
}

/** The helper template listing the config keys, so the ConfigMap copies exactly those from the values. */
export function configKeysTemplate(configSchema) {
  return [
    '{{/* Generated by scripts/gen-chart-schema.mjs from src/config-schema.ts: the config file\'s top-level keys. */}}',
    `{{- define "mlflow-irsa-webhook.configKeys" -}}${Object.keys(configSchema.properties).join(' ')}{{- end -}}`,
    '',
  ].join('\n');
}

async function main() {
  const { configSchema } = await import(join(root, 'dist/config-schema.js'));
  const files = [
    [schemaFile, `${JSON.stringify(chartSchema(configSchema), null, 2)}\n`],
    [keysFile, configKeysTemplate(configSchema)],
  ];
  if (process.argv.includes('--check')) {
    const stale = files.filter(([file, text]) => !existsSync(file) || readFileSync(file, 'utf8') !== text);
    for (const [file] of stale) process.stderr.write(`${file} is out of date: run npm run build && node scripts/gen-chart-schema.mjs\n`);
    process.exitCode = stale.length > 0 ? 1 : 0;
    return;
  }
  for (const [file, text] of files) writeFileSync(file, text);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
