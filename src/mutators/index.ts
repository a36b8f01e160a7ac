// Which mutator owns which object: the routing table from (group, version, kind, namespace, name) to a pure mutation.
import type { Config } from '../config/config.js';
import { deploymentPlan, mutateDeployment } from './deployment.js';
import { mutateServiceAccount, serviceAccountPlan } from './service-account.js';
import type { JsonObject } from './json.js';
import { encodedDiff, type Operation } from '../webhook/patch.js';

export type { Json, JsonObject } from './json.js';

export interface MutationResult {
  /**
   * the mutated copy; the original itself when nothing could be done or nothing was missing. A copy on write: it
   * shares every subtree it did not change with the original, and the entries it adds with every other copy (frozen
   * constants of the plan). Read it, or structuredClone it before editing.
   */
  readonly object: JsonObject;
  /** shown to the user by the API server, and logged */
  readonly warnings: readonly string[];
  /** true when the mutation could not apply at all (no such container, a list that is not a list); warnings say why */
  readonly cannot?: true;
}

export interface Target {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** `old`: on an UPDATE, the object as it stood before, for what the mutation keeps across a replace of the whole object. */
export type Mutate = (object: JsonObject, old?: JsonObject) => MutationResult;

export interface Mutators {
  /** The mutation that owns this object, or undefined for anything that is not ours. */
  forTarget(target: Target): Mutate | undefined;
  readonly deployment: Mutate;
  readonly serviceAccount: Mutate;
}

export function buildMutators(config: Config): Mutators {
  const dPlan = deploymentPlan(config);
  const saPlan = serviceAccountPlan(config);
  const deployment: Mutate = (o, old) => mutateDeployment(o, dPlan, old);
  const serviceAccount: Mutate = (o) => mutateServiceAccount(o, saPlan);
  return {
    deployment,
    serviceAccount,
    forTarget(t) {
      if (t.namespace !== config.namespace) return undefined;
      if (t.group === 'apps' && t.version === 'v1' && t.kind === 'Deployment' && t.name === config.deployment) return deployment;
      if (t.group === '' && t.version === 'v1' && t.kind === 'ServiceAccount' && t.name === config.serviceAccount) return serviceAccount;
      return undefined;
    },
  };
}

export interface PlannedPatch {
  /** RFC 6902 operations against the original; empty when the object already has the mutation */
  readonly patch: Operation[];
  /** their JSON text ('[]' when there are none) */
  readonly text: string;
  readonly warnings: readonly string[];
  /** the mutation could not apply at all (see MutationResult.cannot) */
  readonly cannot: boolean;
}

/**
 * Runs a mutation and derives its patch by diffing the original with the mutated copy: the one mechanism every
 * caller uses (admission, restart-target) to ask "what would change?". Throws what the mutator throws, and
 * PatchLimitError when the patch would exceed `maxOps` operations.
 */
export function planPatch(mutate: Mutate, original: JsonObject, maxOps?: number, old?: JsonObject): PlannedPatch {
  const result = mutate(original, old);
  const cannot = result.cannot === true;
  if (result.object === original) return { patch: [], text: '[]', warnings: result.warnings, cannot };
  const { ops, text } = encodedDiff(original, result.object, maxOps);
  return { patch: ops, text, warnings: result.warnings, cannot };
}

/**
 * Whether the mutator could not apply at all (no such container, a list that is not a list): nothing to patch, and a
 * warning saying why. Warnings alone do not say it: an applied mutation warns too (a removed variable, envFrom).
 */
export function cannotMutate(plan: PlannedPatch): boolean {
  return plan.cannot;
}
