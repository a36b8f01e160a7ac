// doctor's checks: each a small pure function from what was read (objects, rows, documents) to a verdict with a fix.
// No I/O here: read.ts reads everything once; the checks share it. "Mutated" is the webhook's own mutator's answer
// and "installed" is what db/install.ts reads back, so doctor never has a definition of its own.
import { X509Certificate } from 'node:crypto';
import type { Config } from '../config.js';
import { installedDifferences, type Aspect, type Installed, type Legacy } from '../db/install.js';
import { expectedFingerprints } from '../db/fingerprint.js';
import type { PolicySurvey, ResolvedPolicy } from '../db/policy.js';
import { AUDIT_TABLE_NAME, POLICY_TRIGGER_NAME } from '../db/sql.js';
import { NAMESPACE_TAG, parseRoleArn, POD_IDENTITY_SERVICE, podIdentityTrustPolicy, SERVICE_ACCOUNT_TAG, shellQuote, trustPolicy, type RoleRef } from '../iam-policy.js';
import { cannotMutate, planPatch, type JsonObject, type Mutate, type Mutators } from '../mutators/index.js';
import { isObject, jsonEqual } from '../mutators/json.js';
import { REGIONAL_STS_ANNOTATION, ROLE_ARN_ANNOTATION, serviceAccountPlan } from '../mutators/service-account.js';
import { lacksMutation, rolloutInProgress } from '../reconcile/decide.js';
import { deploymentPlan, probeEnv, SKIP_CONTAINERS_ANNOTATION } from '../mutators/deployment.js';
import { destinationFlags, overridingKeys, POD_IDENTITY_ENV, removalReason, WEB_IDENTITY_ENV, type EnvSource } from '../mutators/overrides.js';
import { daysLeft, EXPIRY_WARN_DAYS, pemBlocks } from '../tls.js';
import { judgeMigration } from './migration.js';

export type Status = 'pass' | 'warn' | 'fail' | 'skip';

export interface Verdict {
  readonly status: Status;
  /** what the check saw, one line */
  readonly message: string;
  /** for warn and fail: the command that fixes it (or, where no one command can, the one that shows why) */
  readonly fix?: string;
}

/** A read that succeeded, or why it did not (the API's status code when there was one). */
export type Read<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string; readonly status?: number };

export interface ServingCertificate {
  /** where it came from: served through the Service, or the TLS Secret */
  readonly source: string;
  /** PEM certificates, the serving certificate first */
  readonly chain: readonly string[];
}

/** --backfill's survey of the tagged experiments (backfillSql), with the first that is not where the rule puts it. */
export interface Drift {
  /** experiments carrying the mode's tag */
  readonly tagged: number;
  /** of those, how many have a location other than the rule's for their tag value */
  readonly due: number;
  /** how many carry a tag value the rule refuses (they keep their location) */
  readonly refused: number;
  readonly example?: { readonly experimentId: number; readonly location: string | null; readonly expected: string };
}

export interface DatabaseFacts {
  readonly database: string;
  readonly missingTables: readonly string[];
  readonly installed: Installed;
  readonly legacy?: Legacy;
  /** the location policy install-trigger would install now, resolved as it does (absent when MLflow's tables are) */
  readonly policy?: ResolvedPolicy;
  /** audit mode: the experiments our audit table recorded that still hold a location enforce would refuse */
  readonly audit?: PolicySurvey;
  readonly drift?: Drift;
  /** references that resolve through the artifact proxy (mlflow-artifacts:), which a destination switch must carry */
  /** mlflow-artifacts: references in the tables the login may read, and the columns it may not */
  readonly proxiedReferences?: { readonly total: number; readonly unreadable: readonly string[] };
}

export interface TrustFacts {
  readonly policy: Read<unknown>;
  /** the cluster's OIDC provider (host/path), and where it came from */
  readonly provider: Read<{ readonly value: string; readonly source: string }>;
}

export interface LeaseFacts {
  readonly holder?: string;
  /** epoch ms */
  readonly renewTime?: number;
  readonly leaseDurationSeconds?: number;
}

/** A list as doctor read it, page by page: what it kept, how many objects it looked at, and whether that was all. */
export interface Listing {
  readonly items: JsonObject[];
  readonly examined: number;
  /** false: doctor stopped at its cap (LIST_LIMITS) while more objects matched */
  readonly complete: boolean;
}

/** Everything doctor read, once. An absent field was not read (its check says why it skips). */
export interface DoctorFacts {
  /** the API server's version */
  readonly api: Read<string>;
  readonly webhookConfig: Read<JsonObject>;
  readonly service?: Read<JsonObject>;
  readonly endpointSlices?: Read<JsonObject[]>;
  readonly certificate?: Read<ServingCertificate>;
  readonly deployment: Read<JsonObject>;
  /** the Deployment as the API server admitted a dry-run update of it */
  readonly dryRun?: Read<JsonObject>;
  /** the Deployment's own ReplicaSets, of those matching its labels */
  readonly replicaSets?: Read<Listing>;
  /** the pods those ReplicaSets own, of those matching the Deployment's labels */
  readonly pods?: Read<Listing>;
  /** the ConfigMaps and Secrets the mlflow container takes all keys of (envFrom): their key names, never values */
  readonly envSources?: ReadonlyArray<{ readonly source: EnvSource; readonly optional: boolean; readonly keys: Read<string[]> }>;
  readonly serviceAccount: Read<JsonObject>;
  /** undefined: no database was given */
  readonly database?: Read<DatabaseFacts>;
  /** undefined: no --trust-policy */
  readonly trust?: TrustFacts;
  /** undefined: reconcile.enabled is false */
  readonly lease?: Read<LeaseFacts>;
  /** the EKS Pod Identity Agent's DaemonSet; undefined: credentials irsa (not read) */
  readonly podIdentityAgent?: Read<JsonObject>;
}

/** The DaemonSet of EKS's Pod Identity Agent add-on, which serves Pod Identity's credentials on every node. */
export const POD_IDENTITY_AGENT = { namespace: 'kube-system', name: 'eks-pod-identity-agent' } as const;

export interface DoctorContext {
  readonly config: Config;
  readonly mutators: Mutators;
  readonly now: number;
  /** the config file doctor was given, for fix commands that rerun a command with it */
  readonly configFile: string;
  /** the MutatingWebhookConfiguration's name, which is also the chart's object name prefix */
  readonly webhookConfig: string;
  /** the webhook's own namespace (the Helm release's) */
  readonly webhookNamespace: string;
  readonly tlsSecret: string;
}

export interface CheckDefinition {
  /** stable: scripts match on it (docs/operator-guide.md lists them all) */
  readonly id: string;
  readonly group: string;
  /** checks that must pass (or warn) first; when one failed or was skipped, this one is skipped and says which */
  readonly needs?: readonly string[];
  judge(facts: DoctorFacts, ctx: DoctorContext): Verdict;
}

export interface CheckResult extends Verdict {
  readonly id: string;
  readonly group: string;
  /** the check's own section of docs/troubleshooting.md: what it checks, why it fails, how to fix it */
  readonly docs: string;
}

/** Where the troubleshooting page is published; each check's section is `#` and its id without the dots. */
export const TROUBLESHOOTING_URL = 'https://github.com/mlflow-irsa-webhook/mlflow-irsa-webhook/blob/main/docs/troubleshooting.md';

/** A check's link: the page, and the anchor GitHub gives its heading `` `<id>` `` (lower case, dots dropped). */
export const checkDocs = (id: string): string => `${TROUBLESHOOTING_URL}#${id.toLowerCase().replace(/[^a-z0-9_ -]/g, '')}`;

export const GROUP_TITLES: Readonly<Record<string, string>> = {
  kubernetes: 'Kubernetes API',
  webhook: 'Webhook registered',
  admission: 'The API server calls the webhook',
  deployment: 'mlflow Deployment',
  pods: 'Running pods',
  serviceaccount: 'mlflow ServiceAccount',
  'pod-identity': 'EKS Pod Identity',
  trigger: 'Tracking-database trigger',
  migration: 'Artifacts from the replaced destination',
  iam: 'IAM trust policy',
  reconcile: 'Reconcile loop',
};

const pass = (message: string): Verdict => ({ status: 'pass', message });
const warn = (message: string, fix: string): Verdict => ({ status: 'warn', message, fix });
const fail = (message: string, fix: string): Verdict => ({ status: 'fail', message, fix });
const skip = (message: string): Verdict => ({ status: 'skip', message });

