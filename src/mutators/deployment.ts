// Makes the MLflow Deployment's pod template use IRSA: projected token volume, mount and env on one container. Pure.
import { posix } from 'node:path';
import type { Config } from '../config.js';
import { childArray, isObject, jsonEqual, type Json, type JsonObject } from './json.js';
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

/** Puts `desired` where an entry of its name stands (first one), drops later ones of that name, else appends. */
function upsertByName(list: Json[], desired: JsonObject): void {
  const first = list.findIndex((e) => nameOf(e) === desired.name);
  if (first < 0) {
    list.push(structuredClone(desired));
    return;
  }
  if (!jsonEqual(list[first], desired)) list[first] = structuredClone(desired);
  for (let i = list.length - 1; i > first; i--) if (nameOf(list[i]) === desired.name) list.splice(i, 1);
}

function unchanged(original: JsonObject, warning: string): MutationResult {
  return { object: original, warnings: [warning] };
}

export function mutateDeployment(original: JsonObject, plan: DeploymentPlan): MutationResult {
  const where = `Deployment ${describeMeta(original)}`;
  const spec = original.spec;
  const template = isObject(spec) ? spec.template : undefined;
  const podSpec = isObject(template) ? template.spec : undefined;
  if (!isObject(spec) || !isObject(template) || !isObject(podSpec) || !Array.isArray(podSpec.containers)) {
    return unchanged(original, `${where}: spec.template.spec.containers is not a list; not mutated`);
  }
  if (!podSpec.containers.some((c) => nameOf(c) === plan.container)) {
    return unchanged(original, `${where}: container "${plan.container}" not found; not mutated`);
  }
  // Only the path to what we write is copied (template, pod spec, our container, and the three lists); everything
  // else, managedFields included, is shared with the original and never written. The diff skips shared subtrees
  // without a walk, so the patch costs what changed rather than the size of the pod template.
  const pod: JsonObject = { ...podSpec };
  const object: JsonObject = { ...original, spec: { ...spec, template: { ...template, spec: pod } } };
  const containers = [...podSpec.containers];
  pod.containers = containers;
  const at = containers.findIndex((c) => nameOf(c) === plan.container);
  const container: JsonObject = { ...(containers[at] as JsonObject) };
  containers[at] = container;

  const volumes = childArray(pod, 'volumes');
  const mounts = childArray(container, 'volumeMounts');
  const env = childArray(container, 'env');
  if (!volumes || !mounts || !env) {
    return unchanged(original, `${where}: volumes, volumeMounts or env is not a list; not mutated`);
  }
  const warnings: string[] = [];

  upsertByName(volumes, plan.volume);

  // A mount of another volume on our directory (the manual procedure's aws-user-token) would make the pod invalid.
  for (let i = mounts.length - 1; i >= 0; i--) {
    const m = mounts[i];
    if (isObject(m) && m.name !== plan.mount.name && normPath(m.mountPath) === plan.mountDir) {
      warnings.push(`${where}: removed volumeMount "${String(m.name)}" of container "${plan.container}", which used the token's mountPath ${String(plan.mount.mountPath)}`);
      mounts.splice(i, 1);
    }
  }
  upsertByName(mounts, plan.mount);

  for (let i = env.length - 1; i >= 0; i--) {
    const name = nameOf(env[i]);
    if (typeof name === 'string' && plan.removeEnv.has(name)) env.splice(i, 1);
  }
  for (const entry of plan.env) upsertByName(env, entry);

  return { object, warnings };
}

export function describeMeta(obj: JsonObject): string {
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  return `${String(meta.namespace ?? '?')}/${String(meta.name ?? meta.generateName ?? '?')}`;
}
