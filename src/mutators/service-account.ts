// The MLflow ServiceAccount's annotations for the configured credentials. Pure. IRSA: the IAM role (and regional STS
// when a region is set). EKS Pod Identity: neither, since while the role annotation stands, EKS's webhook gives every
// pod of the ServiceAccount web identity, which botocore uses before Pod Identity's credentials.
import type { Config } from '../config/config.js';
import { isObject, shown, type JsonObject } from './json.js';
import { constant } from '../webhook/patch.js';
import { describeMeta, unchanged } from './deployment.js';
import type { MutationResult } from './index.js';

export const ROLE_ARN_ANNOTATION = 'eks.amazonaws.com/role-arn';
export const REGIONAL_STS_ANNOTATION = 'eks.amazonaws.com/sts-regional-endpoints';

export interface ServiceAccountPlan {
  /** a constant(): the mutated copy of a ServiceAccount without annotations shares it */
  readonly annotations: Readonly<Record<string, string>>;
  /** the same, as a list to check without allocating */
  readonly entries: ReadonlyArray<readonly [string, string]>;
  /** annotations that must not stand (pod-identity: IRSA's) */
  readonly remove: readonly string[];
}

export function serviceAccountPlan(config: Config): ServiceAccountPlan {
  const annotations: Record<string, string> = {};
  const irsa = config.credentials === 'irsa';
  if (irsa) annotations[ROLE_ARN_ANNOTATION] = config.roleArn;
  if (irsa && config.region) annotations[REGIONAL_STS_ANNOTATION] = 'true';
  return { annotations: constant(annotations), entries: Object.entries(annotations), remove: irsa ? [] : [ROLE_ARN_ANNOTATION, REGIONAL_STS_ANNOTATION] };
}

/**
 * The JSON merge patch that repairs a live ServiceAccount the way the mutation would: our annotations set, the ones
 * that must not stand removed (null), every other annotation left alone. The reconcile loop sends it.
 */
export function serviceAccountRepair(plan: ServiceAccountPlan): JsonObject {
  const annotations: JsonObject = { ...plan.annotations };
  for (const key of plan.remove) annotations[key] = null;
  return { metadata: { annotations } };
}

/** Whether every annotation of ours is there with our value, and none that must go (the already-mutated check). */
function annotated(annotations: JsonObject, plan: ServiceAccountPlan): boolean {
  for (const [key, value] of plan.entries) if (annotations[key] !== value) return false;
  for (const key of plan.remove) if (Object.hasOwn(annotations, key)) return false;
  return true;
}

export function mutateServiceAccount(original: JsonObject, plan: ServiceAccountPlan): MutationResult {
  if (!isObject(original.metadata)) {
    return unchanged(original, `ServiceAccount ${describeMeta(original)}: metadata is not an object; not mutated`);
  }
  const now = original.metadata.annotations;
  const annotations = now === undefined || now === null ? {} : now;
  if (!isObject(annotations)) {
    return unchanged(original, `ServiceAccount ${describeMeta(original)}: metadata.annotations is not an object; not mutated`);
  }
  if (annotated(annotations, plan)) return { object: original, warnings: [] };
  const warnings: string[] = [];
  let next: JsonObject = now === undefined || now === null ? plan.annotations : { ...annotations, ...plan.annotations };
  const gone = plan.remove.filter((key) => Object.hasOwn(annotations, key));
  if (gone.length > 0) {
    next = { ...next };
    for (const key of gone) delete next[key];
    const role = annotations[ROLE_ARN_ANNOTATION];
    const names = gone.map((key) => (key === ROLE_ARN_ANNOTATION ? `${key} ${shown(role)}` : key)).join(' and ');
    const why = role === undefined ? 'IRSA\'s, unused with Pod Identity' : 'EKS would give the pods web identity, which botocore uses before Pod Identity';
    warnings.push(`ServiceAccount ${describeMeta(original)}: removed ${names}: ${why}`);
  }
  return { object: { ...original, metadata: { ...original.metadata, annotations: next } }, warnings };
}