const CLI = 'mlflow-irsa-webhook';
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const obj = (v: unknown): JsonObject => (isObject(v) ? v : {});
const list = (v: unknown): JsonObject[] => (Array.isArray(v) ? v.filter(isObject) : []);
const meta = (o: JsonObject) => obj(o.metadata);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** A piece of a fix command we wrote ourselves (a placeholder, a command built already): put in as it is. */
class Verbatim {
  constructor(readonly text: string) {}
}
type Words = string | number | readonly string[] | Verbatim;

/**
 * A fix command: every interpolated value becomes shell words, single-quoted where it needs to be (a list: one word
 * per entry), so a name read from the cluster, the database or a file cannot break out of its place in the command.
 */
export function sh(parts: TemplateStringsArray, ...values: Words[]): string {
  let out = parts[0];
  values.forEach((v, i) => {
    const text = v instanceof Verbatim ? v.text : Array.isArray(v) ? v.map(shellQuote).join(' ') : shellQuote(String(v));
    out += text + parts[i + 1];
  });
  return out;
}

/** The Helm release that made the webhook's objects, from Helm's ownership annotation, else the object prefix. */
function release(f: DoctorFacts, c: DoctorContext): string {
  const fromMwc = f.webhookConfig.ok ? str(obj(meta(f.webhookConfig.value).annotations)['meta.helm.sh/release-name']) : undefined;
  return fromMwc ?? c.webhookConfig;
}
const helmUpgrade = (f: DoctorFacts, c: DoctorContext) =>
  sh`helm -n ${c.webhookNamespace} upgrade ${release(f, c)} charts/mlflow-irsa-webhook --reuse-values`;
const namespaceFlag = (namespace?: string) => (namespace ? sh` -n ${namespace}` : '');
const canI = (verb: string, what: string, namespace?: string) => sh`kubectl auth can-i ${verb} ${what}` + namespaceFlag(namespace);

/** A failed read as a verdict: not found is the object's absence; anything else says what the API answered. */
function unreadable(read: { error: string; status?: number }, what: string, absent: Verdict, verb: string, resource: string, namespace?: string): Verdict {
  if (read.status === 404) return absent;
  if (read.status === 401 || read.status === 403) return fail(`may not read ${what}: ${read.error}`, canI(verb, resource, namespace));
  return fail(`could not read ${what}: ${read.error}`, sh`kubectl ${verb === 'list' ? 'get' : verb} ${resource}` + namespaceFlag(namespace));
}

// ---- the MutatingWebhookConfiguration ----------------------------------------------------------------------------

interface WebhookEntry {
  readonly name: string;
  readonly resources: readonly string[];
  readonly service?: { readonly namespace: string; readonly name: string; readonly path?: string; readonly port: number };
  readonly caBundle?: string;
  readonly failurePolicy?: string;
  /** namespaces an `In` selector on kubernetes.io/metadata.name allows; undefined when the selector is of another shape */
  readonly namespaces?: readonly string[];
}

