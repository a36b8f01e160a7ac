// A stand-in Kubernetes API server over real TLS: the real paths, verbs, patch content types, resourceVersion conflicts and recorded Status bodies.
import { createServer, request as httpsRequest, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import fastJsonPatch from 'fast-json-patch';
import { stringify } from 'yaml';
import { createCa, createServingCert } from '../../src/webhook/tls.js';
import { root } from './fixtures.js';

const fixtureDir = join(root, 'test/fixtures/k8s');

/** A recorded API response body from test/fixtures/k8s. */
export function k8sFixture(name: string): any {
  return JSON.parse(readFileSync(join(fixtureDir, `${name}.json`), 'utf8'));
}

/** A recorded Status body (404, 409, 415) with the resource, group and name of this request filled in. */
function statusBody(fixture: string, resource = '', group = '', name = ''): any {
  const text = readFileSync(join(fixtureDir, `${fixture}.json`), 'utf8')
    .replaceAll('{{resource}}', resource).replaceAll('{{group}}', group).replaceAll('{{name}}', name);
  const body = JSON.parse(text);
  if (body.details && !group) delete body.details.group;
  return body;
}

export interface RecordedRequest {
  method: string;
  path: string;
  /** the Content-Type without parameters, or undefined when none was sent */
  contentType?: string;
  body?: any;
}

interface Route {
  group: string;
  resource: string;
  kind: string;
  apiVersion: string;
  namespace?: string;
  name?: string;
  /** the object's own path, for items; the collection's for POST */
  path: string;
}

// The kinds the commands touch, at the paths the real API serves them.
const ROUTES: Array<{ re: RegExp; group: string; resource: string; kind: string; apiVersion: string; namespaced: boolean }> = [
  // the service proxy subresource: GET .../services/<scheme>:<name>:<port>/proxy/<path>, RBAC resource services/proxy
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/]+)\/proxy(?:\/.*)?$/, group: '', resource: 'services/proxy', kind: 'ServiceProxy', apiVersion: 'v1', namespaced: true },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/, group: '', resource: 'secrets', kind: 'Secret', apiVersion: 'v1', namespaced: true },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/configmaps(?:\/([^/]+))?$/, group: '', resource: 'configmaps', kind: 'ConfigMap', apiVersion: 'v1', namespaced: true },
  { re: /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments(?:\/([^/]+))?$/, group: 'apps', resource: 'deployments', kind: 'Deployment', apiVersion: 'apps/v1', namespaced: true },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts(?:\/([^/]+))?$/, group: '', resource: 'serviceaccounts', kind: 'ServiceAccount', apiVersion: 'v1', namespaced: true },
  { re: /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/, group: 'coordination.k8s.io', resource: 'leases', kind: 'Lease', apiVersion: 'coordination.k8s.io/v1', namespaced: true },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/services(?:\/([^/]+))?$/, group: '', resource: 'services', kind: 'Service', apiVersion: 'v1', namespaced: true },
  { re: /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?$/, group: '', resource: 'pods', kind: 'Pod', apiVersion: 'v1', namespaced: true },
  { re: /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/replicasets(?:\/([^/]+))?$/, group: 'apps', resource: 'replicasets', kind: 'ReplicaSet', apiVersion: 'apps/v1', namespaced: true },
  { re: /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/daemonsets(?:\/([^/]+))?$/, group: 'apps', resource: 'daemonsets', kind: 'DaemonSet', apiVersion: 'apps/v1', namespaced: true },
  { re: /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices(?:\/([^/]+))?$/, group: 'discovery.k8s.io', resource: 'endpointslices', kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', namespaced: true },
  {
    re: /^\/apis\/admissionregistration\.k8s\.io\/v1\/mutatingwebhookconfigurations(?:\/([^/]+))?$/,
    group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', kind: 'MutatingWebhookConfiguration',
    apiVersion: 'admissionregistration.k8s.io/v1', namespaced: false,
  },
];

