// `bootstrap-cert create` makes the webhook's CA and serving certificate in its TLS Secret; `patch` writes the CA as caBundle.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { intOption, usageText, UsageError, type CommandArgs } from '../command.js';
import { createLogger, type Logger } from '../log.js';
import { createCa, createServingCert, daysLeft } from '../webhook/tls.js';
import { clientFromArgs, kubeconfigHelp, kubeconfigOption, requiredOption } from './args.js';
import { isNotFound, retryOnConflict, type KubeClient } from './client.js';

export const TLS_CERT = 'tls.crt';
export const TLS_KEY = 'tls.key';
export const CA_CERT = 'ca.crt';

export interface CreateOptions {
  readonly namespace: string;
  readonly secret: string;
  readonly service: string;
  /** validity of a new CA and serving certificate */
  readonly days: number;
  /** an existing certificate with this many days left or fewer is replaced */
  readonly renewDays: number;
  readonly retries: number;
}

export interface PatchOptions {
  readonly namespace: string;
  readonly secret: string;
  readonly webhookConfig: string;
  readonly retries: number;
}

/** The names the API server may use to reach the Service: what the serving certificate must be valid for. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`];
}

const fromB64 = (v: string) => Buffer.from(v, 'base64').toString('utf8');
const toB64 = (v: string) => Buffer.from(v, 'utf8').toString('base64');

function parseCert(pem: string, key: string): X509Certificate | string {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    return `${key} is not a PEM certificate (${(err as Error).message})`;
  }
}

/** Why the Secret's certificate cannot be kept, or undefined when it is complete, matching and valid long enough. */
export function secretProblem(secret: V1Secret, dnsNames: string[], renewDays: number): string | undefined {
  const data = secret.data ?? {};
  const missing = [TLS_CERT, TLS_KEY, CA_CERT].filter((k) => !data[k]);
  if (missing.length > 0) return `it lacks ${missing.join(', ')}`;
  const cert = parseCert(fromB64(data[TLS_CERT]), TLS_CERT);
  if (typeof cert === 'string') return cert;
  const ca = parseCert(fromB64(data[CA_CERT]), CA_CERT);
  if (typeof ca === 'string') return ca;
  for (const [name, x509] of [[TLS_CERT, cert], [CA_CERT, ca]] as const) {
    const left = daysLeft(x509);
    if (left <= renewDays) return `${name} expires in ${Math.floor(left)} days (renewed at ${renewDays} days or fewer)`;
  }
  const wrongName = dnsNames.find((n) => cert.checkHost(n) === undefined);
  if (wrongName) return `${TLS_CERT} is not valid for ${wrongName}`;
  let keyMatches: boolean;
  try {
    keyMatches = cert.checkPrivateKey(createPrivateKey(fromB64(data[TLS_KEY])));
  } catch (err) {
    return `${TLS_KEY} is not a PEM private key (${(err as Error).message})`;
  }
  if (!keyMatches) return `${TLS_KEY} does not belong to ${TLS_CERT}`;
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return `${TLS_CERT} is not signed by ${CA_CERT}`;
  return undefined;
}

export type CreateOutcome = 'created' | 'renewed' | 'kept';

/** Makes (or keeps) the CA and serving certificate. Idempotent; a concurrent writer (409) makes it read and decide again. */
export async function createCert(client: KubeClient, o: CreateOptions, log: Logger): Promise<CreateOutcome> {
  const dnsNames = serviceDnsNames(o.service, o.namespace);
  const where = { namespace: o.namespace, secret: o.secret };
  return retryOnConflict(o.retries, async () => {
    let existing: V1Secret | undefined;
    try {
      existing = await client.readSecret(o.namespace, o.secret);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (existing) {
      const problem = secretProblem(existing, dnsNames, o.renewDays);
      if (!problem) {
        log.info({ ...where, daysLeft: Math.floor(daysLeft(fromB64(existing.data![TLS_CERT]))) }, 'existing certificate is valid; kept');
        return 'kept';
      }
      log.info({ ...where, reason: problem }, 'existing certificate cannot be kept; replacing it');
    }
    const ca = await createCa(`${o.service}.${o.namespace}.svc-ca`, o.days);
    const serving = await createServingCert(dnsNames, o.days, ca);
    const data = { [TLS_CERT]: toB64(serving.cert), [TLS_KEY]: toB64(serving.key), [CA_CERT]: toB64(ca.cert) };
    if (!existing) {
      await client.createSecret(o.namespace, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: o.secret, namespace: o.namespace, labels: { 'app.kubernetes.io/managed-by': 'mlflow-irsa-webhook-bootstrap-cert' } },
        type: 'kubernetes.io/tls',
        data,
      });
      log.info({ ...where, dnsNames, days: o.days }, 'certificate created');
      return 'created';
    }
    // resourceVersion from the read stays in metadata, so a concurrent change answers 409 instead of being overwritten.
    await client.replaceSecret(o.namespace, { ...existing, data: { ...existing.data, ...data } });
    log.info({ ...where, dnsNames, days: o.days }, 'certificate renewed');
    return 'renewed';
  }, (err, n) => log.warn({ ...where, attempt: n, reason: err.message }, 'conflict; reading the Secret again'));
}