export function webhookEntries(mwc: JsonObject): WebhookEntry[] {
  return list(mwc.webhooks).map((w) => {
    const cc = obj(w.clientConfig);
    const svc = isObject(cc.service) ? cc.service : undefined;
    const selector = obj(w.namespaceSelector);
    const byName = list(selector.matchExpressions).find((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'In');
    const label = str(obj(selector.matchLabels)['kubernetes.io/metadata.name']);
    const namespaces = byName ? (Array.isArray(byName.values) ? byName.values.filter((v): v is string => typeof v === 'string') : [])
      : label ? [label] : undefined;
    return {
      name: str(w.name) ?? '?',
      resources: list(w.rules).flatMap((r) => (Array.isArray(r.resources) ? r.resources.filter((v): v is string => typeof v === 'string') : [])),
      service: svc && { namespace: str(svc.namespace) ?? '', name: str(svc.name) ?? '', path: str(svc.path), port: typeof svc.port === 'number' ? svc.port : 443 },
      caBundle: str(cc.caBundle),
      failurePolicy: str(w.failurePolicy),
      namespaces,
    };
  });
}

/** The Service the API server calls, from the webhook for deployments (the one that matters most). */
export function webhookService(mwc: JsonObject): WebhookEntry['service'] {
  const entries = webhookEntries(mwc);
  return (entries.find((e) => e.resources.includes('deployments')) ?? entries[0])?.service;
}

/** The DNS name the API server uses for a webhook Service, and so the name the serving certificate must carry. */
export const serviceHost = (svc: { namespace: string; name: string }) => `${svc.name}.${svc.namespace}.svc`;

function judgeConfiguration(f: DoctorFacts, c: DoctorContext): Verdict {
  const what = `MutatingWebhookConfiguration ${c.webhookConfig}`;
  if (!f.webhookConfig.ok) {
    return unreadable(f.webhookConfig, what, fail(`${what} not found: the API server calls no webhook for mlflow`, helmUpgrade(f, c)),
      'get', `mutatingwebhookconfiguration/${c.webhookConfig}`);
  }
  const entries = webhookEntries(f.webhookConfig.value);
  const problems: string[] = [];
  for (const resource of ['deployments', 'serviceaccounts']) {
    const e = entries.find((x) => x.resources.includes(resource));
    if (!e) {
      problems.push(`no webhook for ${resource}`);
      continue;
    }
    if (!e.service) problems.push(`the ${resource} webhook calls a URL, not the Service ${c.webhookNamespace}/${c.webhookConfig}`);
    else if (e.service.path !== '/mutate') problems.push(`the ${resource} webhook calls path ${e.service.path ?? '/'}, not /mutate`);
    if (e.namespaces && !e.namespaces.includes(c.config.namespace)) problems.push(`the ${resource} webhook's namespaceSelector leaves out namespace ${c.config.namespace}`);
  }
  const svc = webhookService(f.webhookConfig.value);
  if (problems.length > 0) return fail(`${what}: ${problems.join('; ')}`, helmUpgrade(f, c));
  const policies = [...new Set(entries.map((e) => e.failurePolicy ?? 'Fail'))].join('/');
  return pass(`${what} sends deployments and serviceaccounts in ${c.config.namespace} to ${svc!.namespace}/${svc!.name}:${svc!.port}/mutate (failurePolicy ${policies})`);
}

/** Parsed certificates, or the reason one is not a certificate. */
function parseAll(pems: readonly string[], what: string): X509Certificate[] | string {
  if (pems.length === 0) return `${what} holds no PEM certificate`;
  try {
    return pems.map((p) => new X509Certificate(p));
  } catch (err) {
    return `${what} is not a PEM certificate (${(err as Error).message})`;
  }
}

/** True when the chain (serving certificate first, then intermediates) leads to one of the roots, signatures checked. */
export function chainVerifies(chain: readonly X509Certificate[], roots: readonly X509Certificate[]): boolean {
  let current = chain[0];
  for (let hop = 0; current && hop <= chain.length; hop++) {
    if (roots.some((r) => r.raw.equals(current.raw) || (current.checkIssued(r) && current.verify(r.publicKey)))) return true;
    current = chain.slice(1).find((i) => i !== current && current.checkIssued(i) && current.verify(i.publicKey))!;
  }
  return false;
}

const subjectCn = (x: X509Certificate) => /CN=([^\n,]+)/.exec(x.subject)?.[1] ?? x.subject.replace(/\n/g, ', ');

/** The caBundle(s) of the configuration: one PEM text, or why there is none. */
function caBundle(mwc: JsonObject): { pems: string[] } | { problem: string } {
  const bundles = [...new Set(webhookEntries(mwc).map((e) => e.caBundle ?? ''))];
  if (bundles.includes('')) return { problem: 'a webhook has no caBundle, so the API server cannot verify the webhook\'s certificate' };
  if (bundles.length > 1) return { problem: 'the webhooks carry different caBundles' };
  return { pems: pemBlocks(Buffer.from(bundles[0], 'base64').toString('utf8')) };
}

/**
 * What renews the certificate or rewrites the caBundle: cert-manager when it injects the CA (then its Certificate says
 * what is wrong), else `helm upgrade`, whose bootstrap-cert Jobs renew a certificate near its end and patch the caBundle.
 */
function certificateFix(f: DoctorFacts, c: DoctorContext): string {
  const injected = f.webhookConfig.ok ? str(obj(meta(f.webhookConfig.value).annotations)['cert-manager.io/inject-ca-from']) : undefined;
  const [namespace, name] = injected?.split('/') ?? [];
  return namespace && name ? sh`kubectl -n ${namespace} describe certificate ${name}` : helmUpgrade(f, c);
}

function judgeCaBundle(f: DoctorFacts, c: DoctorContext): Verdict {
  const mwc = (f.webhookConfig as { value: JsonObject }).value;
  const bundle = caBundle(mwc);
  if ('problem' in bundle) return fail(bundle.problem, certificateFix(f, c));
  const roots = parseAll(bundle.pems, 'the caBundle');
  if (typeof roots === 'string') return fail(roots, certificateFix(f, c));
  if (!f.certificate || !f.certificate.ok) {
    return warn(`could not get the serving certificate to verify the caBundle against: ${f.certificate?.ok === false ? f.certificate.error : 'not read'}`,
      sh`kubectl -n ${c.webhookNamespace} get secret ${c.tlsSecret} -o jsonpath='{.data.tls\\.crt}' | base64 -d | openssl verify -CAfile <(kubectl get mutatingwebhookconfiguration ${c.webhookConfig} -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | base64 -d)`);
  }
  const chain = parseAll(f.certificate.value.chain, `the certificate ${f.certificate.value.source}`);
  if (typeof chain === 'string') return fail(chain, certificateFix(f, c));
  if (!chainVerifies(chain, roots)) {
    return fail(`the caBundle (${roots.map(subjectCn).join(', ')}) does not verify the certificate ${f.certificate.value.source} (issued by ${chain[0].issuer.replace(/\n/g, ', ')}): the API server's calls fail TLS`,
      certificateFix(f, c));
  }
  return pass(`the caBundle (${roots.map(subjectCn).join(', ')}) verifies the certificate ${f.certificate.value.source}`);
}

function judgeCertificate(f: DoctorFacts, c: DoctorContext): Verdict {
  const svc = webhookService((f.webhookConfig as { value: JsonObject }).value);
  if (!svc) return skip('the webhook calls a URL, not a Service');
  if (!f.certificate || !f.certificate.ok) {
    return warn(`could not get the serving certificate: ${f.certificate?.ok === false ? f.certificate.error : 'not read'}`,
      sh`kubectl -n ${c.webhookNamespace} get secret ${c.tlsSecret} -o jsonpath='{.data.tls\\.crt}' | base64 -d | openssl x509 -noout -subject -ext subjectAltName -enddate`);
  }
  const chain = parseAll(f.certificate.value.chain, `the certificate ${f.certificate.value.source}`);
  if (typeof chain === 'string') return fail(chain, certificateFix(f, c));
  const leaf = chain[0];
  const host = serviceHost(svc);
  const left = Math.floor(daysLeft(leaf, c.now));
  if (Date.parse(leaf.validFrom) > c.now) return fail(`the certificate ${f.certificate.value.source} is not valid before ${leaf.validFrom}`, certificateFix(f, c));
  if (left < 0) return fail(`the certificate ${f.certificate.value.source} expired on ${leaf.validTo}`, certificateFix(f, c));
  if (leaf.checkHost(host) === undefined) {
    return fail(`the certificate ${f.certificate.value.source} does not name ${host}, the name the API server calls (it names ${leaf.subjectAltName ?? subjectCn(leaf)})`, certificateFix(f, c));
  }
  // fewer days than the webhook's own log warns at (when cert-manager and bootstrap-cert renew): time to act
  if (left < EXPIRY_WARN_DAYS) return warn(`the certificate ${f.certificate.value.source} for ${host} expires in ${plural(left, 'day')} (${leaf.validTo})`, certificateFix(f, c));
  return pass(`the certificate ${f.certificate.value.source} names ${host} and expires in ${plural(left, 'day')}`);
}

function judgeEndpoints(f: DoctorFacts, c: DoctorContext): Verdict {
  const svc = webhookService((f.webhookConfig as { value: JsonObject }).value);
  if (!svc) return skip('the webhook calls a URL, not a Service');
  const what = `Service ${svc.namespace}/${svc.name}`;
  if (!f.service || !f.service.ok) {
    const read = f.service && !f.service.ok ? f.service : { error: 'not read' };
    return unreadable(read, what, fail(`${what} not found: the API server has nothing to call`, helmUpgrade(f, c)), 'get', `service/${svc.name}`, svc.namespace);
  }
  if (!f.endpointSlices || !f.endpointSlices.ok) {
    const read = f.endpointSlices && !f.endpointSlices.ok ? f.endpointSlices : { error: 'not read' };
    return fail(`could not list the EndpointSlices of ${what}: ${read.error}`, canI('list', 'endpointslices.discovery.k8s.io', svc.namespace));
  }
  const endpoints = f.endpointSlices.value.flatMap((s) => list(s.endpoints));
  // EndpointSlice: an absent ready condition means ready
  const ready = endpoints.filter((e) => obj(e.conditions).ready !== false).length;
  const pods = sh`kubectl -n ${svc.namespace} get pods -l app.kubernetes.io/component=webhook -o wide`;
  if (ready === 0) return fail(`${what} has no ready endpoints (${plural(endpoints.length, 'endpoint')} in all): no webhook pod answers`, pods);
  if (ready < endpoints.length) return warn(`${what} has ${ready} of ${endpoints.length} endpoints ready`, pods);
  return pass(`${what} has ${plural(ready, 'ready endpoint')}`);
}

// ---- the API server really calls it -----------------------------------------------------------------------------

/**
 * The JSON patch of doctor's dry run: a no-op for a Deployment without the mutation, else the removal of one env
 * entry the webhook owns (the first it writes: AWS_ROLE_ARN with irsa, MLFLOW_ARTIFACTS_DESTINATION with
 * pod-identity), guarded by a test op. Either way, the answer carries the mutation only if the webhook ran.
 */
export function dryRunPatch(deployment: JsonObject, config: Config): JsonObject[] {
  const probe = probeEnv(deploymentPlan(config));
  const containers = list(obj(obj(obj(deployment.spec).template).spec).containers);
  const at = containers.findIndex((x) => x.name === config.container);
  if (at < 0) return [];
  const env = Array.isArray(containers[at].env) ? containers[at].env : [];
  const i = env.findIndex((e) => isObject(e) && e.name === probe);
  if (i < 0) return [];
  const path = `/spec/template/spec/containers/${at}/env/${i}`;
  return [{ op: 'test', path: `${path}/name`, value: probe }, { op: 'remove', path }];
}

function judgeDryRun(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment } = c.config;
  if (!f.deployment.ok) return skip(`Deployment ${namespace}/${deployment} could not be read (see deployment.template)`);
  if (cannotMutate(planPatch(c.mutators.deployment, f.deployment.value))) return skip('the Deployment cannot be mutated (see deployment.template)');
  const svc = webhookService((f.webhookConfig as { value: JsonObject }).value);
  const proxy = svc ? sh`kubectl get --raw ${`/api/v1/namespaces/${svc.namespace}/services/https:${svc.name}:${svc.port}/proxy/readyz`}` : sh`kubectl get mutatingwebhookconfiguration ${c.webhookConfig} -o yaml`;
  if (!f.dryRun || !f.dryRun.ok) {
    const read: { error: string; status?: number } = f.dryRun && !f.dryRun.ok ? f.dryRun : { error: 'not sent' };
    if (read.status === 401 || read.status === 403) return fail(`may not send a dry-run update of Deployment ${namespace}/${deployment}: ${read.error}`, canI('patch', `deployment/${deployment}`, namespace));
    return fail(`a dry-run update of Deployment ${namespace}/${deployment} failed: ${read.error}`, proxy);
  }
  if (lacksMutation(c.mutators.deployment, f.dryRun.value)) {
    return fail(`a dry-run update of Deployment ${namespace}/${deployment} was admitted without the mutation: the API server does not reach the webhook (with failurePolicy Ignore it lets the update through)`, proxy);
  }
  return pass(`a dry-run update of Deployment ${namespace}/${deployment} comes back mutated: the API server calls the webhook`);
}

// ---- Deployment, pods, ServiceAccount ---------------------------------------------------------------------------

/**
 * What the mutator would still change, in words an operator can check ("volume aws-iam-token", "remove env
 * AWS_CONFIG_FILE"): the mutated copy's volumes, and its container's mounts and env, compared by name with the original's.
 */
