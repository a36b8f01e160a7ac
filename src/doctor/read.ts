// doctor's reads, each done once: the Kubernetes objects, the served certificate, the tracking database's catalog and
// tagged experiments, the trust-policy file. Read-only: the one write-shaped call is a dry run, which stores nothing.
// Every failure becomes a `Read` that says why, for the checks to judge; nothing here decides pass or fail.
import { readFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { pemBlocks } from '../tls.js';
import { X509Certificate } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { KubeClient } from '../k8s/client.js';
import { withDatabase } from '../db/connect.js';
import { findLegacy, missingTables, readInstalled, resolvePolicy, transaction } from '../db/install.js';
import { backfillSql } from '../db/sql.js';
import { normaliseOidcProvider } from '../iam-policy.js';
import { isObject } from '../mutators/json.js';
import type { JsonObject } from '../mutators/index.js';
import { envSources } from '../mutators/overrides.js';
import {
  containerOf, dryRunPatch, POD_IDENTITY_AGENT, serviceHost, webhookService, type DatabaseFacts, type DoctorFacts, type Drift, type LeaseFacts, type Read, type ServingCertificate, type TrustFacts,
} from './checks.js';

export type DoctorApi = Pick<KubeClient,
  'version' | 'readWebhookConfig' | 'readService' | 'listEndpointSlices' | 'readSecret' | 'readConfigMap' | 'readDeployment' | 'patchDeployment'
  | 'listReplicaSets' | 'listPods' | 'readServiceAccount' | 'readLease' | 'serviceAccountIssuer' | 'readDaemonSet'>;

export interface ReadOptions {
  readonly config: Config;
  /** undefined when no client could be made (its error is in `kubeError`) */
  readonly kube?: DoctorApi;
  readonly kubeError?: string;
  /** the tracking database: a URL, or the libpq variables in env; undefined when neither was given */
  readonly database?: { readonly databaseUrl?: string; readonly env: NodeJS.ProcessEnv };
  readonly trustPolicyFile?: string;
  /** the cluster's OIDC provider from --oidc-provider, already normalised */
  readonly oidcProvider?: string;
  readonly webhookConfig: string;
  readonly webhookNamespace: string;
  readonly tlsSecret: string;
  readonly logger: Logger;
  /** where to open the TLS connection for a Service's DNS name (tests point it at a local server); default the name itself */
  readonly resolveService?: (host: string, port: number) => { host: string; port: number };
  /** each read gives up after this long, so an API server or database that never answers cannot hang doctor */
  readonly timeoutMs?: number;
}

/** How long the database gets for transient failures (starting, full) before its checks fail. */
export const DATABASE_WAIT_SECONDS = 10;
const DEFAULT_TIMEOUT_MS = 20_000;

/** Gives up on `work` after `ms`; `onTimeout` learns of it (its socket may stay open, so the caller need not wait for it). */
function withTimeout<T>(work: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`${what}: no answer within ${ms / 1000} s`));
    }, ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

export async function settle<T>(work: Promise<T>): Promise<Read<T>> {
  try {
    return { ok: true, value: await work };
  } catch (err) {
    const status = (err as { status?: unknown }).status;
    return { ok: false, error: (err as Error).message, ...(typeof status === 'number' && { status }) };
  }
}