function route(pathname: string): Route | undefined {
  for (const r of ROUTES) {
    const m = r.re.exec(pathname);
    if (!m) continue;
    const [namespace, name] = r.namespaced ? [m[1], m[2]] : [undefined, m[1]];
    return { group: r.group, resource: r.resource, kind: r.kind, apiVersion: r.apiVersion, namespace, name: name === undefined ? undefined : decodeURIComponent(name), path: pathname };
  }
  return undefined;
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: any, patch: any): any {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * Whether an object's labels match a label selector in the API's query syntax: equality (`k=v`, `k==v`, `k!=v`) and
 * existence (`k`, `!k`) terms; set-based terms are refused (400), as they are not modelled.
 */
function matchesSelector(labels: Record<string, string>, selector: string): boolean {
  return selector.split(',').filter(Boolean).every((term) => {
    const m = /^(!?)([^=!]+?)(?:(==|=|!=)(.*))?$/.exec(term.trim());
    if (!m || / (in|notin) /.test(term)) throw new Error(`stub: label selector term ${JSON.stringify(term)} is not modelled`);
    const [, not, key, op, value] = m;
    if (!op) return not ? !(key in labels) : key in labels;
    return op === '!=' ? labels[key] !== value : labels[key] === value;
  });
}

const hasArray = (v: unknown): boolean =>
  Array.isArray(v) || (v !== null && typeof v === 'object' && Object.values(v).some(hasArray));

/** An RBAC rule as a Role or ClusterRole states it, with the Role's namespace (none for a ClusterRole). */
export interface RbacRule {
  namespace?: string;
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

/** The RBAC verb of a request, as the API server's authorizer names it. */
function rbacVerb(method: string, named: boolean, watch: boolean): string {
  if (method === 'GET') return named ? 'get' : watch ? 'watch' : 'list';
  return ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method] ?? method.toLowerCase();
}

export interface AdmissionHook {
  /** https URL of the webhook's /mutate, called for Deployment writes like the API server calls it */
  url: string;
  ca: string;
}

export interface K8sStub {
  /** https://127.0.0.1:PORT */
  readonly url: string;
  /** a kubeconfig file naming this server, its CA and a bearer token */
  readonly kubeconfig: string;
  readonly requests: RecordedRequest[];
  /** stores an object at its item path, as if created earlier (undefined: deletes it) */
  seed(path: string, object: any): void;
  object(path: string): any;
  /** answers the next `times` requests of this method and path (query included) with the recorded Status fixture (and its code), before any other logic */
  failNext(method: string, path: string, fixture: string, times?: number): void;
  /** the API server calls this webhook on Deployment writes (unset: none is called, as with failurePolicy Ignore and no webhook) */
  admission?: AdmissionHook;
  /** call the webhook only for dry-run requests (a webhook reachable for the rehearsal, gone for the real write) */
  admitDryRunOnly?: boolean;
  /**
   * When set, requests for resources are authorised against these rules like the API server's RBAC authorizer (by
   * verb, group, resource, namespace and resourceNames; a list or watch by fieldSelector metadata.name=<n> counts as
   * naming n) and refused with 403 otherwise. Non-resource paths (/version, discovery) stay open, as their default
   * bindings make them. Each allowed request records "<rule index> <verb>" in `rbacUsed`.
   */
  rbac?: RbacRule[];
  readonly rbacUsed: Set<string>;
  /** the issuer /.well-known/openid-configuration names (unset: 404, as with the discovery endpoint off) */
  issuer?: string;
  /**
   * Backends of the service proxy (GET /api/v1/namespaces/<ns>/services/https:<name>:<port>/proxy/<path>), by
   * "<namespace>/<name>": the base URL a request is forwarded to, over TLS without verifying the backend's certificate,
   * as the real API server's service proxy does. A Service not listed answers 503, as one without endpoints does.
   */
  services?: Map<string, string>;
  /** open watch streams on this collection path */
  watching(collection: string): number;
  /** accepts the requests it matches but never answers them (an API server that hangs) */
  hang?: (method: string, path: string) => boolean;
  /** stops answering (connections refused, watches cut), keeping its objects */
  pause(): Promise<void>;
  /** answers again on the same port */
  resume(): Promise<void>;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** Posts an AdmissionReview to the webhook and applies its JSON patch, as the API server's mutating admission does. */
async function admit(hook: AdmissionHook, object: any, oldObject: any, operation: string, dryRun = false): Promise<any> {
  const review = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
      resource: { group: 'apps', version: 'v1', resource: 'deployments' },
      requestKind: { group: 'apps', version: 'v1', kind: 'Deployment' },
      requestResource: { group: 'apps', version: 'v1', resource: 'deployments' },
      name: object.metadata?.name,
      namespace: object.metadata?.namespace,
      operation,
      userInfo: { username: 'system:serviceaccount:mlflow-irsa-webhook:mlflow-irsa-webhook-hooks' },
      object,
      oldObject,
      dryRun,
      options: { kind: 'UpdateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest(hook.url, { method: 'POST', ca: hook.ca, headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`webhook answered ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify(review));
  });
  const answer = JSON.parse(text).response;
  if (!answer.patch) return object;
  const ops = JSON.parse(Buffer.from(answer.patch, 'base64').toString('utf8'));
  return fastJsonPatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
}

export async function startK8sStub(): Promise<K8sStub> {
  const ca = await createCa('k8s-stub-ca', 1);
  const serving = await createServingCert(['localhost'], 1, ca);
  const objects = new Map<string, any>();
  const failures: Array<{ method: string; path: string; fixture: string; times: number }> = [];
  const requests: RecordedRequest[] = [];
  // open watch streams: collection path + the one name their fieldSelector names
  const watchers = new Set<{ collection: string; name?: string; res: ServerResponse }>();
  const notify = (path: string, type: string, object: any) => {
    for (const w of watchers) {
      if (`${w.collection}/${object.metadata.name}` === path && (!w.name || w.name === object.metadata.name)) w.res.write(`${JSON.stringify({ type, object })}\n`);
    }
  };
  let resourceVersion = 1000;
  const nextVersion = () => String(++resourceVersion);

  const stub: K8sStub = {
    url: '',
    kubeconfig: '',
    requests,
    rbacUsed: new Set<string>(),
    seed(path, object) {
      if (object === undefined) objects.delete(path);
      else objects.set(path, structuredClone(object));
    },
    object: (path) => objects.get(path),
    failNext(method, path, fixture, times = 1) {
      failures.push({ method, path, fixture, times });
    },
    watching: (collection) => [...watchers].filter((w) => w.collection === collection).length,
    close: async () => {},
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://stub');
    const text = await readBody(req);
    const contentType = req.headers['content-type']?.split(';')[0].trim();
    let body: any;
    if (text) body = JSON.parse(text);
    requests.push({ method: req.method ?? '', path: url.pathname + url.search, contentType, body });
    if (stub.hang?.(req.method ?? '', url.pathname + url.search)) return;

    if (req.method === 'GET' && url.pathname === '/version') {
      return send(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.4-eks-2d5f260', platform: 'linux/amd64' });
    }
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
      if (!stub.issuer) return send(res, 404, statusBody('status-path-not-found'));
      return send(res, 200, { issuer: stub.issuer, jwks_uri: `${stub.issuer}/keys`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] });
    }
    const r = route(url.pathname);
    if (!r) return send(res, 404, statusBody('status-path-not-found'));
    if (stub.rbac) {
      const verb = rbacVerb(req.method ?? '', Boolean(r.name), url.searchParams.get('watch') === 'true');
      const name = r.name ?? /^metadata\.name=(.+)$/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
      const allowed = stub.rbac.findIndex((rule) => (rule.namespace === undefined || rule.namespace === r.namespace)
        && rule.apiGroups.includes(r.group) && rule.resources.includes(r.resource) && rule.verbs.includes(verb)
        && (!rule.resourceNames?.length || (name !== undefined && rule.resourceNames.includes(name))));
      if (allowed < 0) {
        const what = r.group ? `${r.resource}.${r.group}` : r.resource;
        return send(res, 403, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403,
          message: `${what}${name ? ` "${name}"` : ''} is forbidden: User "system:serviceaccount:stub:doctor" cannot ${verb} resource "${r.resource}" in API group "${r.group}"${r.namespace ? ` in the namespace "${r.namespace}"` : ' at the cluster scope'}`,
          details: { name, group: r.group, kind: r.resource } });
      }
      stub.rbacUsed.add(`${allowed} ${verb}`);
    }
    // a failure registered for a path with a query (…?dryRun=All) hits only that request; one without, any query-less one
    const failure = failures.find((f) => f.method === req.method && f.path === url.pathname + url.search && f.times > 0);
    if (failure) {
      failure.times--;
      const status = statusBody(failure.fixture, r.resource, r.group, r.name ?? body?.metadata?.name);
      return send(res, status.code, status);
    }
    if (r.kind === 'ServiceProxy') return proxyToService(r, url, req.method ?? '', res);
    const current = r.name ? objects.get(r.path) : undefined;
    const notFound = () => send(res, 404, statusBody('status-not-found', r.resource, r.group, r.name));

    const dryRun = url.searchParams.get('dryRun') === 'All';
    const store = async (next: any, operation: string, code: number, path: string) => {
      let admitted = structuredClone(next);
      const hook = stub.admission && (dryRun || !stub.admitDryRunOnly) ? stub.admission : undefined;
      if (r.kind === 'Deployment' && hook) admitted = await admit(hook, next, current ?? null, operation, dryRun);
      // a dry run is admitted like the real request and answered, but never stored nor seen by watches
      if (dryRun) return send(res, code, admitted);
      admitted.metadata = { ...admitted.metadata, resourceVersion: nextVersion() };
      objects.set(path, admitted);
      send(res, code, admitted);
      notify(path, operation === 'CREATE' ? 'ADDED' : 'MODIFIED', admitted);
    };
    // The API server stores Lease times as MicroTime and refuses other precisions.
    const micro = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
    if (r.kind === 'Lease' && body?.spec) {
      for (const key of ['acquireTime', 'renewTime']) {
        if (body.spec[key] !== undefined && !micro.test(body.spec[key])) {
          return send(res, 400, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'BadRequest', code: 400,
            message: `Lease in version "v1" cannot be handled as a Lease: parsing time "${body.spec[key]}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse` });
        }
      }
    }

    switch (req.method) {
      case 'GET':
        if (!r.name && url.searchParams.get('watch') === 'true') {
          // A watch: the current object as ADDED, then every change as MODIFIED, one JSON object per line.
          const name = /^metadata\.name=(.+)$/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
          const w = { collection: r.path, name, res };
          res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
          for (const [path, obj] of objects) if (path.startsWith(`${r.path}/`) && (!name || obj.metadata.name === name)) res.write(`${JSON.stringify({ type: 'ADDED', object: obj })}\n`);
          watchers.add(w);
          res.on('close', () => watchers.delete(w));
          return;
        }
        if (!r.name) {
          // A list: the objects under the collection path that match the labelSelector, in a <Kind>List, in the order
          // of their keys (names), as etcd holds them. With `limit`, one page: at most that many items and, when more
          // match, `metadata.continue`, an opaque token that `continue=` turns into the next page (the real API's
          // token is base64 JSON naming the key to start at, as this one is).
          const badRequest = (message: string) => send(res, 400, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'BadRequest', code: 400, message });
          const limitParam = url.searchParams.get('limit');
          const limit = limitParam === null ? 0 : Number(limitParam);
          if (!Number.isInteger(limit) || limit < 0) return badRequest(`limit: Invalid value: ${JSON.stringify(limitParam)}: must be a non-negative integer`);
          let start = '';
          const token = url.searchParams.get('continue');
          if (token) {
            try {
              const decoded = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
              if (decoded.v !== 'meta.k8s.io/v1' || typeof decoded.start !== 'string') throw new Error('unknown shape');
              start = decoded.start;
            } catch {
              return badRequest('continue key is not valid: illegal base64 data at input byte 0');
            }
          }
          let matching: Array<[string, any]>;
          try {
            const selector = url.searchParams.get('labelSelector') ?? '';
            matching = [...objects].filter(([path]) => path.startsWith(`${r.path}/`))
              .map(([path, o]): [string, any] => [path.slice(r.path.length + 1), o])
              .filter(([name, o]) => name >= start && matchesSelector(o.metadata?.labels ?? {}, selector))
              .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
          } catch (err) {
            return badRequest((err as Error).message);
          }
          const page = limit > 0 ? matching.slice(0, limit) : matching;
          const rest = limit > 0 ? matching[limit] : undefined;
          const metadata: any = { resourceVersion: String(resourceVersion) };
          if (rest) metadata.continue = Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: resourceVersion, start: rest[0] })).toString('base64');
          return send(res, 200, { kind: `${r.kind}List`, apiVersion: r.apiVersion, metadata, items: page.map(([, o]) => o) });
        }
        return current ? send(res, 200, current) : notFound();
      case 'POST': {
        if (r.name) return send(res, 405, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'MethodNotAllowed', code: 405 });
        const path = `${r.path}/${body.metadata.name}`;
        if (objects.has(path)) return send(res, 409, statusBody('status-already-exists', r.resource, r.group, body.metadata.name));
        return store({ ...body, metadata: { ...body.metadata, uid: randomUUID(), creationTimestamp: '2024-06-03T08:21:29Z' } }, 'CREATE', 201, path);
      }
      case 'PUT': {
        if (!current) return notFound();
        if (body?.metadata?.name !== r.name) {
          return send(res, 400, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'BadRequest', code: 400,
            message: `the name of the object (${body?.metadata?.name}) does not match the name on the URL (${r.name})` });
        }
        // Optimistic concurrency: a PUT naming an old resourceVersion is refused, as the real API server does.
        if (body.metadata.resourceVersion && body.metadata.resourceVersion !== current.metadata.resourceVersion) {
          return send(res, 409, statusBody('status-conflict', r.resource, r.group, r.name));
        }
        // A PUT replaces the whole object: labels, annotations and spec fields it leaves out are gone. Only the system
        // fields the API server owns (uid, creationTimestamp) are kept from the stored object, as the real one does.
        const { uid, creationTimestamp } = current.metadata;
        return store({ ...body, metadata: { ...body.metadata, uid, creationTimestamp } }, 'UPDATE', 200, r.path);
      }
      case 'PATCH': {
        if (!current) return notFound();
        let next: any;
        if (contentType === 'application/json-patch+json') next = fastJsonPatch.applyPatch(structuredClone(current), body, true, false).newDocument;
        else if (contentType === 'application/merge-patch+json') next = mergePatch(current, body);
        else if (contentType === 'application/strategic-merge-patch+json') {
          // Strategic merge equals merge patch for maps; list merge keys are not modelled, so refuse lists loudly.
          if (hasArray(body)) return send(res, 400, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'stub: strategic-merge patches with lists are not modelled', code: 400 });
          next = mergePatch(current, body);
        } else return send(res, 415, statusBody('status-unsupported-media-type'));
        return store(next, 'UPDATE', 200, r.path);
      }
      default:
        return send(res, 405, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'MethodNotAllowed', code: 405 });
    }
  }

  /** The API server's service proxy: the Service's backend answers, status, content type and body passed through. */
  function proxyToService(r: Route, url: URL, method: string, res: ServerResponse): void {
    const service = /^(?:(https?):)?([^:]+)(?::(.+))?$/.exec(r.name ?? '')?.[2] ?? '';
    const base = stub.services?.get(`${r.namespace}/${service}`);
    if (method !== 'GET') return send(res, 405, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'MethodNotAllowed', code: 405 });
    if (!base) {
      return send(res, 503, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `no endpoints available for service "${r.name}"`, reason: 'ServiceUnavailable', code: 503 });
    }
    const path = url.pathname.slice(url.pathname.indexOf('/proxy') + '/proxy'.length) || '/';
    const upstream = httpsRequest(`${base}${path}`, { method: 'GET', rejectUnauthorized: false }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        res.writeHead(answer.statusCode ?? 502, { 'content-type': answer.headers['content-type'] ?? 'application/octet-stream' });
        res.end(Buffer.concat(chunks));
      });
    });
    upstream.on('error', (err) => send(res, 503, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `error trying to reach service: ${err.message}`, reason: 'ServiceUnavailable', code: 503 }));
    upstream.end();
  }

  const server: Server = createServer({ cert: serving.cert, key: serving.key }, (req, res) => {
    handle(req, res).catch((err: Error) => send(res, 500, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `stub: ${err.message}`, code: 500 }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  // every socket, also those still in their TLS handshake, which closeAllConnections does not know about
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const pause = async () => {
    for (const w of watchers) w.res.destroy();
    watchers.clear();
    server.closeAllConnections();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const resume = () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const dir = mkdtempSync(join(tmpdir(), 'k8s-stub-'));
  const kubeconfig = join(dir, 'kubeconfig');
  const url = `https://127.0.0.1:${port}`;
  writeFileSync(kubeconfig, stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'stub', cluster: { server: url, 'certificate-authority-data': Buffer.from(ca.cert).toString('base64'), 'tls-server-name': 'localhost' } }],
    users: [{ name: 'hooks', user: { token: 'stub-token' } }],
    contexts: [{ name: 'stub', context: { cluster: 'stub', user: 'hooks' } }],
    'current-context': 'stub',
  }));
  return Object.assign(stub, {
    url,
    kubeconfig,
    pause,
    resume,
    close: async () => {
      if (server.listening) await pause();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}
