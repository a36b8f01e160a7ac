// The `iam-policy` command: the least-privilege IAM trust policy, S3 permissions policy and `aws iam` commands for the role.
//
// The documents are built by pure functions from (config, OIDC provider, prefix, KMS key) so tests compare them with
// hand-written expectations and judge them with an IAM policy evaluator; printing (JSON or a shell script) is a separate step.
import { hasDotSegment, s3Location, withSlash } from './artifact-location.js';
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

/** The SSE-KMS key of the bucket, from --kms-key-arn. */
export interface KmsKeyRef {
  readonly arn: string;
  readonly partition: string;
  /** the key's region, which is the bucket's: S3 uses only keys in the bucket's own region */
  readonly region: string;
  readonly account: string;
}

export interface IamPlan {
  readonly role: RoleRef;
  /** host/path without scheme, e.g. oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE */
  readonly oidcProvider: string;
  readonly bucket: string;
  /** the key prefix objects are confined to, without slashes at either end; "" for the whole bucket */
  readonly objectPrefix: string;
  readonly kmsKey?: KmsKeyRef;
  readonly trustPolicy: PolicyDocument;
  readonly permissionsPolicy: PolicyDocument;
  readonly policyName: string;
  /** `aws` argument vectors, reading the two documents from TRUST_POLICY_FILE and S3_POLICY_FILE */
  readonly commands: readonly string[][];
  /** things the operator should know, e.g. custom locations the policy does not reach */
  readonly notes: readonly string[];
}

/** A bad --oidc-provider, --prefix or --kms-key-arn: the CLI turns it into exit 2 with the usage line. */
export class IamInputError extends UsageError {}

