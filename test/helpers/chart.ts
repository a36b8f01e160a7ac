// Renders the Helm chart with the real helm binary and checks the objects against the Kubernetes OpenAPI schema.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Lease } from 'kubernetes-models/coordination.k8s.io/v1/Lease';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1/MutatingWebhookConfiguration';
import { ValidatingAdmissionPolicy } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy';
import { ValidatingAdmissionPolicyBinding } from 'kubernetes-models/admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { root } from './fixtures.js';

const exec = promisify(execFile);
export const helm = join(root, '.cache/helm/helm');
export const chart = join(root, 'charts/mlflow-irsa-webhook');
export const ciValues = join(chart, 'ci/test-values.yaml');
export const RELEASE = 'wh';
export const NS = 'mlflow-irsa-webhook';
export const FULL = 'wh-mlflow-irsa-webhook';
export const TARGET_NS = 'domino-platform';
/** What a cluster serving ValidatingAdmissionPolicy reports; helm 3.17's client-only default set lists group/versions, no kinds. */
export const WITH_POLICY_API = ['--api-versions', 'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy'];
/** What a cluster with prometheus-operator's CRDs reports. */
export const WITH_SERVICE_MONITOR_API = ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor'];

export type Obj = any;

export async function helmRun(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec(helm, args, { maxBuffer: 16 << 20 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
}

/** `helm template` with the CI values plus --set pairs and extra arguments; the rendered objects, or the failure. */
export async function render(set: string[] = [], extra: string[] = []): Promise<Obj[]> {
  const r = await helmRun(['template', RELEASE, chart, '--namespace', NS, '-f', ciValues, ...set.flatMap((s) => ['--set', s]), ...extra]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS()).filter((o) => o !== null);
}

// The core kinds the chart renders, checked against the Kubernetes OpenAPI schema that kubernetes-models ships.
const MODELS: Record<string, new (o: Obj) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Pod': Pod,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'coordination.k8s.io/v1/Lease': Lease,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy': ValidatingAdmissionPolicy,
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding': ValidatingAdmissionPolicyBinding,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** cert-manager kinds have no model in kubernetes-models; they get structural checks in their own test. */
const CERT_MANAGER = new Set(['cert-manager.io/v1/Issuer', 'cert-manager.io/v1/Certificate']);

export function validateAll(t: any, objects: Obj[]): void {
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    const label = `${key} ${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
    if (CERT_MANAGER.has(key)) continue;
    const Model = MODELS[key];
    if (!Model) {
      t.fail(`${label}: no schema for this kind`);
      continue;
    }
    t.doesNotThrow(() => new Model(o).validate(), label);
  }
}

export const find = (objects: Obj[], kind: string, name?: string, namespace?: string): Obj[] =>
  objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name) && (namespace === undefined || o.metadata.namespace === namespace));

export const one = (objects: Obj[], kind: string, name?: string, namespace?: string): Obj => {
  const found = find(objects, kind, name, namespace);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${namespace ?? ''}/${name ?? '*'}, found ${found.length}`);
  return found[0];
};
