// The `iam-policy` command: the least-privilege IAM trust policy, S3 permissions policy and `aws iam` commands for the role.
//
// The documents are built by pure functions from (config, OIDC provider, prefix) so tests compare them with hand-written
// expectations; printing (JSON or a shell script) is a separate step.
import { PROXY_ROOT } from './artifact-location.js';
import { stringOption, UsageError, type CommandArgs } from './command.js';
import type { Config } from './config.js';

export const POLICY_VERSION = '2012-10-17';
/** The inline policy's name on the role; put-role-policy overwrites a policy of the same name, so reruns are idempotent. */
export const POLICY_NAME = 'mlflow-irsa-s3-artifacts';
export const TRUST_POLICY_FILE = 'trust-policy.json';
export const S3_POLICY_FILE = 's3-policy.json';

export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow';
  Principal?: { Federated: string };
  Action: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  Version: typeof POLICY_VERSION;
  Statement: PolicyStatement[];
}

export interface RoleRef {
  readonly arn: string;
  readonly partition: string;
  readonly account: string;
  /** "/" or "/a/b/", as `aws iam create-role --path` takes it */
  readonly path: string;
  readonly name: string;
}

export interface IamPlan {
  readonly role: RoleRef;
  /** host/path without scheme, e.g. oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE */
  readonly oidcProvider: string;
  readonly bucket: string;
  /** the key prefix objects are confined to, without slashes at either end; "" for the whole bucket */
  readonly objectPrefix: string;
  readonly trustPolicy: PolicyDocument;
  readonly permissionsPolicy: PolicyDocument;
  readonly policyName: string;
  /** `aws` argument vectors, reading the two documents from TRUST_POLICY_FILE and S3_POLICY_FILE */
  readonly commands: readonly string[][];
  /** things the operator should know, e.g. custom locations the policy does not reach */
  readonly notes: readonly string[];
}

/** A bad --oidc-provider or --prefix: the CLI turns it into exit 2 with the usage line. */
export class IamInputError extends UsageError {}

