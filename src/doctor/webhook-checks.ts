// doctor's checks of the webhook's registration, certificate and endpoints, and of the API server calling it.
import { X509Certificate } from 'node:crypto';
import type { Config } from '../config/config.js';
import { cannotMutate, planPatch, type JsonObject } from '../mutators/index.js';
import { isObject } from '../mutators/json.js';
import { lacksMutation } from '../reconcile/decide.js';
import { deploymentPlan, probeEnv } from '../mutators/deployment.js';
import { daysLeft, EXPIRY_WARN_DAYS, pemBlocks } from '../webhook/tls.js';
import { type DoctorContext, type DoctorFacts, type Verdict, canI, fail, helmUpgrade, list, meta, obj, pass, plural, sh, skip, str, unreadable, warn } from './facts.js';

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

export function judgeConfiguration(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeCaBundle(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeCertificate(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeEndpoints(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeDryRun(f: DoctorFacts, c: DoctorContext): Verdict {
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