export function missingParts(mutate: Mutate, o: JsonObject, container: string): string[] {
  const mutated = mutate(o).object;
  const podOf = (x: JsonObject) => obj(obj(obj(x.spec).template).spec);
  const containerOf = (x: JsonObject) => list(podOf(x).containers).find((c) => c.name === container) ?? {};
  const parts: string[] = [];
  const compare = (what: string, before: unknown, after: unknown) => {
    const was = new Map(list(before).map((e) => [str(e.name), e]));
    const now = new Map(list(after).map((e) => [str(e.name), e]));
    for (const [name, entry] of now) if (!jsonEqual(was.get(name), entry)) parts.push(`${was.has(name) ? 'changed' : 'no'} ${what} ${name}`);
    for (const name of was.keys()) if (!now.has(name)) parts.push(`remove ${what} ${name}`);
  };
  const annotationsOf = (x: JsonObject) => obj(obj(obj(obj(x.spec).template).metadata).annotations);
  const skipNow = annotationsOf(mutated)[SKIP_CONTAINERS_ANNOTATION];
  if (skipNow !== annotationsOf(o)[SKIP_CONTAINERS_ANNOTATION]) parts.push(`annotation ${SKIP_CONTAINERS_ANNOTATION}=${str(skipNow)}`);
  compare('volume', podOf(o).volumes, podOf(mutated).volumes);
  compare('volumeMount', containerOf(o).volumeMounts, containerOf(mutated).volumeMounts);
  compare('env', containerOf(o).env, containerOf(mutated).env);
  return parts;
}

const short = (parts: readonly string[], n = 4) => (parts.length > n ? `${parts.slice(0, n).join(', ')} and ${parts.length - n} more` : parts.join(', '));

function judgeTemplate(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment } = c.config;
  const what = `Deployment ${namespace}/${deployment}`;
  if (!f.deployment.ok) {
    return unreadable(f.deployment, what, fail(`${what} not found (is deployment: in the config the name Domino uses?)`, sh`kubectl -n ${namespace} get deployments`),
      'get', `deployment/${deployment}`, namespace);
  }
  const plan = planPatch(c.mutators.deployment, f.deployment.value);
  if (cannotMutate(plan)) {
    const names = list(obj(obj(obj(f.deployment.value.spec).template).spec).containers).map((x) => str(x.name)).join(', ');
    return fail(`${plan.warnings.join('; ')} (its containers: ${names}); set container: in the config`, sh`kubectl -n ${namespace} get deployment ${deployment} -o jsonpath='{.spec.template.spec.containers[*].name}'`);
  }
  if (plan.patch.length > 0) {
    return fail(`${what}'s pod template lacks the mutation (${short(missingParts(c.mutators.deployment, f.deployment.value, c.config.container))}): it rolled out while the webhook was not called`,
      sh`kubectl -n ${namespace} rollout restart deployment/${deployment}`);
  }
  return pass(c.config.credentials === 'irsa' ? `${what}'s pod template carries the token volume, its mount and the AWS env`
    : `${what}'s pod template carries the AWS env, and no IRSA token or web identity (credentials pod-identity)`);
}

/** The configured container of a Deployment (or of a pod as a template), {} when it has none. */
export function containerOf(deployment: JsonObject, name: string): JsonObject {
  return list(obj(obj(obj(deployment.spec).template).spec).containers).find((x) => x.name === name) ?? {};
}

function judgeCredentials(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment, container } = c.config;
  if (!f.deployment.ok) return skip(`Deployment ${namespace}/${deployment} could not be read (see deployment.template)`);
  const sources = f.envSources ?? [];
  if (sources.length === 0) return pass(`container ${container} takes no env from ConfigMaps or Secrets (envFrom)`);
  const removeEnv = new Set(c.config.removeEnv);
  const found: string[] = [];
  const fixes: string[] = [];
  const unread: string[] = [];
  for (const { source, optional, keys } of sources) {
    const what = `${source.kind} ${source.name}`;
    const resource = source.kind === 'configMap' ? 'configmap' : 'secret';
    if (!keys.ok) {
      if (keys.status === 404 && optional) continue;
      unread.push(`${what} (${keys.error})`);
      fixes.push(`kubectl -n ${namespace} get ${resource} ${shellQuote(source.name)} -o go-template='{{range $k, $v := .data}}{{$k}}{{"\\n"}}{{end}}'`);
      continue;
    }
    const names = overridingKeys(source, keys.value, removeEnv);
    if (names.length === 0) continue;
    found.push(`${what} brings ${names.join(', ')} (${removalReason(names[0], c.config.credentials)})`);
    fixes.push(`kubectl -n ${namespace} edit ${resource} ${shellQuote(source.name)}`);
  }
  if (found.length > 0) {
    return fail(`container ${container} takes env the webhook cannot remove (envFrom): ${found.join('; ')}`, fixes.join(' && '));
  }
  if (unread.length > 0) {
    return warn(`could not read the key names of ${unread.join(', ')}, which container ${container} takes env from (envFrom): check them for ${c.config.removeEnv.join(', ')}`, fixes.join(' && '));
  }
  return pass(`the ${plural(sources.length, 'source')} container ${container} takes env from (envFrom) carry none of ${c.config.removeEnv.join(', ')}`);
}

function judgeArguments(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment, container } = c.config;
  if (!f.deployment.ok) return skip(`Deployment ${namespace}/${deployment} could not be read (see deployment.template)`);
  const flags = destinationFlags(containerOf(f.deployment.value, container));
  if (flags.length > 0) {
    return fail(`container ${container} runs with ${flags.map((x) => `${x.flag} (${x.reason})`).join('; ')}`,
      `kubectl -n ${namespace} get deployment ${shellQuote(deployment)} -o jsonpath='{.spec.template.spec.containers[?(@.name=="${container}")].args}' (remove the argument in Domino's settings for MLflow, so a re-apply does not bring it back)`);
  }
  return pass(`container ${container}'s command line leaves the destination to MLFLOW_ARTIFACTS_DESTINATION (no --artifacts-destination, --default-artifact-root or --no-serve-artifacts)`);
}

function judgeRollout(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment } = c.config;
  if (!f.deployment.ok) return skip(`Deployment ${namespace}/${deployment} could not be read (see deployment.template)`);
  const status = sh`kubectl -n ${namespace} rollout status deployment/${deployment}`;
  const conditions = list(obj(f.deployment.value.status).conditions);
  const progressing = conditions.find((x) => x.type === 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded') {
    return fail(`the rollout is stuck: ${str(progressing.message) ?? 'progress deadline exceeded'}`, sh`kubectl -n ${namespace} describe deployment ${deployment}`);
  }
  const r = rolloutInProgress(f.deployment.value);
  if (r.inProgress) return warn(`a rollout is in progress (${r.reason})`, status);
  return pass(r.reason);
}

const owners = (o: JsonObject) => list(meta(o).ownerReferences).map((r) => str(r.uid));

/** An equality selector from the Deployment's matchLabels: it narrows the lists; ownership decides what belongs. */
export function deploymentSelector(deployment: JsonObject): string {
  const labels = obj(obj(obj(deployment.spec).selector).matchLabels);
  return Object.entries(labels).map(([k, v]) => `${k}=${String(v)}`).join(',');
}

const REVISION = 'deployment.kubernetes.io/revision';
const ownerRefs = (o: JsonObject) => list(meta(o).ownerReferences).map((r) => ({ uid: r.uid }));

/**
 * What doctor keeps of a ReplicaSet as its page arrives: those the Deployment owns, with their name, uid, owner and
 * revision. Everything else (others' ReplicaSets, pod templates, annotations, managedFields) is dropped with the page.
 */
export function replicaSetFields(deployment: JsonObject): (rs: JsonObject) => JsonObject | undefined {
  const uid = str(meta(deployment).uid);
  return (rs) => {
    if (uid === undefined || !owners(rs).includes(uid)) return undefined;
    const m = meta(rs);
    const revision = obj(m.annotations)[REVISION];
    const annotations: JsonObject = revision === undefined ? {} : { [REVISION]: revision };
    return { metadata: { name: m.name, uid: m.uid, ownerReferences: ownerRefs(rs), annotations } };
  };
}

/**
 * What doctor keeps of a pod as its page arrives: those the given ReplicaSets own, with what the pod checks and the
 * Deployment mutator read (name, owners, deletion, the skip-containers annotation, containers' names, env and mounts,
 * init containers' names, volumes). A pod that merely
 * copies mlflow's labels is dropped, whatever it carries.
 */