const PROVIDER_RULE = 'oidc.eks.<region>.amazonaws.com[.cn]/id/<32 upper-case letters or digits>, optionally with https://';
const PROVIDER = /^oidc\.eks\.([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-[0-9]+)\.(amazonaws\.com(?:\.cn)?)\/id\/([0-9A-Z]{32})$/;
const ROLE_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role(\/(?:.*\/)?)([^/]+)$/;
const PREFIX = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const KMS_KEY_RULE = 'arn:<partition>:kms:<region>:<12-digit account>:key/<key id>, the id a UUID or mrk-<32 hex digits>';
const KMS_ARN = /^arn:(aws|aws-cn|aws-us-gov):kms:([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-[0-9]+):([0-9]{12}):(key|alias)\/(.+)$/;
const KMS_KEY_ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/;

/**
 * Every action the policies grant, with the client calls that need it (S3 authorises several API calls by one
 * action: the multipart calls by s3:PutObject, HeadObject by s3:GetObject, DeleteObjects by s3:DeleteObject per key).
 * docs/security.md lists the same, and a test keeps the two in step.
 */
export const ACTION_CALLS = {
  's3:ListBucket': 'ListObjectsV2: MLflow list_artifacts (Prefix <run>/artifacts/, Delimiter /) and delete_artifacts (Prefix <run>/artifacts, no trailing /)',
  's3:GetBucketLocation': 'GetBucketLocation: clients that look up the bucket\'s region before the first request (aws s3, boto3 without a region)',
  's3:ListBucketMultipartUploads': 'ListMultipartUploads: finding incomplete uploads to abort (aws s3api list-multipart-uploads); whole-bucket grants only',
  's3:GetObject': 'GetObject, HeadObject: boto3 download_file (MLflow download_artifacts, the UI\'s artifact view, model loading)',
  's3:PutObject': 'PutObject, and CreateMultipartUpload, UploadPart, CompleteMultipartUpload: boto3 upload_file (multipart above 8 MB) and MLflow\'s proxied multipart upload',
  's3:DeleteObject': 'DeleteObjects: MLflow delete_artifacts (run deletion, mlflow gc)',
  's3:AbortMultipartUpload': 'AbortMultipartUpload: boto3 upload_file after a failed part, MLflow abort_multipart_upload; without it the parts stay, billed and invisible',
  's3:ListMultipartUploadParts': 'ListParts: the parts of one upload, to resume or inspect it (aws s3api list-parts)',
  'kms:GenerateDataKey': 'with --kms-key-arn, via S3 only: PutObject and CreateMultipartUpload on an SSE-KMS bucket (a new data key per object)',
  'kms:Decrypt': 'with --kms-key-arn, via S3 only: GetObject, and UploadPart/CompleteMultipartUpload (later parts reuse the upload\'s data key)',
} as const;

export type GrantedAction = keyof typeof ACTION_CALLS;

// The actions per resource. kms:Encrypt, kms:ReEncrypt* and kms:DescribeKey are not among them: S3 encrypts with the
// data key it generated and never calls them for object reads and writes.
const BUCKET_ACTIONS: GrantedAction[] = ['s3:ListBucket', 's3:GetBucketLocation', 's3:ListBucketMultipartUploads'];
const OBJECT_ACTIONS: GrantedAction[] = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'];
const KMS_ACTIONS: GrantedAction[] = ['kms:Decrypt', 'kms:GenerateDataKey'];

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

/**
 * Parses --kms-key-arn: a key ARN (an alias ARN in an IAM policy's Resource never matches the key it names), in the
 * role's partition.
 */
export function parseKmsKeyArn(value: string, partition: string): KmsKeyRef {
  const m = KMS_ARN.exec(value.trim());
  if (m && m[4] === 'alias') {
    throw new IamInputError(`--kms-key-arn ${JSON.stringify(value)} is an alias ARN; an IAM policy grants a key only by its key ARN (aws kms describe-key --key-id ${m[4]}/${m[5]} --query KeyMetadata.Arn)`);
  }
  if (!m || !KMS_KEY_ID.test(m[5])) throw new IamInputError(`--kms-key-arn ${JSON.stringify(value)} is not a KMS key ARN (${KMS_KEY_RULE})`);
  if (m[1] !== partition) {
    throw new IamInputError(`--kms-key-arn ${JSON.stringify(value)} is in partition ${m[1]}, but roleArn is in ${partition}; the key and the role must be in one partition`);
  }
  return { arn: value.trim(), partition: m[1], region: m[2], account: m[3] };
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
  if (!PREFIX.test(p) || hasDotSegment(p)) {
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
 * prefix, listing is confined to it too (s3:prefix). GetBucketLocation and ListBucketMultipartUploads carry no
 * s3:prefix, so the condition would deny them always: GetBucketLocation (harmless, it names a region) gets its own
 * unconditioned statement, and ListBucketMultipartUploads (it would list in-progress keys of the whole bucket) is left
 * out; the lifecycle rule in the operator guide cleans incomplete uploads instead. With an SSE-KMS key, S3 may use it
 * on the role's behalf, and only S3 in the key's (the bucket's) region: kms:ViaService keeps a stolen session from
 * decrypting with the key directly.
 */
export function permissionsPolicy(partition: string, bucket: string, prefix: string, kmsKey?: KmsKeyRef): PolicyDocument {
  const bucketArn = `arn:${partition}:s3:::${bucket}`;
  const objects: PolicyStatement = { Sid: 'ReadWriteArtifactObjects', Effect: 'Allow', Action: [...OBJECT_ACTIONS], Resource: `${bucketArn}/${prefix ? `${prefix}/` : ''}*` };
  const statements: PolicyStatement[] = prefix === ''
    ? [{ Sid: 'ListArtifactBucket', Effect: 'Allow', Action: [...BUCKET_ACTIONS], Resource: bucketArn }, objects]
    : [
      { Sid: 'LocateArtifactBucket', Effect: 'Allow', Action: 's3:GetBucketLocation', Resource: bucketArn },
      { Sid: 'ListArtifactPrefix', Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': `${prefix}/*` } } },
      objects,
    ];
  if (kmsKey) {
    statements.push({
      Sid: 'UseArtifactBucketKeyViaS3',
      Effect: 'Allow',
      Action: [...KMS_ACTIONS],
      Resource: kmsKey.arn,
      // "<service>.<region>.amazonaws.com" in every partition, China's included (AWS KMS developer guide, kms:ViaService)
      Condition: { StringEquals: { 'kms:ViaService': `s3.${kmsKey.region}.amazonaws.com` } },
    });
  }
  return { Version: POLICY_VERSION, Statement: statements };
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

export interface IamOptions {
  /** --prefix */
  readonly prefix?: string;
  /** --kms-key-arn */
  readonly kmsKeyArn?: string;
}

export function iamPlan(config: Config, oidcProvider: string, options: IamOptions = {}): IamPlan {
  const role = parseRoleArn(config.roleArn);
  const provider = normaliseOidcProvider(oidcProvider, role.partition);
  const { bucket } = splitS3Uri(config.artifactsDestination);
  const objPrefix = objectPrefix(config, options.prefix);
  const kmsKey = options.kmsKeyArn === undefined ? undefined : parseKmsKeyArn(options.kmsKeyArn, role.partition);
  const notes: string[] = [];
  if (kmsKey && kmsKey.account !== role.account) {
    notes.push(`the KMS key is in account ${kmsKey.account}, the role in ${role.account}: the key's own key policy must also allow ${role.arn} kms:Decrypt and kms:GenerateDataKey`);
  }
  if (kmsKey && config.region !== undefined && config.region !== kmsKey.region) {
    notes.push(`the KMS key is in ${kmsKey.region} but region is ${config.region}; S3 encrypts only with a key in the bucket's own region, so check which region the bucket is in`);
  }
  if (config.trigger.mode === 'custom-location') {
    const reach = `s3://${bucket}/${objPrefix ? `${objPrefix}/` : ''}`;
    for (const allowed of config.trigger.allowedLocationPrefixes) {
      if (!withSlash(s3Location(allowed, config.artifactsDestination)).startsWith(reach)) {
        notes.push(`trigger.allowedLocationPrefixes admits ${allowed}, which this policy does not reach (it grants ${reach}*); grant that location separately if MLflow must serve it`);
      }
    }
  }
  return {
    role,
    oidcProvider: provider,
    bucket,
    objectPrefix: objPrefix,
    kmsKey,
    trustPolicy: trustPolicy(role, provider, config),
    permissionsPolicy: permissionsPolicy(role.partition, bucket, objPrefix, kmsKey),
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
    '# A role that already exists (the manual procedure\'s) keeps its name, but update-assume-role-policy REPLACES ITS',
    '# WHOLE TRUST POLICY: a statement it had for any other principal (another service account, cluster or account) is',
    '# gone afterwards. The old trust policy is printed first, to restore what else it trusted. The permission policies',
    '# the role holds besides ours are listed at the end, since IAM adds permissions up; none is removed.',
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
    ...existingRoleAware(plan),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * The script's aws calls: create-role, or for a role that exists update-assume-role-policy with the same trust policy
 * (which replaces the role's trust policy whole, so the old one is printed first); then put-role-policy; then every
 * other permission policy the role holds, printed with the command that removes it. No permission policy is removed by
 * the script: the operator decides (the manual procedure's `s3:*` policy on the bucket is the usual one).
 */
function existingRoleAware(plan: IamPlan): string[] {
  const name = shellQuote(plan.role.name);
  const [create, ...rest] = plan.commands.map((argv) => argv.map(shellQuote).join(' '));
  return [
    `if old_trust=$(aws iam get-role --role-name ${name} --query Role.AssumeRolePolicyDocument --output json 2>/dev/null); then`,
    `  echo "role ${plan.role.name} exists: replacing its whole trust policy (update-assume-role-policy keeps none of its statements); it was:" >&2`,
    '  printf \'%s\\n\' "$old_trust" >&2',
    `  aws iam update-assume-role-policy --role-name ${name} --policy-document file://${TRUST_POLICY_FILE}`,
    'else',
    `  ${create}`,
    'fi',
    ...rest,
    `others=$(aws iam list-role-policies --role-name ${name} --query "PolicyNames[?@ != '${plan.policyName}']" --output text)`,
    `attached=$(aws iam list-attached-role-policies --role-name ${name} --query 'AttachedPolicies[].PolicyArn' --output text)`,
    'if [ -n "$others$attached" ]; then',
    `  echo "role ${plan.role.name} also holds these policies, and IAM grants their permissions too; review each, and remove what this role no longer needs:" >&2`,
    `  for p in $others; do echo "  inline $p: aws iam delete-role-policy --role-name ${name} --policy-name $p" >&2; done`,
    `  for p in $attached; do echo "  attached $p: aws iam detach-role-policy --role-name ${name} --policy-arn $p" >&2; done`,
    'fi',
  ];
}

export const usage = '(--config FILE | --values FILE...) --oidc-provider oidc.eks.<region>.amazonaws.com/id/<ID> [--prefix PREFIX] [--kms-key-arn ARN] [--output json|aws-cli]\n'
  + '  --values, -f     instead of --config: the Helm chart\'s values file, as given to helm install -f; repeat it for\n'
  + '                   several files (later ones win), and the policies match the config the chart renders from them\n'
  + '  --oidc-provider  the cluster\'s OIDC issuer (aws eks describe-cluster --query cluster.identity.oidc.issuer), https:// optional\n'
  + '  --prefix         confine object access (and listing) to <bucket>/<PREFIX>/; must lie inside artifactsDestination\n'
  + '  --kms-key-arn    the bucket\'s SSE-KMS key (arn:<partition>:kms:<region>:<account>:key/<id>): grants kms:Decrypt and\n'
  + '                   kms:GenerateDataKey on that key, only through S3 in the key\'s region\n'
  + '  --output         json (default): both policies, the role and the commands; aws-cli: a sh script that creates the role';


export const deprecatedOptions = { format: 'output' };
export const options = {
  'oidc-provider': { type: 'string' as const },
  output: { type: 'string' as const },
  prefix: { type: 'string' as const },
  'kms-key-arn': { type: 'string' as const },
};

export async function run({ values, config }: CommandArgs): Promise<number> {
  const provider = stringOption(values, 'oidc-provider');
  if (provider === undefined) throw new UsageError('--oidc-provider is required');
  const format = stringOption(values, 'output') ?? 'json';
  if (format !== 'json' && format !== 'aws-cli') throw new UsageError(`--output ${JSON.stringify(format)} is not one of json, aws-cli`);
  const plan = iamPlan(config, provider, { prefix: stringOption(values, 'prefix'), kmsKeyArn: stringOption(values, 'kms-key-arn') });
  for (const note of plan.notes) process.stderr.write(`iam-policy: note: ${note}\n`);
  process.stdout.write(format === 'json' ? renderJson(plan) : renderAwsCli(plan));
  return 0;
}
