// The request mixes: recorded AdmissionReview fixtures, compact as the API server sends them, Deployments padded to a realistic size.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const fixtures = fileURLToPath(new URL('../test/fixtures/admission/', import.meta.url));
const read = (name) => JSON.parse(readFileSync(`${fixtures}${name}.json`, 'utf8'));

/** Compact Deployment bodies are ~5 KB as recorded; real ones carry more managedFields (Argo CD, operators, HPA...). */
export const DEPLOYMENT_BODY_BYTES = 14 * 1024;
const EXTRA_MANAGERS = ['argocd-application-controller', 'domino-operator', 'kustomize-controller', 'kubectl-edit', 'vpa-recommender', 'nucleus'];

/**
 * Appends copies of the object's own managedFields entries, under other manager names, to request.object (and
 * oldObject, which an UPDATE carries too) until the compact body is at least `bytes` long.
 */
export function padManagedFields(review, bytes) {
  const out = structuredClone(review);
  const objects = [out.request.object, out.request.oldObject].filter(Boolean);
  const templates = objects[0].metadata.managedFields.filter((e) => e.fieldsV1);
  for (let i = 0; JSON.stringify(out).length < bytes; i++) {
    const entry = { ...structuredClone(templates[i % templates.length]), manager: `${EXTRA_MANAGERS[i % EXTRA_MANAGERS.length]}-${i}` };
    delete entry.subresource;
    for (const o of objects) o.metadata.managedFields.push(entry);
  }
  return out;
}

/**
 * Each mix is one request shape, sent over and over. `expect` is what a correct answer looks like, checked once
 * before the load so that a mix can never silently measure 400s or a missing patch; `latency` mixes are also measured
 * at one connection (the p99 target is the padded Deployment CREATE's). Each Deployment mix comes twice:
 * as recorded (the object alone is ~5 KB compact; an UPDATE carries oldObject too) and padded to DEPLOYMENT_BODY_BYTES.
 */
export function buildMixes() {
  const deployments = [
    { id: 'target-create', label: 'target Deployment CREATE (patched)', fixture: 'deployment-create', expect: { patch: true }, latency: true },
    // the recorded object was mutated by an earlier version (no skip-containers for its sidecars): this version patches
    // it once, so the mix sends it as this version leaves it, its golden
    { id: 'mutated-update', label: 'already-mutated Deployment UPDATE (no patch)', fixture: 'deployment-update-restart-mutated', object: 'patched', expect: { patch: false } },
    { id: 'not-ours', label: 'Deployment not ours (fast path)', fixture: 'nontarget-other-name', expect: { patch: false } },
  ];
  const review = (d) => {
    const r = read(d.fixture);
    if (d.object) r.request.object = read(`${d.fixture}.${d.object}`);
    return r;
  };
  const mixes = [
    ...deployments.flatMap((d) => [
      { id: `${d.id}-fixture`, label: `${d.label}, as recorded`, review: review(d), expect: d.expect },
      { id: d.id, label: `${d.label}, padded`, review: padManagedFields(review(d), DEPLOYMENT_BODY_BYTES), expect: d.expect, latency: d.latency },
    ]),
    { id: 'serviceaccount', label: 'ServiceAccount CREATE (patched)', review: read('serviceaccount-create'), expect: { patch: true }, latency: true },
  ];
  return mixes.map((m) => ({ ...m, body: JSON.stringify(m.review), uid: m.review.request.uid }));
}