export function podFields(replicaSets: readonly JsonObject[]): (pod: JsonObject) => JsonObject | undefined {
  const uids = new Set(replicaSets.map((rs) => str(meta(rs).uid)));
  return (pod) => {
    if (!owners(pod).some((uid) => uids.has(uid))) return undefined;
    const m = meta(pod);
    const spec = obj(pod.spec);
    const skip = obj(m.annotations)[SKIP_CONTAINERS_ANNOTATION];
    const annotations: JsonObject = skip === undefined ? {} : { [SKIP_CONTAINERS_ANNOTATION]: skip };
    return {
      metadata: {
        name: m.name, namespace: m.namespace, uid: m.uid, ownerReferences: ownerRefs(pod), ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
        // of the annotations, only the one the mutation writes on the pod template
        annotations,
      },
      spec: {
        containers: list(spec.containers).map((c) => ({ name: c.name, env: c.env, volumeMounts: c.volumeMounts })),
        ...(spec.initContainers !== undefined && { initContainers: list(spec.initContainers).map((c) => ({ name: c.name })) }),
        ...(spec.volumes !== undefined && { volumes: spec.volumes }),
      },
    };
  };
}

interface PodsOfDeployment {
  readonly current?: JsonObject;
  readonly currentPods: JsonObject[];
  /** pods of older ReplicaSets, by ReplicaSet name */
  readonly old: Map<string, JsonObject[]>;
}

/** The Deployment's ReplicaSets by ownership, its current one by revision, and their running (not terminating) pods. */
export function podsOfDeployment(deployment: JsonObject, replicaSets: readonly JsonObject[], pods: readonly JsonObject[]): PodsOfDeployment {
  const uid = str(meta(deployment).uid);
  const revision = str(obj(meta(deployment).annotations)[REVISION]);
  const mine = replicaSets.filter((rs) => owners(rs).includes(uid));
  const current = mine.find((rs) => str(obj(meta(rs).annotations)[REVISION]) === revision);
  const live = pods.filter((p) => !meta(p).deletionTimestamp);
  const of = (rs: JsonObject) => live.filter((p) => owners(p).includes(str(meta(rs).uid)));
  const old = new Map<string, JsonObject[]>();
  for (const rs of mine) {
    if (rs === current) continue;
    const ps = of(rs);
    if (ps.length > 0) old.set(str(meta(rs).name) ?? '?', ps);
  }
  return { current, currentPods: current ? of(current) : [], old };
}

/** A pod as the Deployment mutator sees a template, so pods are judged by the very same definition of "mutated". */
export const asTemplate = (pod: JsonObject): JsonObject => ({ metadata: meta(pod), spec: { template: { metadata: { annotations: obj(meta(pod).annotations) }, spec: obj(pod.spec) } } });

function podReads(f: DoctorFacts): { error?: string; value?: PodsOfDeployment } {
  if (!f.deployment.ok) return { error: 'the Deployment could not be read' };
  if (!f.replicaSets?.ok) return { error: `could not list ReplicaSets: ${f.replicaSets?.ok === false ? f.replicaSets.error : 'not read'}` };
  if (!f.pods?.ok) return { error: `could not list pods: ${f.pods?.ok === false ? f.pods.error : 'not read'}` };
  return { value: podsOfDeployment(f.deployment.value, f.replicaSets.value.items, f.pods.value.items) };
}

/**
 * A pods verdict when a list stopped at doctor's cap: what it did not look at may hold the Deployment's own objects,
 * so a pass becomes a warning and every verdict says so.
 */
function capped(verdict: Verdict, f: DoctorFacts, c: DoctorContext): Verdict {
  const cut = ([['ReplicaSets', f.replicaSets], ['pods', f.pods]] as const).flatMap(([what, r]) => (r?.ok && !r.value.complete ? [`${r.value.examined} ${what}`] : []));
  if (cut.length === 0 || !f.deployment.ok) return verdict;
  const note = `doctor looked at the first ${cut.join(' and the first ')} matching the Deployment's labels and stopped there; more match `
    + '(pods that copy mlflow\'s labels, or a crowded namespace), so this is judged on part of them';
  const fix = verdict.fix ?? sh`kubectl -n ${c.config.namespace} get pods -l ${deploymentSelector(f.deployment.value)} --sort-by=.metadata.creationTimestamp`;
  return { status: verdict.status === 'pass' ? 'warn' : verdict.status, message: `${verdict.message}; ${note}`, fix };
}

function judgeCurrentPods(f: DoctorFacts, c: DoctorContext): Verdict {
  return capped(currentPodsVerdict(f, c), f, c);
}

function currentPodsVerdict(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment } = c.config;
  const r = podReads(f);
  if (!r.value) return fail(r.error!, canI('list', 'pods', namespace));
  const { current, currentPods } = r.value;
  if (!current) return warn(`no ReplicaSet of Deployment ${namespace}/${deployment} has its current revision yet`, sh`kubectl -n ${namespace} rollout status deployment/${deployment}`);
  const rsName = str(meta(current).name);
  if (currentPods.length === 0) return warn(`ReplicaSet ${rsName} has no running pods`, sh`kubectl -n ${namespace} describe replicaset ${rsName ?? '?'}`);
  const bad = currentPods.filter((p) => lacksMutation(c.mutators.deployment, asTemplate(p)));
  if (bad.length > 0) {
    const first = bad[0];
    return fail(`${bad.length} of ${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} lack the mutation (${str(meta(first).name)}: ${short(missingParts(c.mutators.deployment, asTemplate(first), c.config.container))})`,
      sh`kubectl -n ${namespace} delete pod ${bad.map((p) => str(meta(p).name) ?? '?')}`);
  }
  const removeEnv = c.config.removeEnv.join(', ') || '(removeEnv)';
  return pass(c.config.credentials === 'irsa'
    ? `${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} carry the token volume, one mount on ${c.config.token.mountPath}, the AWS env and none of ${removeEnv}`
    : `${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} carry the AWS env, no IRSA token or web identity, and none of ${removeEnv}`);
}

/** The env names of the configured container of a pod. */
const envNames = (pod: JsonObject, container: string): Set<string> =>
  new Set(list(containerOf(asTemplate(pod), container).env).map((e) => str(e.name)).filter((n): n is string => n !== undefined));
const podNames = (pods: readonly JsonObject[]) => short(pods.map((p) => str(meta(p).name) ?? '?'));

/**
 * Which credentials botocore finds in the running mlflow pods: web identity (IRSA, before the container provider in
 * its chain) or the container credentials EKS's webhook adds for a Pod Identity association.
 */
function judgePodCredentials(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment, serviceAccount, container, roleArn } = c.config;
  const r = podReads(f);
  if (!r.value) return fail(r.error!, canI('list', 'pods', namespace));
  const { current, currentPods } = r.value;
  if (!current || currentPods.length === 0) return skip('no running pod of the current ReplicaSet (see pods.current)');
  const rsName = str(meta(current).name);
  const web = (p: JsonObject) => WEB_IDENTITY_ENV.some((n) => envNames(p, container).has(n));
  const podIdentity = (p: JsonObject) => POD_IDENTITY_ENV.every((n) => envNames(p, container).has(n));
  const associations = `aws eks list-pod-identity-associations --cluster-name <cluster> --namespace ${namespace} --service-account ${serviceAccount}`;
  const webNames = WEB_IDENTITY_ENV.join(', ');
  const piNames = POD_IDENTITY_ENV.join(', ');
  if (c.config.credentials === 'irsa') {
    const both = currentPods.filter((p) => web(p) && podIdentity(p));
    if (both.length > 0) {
      return warn(`${both.length} of ${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} (${podNames(both)}) carry both web identity (${webNames}) and Pod Identity's ${piNames}: botocore uses web identity, so IRSA and ${roleArn}; a Pod Identity association for ${namespace}/${serviceAccount} exists beside it`,
        `${associations}  # delete it, or move to it: credentials pod-identity (docs/operator-guide.md, "Choosing IRSA or Pod Identity")`);
    }
    return pass(`${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} carry no Pod Identity credentials beside web identity: botocore uses IRSA`);
  }
  const withWeb = currentPods.filter(web);
  if (withWeb.length > 0) {
    return fail(`${withWeb.length} of ${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} (${podNames(withWeb)}) carry web identity (${webNames}), which botocore uses before Pod Identity's credentials: mlflow still runs on IRSA`,
      `kubectl -n ${namespace} rollout restart deployment/${deployment}  # once serviceaccount.annotation passes: EKS adds web identity while the ServiceAccount names a role`);
  }
  const without = currentPods.filter((p) => !podIdentity(p));
  if (without.length > 0) {
    return fail(`${without.length} of ${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} (${podNames(without)}) lack ${piNames}: EKS found no Pod Identity association for ${namespace}/${serviceAccount} when they started, so botocore finds no credentials`,
      `${associations}  # create it (iam-policy --credentials pod-identity --output aws-cli), then: kubectl -n ${namespace} rollout restart deployment/${deployment}`);
  }
  return pass(`${plural(currentPods.length, 'pod')} of ReplicaSet ${rsName} carry Pod Identity's ${piNames} and no web identity: botocore uses Pod Identity`);
}

