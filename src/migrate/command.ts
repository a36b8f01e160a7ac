// The `migrate-artifacts` command: changes nothing. Reads the tracking database (READ ONLY) and the old destination
// (--from, or the annotation the webhook records on the mlflow Deployment), and prints the aws script that copies what
// the database references from one destination to the other (plan.ts), or the plan as JSON.
import { pino } from 'pino';
import { stringOption, usageText, UsageError, type CommandArgs, type Values } from '../command.js';
import type { Config } from '../config/config.js';
import { databaseUrlOption } from '../db/command.js';
import { withDatabase } from '../db/connect.js';
import { transaction } from '../db/install.js';
import { kubeconfigHelp, kubeconfigOption } from '../k8s/args.js';
import { createLogger } from '../log.js';
import { isObject } from '../mutators/json.js';
import { PREVIOUS_DESTINATION_ANNOTATION } from '../mutators/deployment.js';
import { destination, destinationProblem, overlaps, PlanBuilder, renderAwsCli, renderJson, type MigrationPlan } from './plan.js';
import { readReferences, requireCatalog } from './references.js';

/** How long an unreachable database is retried: the command is run by hand, so not long. */
export const DATABASE_WAIT_SECONDS = 10;

export const usage = usageText('--config FILE [--database-url URL] [--from s3://OLD[/prefix]] [--kubeconfig FILE] [--reverse] [--output aws-cli|json]\n'
  + '  changes nothing: reads the tracking database (read-only) and prints the aws script that copies every artifact it references\n'
  + '  from the old artifacts destination to artifactsDestination under the same keys, then verifies that nothing is left to copy', [
  ['--database-url', 'postgres://user@host:port/db?sslmode=...; else PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT (never printed)'],
  ['--from', `the old destination, s3://<bucket>[/prefix]; default: the ${PREVIOUS_DESTINATION_ANNOTATION} annotation the webhook records on the mlflow Deployment`],
  [kubeconfigHelp[0], `${kubeconfigHelp[1]}; read only without --from, for the annotation`],
  ['--reverse', 'the way back, for an uninstall: from artifactsDestination to the old destination'],
  ['--output', 'aws-cli (default): a bash script to review and run; json: the plan (from, to, prefixes with counts, references, unmapped)'],
]);


export const options = {
  ...kubeconfigOption,
  'database-url': { type: 'string' as const },
  from: { type: 'string' as const },
  reverse: { type: 'boolean' as const },
  output: { type: 'string' as const },
};

const ANNOTATION_SOURCE = (config: Config) => `the ${PREVIOUS_DESTINATION_ANNOTATION} annotation on Deployment ${config.namespace}/${config.deployment}`;

/** Domino's current destination, for the message that asks for --from before the webhook has replaced it. */
const CURRENT_VALUE = (config: Config) => `kubectl -n ${config.namespace} get deployment ${config.deployment} -o jsonpath=`
  + `'{.spec.template.spec.containers[?(@.name=="${config.container}")].env[?(@.name=="MLFLOW_ARTIFACTS_DESTINATION")].value}'`;

/** The old destination: --from, else the annotation on the Deployment, read with the kubeconfig. */
async function oldDestination(values: Values, config: Config): Promise<{ uri: string; source: string }> {
  const from = stringOption(values, 'from');
  if (from !== undefined) {
    const problem = destinationProblem(from);
    if (problem) throw new UsageError(`--from ${JSON.stringify(from)} is not valid (${problem})`);
    return { uri: from, source: '--from' };
  }
  const where = `Deployment ${config.namespace}/${config.deployment}`;
  let deployment;
  try {
    const { kubeClient } = await import('../k8s/client.js');
    deployment = await (await kubeClient(stringOption(values, 'kubeconfig'))).readDeployment(config.namespace, config.deployment);
  } catch (err) {
    throw new Error(`no --from, and the old destination could not be read from ${where}: ${(err as Error).message}; pass --from s3://<old bucket>[/prefix]`);
  }
  const annotations = isObject(deployment.metadata) && isObject(deployment.metadata.annotations) ? deployment.metadata.annotations : {};
  const value = annotations[PREVIOUS_DESTINATION_ANNOTATION];
  if (value === undefined) {
    throw new UsageError(`no old destination: --from is not given and ${where} has no ${PREVIOUS_DESTINATION_ANNOTATION} annotation `
      + '(the webhook records there the MLFLOW_ARTIFACTS_DESTINATION it replaces, at the first rollout through it). Before that rollout, '
      + `pass Domino's current value as --from; it is what ${CURRENT_VALUE(config)} prints`);
  }
  const problem = typeof value === 'string' ? destinationProblem(value) : 'not a string';
  if (problem) throw new Error(`${ANNOTATION_SOURCE(config)} is not an s3:// destination (${problem}); pass --from s3://<old bucket>[/prefix]`);
  return { uri: value as string, source: ANNOTATION_SOURCE(config) };
}

export async function run({ values, config }: CommandArgs): Promise<number> {
  const output = stringOption(values, 'output') ?? 'aws-cli';
  if (output !== 'aws-cli' && output !== 'json') throw new UsageError(`--output ${JSON.stringify(output)} is not one of aws-cli, json`);
  const databaseUrl = databaseUrlOption(values);
  const reverse = values.reverse === true;
  // Errors other than usage reach cli.ts, which prints "migrate-artifacts: <message>" and exits 1.
  const old = await oldDestination(values, config);
  const ours = destination(config.artifactsDestination);
  const previous = destination(old.uri);
  if (overlaps(previous, ours)) {
    throw new UsageError(previous.uri === ours.uri
      ? `the old destination ${previous.uri} (${old.source}) is artifactsDestination itself: there is nothing to copy`
      : `the old destination ${previous.uri} (${old.source}) and artifactsDestination ${ours.uri} overlap (one lies inside the other): a copy between them would copy into itself`);
  }
  const [from, to] = reverse ? [ours, previous] : [previous, ours];
  // retries and connection problems go to stderr, so that stdout stays the script (or valid JSON)
  const logger = createLogger('warn', pino.destination({ dest: 2, sync: true }));
  const plan: MigrationPlan = await withDatabase({ databaseUrl, waitSeconds: DATABASE_WAIT_SECONDS }, logger, (client) =>
    transaction(client, { lock: false, readOnly: true }, async () => {
      const kinds = await requireCatalog(client, config.trigger.schema);
      const builder = new PlanBuilder(from, to, { reverse, oldDestinationFrom: old.source, present: kinds });
      await readReferences(client, config.trigger.schema, kinds, (ref) => builder.add(ref));
      return builder.plan();
    }));
  if (plan.unmapped.count > 0) {
    process.stderr.write(`migrate-artifacts: ${plan.unmapped.count} reference(s) cannot be mapped to ${plan.from}; the ${output === 'json' ? 'plan' : 'script\'s header'} lists them\n`);
  }
  process.stdout.write(output === 'json' ? renderJson(plan) : renderAwsCli(plan));
  return 0;
}
