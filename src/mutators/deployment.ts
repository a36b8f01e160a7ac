// Makes the MLflow Deployment's pod template use IRSA: projected token volume, mount and env on one container. Pure.
import { posix } from 'node:path';
import type { Config } from '../config.js';
import { cut, isObject, jsonEqual, shown, text, type Json, type JsonObject } from './json.js';
import type { MutationResult } from './index.js';

/** Everything the mutation writes, derived once from the config. */
export interface DeploymentPlan {
  readonly container: string;
  readonly volume: JsonObject;
  readonly mount: JsonObject;
  /** the mount's directory, normalised once here rather than per request */
  readonly mountDir: string;
  readonly env: readonly JsonObject[];
  readonly removeEnv: ReadonlySet<string>;
}

const normPath = (p: unknown) => (typeof p === 'string' ? posix.normalize(p).replace(/\/+$/, '') : p);
const nameOf = (entry: Json) => (isObject(entry) ? entry.name : undefined);

export function deploymentPlan(config: Config): DeploymentPlan {
  const { token } = config;
  const env: JsonObject[] = [
    { name: 'AWS_ROLE_ARN', value: config.roleArn },
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
  return {
    container: config.container,
    volume: {
      name: token.volumeName,
      projected: {
        defaultMode: token.defaultMode,
        sources: [{ serviceAccountToken: { audience: token.audience, expirationSeconds: token.expirationSeconds, path: 'token' } }],
      },
    },
    mount: { name: token.volumeName, mountPath: token.mountPath, readOnly: true },
    mountDir: normPath(token.mountPath) as string,
    env,
    removeEnv: new Set(config.removeEnv),
  };
}

/**
 * One pass over a list: entries `drop` names are left out, each `desired` entry takes the place of the first entry of
 * its name (that entry itself kept when it already equals it) and later ones of that name are left out, and desired
 * entries not found are appended in order. Linear whatever the duplicates, since the caller chooses the list's length;
 * the list itself comes back when nothing changed, so the diff can skip it by reference.
 */
function rebuild(list: readonly Json[], desired: readonly JsonObject[], drop?: (entry: Json) => boolean): Json[] {
  const wanted = new Map(desired.map((d) => [d.name as string, d]));
  const placed = new Set<string>();
  const out: Json[] = [];
  let changed = false;
  for (const entry of list) {
    if (drop?.(entry)) {
      changed = true;
      continue;
    }
    const name = nameOf(entry);
    const want = typeof name === 'string' ? wanted.get(name) : undefined;
    if (!want) out.push(entry);
    else if (placed.has(name as string)) changed = true;
    else {
      placed.add(name as string);
      if (jsonEqual(entry, want)) out.push(entry);
      else {
        out.push(structuredClone(want));
        changed = true;
      }
    }
  }
  for (const d of desired) {
    if (placed.has(d.name as string)) continue;
    out.push(structuredClone(d));
    changed = true;
  }
  return changed ? out : (list as Json[]);
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

export function mutateDeployment(original: JsonObject, plan: DeploymentPlan): MutationResult {
  const where = `Deployment ${describeMeta(original)}`;
  const spec = original.spec;
  const template = isObject(spec) ? spec.template : undefined;
  const podSpec = isObject(template) ? template.spec : undefined;
  if (!isObject(spec) || !isObject(template) || !isObject(podSpec) || !Array.isArray(podSpec.containers)) {
    return unchanged(original, `${where}: spec.template.spec.containers is not a list; not mutated`);
  }
  const at = podSpec.containers.findIndex((c) => nameOf(c) === plan.container);
  if (at < 0) return unchanged(original, `${where}: container "${plan.container}" not found; not mutated`);
  const current = podSpec.containers[at] as JsonObject;
  const volumesNow = listAt(podSpec, 'volumes');
  const mountsNow = listAt(current, 'volumeMounts');
  const envNow = listAt(current, 'env');
  if (!volumesNow || !mountsNow || !envNow) {
    return unchanged(original, `${where}: volumes, volumeMounts or env is not a list; not mutated`);
  }
  const warnings: string[] = [];

  const volumes = rebuild(volumesNow, [plan.volume]);
  // A mount of another volume on our directory (the manual procedure's aws-user-token) would make the pod invalid.
  const displaced: Json[] = [];
  const mounts = rebuild(mountsNow, [plan.mount], (m) => {
    const other = isObject(m) && m.name !== plan.mount.name && normPath(m.mountPath) === plan.mountDir;
    if (other) displaced.push(m.name);
    return other;
  });
  if (displaced.length > 0) {
    const names = displaced.slice(0, NAMES_SHOWN).map((n) => shown(n)).join(', ') + (displaced.length > NAMES_SHOWN ? ` and ${displaced.length - NAMES_SHOWN} more` : '');
    const what = displaced.length === 1 ? `volumeMount ${names}` : `${displaced.length} volumeMounts (${names})`;
    warnings.push(`${where}: removed ${what} of container "${plan.container}", which used the token's mountPath ${plan.mount.mountPath}`);
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