function judgeOldPods(f: DoctorFacts, c: DoctorContext): Verdict {
  return capped(oldPodsVerdict(f, c), f, c);
}

function oldPodsVerdict(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment } = c.config;
  const r = podReads(f);
  if (!r.value) return fail(r.error!, canI('list', 'replicasets.apps', namespace));
  const old = [...r.value.old];
  if (old.length === 0) return pass('no pods of older ReplicaSets are running');
  const count = old.reduce((n, [, ps]) => n + ps.length, 0);
  return warn(`${plural(count, 'pod')} of older ReplicaSets still run (${old.map(([rs, ps]) => `${rs}: ${ps.map((p) => str(meta(p).name)).join(', ')}`).join('; ')})`,
    sh`kubectl -n ${namespace} rollout status deployment/${deployment}`);
}

function judgeServiceAccount(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, serviceAccount } = c.config;
  const what = `ServiceAccount ${namespace}/${serviceAccount}`;
  const { annotations, remove } = serviceAccountPlan(c.config);
  const fix = `kubectl -n ${namespace} annotate serviceaccount ${serviceAccount} ${[...Object.entries(annotations).map(([k, v]) => shellQuote(`${k}=${v}`)), ...remove.map((k) => `${k}-`)].join(' ')}`
    + `${remove.length === 0 ? ' --overwrite' : ''}`;
  if (!f.serviceAccount.ok) return unreadable(f.serviceAccount, what, fail(`${what} not found`, sh`kubectl -n ${namespace} get serviceaccounts`), 'get', `serviceaccount/${serviceAccount}`, namespace);
  const sa = f.serviceAccount.value;
  const now = obj(meta(sa).annotations)[ROLE_ARN_ANNOTATION];
  if (c.config.credentials === 'pod-identity') {
    if (lacksMutation(c.mutators.serviceAccount, sa)) {
      const stands = remove.filter((k) => Object.hasOwn(obj(meta(sa).annotations), k));
      const why = now === undefined ? 'IRSA\'s, unused with Pod Identity' : `while it names ${JSON.stringify(now)}, EKS gives the pods web identity, which botocore uses before Pod Identity`;
      return fail(`${what} carries ${stands.join(' and ')}: ${why}`, fix);
    }
    return pass(`${what} names no IAM role (${ROLE_ARN_ANNOTATION}, ${REGIONAL_STS_ANNOTATION}): the Pod Identity association does`);
  }
  if (lacksMutation(c.mutators.serviceAccount, sa)) {
    return fail(`${what} lacks ${Object.keys(annotations).join(' and ')} as configured (${ROLE_ARN_ANNOTATION} is ${now === undefined ? 'not set' : JSON.stringify(now)})`, fix);
  }
  return pass(`${what} is annotated with ${c.config.roleArn}${c.config.region ? ' and regional STS endpoints' : ''}`);
}

// ---- EKS Pod Identity --------------------------------------------------------------------------------------------

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

function judgeAgent(f: DoctorFacts, c: DoctorContext): Verdict {
  if (c.config.credentials === 'irsa') return skip('credentials irsa: no Pod Identity agent needed');
  const { namespace, name } = POD_IDENTITY_AGENT;
  const what = `DaemonSet ${namespace}/${name}`;
  const read = f.podIdentityAgent ?? { ok: false as const, error: 'not read' };
  const addon = `aws eks create-addon --cluster-name <cluster> --addon-name ${name}`;
  if (!read.ok) {
    return unreadable(read, what, fail(`${what} not found: the EKS Pod Identity Agent add-on is not installed, so no pod gets Pod Identity's credentials`, addon),
      'get', `daemonset/${name}`, namespace);
  }
  const status = obj(read.value.status);
  const desired = num(status.desiredNumberScheduled);
  const ready = num(status.numberReady);
  const rollout = `kubectl -n ${namespace} rollout status daemonset/${name}`;
  if (desired === 0) return fail(`${what} runs on no node: no pod gets Pod Identity's credentials`, `kubectl -n ${namespace} describe daemonset ${name}`);
  if (ready === 0) return fail(`${what} is ready on none of its ${plural(desired, 'node')}: no pod gets Pod Identity's credentials`, rollout);
  if (ready < desired) return warn(`${what} is ready on ${ready} of ${plural(desired, 'node')}: an mlflow pod on another node gets no credentials`, rollout);
  return pass(`${what} is ready on ${plural(desired, 'node')}`);
}

// ---- the trigger -------------------------------------------------------------------------------------------------

const installCommand = (c: DoctorContext, extra = '') => sh`${CLI} install-trigger --config ${c.configFile}` + extra;
const db = (f: DoctorFacts) => (f.database as { value: DatabaseFacts }).value;

function judgeConnection(f: DoctorFacts, c: DoctorContext): Verdict {
  if (!f.database) return skip('no database given (--database-url, or PGHOST and the other libpq variables)');
  if (!f.database.ok) return fail(`could not read the tracking database: ${f.database.error}`, 'psql -c \'SELECT current_user, current_database()\'  # with the same PG* variables or URL');
  const d = f.database.value;
  if (d.missingTables.length > 0) {
    return fail(`database "${d.database}" lacks MLflow's tables ${d.missingTables.join(', ')}: not MLflow's tracking database, or trigger.schema is wrong`, 'psql -c \'\\dt *.experiment*\'');
  }
  return pass(`connected to database "${d.database}", which has MLflow's tables in schema ${c.config.trigger.schema}`);
}

/** How the installed trigger differs from what install-trigger would install now, in the given aspects (install.ts decides). */
function differences(f: DoctorFacts, c: DoctorContext, ...aspects: Aspect[]): string[] {
  const d = db(f);
  return installedDifferences(d.installed, c.config, d.policy!.policy).filter((x) => aspects.includes(x.aspect)).map((x) => x.problem);
}

function judgeInstalled(f: DoctorFacts, c: DoctorContext): Verdict {
  const { installed } = db(f);
  const problems = differences(f, c, 'present', 'enabled');
  if (problems.length > 0) return fail(problems.join('; '), installCommand(c));
  return pass(`trigger on ${installed.trigger!.table}, function ${installed.function!.signature}, table ${installed.auditTable!.name}, mode ${installed.mode ?? '?'} on tag ${installed.tag ?? '?'}`);
}

function judgeFunction(f: DoctorFacts, c: DoctorContext): Verdict {
  const { installed, policy } = db(f);
  const problems = differences(f, c, 'function');
  if (problems.length > 0) return fail(`the installed function is not what this config installs: ${problems.join('; ')}`, installCommand(c));
  if (!policy!.policy) return skip('this config\'s location policy cannot be installed (trigger.location-policy says why), so there is no function to compare with');
  return pass(`the installed function is what this config installs: mode ${installed.mode} on tag ${installed.tag}, location style ${installed.style}, `
    + `location policy ${installed.policy} (fingerprint ${expectedFingerprints(c.config, policy!.policy).function})`);
}

function judgeDeferred(f: DoctorFacts, c: DoctorContext): Verdict {
  const problems = differences(f, c, 'deferred');
  if (problems.length > 0) {
    return fail(`${problems.join('; ')}: it would run before MLflow's own UPDATE of artifact_location, which then overwrites it`, installCommand(c));
  }
  return pass('the trigger is DEFERRABLE INITIALLY DEFERRED (it runs at commit, after MLflow\'s own UPDATE)');
}