/** The certificate chain a TLS server presents, as PEM, its own certificate first. Only reads it; verification is the check's. */
export function servedChain(host: string, port: number, servername: string, timeoutMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    // not verified here on purpose: the check verifies it against the caBundle, which is the point of the check
    const socket = connect({ host, port, servername, rejectUnauthorized: false }, () => {
      const chain: string[] = [];
      const seen = new Set<string>();
      let cert = socket.getPeerCertificate(true);
      while (cert?.raw && !seen.has(cert.fingerprint256)) {
        seen.add(cert.fingerprint256);
        chain.push(new X509Certificate(cert.raw).toString());
        cert = cert.issuerCertificate;
      }
      socket.end();
      resolve(chain);
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no TLS handshake within ${timeoutMs / 1000} s`)));
    socket.on('error', reject);
  });
}

/** The webhook's certificate: as served through its Service's DNS name (in the cluster), else from the TLS Secret. */
async function readCertificate(o: ReadOptions, kube: DoctorApi, svc: { namespace: string; name: string; port: number }, timeoutMs: number, onTimeout: () => void): Promise<Read<ServingCertificate>> {
  const host = serviceHost(svc);
  const target = o.resolveService?.(host, svc.port) ?? { host, port: svc.port };
  const served = await settle(servedChain(target.host, target.port, host, Math.min(timeoutMs, 5000)));
  if (served.ok && served.value.length > 0) return { ok: true, value: { source: `served at ${host}:${svc.port}`, chain: served.value } };
  const secret = await settle(withTimeout(kube.readSecret(o.webhookNamespace, o.tlsSecret), timeoutMs, `get secret ${o.webhookNamespace}/${o.tlsSecret}`, onTimeout));
  const where = `Secret ${o.webhookNamespace}/${o.tlsSecret}`;
  const servedError = served.ok ? 'no certificate' : served.error;
  if (!secret.ok) return { ok: false, error: `not served at ${host}:${svc.port} (${servedError}), and ${where} could not be read (${secret.error})` };
  const crt = secret.value.data?.['tls.crt'];
  if (!crt) return { ok: false, error: `not served at ${host}:${svc.port} (${servedError}), and ${where} has no tls.crt` };
  return { ok: true, value: { source: `in ${where}`, chain: pemBlocks(Buffer.from(crt, 'base64').toString('utf8')) } };
}

/** An equality selector from the Deployment's matchLabels: it narrows the lists; ownership decides what belongs. */
function labelSelector(deployment: JsonObject): string {
  const spec = isObject(deployment.spec) ? deployment.spec : {};
  const selector = isObject(spec.selector) ? spec.selector : {};
  const labels = isObject(selector.matchLabels) ? selector.matchLabels : {};
  return Object.entries(labels).map(([k, v]) => `${k}=${String(v)}`).join(',');
}

/** How many tagged experiments are not where the rule puts them, by --backfill's own survey, with the first as an example. */
async function readDrift(client: pg.Client, config: Config): Promise<Drift> {
  const sql = backfillSql(config);
  const { rows: [survey] } = await client.query<{ tagged: number; due: number; refused: number }>(sql.survey);
  const { rows: [first] } = await client.query<{ experiment_id: number; artifact_location: string | null; location: string }>(sql.due, [1]);
  return { ...survey, ...(first && { example: { experimentId: first.experiment_id, location: first.artifact_location, expected: first.location } }) };
}

async function readDatabase(o: ReadOptions, db: NonNullable<ReadOptions['database']>): Promise<Read<DatabaseFacts>> {
  const { config } = o;
  const schema = config.trigger.schema;
  return settle(withDatabase({ databaseUrl: db.databaseUrl, waitSeconds: DATABASE_WAIT_SECONDS, env: db.env }, o.logger, async (client) => {
    // read only; the installer's settings otherwise (its search_path, which the rule's SQL needs, and its lock
    // timeout), without its advisory lock
    return transaction(client, { lock: false, readOnly: true }, async () => {
      const missing = await missingTables(client, schema);
      if (missing.length > 0) return { database: client.database ?? '', missingTables: missing, installed: {} };
      const installed = await readInstalled(client, schema);
      const legacy = await findLegacy(client);
      return {
        database: client.database ?? '',
        missingTables: [],
        installed,
        ...(legacy && { legacy }),
        policy: await resolvePolicy(client, config),
        drift: await readDrift(client, config),
      };
    });
  }));
}

async function readTrust(o: ReadOptions, file: string, kube: DoctorApi | undefined, timeoutMs: number, onTimeout: () => void): Promise<TrustFacts> {
  const policy = await settle(readFile(file, 'utf8').then(
    (text) => {
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        throw new Error(`--trust-policy ${file} is not JSON (${(err as Error).message})`);
      }
    },
    (err: NodeJS.ErrnoException) => {
      throw new Error(`--trust-policy ${file}: cannot read: ${err.code ?? err.message}`);
    },
  ));
  if (o.oidcProvider) return { policy, provider: { ok: true, value: { value: o.oidcProvider, source: '--oidc-provider' } } };
  // Pod Identity's trust names the EKS service, not the cluster's issuer
  if (o.config.credentials === 'pod-identity') return { policy, provider: { ok: false, error: 'not needed with credentials pod-identity' } };
  if (!kube) return { policy, provider: { ok: false, error: 'no --oidc-provider, and the API server cannot be asked' } };
  const provider = await settle(withTimeout(kube.serviceAccountIssuer(), timeoutMs, 'get /.well-known/openid-configuration', onTimeout).then((issuer) => {
    try {
      return { value: normaliseOidcProvider(issuer), source: 'the API server\'s /.well-known/openid-configuration' };
    } catch {
      throw new Error(`the API server's issuer ${issuer} is not an EKS OIDC issuer`);
    }
  }));
  return { policy, provider };
}

export interface ReadResult {
  readonly facts: DoctorFacts;
  /** some read gave up waiting: its connection may still be open, so the process should exit without waiting for it */
  readonly timedOut: boolean;
}

/**
 * The key names of each ConfigMap and Secret the container takes all keys of (envFrom). A Secret's values are in the
 * answer, so only its keys are kept, at once; none is ever logged or shown.
 */
