// Annotates the MLflow ServiceAccount with the IAM role (and regional STS when a region is set). Pure.
import type { Config } from '../config.js';
import { isObject, type JsonObject } from './json.js';
import { describeMeta } from './deployment.js';
import type { MutationResult } from './index.js';

export const ROLE_ARN_ANNOTATION = 'eks.amazonaws.com/role-arn';
export const REGIONAL_STS_ANNOTATION = 'eks.amazonaws.com/sts-regional-endpoints';

export interface ServiceAccountPlan {
  readonly annotations: Readonly<Record<string, string>>;
}

export function serviceAccountPlan(config: Config): ServiceAccountPlan {
  const annotations: Record<string, string> = { [ROLE_ARN_ANNOTATION]: config.roleArn };
  if (config.region) annotations[REGIONAL_STS_ANNOTATION] = 'true';
  return { annotations };
}

export function mutateServiceAccount(original: JsonObject, plan: ServiceAccountPlan): MutationResult {
  if (!isObject(original.metadata)) {
    return { object: original, warnings: [`ServiceAccount ${describeMeta(original)}: metadata is not an object; not mutated`] };
  }
  const metadata = { ...original.metadata };
  const annotations = metadata.annotations === undefined || metadata.annotations === null ? {} : metadata.annotations;
  if (!isObject(annotations)) {
    return { object: original, warnings: [`ServiceAccount ${describeMeta(original)}: metadata.annotations is not an object; not mutated`] };
  }
  metadata.annotations = { ...annotations, ...plan.annotations };
  return { object: { ...original, metadata }, warnings: [] };
}