function judgeLocationPolicy(f: DoctorFacts, c: DoctorContext): Verdict {
  const d = db(f);
  const resolved = d.policy!;
  const { policy } = resolved;
  if (!policy) return fail(resolved.refused!, `${installCommand(c)}  # after setting trigger.defaultArtifactRoot to MLflow's --default-artifact-root`);
  const root = policy.mode !== 'off' && policy.defaultPrefix !== undefined ? `MLflow's default ${policy.defaultPrefix}<experiment id> (from ${resolved.source})` : undefined;
  const problems = differences(f, c, 'policy');
  if (problems.length > 0) return fail(`${problems.join('; ')}; install-trigger installs ${policy.mode}${root ? ` with ${root}` : ''} (${resolved.from})`, installCommand(c));
  if (policy.mode === 'off') return pass(`off (${resolved.from}): explicit artifact locations are not checked`);
  if (policy.mode === 'enforce') {
    const custom = c.config.trigger.mode === 'custom-location' ? ', an allowed custom location' : '';
    return pass(`enforce: trigger ${POLICY_TRIGGER_NAME} on experiments refuses a location written without the tag unless empty${custom} or ${root}`);
  }
  const unknown = resolved.unknownRoot ? `; ${resolved.unknownRoot}, so a location ending in the experiment's own id is not judged (set trigger.defaultArtifactRoot)` : '';
  const audit = d.audit!;
  if (audit.held === 0) {
    return pass(`audit: no experiment written since the audit began holds a location enforce would refuse${root ? ` (${root})` : ''}${unknown}`);
  }
  const e = audit.shown[0];
  const schema = c.config.trigger.schema;
  const list = `SELECT a.experiment_id, e.artifact_location, a.writes, a.last_written FROM ${schema}.${AUDIT_TABLE_NAME} a JOIN ${schema}.experiments e USING (experiment_id) ORDER BY 1`;
  return warn(
    `audit: ${plural(audit.held, 'experiment')} written since the audit began hold a location enforce would refuse (let through and recorded; `
      + `e.g. experiment ${e.experimentId} at ${e.location}, admitted by ${e.admitWith})${unknown}`,
    `psql -c ${shellQuote(list)}; ${installCommand(c, ' --dry-run')}  # lists each with the setting that admits it `
      + '(trigger.allowedLocationPrefixes, trigger.defaultArtifactRoot or the tag); keep trigger.locationPolicy: audit until none is left',
  );
}

function judgeLegacy(f: DoctorFacts): Verdict {
  const { legacy } = db(f);
  if (!legacy) return pass('no leftover trigger of the manual procedure');
  return fail(`the manual procedure's trigger is still installed (${[...legacy.triggers.map((t) => `trigger on ${t.table}`), ...legacy.functions].join(', ')}): it rewrites locations by its own rules`,
    sh`psql -c ${legacy.removal}`);
}

function judgeDrift(f: DoctorFacts, c: DoctorContext): Verdict {
  const { tagged, due, refused, example } = db(f).drift!;
  const refusedNote = refused > 0 ? `; ${plural(refused, 'experiment')} carry a tag value the rule refuses and keep their location` : '';
  if (due > 0) {
    const e = example ? ` (e.g. experiment ${example.experimentId} is at ${example.location ?? 'NULL'}, the rule gives ${example.expected})` : '';
    return warn(`${due} of ${plural(tagged, 'tagged experiment')} are not where their tag puts them${e}${refusedNote}`, installCommand(c, ' --backfill'));
  }
  return pass(`${plural(tagged, 'tagged experiment')}, all where their tag puts them${refusedNote}`);
}

// ---- IAM ---------------------------------------------------------------------------------------------------------

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

/** The policy document from the file: the document itself, or get-role's whole answer. */
function policyDocument(raw: unknown): JsonObject | undefined {
  const role = obj(obj(raw).Role);
  const doc = isObject(role.AssumeRolePolicyDocument) ? role.AssumeRolePolicyDocument : raw;
  return isObject(doc) && doc.Statement !== undefined ? doc : undefined;
}

/** The strings of a policy element that may be one string or a list. */
const strings = (v: unknown): string[] => asList(v).filter((x): x is string => typeof x === 'string');

/**
 * The trust policy for Pod Identity: a statement that lets pods.eks.amazonaws.com call both sts:AssumeRole and
 * sts:TagSession (AssumeRole with session tags needs both), only with our namespace's and ServiceAccount's session
 * tags (without them any association in the account may use the role), and on behalf of the role's own account.
 */
