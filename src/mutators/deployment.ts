// Makes the MLflow Deployment's pod template use the configured credentials: for IRSA the projected token volume, its
// mount and the web-identity env on one container; for EKS Pod Identity none of them (those of an earlier IRSA mutation
// removed), since EKS's own webhook wires Pod Identity into the pod. Both set the destination and the region. Pure.
import { posix } from 'node:path';
import type { Config, CredentialsMode } from '../config/config.js';
import { cut, isObject, jsonEqual, shown, text, type Json, type JsonObject } from './json.js';
import { constant } from '../webhook/patch.js';
import type { MutationResult } from './index.js';
import { destinationFlags, envSources, removalReason, WEB_IDENTITY_ENV, WEB_IDENTITY_REASON } from './overrides.js';

/** The entries one list must hold, each a constant() shared by every mutated copy, and where to find each by name. */
interface Desired {
  readonly entries: readonly JsonObject[];
  readonly index: ReadonlyMap<string, number>;
}

/** Everything the mutation writes, derived once from the config. */
export interface DeploymentPlan {
  readonly credentials: CredentialsMode;
  readonly container: string;
  /** irsa: the token volume; pod-identity: none */
  readonly volumes: Desired;
  readonly mounts: Desired;
  /** IRSA's token mount (the one irsa writes, the one pod-identity removes), and its directory normalised once here */
  readonly mount: JsonObject;
  readonly mountDir: string;
  /** the directory's last segment: a path that normalises to mountDir contains it (see displaces) */
  readonly mountLeaf: string;
  readonly env: Desired;
  readonly removeEnv: ReadonlySet<string>;
  /** pod-identity: the web-identity env, removed wherever it stands in the container; irsa: none */
  readonly webIdentityEnv: ReadonlySet<string>;
  /** MLFLOW_ARTIFACTS_DESTINATION as the webhook sets it, without a trailing slash */
  readonly destination: string;
}

function desired(entries: JsonObject[]): Desired {
  return { entries: entries.map(constant), index: new Map(entries.map((e, i) => [e.name as string, i])) };
}

const normPath = (p: unknown) => (typeof p === 'string' ? posix.normalize(p).replace(/\/+$/, '') : p);
const nameOf = (entry: Json) => (isObject(entry) ? entry.name : undefined);

/**
 * On the Deployment's own metadata (not the pod template, so recording it restarts nothing): the
 * MLFLOW_ARTIFACTS_DESTINATION the webhook replaced, the first one it saw. migrate-artifacts and doctor read it.
 */
export const PREVIOUS_DESTINATION_ANNOTATION = 'mlflow-irsa-webhook.io/previous-artifacts-destination';

/**
 * On the pod template: the containers the EKS pod-identity webhook must leave alone. It gives every other container
 * and init container of a pod whose ServiceAccount names a role the role's credentials (comma-separated names).
 */
export const SKIP_CONTAINERS_ANNOTATION = 'eks.amazonaws.com/skip-containers';

export const DESTINATION_ENV = 'MLFLOW_ARTIFACTS_DESTINATION';

/** The env entry that carries the IAM role with IRSA: the first the mutation writes. */
export const ROLE_ARN_ENV = 'AWS_ROLE_ARN';

