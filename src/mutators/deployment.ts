// Makes the MLflow Deployment's pod template use IRSA: projected token volume, mount and env on one container. Pure.
import { posix } from 'node:path';
import type { Config } from '../config.js';
import { cut, isObject, jsonEqual, shown, text, type Json, type JsonObject } from './json.js';
import { constant } from '../patch.js';
import type { MutationResult } from './index.js';

/** The entries one list must hold, each a constant() shared by every mutated copy, and where to find each by name. */
interface Desired {
  readonly entries: readonly JsonObject[];
  readonly index: ReadonlyMap<string, number>;
}

/** Everything the mutation writes, derived once from the config. */
export interface DeploymentPlan {
  readonly container: string;
  readonly volumes: Desired;
  readonly mounts: Desired;
  /** the token's mount, and its directory normalised once here rather than per request */
  readonly mount: JsonObject;
  readonly mountDir: string;
  /** the directory's last segment: a path that normalises to mountDir contains it (see displaces) */
  readonly mountLeaf: string;
  readonly env: Desired;
  readonly removeEnv: ReadonlySet<string>;
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

/** The env entry that carries the IAM role: the first the mutation writes. */
export const ROLE_ARN_ENV = 'AWS_ROLE_ARN';

export function deploymentPlan(config: Config): DeploymentPlan {
  const { token } = config;
  const env: JsonObject[] = [
    { name: ROLE_ARN_ENV, value: config.roleArn },
    { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: posix.join(token.mountPath, 'token') },
    { name: 'MLFLOW_ARTIFACTS_DESTINATION', value: config.artifactsDestination },
  ];
  if (config.region) {
    env.push(
      { name: 'AWS_REGION', value: config.region },
      { name: 'AWS_DEFAULT_REGION', value: config.region },
      { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' },
    );
  }
  const mounts = desired([{ name: token.volumeName, mountPath: token.mountPath, readOnly: true }]);
  const mountDir = normPath(token.mountPath) as string;
  return {
    container: config.container,
    volumes: desired([{
      name: token.volumeName,
      projected: {
        defaultMode: token.defaultMode,
        sources: [{ serviceAccountToken: { audience: token.audience, expirationSeconds: token.expirationSeconds, path: 'token' } }],
      },
    }]),
    mounts,
    mount: mounts.entries[0],
    mountDir,
    mountLeaf: mountDir.slice(mountDir.lastIndexOf('/') + 1),
    env: desired(env),
    removeEnv: new Set(config.removeEnv),
  };
}

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

/** The list at obj[key] ([] when absent or null), or undefined when something else stands there. */
function listAt(obj: JsonObject, key: string): readonly Json[] | undefined {
  const cur = obj[key];
  if (cur === undefined || cur === null) return [];
  return Array.isArray(cur) ? cur : undefined;
}

function unchanged(original: JsonObject, warning: string): MutationResult {
  return { object: original, warnings: [warning] };
}

/** How many names a warning lists before it says "and N more". */
const NAMES_SHOWN = 3;

/** Whether a mount of another volume sits on the token's directory; normalises only a path that could be it. */
function displaces(m: Json, plan: DeploymentPlan): boolean {
  if (!isObject(m) || m.name === plan.mount.name) return false;
  const p = m.mountPath;
  return p === plan.mountDir || (typeof p === 'string' && p.includes(plan.mountLeaf) && normPath(p) === plan.mountDir);
}

export function mutateDeployment(original: JsonObject, plan: DeploymentPlan): MutationResult {
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
  if (!volumesNow || !mountsNow || !envNow) {
    return unchanged(original, `${where()}: volumes, volumeMounts or env is not a list; not mutated`);
  }
  const warnings: string[] = [];

  const volumes = rebuild(volumesNow, plan.volumes);
  // A mount of another volume on our directory (the manual procedure's aws-user-token) would make the pod invalid.
  const displaced: Json[] = [];
  const mounts = rebuild(mountsNow, plan.mounts, (m) => {
    const other = displaces(m, plan);
    if (other) displaced.push((m as JsonObject).name);
    return other;
  });
  if (displaced.length > 0) {
    const names = displaced.slice(0, NAMES_SHOWN).map((n) => shown(n)).join(', ') + (displaced.length > NAMES_SHOWN ? ` and ${displaced.length - NAMES_SHOWN} more` : '');
    const what = displaced.length === 1 ? `volumeMount ${names}` : `${displaced.length} volumeMounts (${names})`;
    warnings.push(`${where()}: removed ${what} of container "${plan.container}", which used the token's mountPath ${plan.mount.mountPath}`);
  }
  const env = rebuild(envNow, plan.env, (e) => {
    const name = nameOf(e);
    return typeof name === 'string' && plan.removeEnv.has(name);
  });
  if (volumes === volumesNow && mounts === mountsNow && env === envNow) return { object: original, warnings };

  // Only the path to what we write is copied (template, pod spec, our container, and the lists that changed);
  // everything else, managedFields included, is shared with the original and never written. The diff skips shared
  // subtrees without a walk, so the patch costs what changed rather than the size of the pod template.
  const container: JsonObject = { ...current };
  if (mounts !== mountsNow) container.volumeMounts = mounts;
  if (env !== envNow) container.env = env;
  const containers = [...podSpec.containers];
  containers[at] = container;
  const pod: JsonObject = { ...podSpec, containers };
  if (volumes !== volumesNow) pod.volumes = volumes;
  return { object: { ...original, spec: { ...spec, template: { ...template, spec: pod } } }, warnings };
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
