// doctor's migration check: the artifacts destination the webhook replaced (recorded on the mlflow Deployment) and
// whether the operator has marked its copy done (migration.completedFrom, in the config, where a Domino re-apply of
// mlflow cannot undo it). Pure, like every check: the Deployment and the count come from read.ts.
import { stripSlash } from '../config/config.js';
import { shellQuote } from '../iam-policy.js';
import { isObject } from '../mutators/json.js';
import { PREVIOUS_DESTINATION_ANNOTATION } from '../mutators/deployment.js';
import { escaped } from '../migrate/plan.js';
import type { DoctorContext, DoctorFacts, Verdict } from './checks.js';

export function judgeMigration(f: DoctorFacts, c: DoctorContext): Verdict {
  const { namespace, deployment, artifactsDestination, migration } = c.config;
  const what = `Deployment ${namespace}/${deployment}`;
  if (!f.deployment.ok) return { status: 'skip', message: `${what} could not be read (see deployment.template)` };
  const metadata = isObject(f.deployment.value.metadata) ? f.deployment.value.metadata : {};
  const recorded = (isObject(metadata.annotations) ? metadata.annotations : {})[PREVIOUS_DESTINATION_ANNOTATION];
  if (recorded === undefined) {
    return { status: 'pass', message: `${what} records no replaced artifacts destination (annotation ${PREVIOUS_DESTINATION_ANNOTATION}): nothing to copy` };
  }
  // the annotation is the cluster's text: shown escaped, compared in the config's spelling
  const previous = typeof recorded === 'string' ? stripSlash(recorded) : String(recorded);
  const shown = `"${escaped(previous)}"`;
  if (previous === artifactsDestination) return { status: 'pass', message: `the recorded previous destination ${shown} is artifactsDestination itself: nothing to copy` };
  if (migration.completedFrom.includes(previous)) {
    return { status: 'pass', message: `the copy from the replaced destination ${shown} to ${artifactsDestination} is marked done (migration.completedFrom)` };
  }
  const database = f.database?.ok && f.database.value.proxiedReferences !== undefined
    ? `; the tracking database holds ${f.database.value.proxiedReferences.total} mlflow-artifacts: reference(s), which MLflow resolves against the current destination${
      f.database.value.proxiedReferences.unreadable.length > 0 ? ` (not counted, this login may not read them: ${f.database.value.proxiedReferences.unreadable.join(', ')})` : ''}`
    : '';
  return {
    status: 'warn',
    message: `${what} records the artifacts destination the webhook replaced, ${shown}: artifacts stored through MLflow's proxy before the switch `
      + `load only once copied to ${artifactsDestination}${database}; the copy is not marked done in migration.completedFrom`,
    fix: `mlflow-irsa-webhook migrate-artifacts --config ${shellQuote(c.configFile)} > migrate-artifacts.sh  # review, run it, then add ${shown} to migration.completedFrom`,
  };
}