export function deploymentPlan(config: Config): DeploymentPlan {
  const { token } = config;
  const irsa = config.credentials === 'irsa';
  const env: JsonObject[] = irsa ? [
    { name: ROLE_ARN_ENV, value: config.roleArn },
    { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: posix.join(token.mountPath, 'token') },
  ] : [];
  env.push({ name: DESTINATION_ENV, value: config.artifactsDestination });
  if (config.region) {
    env.push(
      { name: 'AWS_REGION', value: config.region },
      { name: 'AWS_DEFAULT_REGION', value: config.region },
      { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' },
    );
  }
  const mount = constant({ name: token.volumeName, mountPath: token.mountPath, readOnly: true });
  const mountDir = normPath(token.mountPath) as string;
  const volume: JsonObject = {
    name: token.volumeName,
    projected: {
      defaultMode: token.defaultMode,
      sources: [{ serviceAccountToken: { audience: token.audience, expirationSeconds: token.expirationSeconds, path: 'token' } }],
    },
  };
  return {
    credentials: config.credentials,
    container: config.container,
    volumes: desired(irsa ? [volume] : []),
    mounts: desired(irsa ? [mount] : []),
    mount,
    mountDir,
    mountLeaf: mountDir.slice(mountDir.lastIndexOf('/') + 1),
    env: desired(env),
    removeEnv: new Set(config.removeEnv),
    webIdentityEnv: new Set(irsa ? [] : WEB_IDENTITY_ENV),
    destination: config.artifactsDestination,
  };
}

/** The env entry doctor's dry run takes away to see the webhook put it back: the first the mutation writes. */
export const probeEnv = (plan: DeploymentPlan): string => plan.env.entries[0].name as string;

/**
 * One pass over a list: entries `drop` names are left out, each desired entry takes the place of the first entry of
 * its name (that entry itself kept when it already equals it) and later ones of that name are left out, and desired
 * entries not found are appended in order. Linear whatever the duplicates, since the caller chooses the list's length.
 * Nothing is allocated until the first change, and the list itself comes back when nothing changed, so that the
 * already-mutated check costs one look-up per entry and the diff skips the list by reference.
 */
function rebuild(list: readonly Json[], want: Desired, drop?: (entry: Json) => boolean): Json[] {
  const { entries, index } = want;
  const placed = new Uint8Array(entries.length);
  let out: Json[] | undefined;
  for (let i = 0; i < list.length; i++) {
    const entry = list[i];
    let next: Json | undefined = entry;
    if (drop?.(entry)) next = undefined;
    else {
      const name = nameOf(entry);
      const at = typeof name === 'string' ? index.get(name) : undefined;
      if (at !== undefined) {
        if (placed[at]) next = undefined;
        else {
          placed[at] = 1;
          if (!jsonEqual(entry, entries[at])) next = entries[at];
        }
      }
    }
    if (next === entry) out?.push(entry);
    else {
      out ??= list.slice(0, i);
      if (next !== undefined) out.push(next);
    }
  }
  for (let at = 0; at < entries.length; at++) {
    if (placed[at]) continue;
    out ??= list.slice();
    out.push(entries[at]);
  }
  return out ?? (list as Json[]);
}

/** The object at obj[key] ({} when absent or null), or undefined when something else stands there. */
function objectAt(obj: JsonObject, key: string): JsonObject | undefined {
  const cur = obj[key];
  if (cur === undefined || cur === null) return {};
  return isObject(cur) ? cur : undefined;
}

/** The list at obj[key] ([] when absent or null), or undefined when something else stands there. */
function listAt(obj: JsonObject, key: string): readonly Json[] | undefined {
  const cur = obj[key];
  if (cur === undefined || cur === null) return [];
  return Array.isArray(cur) ? cur : undefined;
}

/** The answer when the mutation cannot apply at all: the original, and the one warning that says why. */
export function unchanged(original: JsonObject, warning: string): MutationResult {
  return { object: original, warnings: [warning], cannot: true };
}

/** How many names a warning lists before it says "and N more". */
const NAMES_SHOWN = 3;

/** Whether a mount path is the token's directory; normalises only a path that could be it. */
function onTokenDir(p: Json | undefined, plan: DeploymentPlan): boolean {
  return p === plan.mountDir || (typeof p === 'string' && p.includes(plan.mountLeaf) && normPath(p) === plan.mountDir);
}

/** irsa: a mount of another volume on the token's directory, which would make the pod invalid beside ours. */
function displaces(m: Json, plan: DeploymentPlan): boolean {
  return isObject(m) && m.name !== plan.mount.name && onTokenDir(m.mountPath, plan);
}

/** pod-identity: any mount of IRSA's token, ours by its volume name or another (the manual procedure's) on its directory. */
function holdsToken(m: Json, plan: DeploymentPlan): boolean {
  return isObject(m) && (m.name === plan.mount.name || onTokenDir(m.mountPath, plan));
}

/** The names of the volumes mounted by any container or init container of the pod, ours as it will be. */
function mountedVolumes(podSpec: JsonObject, at: number, mounts: readonly Json[]): Set<Json> {
  const names = new Set<Json>();
  for (const key of ['containers', 'initContainers'] as const) {
    const list = podSpec[key];
    if (!Array.isArray(list)) continue;
    list.forEach((c, i) => {
      const own = key === 'containers' && i === at ? mounts : isObject(c) && Array.isArray(c.volumeMounts) ? c.volumeMounts : [];
      for (const m of own) if (isObject(m)) names.add(m.name);
    });
  }
  return names;
}

/**
 * pod-identity: the volumes to leave out, IRSA's token volume and those whose mounts were removed, each only when no
 * container mounts it any more (a volume still mounted must stay, or the API server refuses the pod); warnings say which.
 */
function tokenVolumes(volumesNow: readonly Json[], podSpec: JsonObject, at: number, mounts: readonly Json[], removedMounts: readonly Json[], plan: DeploymentPlan,
  warnings: string[], where: () => string): Json[] {
  const candidates = new Set<Json>([plan.mount.name, ...removedMounts]);
  if (!volumesNow.some((v) => candidates.has(nameOf(v) ?? null))) return volumesNow as Json[];
  const mounted = mountedVolumes(podSpec, at, mounts);
  const removed: string[] = [];
  const kept: string[] = [];
  const volumes = rebuild(volumesNow, plan.volumes, (v) => {
    const name = nameOf(v);
    if (name === undefined || !candidates.has(name)) return false;
    if (mounted.has(name)) {
      kept.push(shown(name));
      return false;
    }
    removed.push(shown(name));
    return true;
  });
  if (removed.length > 0) {
    warnings.push(`${where()}: removed ${removed.length === 1 ? `volume ${removed[0]}` : `${removed.length} volumes (${listed(removed)})`}, which held IRSA's token and no container mounts any more`);
  }
  if (kept.length > 0) {
    warnings.push(`${where()}: kept ${kept.length === 1 ? `volume ${kept[0]}` : `${kept.length} volumes (${listed(kept)})`} of IRSA's token: another container still mounts it`);
  }
  return volumes;
}

/** Items for a warning: the first NAMES_SHOWN, then "and N more". */
function listed(items: readonly string[]): string {
  return items.slice(0, NAMES_SHOWN).join(', ') + (items.length > NAMES_SHOWN ? ` and ${items.length - NAMES_SHOWN} more` : '');
}

const withoutSlash = (uri: string) => (uri.endsWith('/') ? uri.slice(0, -1) : uri);

/**
 * The previous destination to record on the Deployment's metadata, or undefined when there is nothing to record: the
 * value already recorded wins (the first one seen), then the one the old object carried (a re-apply that replaced the
 * whole object dropped it), then the container's own MLFLOW_ARTIFACTS_DESTINATION when it is not ours.
 */
function previousDestination(annotations: JsonObject | undefined, old: JsonObject | undefined, envNow: readonly Json[], plan: DeploymentPlan, warnings: string[], where: () => string): string | undefined {
  if (typeof annotations?.[PREVIOUS_DESTINATION_ANNOTATION] === 'string') return undefined;
  const oldMeta = isObject(old?.metadata) ? old.metadata : undefined;
  const kept = isObject(oldMeta?.annotations) ? oldMeta.annotations[PREVIOUS_DESTINATION_ANNOTATION] : undefined;
  if (typeof kept === 'string' && kept !== '') return kept;
  const entry = envNow.find((e) => nameOf(e) === DESTINATION_ENV);
  if (!isObject(entry)) return undefined;
  if (typeof entry.value === 'string') {
    return entry.value !== '' && withoutSlash(entry.value) !== plan.destination ? entry.value : undefined;
  }
  if (entry.valueFrom !== undefined) {
    warnings.push(`${where()}: ${DESTINATION_ENV} came from valueFrom, so the destination it replaces is not recorded; give migrate-artifacts --from`);
  }
  return undefined;
}

/** The skip-containers value that names every container but ours, keeping what it already named; undefined: as it is. */
function skipContainers(current: Json | undefined, podSpec: JsonObject, plan: DeploymentPlan): string | undefined {
  const named = typeof current === 'string' ? current.split(',').map((n) => n.trim()).filter(Boolean) : [];
  const have = new Set(named);
  const add: string[] = [];
  for (const key of ['containers', 'initContainers'] as const) {
    const list = podSpec[key];
    if (!Array.isArray(list)) continue;
    for (const c of list) {
      const name = nameOf(c);
      if (typeof name !== 'string' || name === plan.container || have.has(name)) continue;
      have.add(name);
      add.push(name);
    }
  }
  return add.length === 0 ? undefined : [...named, ...add].join(',');
}

/** Warnings for what the container keeps that the webhook cannot change: envFrom sources and MLflow's own flags. */
function overrideWarnings(container: JsonObject, plan: DeploymentPlan, where: () => string): string[] {
  const out: string[] = [];
  const sources = envSources(container);
  if (sources.length > 0) {
    const names = listed(sources.map((x) => `${x.kind} ${shown(x.name)}`));
    out.push(`${where()}: container "${plan.container}" takes env from ${names} (envFrom), where the webhook cannot remove AWS keys or profiles; mlflow-irsa-webhook doctor checks them`);
  }
  for (const f of destinationFlags(container)) {
    out.push(`${where()}: container "${plan.container}" runs with ${f.flag}: ${f.reason}; remove the argument`);
  }
  return out;
}

export function mutateDeployment(original: JsonObject, plan: DeploymentPlan, old?: JsonObject): MutationResult {
  // only warnings need it, so it is not built on the way that has none
  const where = () => `Deployment ${describeMeta(original)}`;
  const spec = original.spec;
  const template = isObject(spec) ? spec.template : undefined;
  const podSpec = isObject(template) ? template.spec : undefined;
  if (!isObject(spec) || !isObject(template) || !isObject(podSpec) || !Array.isArray(podSpec.containers)) {
    return unchanged(original, `${where()}: spec.template.spec.containers is not a list; not mutated`);
  }
  const at = podSpec.containers.findIndex((c) => nameOf(c) === plan.container);
  if (at < 0) return unchanged(original, `${where()}: container "${plan.container}" not found; not mutated`);
  const current = podSpec.containers[at] as JsonObject;
  const volumesNow = listAt(podSpec, 'volumes');
  const mountsNow = listAt(current, 'volumeMounts');
  const envNow = listAt(current, 'env');
  const meta = objectAt(original, 'metadata');
  const annotationsNow = meta && objectAt(meta, 'annotations');
  const templateMeta = objectAt(template, 'metadata');
  const podAnnotationsNow = templateMeta && objectAt(templateMeta, 'annotations');
  if (!volumesNow || !mountsNow || !envNow) {
    return unchanged(original, `${where()}: volumes, volumeMounts or env is not a list; not mutated`);
  }
  if (!meta || !annotationsNow || !templateMeta || !podAnnotationsNow) {
    return unchanged(original, `${where()}: metadata.annotations or spec.template.metadata.annotations is not an object; not mutated`);
  }
  const warnings: string[] = [];

  const irsa = plan.credentials === 'irsa';
  // irsa: a mount of another volume on our directory (the manual procedure's aws-user-token) would make the pod
  // invalid; pod-identity: every mount of IRSA's token goes.
  const displaced: Json[] = [];
  const mounts = rebuild(mountsNow, plan.mounts, (m) => {
    const drop = irsa ? displaces(m, plan) : holdsToken(m, plan);
    if (drop) displaced.push((m as JsonObject).name);
    return drop;
  });
  if (displaced.length > 0) {
    const names = listed(displaced.map((n) => shown(n)));
    const what = displaced.length === 1 ? `volumeMount ${names}` : `${displaced.length} volumeMounts (${names})`;
    warnings.push(irsa
      ? `${where()}: removed ${what} of container "${plan.container}", which used the token's mountPath ${plan.mount.mountPath}`
      : `${where()}: removed ${what} of container "${plan.container}": ${displaced.length === 1 ? 'it' : 'they'} held IRSA's token (on ${plan.mount.mountPath}), which Pod Identity does not use`);
  }
  const volumes = irsa ? rebuild(volumesNow, plan.volumes) : tokenVolumes(volumesNow, podSpec, at, mounts, displaced, plan, warnings, where);
  // Removed names grouped by their reason, in the order they stood: one warning a reason.
  const removed = new Map<string, string[]>();
  const env = rebuild(envNow, plan.env, (e) => {
    const name = nameOf(e);
    if (typeof name !== 'string') return false;
    const web = plan.webIdentityEnv.has(name);
    if (!web && !plan.removeEnv.has(name)) return false;
    const reason = web ? WEB_IDENTITY_REASON : removalReason(name, plan.credentials);
    const names = removed.get(reason) ?? [];
    if (!names.includes(name)) names.push(name);
    removed.set(reason, names);
    return true;
  });
  for (const [reason, names] of removed) {
    warnings.push(`${where()}: removed env ${names.join(', ')} from container "${plan.container}": ${reason}`);
  }
  warnings.push(...overrideWarnings(current, plan, where));
  const previous = previousDestination(annotationsNow, old, envNow, plan, warnings, where);
  const skip = skipContainers(podAnnotationsNow[SKIP_CONTAINERS_ANNOTATION], podSpec, plan);
  if (volumes === volumesNow && mounts === mountsNow && env === envNow && previous === undefined && skip === undefined) {
    return { object: original, warnings };
  }

  // Only the path to what we write is copied (metadata's annotations, the template, pod spec, our container, and the
  // lists that changed); everything else, managedFields included, is shared with the original and never written. The
  // diff skips shared subtrees without a walk, so the patch costs what changed rather than the size of the pod template.
  let pod = podSpec;
  if (volumes !== volumesNow || mounts !== mountsNow || env !== envNow) {
    const container: JsonObject = { ...current };
    if (mounts !== mountsNow) container.volumeMounts = mounts;
    if (env !== envNow) container.env = env;
    const containers = [...podSpec.containers];
    containers[at] = container;
    pod = { ...podSpec, containers };
    if (volumes !== volumesNow) pod.volumes = volumes;
  }
  const mutated: JsonObject = { ...original };
  if (pod !== podSpec || skip !== undefined) {
    const tmpl: JsonObject = { ...template, spec: pod };
    if (skip !== undefined) tmpl.metadata = { ...templateMeta, annotations: { ...podAnnotationsNow, [SKIP_CONTAINERS_ANNOTATION]: skip } };
    mutated.spec = { ...spec, template: tmpl };
  }
  if (previous !== undefined) mutated.metadata = { ...meta, annotations: { ...annotationsNow, [PREVIOUS_DESTINATION_ANNOTATION]: previous } };
  return { object: mutated, warnings };
}

/** namespace/name of an object for a message: each a string cut short, or "?" when it is anything else. */
export function describeMeta(obj: JsonObject): string {
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  const part = (v: unknown) => {
    const t = text(v);
    return t === undefined ? undefined : cut(t, 253);
  };
  return `${part(meta.namespace) ?? '?'}/${part(meta.name) ?? part(meta.generateName) ?? '?'}`;
}
