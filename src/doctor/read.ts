// doctor's reads, each done once: the Kubernetes objects, the served certificate, the tracking database's catalog and
// tagged experiments, the trust-policy file. Read-only: the one write-shaped call is a dry run, which stores nothing.
// Every failure becomes a `Read` that says why, for the checks to judge; nothing here decides pass or fail.
import { readFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { pemBlocks } from '../webhook/tls.js';
import { X509Certificate } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config/config.js';
import type { Logger } from '../log.js';
import type { KubeClient, ListPage, ListRequest } from '../k8s/client.js';
import { transaction, withDatabase } from '../db/connect.js';
import { auditTableShape } from '../db/fingerprint.js';
import { findLegacy, missingTables, readInstalled } from '../db/install.js';
import { resolvePolicy, surveyPolicy } from '../db/policy.js';
import { backfillSql } from '../db/backfill.js';
import { countProxied } from '../migrate/references.js';
import { normaliseOidcProvider } from '../iam-policy.js';
import { isObject } from '../mutators/json.js';
import type { JsonObject } from '../mutators/index.js';
import { envSources } from '../mutators/overrides.js';
import {
  containerOf, deploymentSelector, POD_IDENTITY_AGENT, dryRunPatch, podFields, replicaSetFields, serviceHost, webhookService,
  type DatabaseFacts, type DoctorFacts, type Drift, type LeaseFacts, type Listing, type Read, type ServingCertificate, type TrustFacts,
} from './checks.js';

export type DoctorApi = Pick<KubeClient,
  'version' | 'readWebhookConfig' | 'readService' | 'listEndpointSlices' | 'proxyServiceGet' | 'readSecret' | 'readConfigMap' | 'readDeployment' | 'patchDeployment'
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
  /** the page size and cap of the pod and ReplicaSet lists (default LIST_LIMITS) */
  readonly listLimits?: { readonly pageSize: number; readonly maxExamined: number };
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

/**
 * The webhook's certificate: as its pods serve it, read through the API server's service proxy (the way the API server
 * reaches them, so a NetworkPolicy that admits only the API server does not stand in the way); else over TLS through
 * the Service's DNS name (doctor inside the cluster with an older webhook); else from the TLS Secret.
 */
async function readCertificate(o: ReadOptions, kube: DoctorApi, svc: { namespace: string; name: string; port: number }, timeoutMs: number, onTimeout: () => void): Promise<Read<ServingCertificate>> {
  const host = serviceHost(svc);
  const proxied = await settle(withTimeout(kube.proxyServiceGet(svc.namespace, `https:${svc.name}:${svc.port}`, 'certificate'), timeoutMs, 'get the served certificate through the service proxy', onTimeout));
  const proxiedChain = proxied.ok ? pemBlocks(proxied.value) : [];
  if (proxiedChain.length > 0) return { ok: true, value: { source: `served at ${host}:${svc.port} (read through the API server's service proxy)`, chain: proxiedChain } };
  const target = o.resolveService?.(host, svc.port) ?? { host, port: svc.port };
  const served = await settle(servedChain(target.host, target.port, host, Math.min(timeoutMs, 5000)));
  if (served.ok && served.value.length > 0) return { ok: true, value: { source: `served at ${host}:${svc.port}`, chain: served.value } };
  const secret = await settle(withTimeout(kube.readSecret(o.webhookNamespace, o.tlsSecret), timeoutMs, `get secret ${o.webhookNamespace}/${o.tlsSecret}`, onTimeout));
  const where = `Secret ${o.webhookNamespace}/${o.tlsSecret}`;
  const notServed = `not served at ${host}:${svc.port} (through the API server's service proxy: ${proxied.ok ? 'no certificate' : proxied.error}; directly: ${served.ok ? 'no certificate' : served.error})`;
  if (!secret.ok) return { ok: false, error: `${notServed}, and ${where} could not be read (${secret.error})` };
  const crt = secret.value.data?.['tls.crt'];
  if (!crt) return { ok: false, error: `${notServed}, and ${where} has no tls.crt` };
  return { ok: true, value: { source: `in ${where}`, chain: pemBlocks(Buffer.from(crt, 'base64').toString('utf8')) } };
}

/**
 * How doctor lists pods and ReplicaSets: in pages of `pageSize`, looking at no more than `maxExamined` of each. A
 * namespace can hold thousands of pods that carry mlflow's labels (anyone who may create pods there can copy them),
 * each with up to 256 KiB of annotations; only a page is in memory at a time (25 such pods are 6.4 MiB of text, and a
 * few times that once parsed), and only what the checks read is kept. The Deployment's own pods are a handful.
 */
export const LIST_LIMITS = { pageSize: 25, maxExamined: 500 } as const;

/** Reads a list page by page, following `continue`, until the last page or until `maxExamined` objects were seen. */
export async function listPaged(
  list: (page: ListRequest) => Promise<ListPage>, labelSelector: string, keep: ListRequest['keep'], limits: { pageSize: number; maxExamined: number } = LIST_LIMITS,
): Promise<Listing> {
  const items: JsonObject[] = [];
  let examined = 0;
  let token: string | undefined;
  // a server may answer pages with no items and a `continue` (all filtered out): count pages too, so none goes on forever
  const maxPages = 2 * Math.ceil(limits.maxExamined / limits.pageSize);
  for (let pages = 0; pages < maxPages && examined < limits.maxExamined; pages++) {
    const page = await list({ labelSelector, limit: Math.min(limits.pageSize, limits.maxExamined - examined), keep, ...(token !== undefined && { continue: token }) });
    examined += page.listed;
    items.push(...page.items);
    token = page.continue;
    if (token === undefined) return { items, examined, complete: true };
  }
  return { items, examined, complete: false };
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
      const policy = await resolvePolicy(client, config);
      // audit mode: what the audit table recorded, judged by the policy of today (one example is enough for the check);
      // a table of another shape is reported as such (installedDifferences), not queried
      const audit = policy.policy?.mode === 'audit' && installed.auditTable?.shape === auditTableShape()
        ? await surveyPolicy(client, config, policy.policy, { audited: true, limit: 1 }) : undefined;
      return {
        database: client.database ?? '',
        missingTables: [],
        installed,
        ...(legacy && { legacy }),
        policy,
        ...(audit && { audit }),
        drift: await readDrift(client, config),
        proxiedReferences: await countProxied(client, schema),
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
  const limits = o.listLimits ?? LIST_LIMITS;
  // the Deployment's ReplicaSets first, then the pods those own: everything else is dropped page by page
  const owned = async (d: JsonObject): Promise<[Read<Listing>, Read<Listing>]> => {
    const selector = deploymentSelector(d);
    const replicaSets = await k('list replicasets', () => listPaged((p) => kube.listReplicaSets(namespace, p), selector, replicaSetFields(d), limits));
    if (!replicaSets.ok) return [replicaSets, { ok: false, error: 'not listed: the ReplicaSets could not be' }];
    return [replicaSets, await k('list pods', () => listPaged((p) => kube.listPods(namespace, p), selector, podFields(replicaSets.value.items), limits))];
  };
  const [service, endpointSlices, certificate, dryRun, [replicaSets, pods] = [], envSources] = await Promise.all([
    svc && k('get service', () => kube.readService(svc.namespace, svc.name)),
    svc && k('list endpointslices', () => kube.listEndpointSlices(svc.namespace, svc.name)),
    svc && readCertificate(o, kube, svc, timeoutMs, onTimeout),
    deployment.ok ? k('dry-run patch', () => kube.patchDeployment(namespace, name, dryRunPatch(deployment.value, config), { dryRun: true })) : undefined,
    deployment.ok ? owned(deployment.value) : undefined,
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