async function readEnvSources(kube: DoctorApi, namespace: string, container: JsonObject, k: <T>(what: string, work: () => Promise<T>) => Promise<Read<T>>): Promise<NonNullable<DoctorFacts['envSources']>> {
  const refs = Array.isArray(container.envFrom) ? container.envFrom.filter(isObject) : [];
  return Promise.all(envSources(container).map(async (source) => {
    const ref = refs.map((r) => r[`${source.kind}Ref`]).find((r) => isObject(r) && r.name === source.name);
    const optional = isObject(ref) && ref.optional === true;
    const keys = source.kind === 'configMap'
      ? await k(`get configmap ${namespace}/${source.name}`, async () => {
        const cm = await kube.readConfigMap(namespace, source.name);
        return [...Object.keys(cm.data ?? {}), ...Object.keys(cm.binaryData ?? {})];
      })
      : await k(`get secret ${namespace}/${source.name}`, async () => {
        const secret = await kube.readSecret(namespace, source.name);
        return [...Object.keys(secret.data ?? {}), ...Object.keys(secret.stringData ?? {})];
      });
    return { source, optional, keys };
  }));
}

/** Reads everything the checks judge, each once, independent reads side by side. */
export async function readFacts(o: ReadOptions): Promise<ReadResult> {
  let timedOut = false;
  const facts = await readAll(o, () => { timedOut = true; });
  return { facts, timedOut };
}

async function readAll(o: ReadOptions, onTimeout: () => void): Promise<DoctorFacts> {
  const { config } = o;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const kube = o.kube;
  const database = o.database
    ? settle(withTimeout(readDatabase(o, o.database), DATABASE_WAIT_SECONDS * 1000 + timeoutMs, 'tracking database', onTimeout)).then((r) => (r.ok ? r.value : r))
    : undefined;
  const trust = o.trustPolicyFile ? readTrust(o, o.trustPolicyFile, kube, timeoutMs, onTimeout) : undefined;
  const noApi = { ok: false as const, error: 'the Kubernetes API was not reached' };
  if (!kube) {
    return {
      api: { ok: false, error: o.kubeError ?? 'no Kubernetes client' },
      webhookConfig: noApi, deployment: noApi, serviceAccount: noApi,
      ...(config.reconcile.enabled && { lease: noApi }),
      database: await database,
      trust: await trust,
    };
  }
  const k = <T>(what: string, work: () => Promise<T>) => settle(withTimeout(work(), timeoutMs, what, onTimeout));
  const api = await k('get /version', () => kube.version());
  if (!api.ok) {
    return { api, webhookConfig: noApi, deployment: noApi, serviceAccount: noApi, ...(config.reconcile.enabled && { lease: noApi }), database: await database, trust: await trust };
  }
  const { namespace, deployment: name } = config;
  const { namespace: agentNamespace, name: agentName } = POD_IDENTITY_AGENT;
  const [webhookConfig, deployment, serviceAccount, lease, podIdentityAgent] = await Promise.all([
    k('get mutatingwebhookconfiguration', async () => JSON.parse(JSON.stringify(await kube.readWebhookConfig(o.webhookConfig))) as JsonObject),
    k('get deployment', () => kube.readDeployment(namespace, name)),
    k('get serviceaccount', () => kube.readServiceAccount(namespace, config.serviceAccount)),
    config.reconcile.enabled
      ? k('get lease', async (): Promise<LeaseFacts> => {
        const l = await kube.readLease(o.webhookNamespace, config.reconcile.leaseName);
        return { holder: l.record.holderIdentity, renewTime: l.record.renewTime, leaseDurationSeconds: l.record.leaseDurationSeconds };
      })
      : undefined,
    config.credentials === 'pod-identity' ? k('get daemonset', () => kube.readDaemonSet(agentNamespace, agentName)) : undefined,
  ]);
  const svc = webhookConfig.ok ? webhookService(webhookConfig.value) : undefined;
  const selector = deployment.ok ? labelSelector(deployment.value) : '';
  const [service, endpointSlices, certificate, dryRun, replicaSets, pods, envSources] = await Promise.all([
    svc && k('get service', () => kube.readService(svc.namespace, svc.name)),
    svc && k('list endpointslices', () => kube.listEndpointSlices(svc.namespace, svc.name)),
    svc && readCertificate(o, kube, svc, timeoutMs, onTimeout),
    deployment.ok ? k('dry-run patch', () => kube.patchDeployment(namespace, name, dryRunPatch(deployment.value, config), { dryRun: true })) : undefined,
    deployment.ok ? k('list replicasets', () => kube.listReplicaSets(namespace, selector)) : undefined,
    deployment.ok ? k('list pods', () => kube.listPods(namespace, selector)) : undefined,
    deployment.ok ? readEnvSources(kube, namespace, containerOf(deployment.value, config.container), k) : undefined,
  ]);
  return {
    api, webhookConfig, deployment, serviceAccount,
    ...(service && { service }), ...(endpointSlices && { endpointSlices }), ...(certificate && { certificate }),
    ...(dryRun && { dryRun }), ...(replicaSets && { replicaSets }), ...(pods && { pods }), ...(envSources && { envSources }),
    ...(lease && { lease }), ...(podIdentityAgent && { podIdentityAgent }),
    database: await database,
    trust: await trust,
  };
}
