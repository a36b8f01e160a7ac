// The few Kubernetes API calls the commands make (bootstrap-cert, restart-target, the reconcile loop, doctor's reads), on
// @kubernetes/client-node 1.x, and nothing else.
// The client itself is imported when a client is made, not with this module: it is large (seconds to load on a busy
// node), and usage errors, --help and the option tables must not wait for it.
import type { V1ConfigMap, V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import type { JsonObject } from '../mutators/index.js';

/** An API call that failed, with the API server's own Status reason and message (never the request body). */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(
    /** the HTTP status; not named `code`, which Node reserves for string error codes */
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.status === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.status === 409;
export const isForbidden = (err: unknown): boolean => err instanceof KubeApiError && err.status === 403;

type ApiExceptionClass = typeof import('@kubernetes/client-node').ApiException;

/** Turns the generated client's ApiException (whose message embeds the raw body and headers) into one clear line. */
function apiError(ApiException: ApiExceptionClass, what: string, err: unknown): Error {
  if (!(err instanceof ApiException)) return err as Error;
  let status: { reason?: string; message?: string } = {};
  if (typeof err.body === 'string') {
    try {
      status = JSON.parse(err.body);
    } catch {
      status = { message: err.body.slice(0, 200) };
    }
  } else if (err.body && typeof err.body === 'object') {
    status = err.body as typeof status;
  }
  const reason = status.reason ?? (err.code === 401 ? 'Unauthorized' : 'Unknown');
  return new KubeApiError(err.code, reason, `${what}: ${err.code} ${reason}${status.message ? `: ${status.message}` : ''}`);
}


/**
 * One line about a kubeconfig that could not be loaded. The YAML parser's message goes on, after its first line, with
 * an excerpt of the file around the fault: in a kubeconfig that is a token, a client key or a password. Only the
 * reason and the position are kept (and a message of any other shape is cut to its first line).
 */
export function parseErrorLine(err: unknown): string {
  const e = err as { name?: unknown; reason?: unknown; mark?: { line?: unknown; column?: unknown }; message?: unknown };
  if (e?.name === 'YAMLException' && typeof e.reason === 'string' && typeof e.mark?.line === 'number' && typeof e.mark.column === 'number') {
    return `not valid YAML: ${e.reason} (line ${e.mark.line + 1}, column ${e.mark.column + 1})`;
  }
  return String(e?.message ?? err).split('\n', 1)[0];
}

/** The generated models hold Dates and class instances; the mutators reason about the API's plain JSON. */
const plain = (obj: object): JsonObject => JSON.parse(JSON.stringify(obj)) as JsonObject;

export interface KubeClient {
  /** where the client talks to, for log lines */
  readonly server: string;
  readSecret(namespace: string, name: string): Promise<V1Secret>;
  readConfigMap(namespace: string, name: string): Promise<V1ConfigMap>;
  createSecret(namespace: string, secret: V1Secret): Promise<V1Secret>;
  /** PUT with the read resourceVersion: a concurrent writer makes it fail with 409 Conflict */
  replaceSecret(namespace: string, secret: V1Secret): Promise<V1Secret>;
  readWebhookConfig(name: string): Promise<V1MutatingWebhookConfiguration>;
  replaceWebhookConfig(config: V1MutatingWebhookConfiguration): Promise<V1MutatingWebhookConfiguration>;
  readDeployment(namespace: string, name: string): Promise<JsonObject>;
  /**
   * An object is sent as a strategic-merge patch, the content type `kubectl rollout restart` sends; a list of
   * operations as a JSON patch. Returns the object as admitted. With `dryRun`, the API server runs admission (our
   * webhook declares sideEffects None, so it is called) and stores nothing.
   */
  patchDeployment(namespace: string, name: string, patch: JsonObject | readonly JsonObject[], opts?: { dryRun?: boolean }): Promise<JsonObject>;
  readServiceAccount(namespace: string, name: string): Promise<JsonObject>;
  /** JSON merge patch (annotations are a map, so merge and strategic merge agree) */
  patchServiceAccount(namespace: string, name: string, patch: JsonObject): Promise<JsonObject>;
  readLease(namespace: string, name: string): Promise<Lease>;
  /**
   * PUT of the Lease as read with only its spec's election fields replaced, as client-go's LeaseLock does: labels,
   * annotations, owner references and every other field survive. 409 Conflict when another writer came first.
   */
  updateLease(read: Lease, record: LeaseRecord): Promise<Lease>;
  /** POST of a new Lease with these labels and annotations; 409 AlreadyExists when another replica made it first */
  createLease(namespace: string, name: string, metadata: LeaseMetadata, record: LeaseRecord): Promise<Lease>;
  /** the API server's version (GET /version, readable by everyone) */
  version(): Promise<string>;
  readService(namespace: string, name: string): Promise<JsonObject>;
  /** the EndpointSlices of one Service (label kubernetes.io/service-name) */
  listEndpointSlices(namespace: string, service: string): Promise<JsonObject[]>;
  /** one page of the pods matching a label selector (`limit`, `continue`), each item reduced by `keep` as it arrives */
  listPods(namespace: string, page: ListRequest): Promise<ListPage>;
  listReplicaSets(namespace: string, page: ListRequest): Promise<ListPage>;
  /**
   * GET `path` of a Service's pods through the API server's service proxy (services/proxy, the name given as
   * `https:<service>:<port>`), as text: the API server reaches the pods, the caller needs no network path to them.
   */
  proxyServiceGet(namespace: string, name: string, path: string): Promise<string>;
  readDaemonSet(namespace: string, name: string): Promise<JsonObject>;
  /** the service-account token issuer from the API server's OIDC discovery document (/.well-known/openid-configuration) */
  serviceAccountIssuer(): Promise<string>;
  /**
   * Watches the one Deployment (fieldSelector metadata.name, which RBAC by resourceName allows) and reports each
   * event's object as plain JSON; `onEnd` runs once when the stream ends or fails. Returns a stop function.
   */
  watchDeployment(namespace: string, name: string, onObject: (type: string, object: JsonObject) => void, onEnd: (err?: Error) => void): Promise<() => void>;
}

/** One page of a paged list (the API's `limit` and `continue`). */
export interface ListRequest {
  readonly labelSelector: string;
  /** at most this many items (the API server may send fewer, and still a `continue`) */
  readonly limit: number;
  /** the previous page's `metadata.continue`; absent for the first page */
  readonly continue?: string;
  /**
   * What to keep of each item, or undefined to drop it: applied to each item of the page as it arrives, so that only
   * what the caller reads outlives the page (annotations, managedFields and the rest go with it).
   */
  readonly keep: (item: JsonObject) => JsonObject | undefined;
}

export interface ListPage {
  /** what `keep` kept of the page's items */
  readonly items: JsonObject[];
  /** how many items the page held */
  readonly listed: number;
  /** the token for the next page; absent on the last */
  readonly continue?: string;
}

/** The coordination.k8s.io/v1 Lease spec fields leader election uses; times are epoch milliseconds. */
export interface LeaseRecord {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: number;
  readonly renewTime?: number;
  readonly leaseTransitions?: number;
}

/** A Lease as read: its election record, and the whole object, which an update writes back with only the record changed. */
export interface Lease {
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion?: string;
  readonly record: LeaseRecord;
  /** the object as the client read it; only the client looks inside */
  readonly object: unknown;
}

/** What a Lease the loop creates carries besides its spec: the chart's labels and Helm's ownership annotations. */
export interface LeaseMetadata {
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

/**
 * A client from an explicit kubeconfig file, else the usual search: $KUBECONFIG, ~/.kube/config, then the in-cluster
 * service account (what the hook Jobs use).
 */
export async function kubeClient(kubeconfig?: string): Promise<KubeClient> {
  const {
    AdmissionregistrationV1Api, ApiException, AppsV1Api, CoordinationV1Api, CoreV1Api, DiscoveryV1Api, KubeConfig, PatchStrategy, V1MicroTime,
    VersionApi, Watch, WellKnownApi, setHeaderOptions,
  } = await import('@kubernetes/client-node');
  const call = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    try {
      return await request();
    } catch (err) {
      throw apiError(ApiException, what, err);
    }
  };
  const kc = new KubeConfig();
  try {
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(`cannot load the kubeconfig ${kubeconfig ?? process.env.KUBECONFIG ?? '(default)'}: ${parseErrorLine(err)}`);
  }
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const items = (list: { items: object[] }) => list.items.map(plain);
  // `keep` sees the generated model (its fields are the API's, its times Dates); only what it returns is made plain JSON
  const page = (list: { items: object[]; metadata?: { _continue?: string } }, keep: ListRequest['keep']): ListPage => ({
    items: list.items.flatMap((item) => {
      const kept = keep(item as JsonObject);
      return kept ? [plain(kept)] : [];
    }),
    listed: list.items.length,
    ...(list.metadata?._continue ? { continue: list.metadata._continue } : {}),
  });
  const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  // The generated deserialiser leaves MicroTime fields as the API's strings (its type is unknown to it), Dates elsewhere.
  const ms = (d: Date | string | undefined) => (d === undefined || d === null ? undefined : new Date(d).getTime());
  // Lease times are MicroTime: the API server refuses them without six fraction digits, which V1MicroTime writes.
  const micro = (t: number | undefined) => (t === undefined ? undefined : new V1MicroTime(t));
  type V1Lease = import('@kubernetes/client-node').V1Lease;
  const lease = (l: V1Lease): Lease => ({
    namespace: l.metadata?.namespace ?? '',
    name: l.metadata?.name ?? '',
    resourceVersion: l.metadata?.resourceVersion,
    record: {
      holderIdentity: l.spec?.holderIdentity || undefined,
      leaseDurationSeconds: l.spec?.leaseDurationSeconds,
      acquireTime: ms(l.spec?.acquireTime),
      renewTime: ms(l.spec?.renewTime),
      leaseTransitions: l.spec?.leaseTransitions,
    },
    object: l,
  });
  // The record's fields replace the spec's election fields (an absent one is cleared, as client-go does); other spec
  // fields (strategy, preferredHolder) stay as read.
  const leaseSpec = (spec: V1Lease['spec'], r: LeaseRecord): V1Lease['spec'] => ({
    ...spec,
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    acquireTime: micro(r.acquireTime),
    renewTime: micro(r.renewTime),
    leaseTransitions: r.leaseTransitions,
  });
  // The generated patch call picks application/json-patch+json by default; these header options say which one is sent.
  const strategicMerge = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
  const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
  return {
    server: kc.getCurrentCluster()?.server ?? '(unknown)',
    readSecret: (namespace, name) => call(`get secret ${namespace}/${name}`, () => core.readNamespacedSecret({ namespace, name })),
    readConfigMap: (namespace, name) => call(`get configmap ${namespace}/${name}`, () => core.readNamespacedConfigMap({ namespace, name })),
    createSecret: (namespace, body) => call(`create secret ${namespace}/${body.metadata?.name}`, () => core.createNamespacedSecret({ namespace, body })),
    replaceSecret: (namespace, body) =>
      call(`update secret ${namespace}/${body.metadata?.name}`, () => core.replaceNamespacedSecret({ namespace, name: body.metadata?.name ?? '', body })),
    readWebhookConfig: (name) => call(`get mutatingwebhookconfiguration ${name}`, () => admission.readMutatingWebhookConfiguration({ name })),
    replaceWebhookConfig: (body) =>
      call(`update mutatingwebhookconfiguration ${body.metadata?.name}`, () =>
        admission.replaceMutatingWebhookConfiguration({ name: body.metadata?.name ?? '', body })),
    readDeployment: async (namespace, name) =>
      plain(await call(`get deployment ${namespace}/${name}`, () => apps.readNamespacedDeployment({ namespace, name }))),
    patchDeployment: async (namespace, name, body, opts) =>
      plain(await call(`patch deployment ${namespace}/${name}${opts?.dryRun ? ' (dry run)' : ''}`, () =>
        apps.patchNamespacedDeployment({ namespace, name, body, ...(opts?.dryRun ? { dryRun: 'All' } : {}) }, Array.isArray(body) ? jsonPatch : strategicMerge))),
    readServiceAccount: async (namespace, name) =>
      plain(await call(`get serviceaccount ${namespace}/${name}`, () => core.readNamespacedServiceAccount({ namespace, name }))),
    patchServiceAccount: async (namespace, name, body) =>
      plain(await call(`patch serviceaccount ${namespace}/${name}`, () => core.patchNamespacedServiceAccount({ namespace, name, body }, mergePatch))),
    readLease: async (namespace, name) => lease(await call(`get lease ${namespace}/${name}`, () => coordination.readNamespacedLease({ namespace, name }))),
    updateLease: async (read, r) => {
      const object = read.object as V1Lease;
      return lease(await call(`update lease ${read.namespace}/${read.name}`, () => coordination.replaceNamespacedLease({
        namespace: read.namespace,
        name: read.name,
        body: { ...object, spec: leaseSpec(object.spec, r) },
      })));
    },
    createLease: async (namespace, name, metadata, r) =>
      lease(await call(`create lease ${namespace}/${name}`, () => coordination.createNamespacedLease({
        namespace,
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace, labels: { ...metadata.labels }, annotations: { ...metadata.annotations } },
          spec: leaseSpec({}, r),
        },
      }))),
    version: async () => (await call('get /version', () => kc.makeApiClient(VersionApi).getCode())).gitVersion,
    readService: async (namespace, name) => plain(await call(`get service ${namespace}/${name}`, () => core.readNamespacedService({ namespace, name }))),
    listEndpointSlices: async (namespace, service) => items(await call(`list endpointslices in ${namespace}`, () =>
      discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${service}` }))),
    proxyServiceGet: (namespace, name, path) =>
      call(`get services/proxy ${namespace}/${name}/${path}`, () => core.connectGetNamespacedServiceProxyWithPath({ namespace, name, path })),
    listPods: async (namespace, { labelSelector, limit, continue: token, keep }) =>
      page(await call(`list pods in ${namespace}`, () => core.listNamespacedPod({ namespace, labelSelector, limit, _continue: token })), keep),
    listReplicaSets: async (namespace, { labelSelector, limit, continue: token, keep }) =>
      page(await call(`list replicasets in ${namespace}`, () => apps.listNamespacedReplicaSet({ namespace, labelSelector, limit, _continue: token })), keep),
    readDaemonSet: async (namespace, name) => plain(await call(`get daemonset ${namespace}/${name}`, () => apps.readNamespacedDaemonSet({ namespace, name }))),
    serviceAccountIssuer: async () => {
      const doc: unknown = await call('get /.well-known/openid-configuration', () => kc.makeApiClient(WellKnownApi).getServiceAccountIssuerOpenIDConfiguration());
      const parsed = typeof doc === 'string' ? JSON.parse(doc) : doc;
      const issuer = (parsed as { issuer?: unknown } | null)?.issuer;
      if (typeof issuer !== 'string') throw new Error('the OIDC discovery document names no issuer');
      return issuer;
    },
    watchDeployment: async (namespace, name, onObject, onEnd) => {
      const controller = await new Watch(kc).watch(
        `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`,
        { fieldSelector: `metadata.name=${name}`, allowWatchBookmarks: false },
        (type: string, object: unknown) => onObject(type, object as JsonObject),
        (err: unknown) => onEnd(err ? (err instanceof Error ? err : new Error(String(err))) : undefined),
      );
      return () => controller.abort();
    },
  };
}

/** Runs `attempt` again after a 409 Conflict (another writer changed the object since we read it), up to `tries` times. */
export async function retryOnConflict<T>(tries: number, attempt: (n: number) => Promise<T>, onConflict?: (err: Error, n: number) => void): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (!isConflict(err) || n >= tries) throw err;
      onConflict?.(err as Error, n);
    }
  }
}
