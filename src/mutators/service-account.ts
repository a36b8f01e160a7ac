// Annotates the MLflow ServiceAccount with the IAM role (and regional STS when a region is set). Pure.
import type { Config } from '../config.js';
import { isObject, type JsonObject } from './json.js';
import { constant } from '../patch.js';
import { describeMeta, unchanged } from './deployment.js';
import type { MutationResult } from './index.js';

export const ROLE_ARN_ANNOTATION = 'eks.amazonaws.com/role-arn';
export const REGIONAL_STS_ANNOTATION = 'eks.amazonaws.com/sts-regional-endpoints';

export interface ServiceAccountPlan {
  /** a constant(): the mutated copy of a ServiceAccount without annotations shares it */
  readonly annotations: Readonly<Record<string, string>>;
  /** the same, as a list to check without allocating */
  readonly entries: ReadonlyArray<readonly [string, string]>;
}

export function serviceAccountPlan(config: Config): ServiceAccountPlan {
  const annotations: Record<string, string> = { [ROLE_ARN_ANNOTATION]: config.roleArn };
  if (config.region) annotations[REGIONAL_STS_ANNOTATION] = 'true';
  return { annotations: constant(annotations), entries: Object.entries(annotations) };
}

/** Whether every annotation of ours is there with our value (the already-mutated check: the original comes back). */
function annotated(annotations: JsonObject, plan: ServiceAccountPlan): boolean {
  for (const [key, value] of plan.entries) if (annotations[key] !== value) return false;
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
  const metadata = { ...original.metadata, annotations: now === undefined || now === null ? plan.annotations : { ...annotations, ...plan.annotations } };
  return { object: { ...original, metadata }, warnings: [] };
}
