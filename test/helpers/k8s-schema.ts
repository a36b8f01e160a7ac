// Validates objects against the Kubernetes OpenAPI schema shipped by kubernetes-models.
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';

/** Throws with the schema's own message when the object is not a valid Deployment/ServiceAccount. */
export function validateK8s(obj: any): void {
  if (obj.kind === 'Deployment') new Deployment(obj).validate();
  else if (obj.kind === 'ServiceAccount') new ServiceAccount(obj).validate();
  else throw new Error(`no schema wired for kind ${obj.kind}`);
}
