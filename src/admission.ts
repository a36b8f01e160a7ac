// AdmissionReview in, AdmissionReview out: checks the envelope, routes to a mutator, derives the JSON patch, echoes uid and version.
import type { Operation } from './patch.js';
import { planPatch, type Mutators, type JsonObject } from './mutators/index.js';
import { isObject } from './mutators/json.js';

export const SUPPORTED_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
const OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

export type Outcome = 'patched' | 'unchanged' | 'ignored' | 'failed-open';

export interface AdmissionResponse {
  apiVersion: string;
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: true;
    patchType?: 'JSONPatch';
    patch?: string;
    warnings?: string[];
  };
}

/** What happened, for the log line and the metrics. Never holds object content. */
export interface Decision {
  uid: string;
  kind: string;
  namespace: string;
  name: string;
  operation: string;
  dryRun: boolean;
  outcome: Outcome;
  patchOps: number;
  warnings: string[];
  error?: string;
}

export type ReviewResult =
  | { ok: true; review: AdmissionResponse; decision: Decision; patch?: Operation[] }
  | { ok: false; error: string };

/** A value quoted into an error message, cut short: the message goes to the log and back to the caller. */
function shown(v: unknown): string {
  const text = JSON.stringify(v) ?? 'nothing';
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

function str(v: unknown): v is string {
  return typeof v === 'string';
}

/** Checks the envelope; returns the problem as one sentence, or undefined when the review is usable. */
export function envelopeProblem(body: unknown): string | undefined {
  if (!isObject(body)) return 'body must be a JSON object (an AdmissionReview)';
  if (body.kind !== 'AdmissionReview') return `kind must be "AdmissionReview", got ${shown(body.kind)}`;
  if (!SUPPORTED_VERSIONS.includes(body.apiVersion as never)) {
    return `apiVersion ${body.apiVersion === undefined ? '(missing)' : shown(body.apiVersion)} is not supported; send ${SUPPORTED_VERSIONS.join(' or ')}`;
  }
  const req = body.request;
  if (!isObject(req)) return 'request must be an object';
  if (!str(req.uid) || req.uid.length === 0) return 'request.uid must be a non-empty string';
  const k = req.kind;
  if (!isObject(k) || !str(k.group) || !str(k.version) || !str(k.kind)) return 'request.kind must be an object with string group, version and kind';
  if (!str(req.operation) || !OPERATIONS.has(req.operation)) return `request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got ${shown(req.operation)}`;
  if ((req.operation === 'CREATE' || req.operation === 'UPDATE') && !isObject(req.object)) return `request.object must be an object for ${req.operation}`;
  for (const key of ['name', 'namespace', 'subResource'] as const) {
    if (req[key] !== undefined && req[key] !== null && !str(req[key])) return `request.${key} must be a string`;
  }
  return undefined;
}

function meta(obj: unknown): JsonObject {
  return isObject(obj) && isObject(obj.metadata) ? obj.metadata : {};
}

/** Answers one AdmissionReview. Never throws: a mutator's exception fails open (allowed, no patch, a warning). */
export function review(body: unknown, mutators: Mutators): ReviewResult {
  const problem = envelopeProblem(body);
  if (problem) return { ok: false, error: problem };
  const env = body as JsonObject;
  const req = env.request as JsonObject;
  const kind = req.kind as JsonObject;
  const object = req.object as JsonObject | undefined;
  const m = meta(object);
  const operation = req.operation as string;
  const decision: Decision = {
    uid: req.uid as string,
    kind: `${kind.group ? `${kind.group}/` : ''}${kind.version}/${kind.kind}`,
    namespace: String(req.namespace || m.namespace || ''),
    name: String(req.name || m.name || ''),
    operation,
    dryRun: req.dryRun === true,
    outcome: 'ignored',
    patchOps: 0,
    warnings: [],
  };
  const response: AdmissionResponse = { apiVersion: env.apiVersion as string, kind: 'AdmissionReview', response: { uid: decision.uid, allowed: true } };

  const mutate = (operation === 'CREATE' || operation === 'UPDATE') && !req.subResource
    ? mutators.forTarget({ group: kind.group as string, version: kind.version as string, kind: kind.kind as string, namespace: decision.namespace, name: decision.name })
    : undefined;
  if (!mutate || !object) return { ok: true, review: response, decision };

  let patch: Operation[];
  try {
    const planned = planPatch(mutate, object);
    decision.warnings = [...planned.warnings];
    patch = planned.patch;
  } catch (err) {
    decision.outcome = 'failed-open';
    decision.error = err instanceof Error ? `${err.name}: ${err.message}` : 'non-Error thrown';
    decision.warnings = [`mlflow-irsa-webhook could not mutate ${decision.kind} ${decision.namespace}/${decision.name}; admitted unchanged`];
    response.response.warnings = decision.warnings;
    return { ok: true, review: response, decision };
  }
  if (decision.warnings.length > 0) response.response.warnings = decision.warnings;
  if (patch.length === 0) {
    decision.outcome = 'unchanged';
    return { ok: true, review: response, decision };
  }
  decision.outcome = 'patched';
  decision.patchOps = patch.length;
  response.response.patchType = 'JSONPatch';
  response.response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
  return { ok: true, review: response, decision, patch };
}
