// doctor's checks of the mlflow Deployment, its pods and ServiceAccount, and EKS Pod Identity's agent.
import { shellQuote } from '../iam-policy.js';
import { cannotMutate, planPatch, type JsonObject, type Mutate } from '../mutators/index.js';
import { jsonEqual } from '../mutators/json.js';
import { REGIONAL_STS_ANNOTATION, ROLE_ARN_ANNOTATION, serviceAccountPlan } from '../mutators/service-account.js';
import { lacksMutation, rolloutInProgress } from '../reconcile/decide.js';
import { SKIP_CONTAINERS_ANNOTATION } from '../mutators/deployment.js';
import { destinationFlags, overridingKeys, POD_IDENTITY_ENV, removalReason, WEB_IDENTITY_ENV } from '../mutators/overrides.js';
import { type DoctorContext, type DoctorFacts, POD_IDENTITY_AGENT, type Verdict, canI, fail, list, meta, obj, pass, plural, sh, skip, str, unreadable, warn } from './facts.js';

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

export function judgeTemplate(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeCredentials(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeArguments(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment, container } = c.config;
  if (!f.deployment.ok) return skip(`Deployment ${namespace}/${deployment} could not be read (see deployment.template)`);
  const flags = destinationFlags(containerOf(f.deployment.value, container));
  if (flags.length > 0) {
    return fail(`container ${container} runs with ${flags.map((x) => `${x.flag} (${x.reason})`).join('; ')}`,
      `kubectl -n ${namespace} get deployment ${shellQuote(deployment)} -o jsonpath='{.spec.template.spec.containers[?(@.name=="${container}")].args}' (remove the argument in Domino's settings for MLflow, so a re-apply does not bring it back)`);
  }
  return pass(`container ${container}'s command line leaves the destination to MLFLOW_ARTIFACTS_DESTINATION (no --artifacts-destination, --default-artifact-root or --no-serve-artifacts)`);
}

export function judgeRollout(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeCurrentPods(f: DoctorFacts, c: DoctorContext): Verdict {
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
export function judgePodCredentials(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeOldPods(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeServiceAccount(f: DoctorFacts, c: DoctorContext): Verdict {
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

export function judgeAgent(f: DoctorFacts, c: DoctorContext): Verdict {
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