export type PatchOutcome = 'patched' | 'unchanged';

/** Writes the Secret's ca.crt into every webhook's clientConfig.caBundle. Writes nothing when all already carry it. */
export async function patchCaBundle(client: KubeClient, o: PatchOptions, log: Logger): Promise<PatchOutcome> {
  const secret = await client.readSecret(o.namespace, o.secret);
  const caBundle = secret.data?.[CA_CERT];
  if (!caBundle) throw new Error(`secret ${o.namespace}/${o.secret} has no ${CA_CERT}; run \`bootstrap-cert create\` first`);
  const ca = parseCert(fromB64(caBundle), `${CA_CERT} of secret ${o.namespace}/${o.secret}`);
  if (typeof ca === 'string') throw new Error(ca);
  return retryOnConflict(o.retries, async () => {
    const wc = await client.readWebhookConfig(o.webhookConfig);
    const webhooks = wc.webhooks ?? [];
    if (webhooks.length === 0) throw new Error(`mutatingwebhookconfiguration ${o.webhookConfig} has no webhooks to patch`);
    const stale = webhooks.filter((w) => w.clientConfig.caBundle !== caBundle).map((w) => w.name);
    if (stale.length === 0) {
      log.info({ webhookConfiguration: o.webhookConfig }, 'caBundle already current; nothing to write');
      return 'unchanged';
    }
    for (const w of webhooks) w.clientConfig.caBundle = caBundle;
    await client.replaceWebhookConfig(wc);
    log.info({ webhookConfiguration: o.webhookConfig, webhooks: stale }, 'caBundle written');
    return 'patched';
  }, (err, n) => log.warn({ webhookConfiguration: o.webhookConfig, attempt: n, reason: err.message }, 'conflict; reading the configuration again'));
}

export const usage = usageText([
  'create --config FILE --webhook-namespace NS --tls-secret NAME --service NAME [--days 3650] [--renew-days 30] [--retries 5] [--kubeconfig FILE]',
  '       mlflow-irsa-webhook bootstrap-cert patch --config FILE --webhook-namespace NS --tls-secret NAME --webhook-config NAME [--retries 5] [--kubeconfig FILE]',
  '  create makes the CA and serving certificate in the TLS Secret (kept while valid); patch writes its CA into the caBundle',
].join('\n'), [
  ['--webhook-namespace', 'namespace of the webhook Service and the TLS Secret (was --namespace)'],
  ['--tls-secret', 'the TLS Secret (tls.crt, tls.key, ca.crt) (was --secret)'],
  ['--service', 'create: the webhook Service, whose DNS names the certificate carries'],
  ['--webhook-config', 'patch: the MutatingWebhookConfiguration whose webhooks get the caBundle'],
  ['--days', 'create: validity of the CA and certificate (default 3650)'],
  ['--renew-days', 'create: replace a certificate with this many days left or fewer (default 30)'],
  ['--retries', 'attempts when a concurrent writer changes the object (409 Conflict; default 5)'],
  kubeconfigHelp,
]);
export const allowPositionals = true;
export const deprecatedOptions = { namespace: 'webhook-namespace', secret: 'tls-secret' };
export const options = {
  'webhook-namespace': { type: 'string' as const },
  'tls-secret': { type: 'string' as const },
  service: { type: 'string' as const },
  'webhook-config': { type: 'string' as const },
  days: { type: 'string' as const },
  'renew-days': { type: 'string' as const },
  retries: { type: 'string' as const },
  ...kubeconfigOption,
};

export async function run({ values, positionals, config }: CommandArgs): Promise<number> {
  const [step, ...extra] = positionals;
  if ((step !== 'create' && step !== 'patch') || extra.length > 0) {
    throw new UsageError(`expected one step, create or patch; got ${JSON.stringify(positionals.join(' ') || '(none)')}`);
  }
  const namespace = requiredOption(values, 'webhook-namespace', 'namespace of the webhook Service and TLS Secret');
  const secret = requiredOption(values, 'tls-secret', 'name of the TLS Secret');
  const retries = intOption(values, 'retries', 1, 100) ?? 5;
  const log = createLogger(config.logLevel);
  if (step === 'create') {
    const service = requiredOption(values, 'service', 'name of the webhook Service, for the certificate\'s DNS names');
    const days = intOption(values, 'days', 2, 36500) ?? 3650;
    const renewDays = intOption(values, 'renew-days', 0, 36500) ?? 30;
    if (renewDays >= days) throw new UsageError(`--renew-days ${renewDays} must be below --days ${days}, or every run would renew`);
    await createCert(await clientFromArgs(values), { namespace, secret, service, days, renewDays, retries }, log);
  } else {
    const webhookConfig = requiredOption(values, 'webhook-config', 'name of the MutatingWebhookConfiguration');
    await patchCaBundle(await clientFromArgs(values), { namespace, secret, webhookConfig, retries }, log);
  }
  return 0;
}