function judgePodIdentityTrust(doc: JsonObject, role: RoleRef, c: DoctorContext): Verdict {
  const fix = `${CLI} iam-policy --config ${shellQuote(c.configFile)} --cluster-name <cluster> --output aws-cli > role.sh && sh role.sh`;
  const allows = list(asList(doc.Statement)).filter((s) => s.Effect === 'Allow');
  const statements = allows.filter((s) => strings(obj(s.Principal).Service).includes(POD_IDENTITY_SERVICE));
  const irsa = [...new Set(allows.flatMap((s) => strings(obj(s.Principal).Federated)).map((arn) => arn.replace(/^arn:[^:]+:iam::\d+:oidc-provider\//, '')))];
  const alsoIrsa = irsa.length > 0 ? `; it also trusts ${irsa.join(', ')} (IRSA): remove that statement once no cluster uses IRSA for this role` : '';
  if (statements.length === 0) return fail(`no statement trusts ${POD_IDENTITY_SERVICE}, so EKS Pod Identity cannot assume ${role.name}${irsa.length > 0 ? ` (it trusts ${irsa.join(', ')}: IRSA only)` : ''}`, fix);
  const want = obj(podIdentityTrustPolicy(role, c.config).Statement[0].Condition).StringEquals as Record<string, string>;
  const problems: string[] = [];
  for (const s of statements) {
    const actions = strings(s.Action);
    const missing = ['sts:AssumeRole', 'sts:TagSession'].filter((a) => !actions.includes(a) && !actions.includes('sts:*'));
    const equals = obj(obj(s.Condition).StringEquals);
    const like = obj(obj(s.Condition).StringLike);
    const unmet = [NAMESPACE_TAG, SERVICE_ACCOUNT_TAG].filter((key) => {
      const values = strings(equals[key]);
      return values.length === 0 || values.some((v) => v !== want[key]);
    });
    const source = strings(equals['aws:SourceAccount']);
    const wrongSource = source.length > 0 && source.some((a) => a !== role.account);
    if (missing.length === 0 && unmet.length === 0 && !wrongSource) {
      const allowed = `the trust policy lets EKS Pod Identity assume ${role.name} for ${c.config.namespace}/${c.config.serviceAccount} only`;
      if (source.length === 0) {
        return warn(`${allowed}, but not only on behalf of account ${role.account} (no aws:SourceAccount condition, which AWS recommends against a confused deputy)${alsoIrsa}`, fix);
      }
      return pass(`${allowed}, on behalf of account ${role.account}${alsoIrsa}`);
    }
    const said = [
      ...missing.map((a) => `${a} is not allowed${a === 'sts:TagSession' ? ' (Pod Identity assumes the role with session tags, which needs it)' : ''}`),
      ...unmet.map((key) => `${key} must equal ${want[key]}${like[key] !== undefined ? ' (a StringLike pattern is broader than the one value)' : `, is ${JSON.stringify(equals[key] ?? null)}`}`),
      ...(wrongSource ? [`aws:SourceAccount must be ${role.account}, is ${JSON.stringify(equals['aws:SourceAccount'])}`] : []),
    ];
    problems.push(said.join('; '));
  }
  const anyAssociation = problems.some((p) => p.includes(`${NAMESPACE_TAG} must equal`) && p.includes(`${SERVICE_ACCOUNT_TAG} must equal`));
  return fail(`${POD_IDENTITY_SERVICE}: ${problems.join(' / ')}${anyAssociation ? ' (without the tag conditions any association in the account may use the role)' : ''}`, fix);
}

function judgeTrust(f: DoctorFacts, c: DoctorContext): Verdict {
  const role = parseRoleArn(c.config.roleArn);
  if (!f.trust) return skip(`no --trust-policy given (aws iam get-role --role-name ${role.name} --query Role.AssumeRolePolicyDocument > trust.json)`);
  if (!f.trust.policy.ok) return fail(f.trust.policy.error, sh`aws iam get-role --role-name ${role.name} --query Role.AssumeRolePolicyDocument > trust.json`);
  const doc = policyDocument(f.trust.policy.value);
  if (!doc) return fail('the --trust-policy file is not an IAM policy document (no Statement)', sh`aws iam get-role --role-name ${role.name} --query Role.AssumeRolePolicyDocument > trust.json`);
  if (c.config.credentials === 'pod-identity') return judgePodIdentityTrust(doc, role, c);
  const allows = list(asList(doc.Statement)).filter((s) => s.Effect === 'Allow'
    && asList(s.Action).some((a) => a === 'sts:AssumeRoleWithWebIdentity' || a === 'sts:*'));
  const federated = (s: JsonObject) => asList(obj(s.Principal).Federated).filter((v): v is string => typeof v === 'string');
  const providersIn = [...new Set(allows.flatMap(federated).map((arn) => arn.replace(/^arn:[^:]+:iam::\d+:oidc-provider\//, '')))];
  const known = f.trust.provider.ok ? f.trust.provider.value : undefined;
  // without the cluster's own issuer, judge the policy against the providers it names (and say so)
  const candidates = known ? [known.value] : providersIn;
  const script = (provider: Words) => sh`${CLI} iam-policy --config ${c.configFile} --oidc-provider ${provider} --output aws-cli  # then: aws iam update-assume-role-policy --role-name ${role.name} --policy-document file://trust-policy.json`;
  const fixFor = script(known?.value ?? providersIn[0] ?? new Verbatim('<the cluster\'s OIDC issuer>'));
  if (candidates.length === 0) return fail('no statement allows sts:AssumeRoleWithWebIdentity for an OIDC provider', fixFor);
  const problems: string[] = [];
  for (const provider of candidates) {
    const want = trustPolicy(role, provider, c.config).Statement[0];
    const wantArn = (want.Principal as { Federated: string }).Federated;
    const statements = allows.filter((s) => federated(s).includes(wantArn));
    if (statements.length === 0) {
      problems.push(`no statement trusts ${wantArn}`);
      continue;
    }
    const wanted = Object.entries(want.Condition!.StringEquals);
    for (const s of statements) {
      const cond = obj(s.Condition);
      const unmet = wanted.filter(([key, value]) => !asList(obj(cond.StringEquals)[key]).includes(value));
      if (unmet.length === 0) {
        const allowed = `the trust policy lets ${provider} tokens with sub system:serviceaccount:${c.config.namespace}:${c.config.serviceAccount} and aud ${c.config.token.audience} assume ${role.name}`;
        if (known) return pass(`${allowed} (the cluster's issuer, from ${known.source})`);
        return warn(`${allowed}, but whether ${provider} is this cluster's issuer is unknown (${f.trust.provider.ok ? '' : f.trust.provider.error}); pass --oidc-provider`,
          'aws eks describe-cluster --name <cluster> --query cluster.identity.oidc.issuer --output text');
      }
      const loose = unmet.filter(([key]) => obj(cond.StringLike)[key] !== undefined);
      problems.push(`${wantArn}: ${unmet.map(([key, value]) => `${key} must equal ${value}${loose.some(([k]) => k === key) ? ' (a StringLike pattern is broader than the one service account)' : `, is ${JSON.stringify(obj(cond.StringEquals)[key] ?? null)}`}`).join('; ')}`);
    }
  }
  const others = known ? providersIn.filter((p) => p !== known.value) : [];
  return fail(`${problems.join('; ')}${others.length > 0 ? ` (it trusts ${others.join(', ')}: another cluster?)` : ''}`, fixFor);
}

// ---- the reconcile loop ------------------------------------------------------------------------------------------

function judgeLease(f: DoctorFacts, c: DoctorContext): Verdict {
  const name = `${c.webhookNamespace}/${c.config.reconcile.leaseName}`;
  if (!f.lease) return skip('reconcile.enabled is false: no self-healing, no Lease');
  const logs = sh`kubectl -n ${c.webhookNamespace} logs -l app.kubernetes.io/component=webhook --prefix --tail 200 | grep -i lease`;
  if (!f.lease.ok) {
    return unreadable(f.lease, `Lease ${name}`, fail(`Lease ${name} not found: no replica can lead (the webhook recreates it when allowed)`, helmUpgrade(f, c)), 'get', `lease.coordination.k8s.io/${c.config.reconcile.leaseName}`, c.webhookNamespace);
  }
  const { holder, renewTime } = f.lease.value;
  if (!holder) return fail(`Lease ${name} has no holder: no webhook replica is leading`, logs);
  const duration = f.lease.value.leaseDurationSeconds ?? c.config.reconcile.leaseDurationSeconds;
  const age = renewTime === undefined ? Infinity : Math.round((c.now - renewTime) / 1000);
  // twice the duration: a leader renews every third of it, and the clocks of this machine and the node may differ
  if (age > 2 * duration) {
    return fail(`Lease ${name} is held by ${holder}, last renewed ${Number.isFinite(age) ? `${age} s ago` : 'never'} (lease duration ${duration} s): the leader stopped renewing`, logs);
  }
  return pass(`Lease ${name} is held by ${holder}, renewed ${Math.max(0, age)} s ago`);
}

function judgeApi(f: DoctorFacts): Verdict {
  if (!f.api.ok) return fail(`cannot reach the Kubernetes API: ${f.api.error}`, 'kubectl cluster-info');
  return pass(`the API server answers (${f.api.value})`);
}

/** A check whose group is its id's first part. */
const check = (id: string, judge: CheckDefinition['judge'], needs?: string[]): CheckDefinition => ({ id, group: id.split('.')[0], judge, ...(needs && { needs }) });

/** Every check, in dependency order. The ids are stable (each has its section in docs/troubleshooting.md). */
export const CHECKS: readonly CheckDefinition[] = [
  check('kubernetes.api', judgeApi),
  check('webhook.configuration', judgeConfiguration, ['kubernetes.api']),
  check('webhook.ca-bundle', judgeCaBundle, ['webhook.configuration']),
  check('webhook.certificate', judgeCertificate, ['webhook.configuration']),
  check('webhook.endpoints', judgeEndpoints, ['webhook.configuration']),
  check('admission.dry-run', judgeDryRun, ['webhook.ca-bundle', 'webhook.certificate', 'webhook.endpoints']),
  check('deployment.template', judgeTemplate, ['kubernetes.api']),
  check('deployment.rollout', judgeRollout, ['kubernetes.api']),
  check('deployment.credentials', judgeCredentials, ['kubernetes.api']),
  check('deployment.arguments', judgeArguments, ['kubernetes.api']),
  check('pods.current', judgeCurrentPods, ['deployment.template']),
  check('pods.old-replicasets', judgeOldPods, ['deployment.template']),
  check('pods.credentials', judgePodCredentials, ['deployment.template']),
  check('serviceaccount.annotation', judgeServiceAccount, ['kubernetes.api']),
  check('pod-identity.agent', judgeAgent, ['kubernetes.api']),
  check('trigger.connection', judgeConnection),
  check('trigger.installed', judgeInstalled, ['trigger.connection']),
  check('trigger.function', judgeFunction, ['trigger.installed']),
  check('trigger.deferred', judgeDeferred, ['trigger.installed']),
  check('trigger.location-policy', judgeLocationPolicy, ['trigger.installed']),
  check('trigger.legacy', judgeLegacy, ['trigger.connection']),
  check('trigger.drift', judgeDrift, ['trigger.connection']),
  check('migration.artifacts', judgeMigration, ['kubernetes.api']),
  check('iam.trust-policy', judgeTrust),
  check('reconcile.lease', judgeLease, ['kubernetes.api']),
];

/** Runs the checks in order; a check whose prerequisite failed or was skipped is skipped, naming it. */
export function runChecks(facts: DoctorFacts, ctx: DoctorContext, checks: readonly CheckDefinition[] = CHECKS): CheckResult[] {
  const done = new Map<string, CheckResult>();
  // the check at the root of a chain of skips, so a skip names the cause, not just its neighbour
  const rootOf = new Map<string, CheckResult>();
  for (const check of checks) {
    const blocker = (check.needs ?? []).map((id) => done.get(id)).find((r) => r !== undefined && (r.status === 'fail' || r.status === 'skip'));
    let verdict: Verdict;
    if (blocker) {
      const root = rootOf.get(blocker.id) ?? blocker;
      const how = (r: CheckResult) => (r.status === 'fail' ? 'failed' : 'was skipped');
      verdict = skip(root === blocker ? `skipped: needs ${blocker.id}, which ${how(blocker)}` : `skipped: needs ${blocker.id}; ${root.id} ${how(root)}`);
      rootOf.set(check.id, root);
    } else {
      verdict = check.judge(facts, ctx);
    }
    done.set(check.id, { id: check.id, group: check.group, ...verdict, docs: checkDocs(check.id) });
  }
  return [...done.values()];
}

export interface Summary {
  readonly pass: number;
  readonly warn: number;
  readonly fail: number;
  readonly skip: number;
}

export function summarise(results: readonly CheckResult[]): Summary {
  const count = (s: Status) => results.filter((r) => r.status === s).length;
  return { pass: count('pass'), warn: count('warn'), fail: count('fail'), skip: count('skip') };
}

/** 0 when nothing failed (warnings included), 1 when something did. Bad usage or config (2) never gets this far. */
export const exitCode = (results: readonly CheckResult[]): number => (results.some((r) => r.status === 'fail') ? 1 : 0);