const PROVIDER_RULE = 'oidc.eks.<region>.amazonaws.com[.cn]/id/<32 upper-case letters or digits>, optionally with https://';
const PROVIDER = /^oidc\.eks\.([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-[0-9]+)\.(amazonaws\.com(?:\.cn)?)\/id\/([0-9A-Z]{32})$/;
const ROLE_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role(\/(?:.*\/)?)([^/]+)$/;
const PREFIX = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** The partition a region belongs to, for the regions the config schema's roleArn pattern can name. */
function partitionOf(region: string, domain: string): string {
  if (domain === 'amazonaws.com.cn' || region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  return 'aws';
}

/** Parses roleArn (already checked by the config schema) into partition, account, path and name. */
export function parseRoleArn(arn: string): RoleRef {
  const m = ROLE_ARN.exec(arn);
  if (!m) throw new IamInputError(`roleArn ${JSON.stringify(arn)} is not arn:<partition>:iam::<account>:role/[path/]name`);
  return { arn, partition: m[1], account: m[2], path: m[3], name: m[4] };
}

/**
 * Normalises an EKS OIDC issuer to the form IAM uses in provider ARNs and condition keys: no scheme, no trailing
 * slash, lower-case host. The ID keeps its case: IAM compares condition keys as written.
 */
export function normaliseOidcProvider(value: string, partition?: string): string {
  const trimmed = value.trim().replace(/^https:\/\//i, '').replace(/\/+$/, '');
  const slash = trimmed.indexOf('/');
  const provider = slash < 0 ? trimmed.toLowerCase() : trimmed.slice(0, slash).toLowerCase() + trimmed.slice(slash);
  const m = PROVIDER.exec(provider);
  if (!m) throw new IamInputError(`--oidc-provider ${JSON.stringify(value)} is not an EKS OIDC issuer (${PROVIDER_RULE})`);
  const own = partitionOf(m[1], m[2]);
  if (partition !== undefined && own !== partition) {
    throw new IamInputError(`--oidc-provider ${JSON.stringify(value)} is in partition ${own}, but roleArn is in ${partition}; the provider and the role must be in one partition`);
  }
  return provider;
}

/** Bucket and key prefix (no slashes at the ends) of an s3:// URI. */
export function splitS3Uri(uri: string): { bucket: string; prefix: string } {
  const rest = uri.replace(/^s3:\/\//, '');
  const slash = rest.indexOf('/');
  if (slash < 0) return { bucket: rest, prefix: '' };
  return { bucket: rest.slice(0, slash), prefix: rest.slice(slash + 1).replace(/\/+$/, '') };
}

const within = (prefix: string, outer: string) => outer === '' || prefix === outer || prefix.startsWith(`${outer}/`);

/**
 * The object prefix the policy grants. Without --prefix it is artifactsDestination's own prefix (the bucket root when
 * it has none): MLflow's artifact root and every location the project-id trigger sets lie under it, so nothing wider is
 * needed. --prefix narrows further, and must stay inside artifactsDestination, or MLflow could write nowhere it uses.
 */
export function objectPrefix(config: Config, prefix?: string): string {
  const dest = splitS3Uri(config.artifactsDestination);
  if (prefix === undefined) return dest.prefix;
  const p = prefix.replace(/^\/+|\/+$/g, '');
  if (!PREFIX.test(p) || p.split('/').some((s) => s === '.' || s === '..')) {
    throw new IamInputError(`--prefix ${JSON.stringify(prefix)} is not a key prefix (segments of A-Z a-z 0-9 . _ - separated by /, no . or .. segments)`);
  }
  if (!within(p, dest.prefix)) {
    throw new IamInputError(`--prefix ${JSON.stringify(prefix)} is outside artifactsDestination ${config.artifactsDestination}; MLflow writes only under that, so the prefix must be "${dest.prefix}" or below it`);
  }
  return p;
}

/** Who may assume the role: only the MLflow service account's projected token, only with our audience. */
export function trustPolicy(role: RoleRef, oidcProvider: string, config: Config): PolicyDocument {
  return {
    Version: POLICY_VERSION,
    Statement: [{
      Effect: 'Allow',
      Principal: { Federated: `arn:${role.partition}:iam::${role.account}:oidc-provider/${oidcProvider}` },
      Action: 'sts:AssumeRoleWithWebIdentity',
      Condition: {
        StringEquals: {
          [`${oidcProvider}:aud`]: config.token.audience,
          [`${oidcProvider}:sub`]: `system:serviceaccount:${config.namespace}:${config.serviceAccount}`,
        },
      },
    }],
  };
}

/**
 * What the role may do in S3, split by resource: bucket-level actions match only the bucket ARN, object actions only
 * object ARNs (the procedure's `s3:*` on the bucket ARN matched no object at all). When objects are confined to a
 * prefix, listing is confined to it too (s3:prefix); GetBucketLocation does not carry s3:prefix, so it gets its own
 * unconditioned statement rather than being denied by the condition.
 */
export function permissionsPolicy(partition: string, bucket: string, prefix: string): PolicyDocument {
  const bucketArn = `arn:${partition}:s3:::${bucket}`;
  const objects = { Sid: 'ReadWriteArtifactObjects', Effect: 'Allow' as const, Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], Resource: `${bucketArn}/${prefix ? `${prefix}/` : ''}*` };
  if (prefix === '') {
    return {
      Version: POLICY_VERSION,
      Statement: [{ Sid: 'ListArtifactBucket', Effect: 'Allow', Action: ['s3:ListBucket', 's3:GetBucketLocation'], Resource: bucketArn }, objects],
    };
  }
  return {
    Version: POLICY_VERSION,
    Statement: [
      { Sid: 'LocateArtifactBucket', Effect: 'Allow', Action: 's3:GetBucketLocation', Resource: bucketArn },
      { Sid: 'ListArtifactPrefix', Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': `${prefix}/*` } } },
      objects,
    ],
  };
}

/** The aws CLI calls that create the role with the trust policy and attach the S3 policy inline. */
export function awsCommands(role: RoleRef, policyName: string): string[][] {
  return [
    ['aws', 'iam', 'create-role', '--role-name', role.name, '--path', role.path,
      '--assume-role-policy-document', `file://${TRUST_POLICY_FILE}`,
      '--description', 'MLflow artifacts in S3 via IRSA (mlflow-irsa-webhook)'],
    ['aws', 'iam', 'put-role-policy', '--role-name', role.name, '--policy-name', policyName,
      '--policy-document', `file://${S3_POLICY_FILE}`],
  ];
}

export function iamPlan(config: Config, oidcProvider: string, prefix?: string): IamPlan {
  const role = parseRoleArn(config.roleArn);
  const provider = normaliseOidcProvider(oidcProvider, role.partition);
  const { bucket } = splitS3Uri(config.artifactsDestination);
  const objPrefix = objectPrefix(config, prefix);
  const notes: string[] = [];
  if (config.trigger.mode === 'custom-location') {
    const reach = `s3://${bucket}/${objPrefix ? `${objPrefix}/` : ''}`;
    for (const allowed of config.trigger.allowedLocationPrefixes) {
      // the artifact proxy stores mlflow-artifacts:/<path> at <artifactsDestination>/<path>
      const s3 = allowed.startsWith(PROXY_ROOT) ? `${config.artifactsDestination}/${allowed.slice(PROXY_ROOT.length)}` : allowed;
      if (!s3.startsWith(reach) && `${s3}/` !== reach) {
        notes.push(`trigger.allowedLocationPrefixes admits ${allowed}, which this policy does not reach (it grants ${reach}*); grant that location separately if MLflow must serve it`);
      }
    }
  }
  return {
    role,
    oidcProvider: provider,
    bucket,
    objectPrefix: objPrefix,
    trustPolicy: trustPolicy(role, provider, config),
    permissionsPolicy: permissionsPolicy(role.partition, bucket, objPrefix),
    policyName: POLICY_NAME,
    commands: awsCommands(role, POLICY_NAME),
    notes,
  };
}

/** POSIX shell quoting: bare when only safe characters, else single quotes. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

const pretty = (doc: unknown) => JSON.stringify(doc, null, 2);

/** One JSON document with both policies, the role and the commands (as shell lines). */
export function renderJson(plan: IamPlan): string {
  return `${pretty({
    role: { arn: plan.role.arn, name: plan.role.name, path: plan.role.path },
    oidcProvider: plan.oidcProvider,
    trustPolicy: plan.trustPolicy,
    permissionsPolicy: plan.permissionsPolicy,
    policyName: plan.policyName,
    commands: plan.commands.map((argv) => argv.map(shellQuote).join(' ')),
    notes: plan.notes,
  })}\n`;
}

/** A POSIX sh script that writes both documents to a temporary directory and runs the aws commands there. */
export function renderAwsCli(plan: IamPlan): string {
  const lines = [
    '#!/bin/sh',
    `# IAM role ${plan.role.arn} for MLflow's artifacts in s3://${plan.bucket}/${plan.objectPrefix}, assumable only by`,
    `# the service account token the trust policy names. Generated by mlflow-irsa-webhook iam-policy.`,
    ...plan.notes.map((n) => `# NOTE: ${n}`),
    '# For a role that already exists, replace create-role with:',
    `#   aws iam update-assume-role-policy --role-name ${shellQuote(plan.role.name)} --policy-document file://${TRUST_POLICY_FILE}`,
    'set -eu',
    'dir=$(mktemp -d)',
    'trap \'rm -rf "$dir"\' EXIT',
    'cd "$dir"',
    `cat > ${TRUST_POLICY_FILE} <<'EOF'`,
    pretty(plan.trustPolicy),
    'EOF',
    `cat > ${S3_POLICY_FILE} <<'EOF'`,
    pretty(plan.permissionsPolicy),
    'EOF',
    ...plan.commands.map((argv) => argv.map(shellQuote).join(' ')),
  ];
  return `${lines.join('\n')}\n`;
}

export const usage = '--config FILE --oidc-provider oidc.eks.<region>.amazonaws.com/id/<ID> [--format json|aws-cli] [--prefix PREFIX]\n'
  + '  --oidc-provider  the cluster\'s OIDC issuer (aws eks describe-cluster --query cluster.identity.oidc.issuer), https:// optional\n'
  + '  --format         json (default): both policies, the role and the commands; aws-cli: a sh script that creates the role\n'
  + '  --prefix         confine object access (and listing) to <bucket>/<PREFIX>/; must lie inside artifactsDestination';

export const options = {
  'oidc-provider': { type: 'string' as const },
  format: { type: 'string' as const },
  prefix: { type: 'string' as const },
};

export async function run({ values, config }: CommandArgs): Promise<number> {
  const provider = stringOption(values, 'oidc-provider');
  if (provider === undefined) throw new UsageError('--oidc-provider is required');
  const format = stringOption(values, 'format') ?? 'json';
  if (format !== 'json' && format !== 'aws-cli') throw new UsageError(`--format ${JSON.stringify(format)} is not one of json, aws-cli`);
  const plan = iamPlan(config, provider, stringOption(values, 'prefix'));
  for (const note of plan.notes) process.stderr.write(`iam-policy: note: ${note}\n`);
  process.stdout.write(format === 'json' ? renderJson(plan) : renderAwsCli(plan));
  return 0;
}
