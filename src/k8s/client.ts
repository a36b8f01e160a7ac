// The few Kubernetes API calls bootstrap-cert and restart-target make, on @kubernetes/client-node 1.x, and nothing else.
// The client itself is imported when a client is made, not with this module: it is large (seconds to load on a busy
// node), and usage errors, --help and the option tables must not wait for it.
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
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


/** The generated models hold Dates and class instances; the mutators reason about the API's plain JSON. */
const plain = (obj: object): JsonObject => JSON.parse(JSON.stringify(obj)) as JsonObject;

export interface KubeClient {
  /** where the client talks to, for log lines */
  readonly server: string;
  readSecret(namespace: string, name: string): Promise<V1Secret>;
  createSecret(namespace: string, secret: V1Secret): Promise<V1Secret>;
  /** PUT with the read resourceVersion: a concurrent writer makes it fail with 409 Conflict */
  replaceSecret(namespace: string, secret: V1Secret): Promise<V1Secret>;
  readWebhookConfig(name: string): Promise<V1MutatingWebhookConfiguration>;
  replaceWebhookConfig(config: V1MutatingWebhookConfiguration): Promise<V1MutatingWebhookConfiguration>;
  readDeployment(namespace: string, name: string): Promise<JsonObject>;
  /** strategic-merge patch, the content type `kubectl rollout restart` sends; returns the object as admitted */
  patchDeployment(namespace: string, name: string, patch: JsonObject): Promise<JsonObject>;
}

/**
 * A client from an explicit kubeconfig file, else the usual search: $KUBECONFIG, ~/.kube/config, then the in-cluster
 * service account (what the hook Jobs use).
 */
export async function kubeClient(kubeconfig?: string): Promise<KubeClient> {
  const { AdmissionregistrationV1Api, ApiException, AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions } = await import('@kubernetes/client-node');
  const call = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    try {
      return await request();
    } catch (err) {
      throw apiError(ApiException, what, err);
    }
  };
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  // The generated patch call picks application/json-patch+json by default; this header option overrides it.
  const strategicMerge = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
  return {
    server: kc.getCurrentCluster()?.server ?? '(unknown)',
    readSecret: (namespace, name) => call(`get secret ${namespace}/${name}`, () => core.readNamespacedSecret({ namespace, name })),
    createSecret: (namespace, body) => call(`create secret ${namespace}/${body.metadata?.name}`, () => core.createNamespacedSecret({ namespace, body })),
    replaceSecret: (namespace, body) =>
      call(`update secret ${namespace}/${body.metadata?.name}`, () => core.replaceNamespacedSecret({ namespace, name: body.metadata?.name ?? '', body })),
    readWebhookConfig: (name) => call(`get mutatingwebhookconfiguration ${name}`, () => admission.readMutatingWebhookConfiguration({ name })),
    replaceWebhookConfig: (body) =>
      call(`update mutatingwebhookconfiguration ${body.metadata?.name}`, () =>
        admission.replaceMutatingWebhookConfiguration({ name: body.metadata?.name ?? '', body })),
    readDeployment: async (namespace, name) =>
      plain(await call(`get deployment ${namespace}/${name}`, () => apps.readNamespacedDeployment({ namespace, name }))),
    patchDeployment: async (namespace, name, body) =>
      plain(await call(`patch deployment ${namespace}/${name}`, () => apps.patchNamespacedDeployment({ namespace, name, body }, strategicMerge))),
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
