// AdmissionReview in, AdmissionReview out: checks the envelope, routes to a mutator, derives the JSON patch, echoes uid and version.
import { PatchLimitError, type Operation } from './patch.js';
import { planPatch, type Mutators, type JsonObject } from '../mutators/index.js';
import { cut, isObject, shown, text } from '../mutators/json.js';

export const SUPPORTED_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
const OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

export type Outcome = 'patched' | 'unchanged' | 'ignored' | 'failed-open' | 'too-large';

/**
 * What one review may produce, whatever the request holds (docs/security.md, "Bounded answers and logs"). The warning
 * bounds follow the API server's: it may cut a warning past 256 characters and drops warnings past 4096 in all.
 */
export const LIMITS = {
  /** a patch needing more operations is not sent: the object is admitted unchanged with one warning */
  patchOps: 256,
  /** nor one longer than this, serialised */
  patchBytes: 64 * 1024,
  /** distinct warnings returned and logged; the last one says how many more there were */
  warnings: 8,
  /** characters per warning */
  warningChars: 256,
  /** characters of a request's namespace, name, kind or uid in a log line (uids and names are at most 253) */
  logValueChars: 253,
} as const;

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

/** The reply's shape as a JSON schema: what encodeReview writes, and what the tests compile to check it byte for byte. */
export const REVIEW_REPLY_SCHEMA = {
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    response: {
      type: 'object',
      properties: {
        uid: { type: 'string' },
        allowed: { type: 'boolean' },
        patchType: { type: 'string' },
        patch: { type: 'string' },
        warnings: { type: 'array', items: { type: 'string' } },
      },
    },
  },
} as const;

/**
 * The reply's JSON text: what fastify's serialiser compiled from REVIEW_REPLY_SCHEMA writes (its key order, absent
 * fields left out), byte for byte, without its per-field work: the patch is base64, which needs no escaping, and that
 * serialiser tested the whole of it against a regular expression on every reply.
 */
export function encodeReview(r: AdmissionResponse): string {
  const x = r.response;
  let out = `{"apiVersion":${JSON.stringify(r.apiVersion)},"kind":"${r.kind}","response":{"uid":${JSON.stringify(x.uid)},"allowed":${x.allowed}`;
  if (x.patchType !== undefined) out += `,"patchType":"${x.patchType}"`;
  if (x.patch !== undefined) out += `,"patch":"${x.patch}"`;
  if (x.warnings !== undefined) out += `,"warnings":${JSON.stringify(x.warnings)}`;
  return `${out}}}`;
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

/** Warnings as they leave: duplicates dropped, each cut, at most LIMITS.warnings with the last saying how many more. */
export function boundWarnings(warnings: readonly string[]): string[] {
  const distinct = [...new Set(warnings)].map((w) => cut(w, LIMITS.warningChars));
  if (distinct.length <= LIMITS.warnings) return distinct;
  const kept = distinct.slice(0, LIMITS.warnings - 1);
  return [...kept, `mlflow-irsa-webhook: ${distinct.length - kept.length} more warnings not shown`];
}

/** The answer when the object is admitted unchanged because of a problem: one warning, the outcome saying which. */
function unchangedWith(response: AdmissionResponse, decision: Decision, outcome: Outcome, warning: string, error?: string): ReviewResult {
  decision.outcome = outcome;
  decision.error = error;
  decision.warnings = [warning];
  response.response.warnings = decision.warnings;
  return { ok: true, review: response, decision };
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
    // the request's own fields first; the object's only when they are strings (a {"toString": ...} or a list is none)
    namespace: text(req.namespace) ?? text(m.namespace) ?? '',
    name: text(req.name) ?? text(m.name) ?? '',
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
  let encoded: string;
  try {
    // an UPDATE's object as it stood before: what the mutation keeps across a replace of the whole object
    const old = operation === 'UPDATE' && isObject(req.oldObject) ? req.oldObject : undefined;
    const planned = planPatch(mutate, object, LIMITS.patchOps, old);
    patch = planned.patch;
    encoded = planned.text;
    if (encoded.length > LIMITS.patchBytes) throw new PatchLimitError(LIMITS.patchOps);
    if (planned.warnings.length > 0) decision.warnings = boundWarnings(planned.warnings);
  } catch (err) {
    const target = `${decision.kind} ${cut(decision.namespace, 63)}/${cut(decision.name, 63)}`;
    if (err instanceof PatchLimitError) {
      return unchangedWith(response, decision, 'too-large', `mlflow-irsa-webhook: mutating ${target} would need a patch over ${LIMITS.patchOps} operations or ${LIMITS.patchBytes / 1024} KiB; admitted unchanged`);
    }
    const error = err instanceof Error ? `${err.name}: ${cut(err.message, LIMITS.warningChars)}` : 'non-Error thrown';
    return unchangedWith(response, decision, 'failed-open', `mlflow-irsa-webhook could not mutate ${target}; admitted unchanged`, error);
  }
  if (decision.warnings.length > 0) response.response.warnings = decision.warnings;
  if (patch.length === 0) {
    decision.outcome = 'unchanged';
    return { ok: true, review: response, decision };
  }
  decision.outcome = 'patched';
  decision.patchOps = patch.length;
  response.response.patchType = 'JSONPatch';
  response.response.patch = Buffer.from(encoded).toString('base64');
  return { ok: true, review: response, decision, patch };
}

/** The decision's request-chosen strings cut for a log line; the reply still echoes the uid whole, as it must. */
export function loggable(d: Decision): Pick<Decision, 'uid' | 'kind' | 'namespace' | 'name'> {
  const n = LIMITS.logValueChars;
  return { uid: cut(d.uid, n), kind: cut(d.kind, n), namespace: cut(d.namespace, n), name: cut(d.name, n) };
}
