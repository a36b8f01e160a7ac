// The `iam-policy` command: the least-privilege IAM trust policy, S3 permissions policy and `aws` commands for the role,
// for IRSA (web identity from the cluster's OIDC provider) or EKS Pod Identity (an association; the service trusted).
//
// The documents are built by pure functions from (config, credentials, OIDC provider, prefix, KMS key) so tests compare
// them with hand-written expectations and judge them with an IAM policy evaluator; printing (JSON or a shell script) is
// a separate step.
import { hasDotSegment, s3Location, withSlash } from './config/artifact-location.js';
import { stringOption, UsageError, type CommandArgs } from './command.js';
import type { Config, CredentialsMode } from './config/config.js';

export const POLICY_VERSION = '2012-10-17';
/** The inline policy's name on the role; put-role-policy overwrites a policy of the same name, so reruns are idempotent. */
export const POLICY_NAME = 'mlflow-irsa-s3-artifacts';
export const TRUST_POLICY_FILE = 'trust-policy.json';
export const S3_POLICY_FILE = 's3-policy.json';
/** The service EKS Pod Identity assumes roles as (the same in every partition). */
export const POD_IDENTITY_SERVICE = 'pods.eks.amazonaws.com';
/** The session tags EKS Pod Identity passes, which pin the role to our namespace and ServiceAccount. */
export const NAMESPACE_TAG = 'aws:RequestTag/kubernetes-namespace';
export const SERVICE_ACCOUNT_TAG = 'aws:RequestTag/kubernetes-service-account';

export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow';
  Principal?: { Federated: string } | { Service: string };
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

/** The Pod Identity association the role needs: (cluster, namespace, ServiceAccount) → role. */
export interface Association {
  readonly clusterName: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly roleArn: string;
}

export interface IamPlan {
  readonly role: RoleRef;
  readonly credentials: CredentialsMode;
  /**
   * host/path without scheme, e.g. oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE; always with
   * irsa, and with pod-identity when given (its statement then stays in the trust policy for a move between the modes)
   */
  readonly oidcProvider?: string;
  /** pod-identity with --cluster-name: the association the aws-cli script makes */
  readonly association?: Association;
  readonly bucket: string;
  /** the key prefix objects are confined to, without slashes at either end; "" for the whole bucket */
  readonly objectPrefix: string;
  readonly kmsKey?: KmsKeyRef;
  readonly trustPolicy: PolicyDocument;
  readonly permissionsPolicy: PolicyDocument;
  readonly policyName: string;
  /** `aws` argument vectors, reading the two documents from TRUST_POLICY_FILE and S3_POLICY_FILE (then the association) */
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
// EKS's rule for cluster names (CreateCluster: 1-100 characters)
const CLUSTER_NAME = /^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$/;

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

/**
 * Who may assume the role with EKS Pod Identity: the EKS service, only for an association of our namespace and
 * ServiceAccount (the session tags it passes; without them any association in the account could use the role), only
 * on behalf of the role's own account. AssumeRole with those tags needs sts:TagSession as well.
 */
export function podIdentityTrustPolicy(role: RoleRef, config: Config): PolicyDocument {
  return {
    Version: POLICY_VERSION,
    Statement: [{
      Sid: 'AllowEksAuthToAssumeRoleForPodIdentity',
      Effect: 'Allow',
      Principal: { Service: POD_IDENTITY_SERVICE },
      Action: ['sts:AssumeRole', 'sts:TagSession'],
      Condition: {
        StringEquals: {
          [NAMESPACE_TAG]: config.namespace,
          [SERVICE_ACCOUNT_TAG]: config.serviceAccount,
          'aws:SourceAccount': role.account,
        },
      },
    }],
  };
}

/** Who may assume the role with IRSA: only the MLflow service account's projected token, only with our audience. */
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

/**
 * The aws CLI calls that create the role with the trust policy and attach the S3 policy inline, and with Pod Identity
 * the association.
 */
export function awsCommands(role: RoleRef, policyName: string, credentials: CredentialsMode = 'irsa', association?: Association): string[][] {
  const via = credentials === 'irsa' ? 'IRSA' : 'EKS Pod Identity';
  return [
    ['aws', 'iam', 'create-role', '--role-name', role.name, '--path', role.path,
      '--assume-role-policy-document', `file://${TRUST_POLICY_FILE}`,
      '--description', `MLflow artifacts in S3 via ${via} (mlflow-irsa-webhook)`],
    ['aws', 'iam', 'put-role-policy', '--role-name', role.name, '--policy-name', policyName,
      '--policy-document', `file://${S3_POLICY_FILE}`],
    ...(association ? [createAssociation(association)] : []),
  ];
}

const createAssociation = (a: Association): string[] => ['aws', 'eks', 'create-pod-identity-association', '--cluster-name', a.clusterName,
  '--namespace', a.namespace, '--service-account', a.serviceAccount, '--role-arn', a.roleArn];

export interface IamOptions {
  /** --prefix */
  readonly prefix?: string;
  /** --kms-key-arn */
  readonly kmsKeyArn?: string;
  /** --credentials; the config's when absent */
  readonly credentials?: CredentialsMode;
  /** --cluster-name: the cluster of the Pod Identity association */
  readonly clusterName?: string;
}

/** Parses --credentials. */
export function credentialsOption(value: string | undefined): CredentialsMode | undefined {
  if (value === undefined || value === 'irsa' || value === 'pod-identity') return value;
  throw new IamInputError(`--credentials ${JSON.stringify(value)} is not one of irsa, pod-identity`);
}

/** The trust policy for the mode: Pod Identity's statement, and IRSA's when a provider is given; or IRSA's alone. */
function trustFor(credentials: CredentialsMode, role: RoleRef, provider: string | undefined, config: Config): PolicyDocument {
  const irsa = provider === undefined ? [] : trustPolicy(role, provider, config).Statement;
  if (credentials === 'irsa') return { Version: POLICY_VERSION, Statement: irsa };
  return { Version: POLICY_VERSION, Statement: [...podIdentityTrustPolicy(role, config).Statement, ...irsa] };
}

export function iamPlan(config: Config, oidcProvider: string | undefined, options: IamOptions = {}): IamPlan {
  const role = parseRoleArn(config.roleArn);
  const credentials = options.credentials ?? config.credentials;
  if (oidcProvider === undefined && credentials === 'irsa') {
    throw new IamInputError('--oidc-provider is required with credentials irsa (the cluster\'s OIDC issuer: aws eks describe-cluster --query cluster.identity.oidc.issuer)');
  }
  const provider = oidcProvider === undefined ? undefined : normaliseOidcProvider(oidcProvider, role.partition);
  const { clusterName } = options;
  if (clusterName !== undefined && credentials === 'irsa') {
    throw new IamInputError('--cluster-name names the cluster of a Pod Identity association, which credentials irsa has none of; leave it out, or give --credentials pod-identity');
  }
  if (clusterName !== undefined && !CLUSTER_NAME.test(clusterName)) {
    throw new IamInputError(`--cluster-name ${JSON.stringify(clusterName)} is not an EKS cluster name (1 to 100 letters, digits, - and _, the first a letter or digit)`);
  }
  const association = clusterName === undefined ? undefined
    : { clusterName, namespace: config.namespace, serviceAccount: config.serviceAccount, roleArn: role.arn };
  const { bucket } = splitS3Uri(config.artifactsDestination);
  const objPrefix = objectPrefix(config, options.prefix);
  const kmsKey = options.kmsKeyArn === undefined ? undefined : parseKmsKeyArn(options.kmsKeyArn, role.partition);
  const notes: string[] = [];
  if (credentials === 'pod-identity' && provider !== undefined) {
    notes.push(`the trust policy also admits ${provider} tokens (IRSA), for the time of a move between the modes; once no cluster uses IRSA for this role, run iam-policy again without --oidc-provider`);
  }
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
    credentials,
    ...(provider !== undefined && { oidcProvider: provider }),
    ...(association && { association }),
    bucket,
    objectPrefix: objPrefix,
    kmsKey,
    trustPolicy: trustFor(credentials, role, provider, config),
    permissionsPolicy: permissionsPolicy(role.partition, bucket, objPrefix, kmsKey),
    policyName: POLICY_NAME,
    commands: awsCommands(role, POLICY_NAME, credentials, association),
    notes,
  };
}

/** POSIX shell quoting: bare when only safe characters, else single quotes. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

const pretty = (doc: unknown) => JSON.stringify(doc, null, 2);

/**
 * One JSON document with both policies, the role and the commands (as shell lines); with pod-identity also the mode
 * and the association (the irsa document is as it was before the modes).
 */
export function renderJson(plan: IamPlan): string {
  const podIdentity = plan.credentials === 'pod-identity';
  return `${pretty({
    role: { arn: plan.role.arn, name: plan.role.name, path: plan.role.path },
    ...(podIdentity && { credentials: plan.credentials }),
    ...(plan.oidcProvider !== undefined && { oidcProvider: plan.oidcProvider }),
    ...(plan.association && { association: plan.association }),
    trustPolicy: plan.trustPolicy,
    permissionsPolicy: plan.permissionsPolicy,
    policyName: plan.policyName,
    commands: plan.commands.map((argv) => argv.map(shellQuote).join(' ')),
    notes: plan.notes,
  })}\n`;
}

/** A POSIX sh script that writes both documents to a temporary directory and runs the aws commands there. */
export function renderAwsCli(plan: IamPlan): string {
  const a = plan.association;
  if (plan.credentials === 'pod-identity' && !a) {
    throw new IamInputError('--cluster-name is required with credentials pod-identity and --output aws-cli: the script makes the Pod Identity association, which belongs to one cluster (aws eks list-clusters)');
  }
  const who = a ? [`# EKS Pod Identity for ${a.namespace}/${a.serviceAccount} only (the session tags the trust policy pins), through`,
    `# the association in cluster ${a.clusterName} that the script makes. Generated by mlflow-irsa-webhook iam-policy.`,
    ...(plan.oidcProvider === undefined ? ['# An existing role\'s trust policy is replaced, IRSA\'s statement with it: while pods still use IRSA (a move from',
      '# it), generate this with --oidc-provider as well (docs/operator-guide.md, "Choosing IRSA or Pod Identity").'] : [])]
    : ['# the service account token the trust policy names. Generated by mlflow-irsa-webhook iam-policy.'];
  const lines = [
    '#!/bin/sh',
    `# IAM role ${plan.role.arn} for MLflow's artifacts in s3://${plan.bucket}/${plan.objectPrefix}, assumable only by`,
    ...who,
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
    ...(a ? associationAware(a) : []),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * The script's association calls: our ServiceAccount's association looked up first, then made when there is none, or
 * said to exist; one that names another role, or turned the session tags off (the trust policy's conditions then deny
 * it), is named with the commands that fix it, and left alone: the operator decides.
 */
function associationAware(a: Association): string[] {
  // The names are DNS-safe (the config's patterns, the cluster name's); the role's path may hold any printable
  // character, so the ARN is a variable, expanded inside the messages' double quotes but never evaluated again (and
  // printed by printf, which, unlike dash's echo, reads no backslash escapes in it).
  const [cluster, ns, sa] = [a.clusterName, a.namespace, a.serviceAccount];
  const where = `${ns}/${sa} in cluster ${cluster}`;
  // the id quoted where the script runs the call, bare where it prints it
  const eks = (call: string, id = '"$id"') => `aws eks ${call} --cluster-name ${cluster} --association-id ${id}`;
  return [
    `ourrole=${shellQuote(a.roleArn)}`,
    `ids=$(aws eks list-pod-identity-associations --cluster-name ${cluster} --namespace ${ns} --service-account ${sa} --query 'associations[].associationId' --output text)`,
    'if [ -z "$ids" ] || [ "$ids" = None ]; then',
    `  ${createAssociation(a).slice(0, -1).map(shellQuote).join(' ')} "$ourrole"`,
    'else',
    '  for id in $ids; do',
    `    ${eks('describe-pod-identity-association')} --query 'association.[roleArn,disableSessionTags]' --output text | {`,
    '      read -r current tagsoff',
    '      if [ "$current" != "$ourrole" ]; then',
    `        printf '%s\\n' "the Pod Identity association $id of ${where} names another role, $current; point it at $ourrole, or delete it and run this script again:" >&2`,
    `        printf '%s\\n' "  ${eks('update-pod-identity-association', '$id')} --role-arn $ourrole" >&2`,
    `        printf '%s\\n' "  ${eks('delete-pod-identity-association', '$id')}" >&2`,
    '      elif [ "$tagsoff" = True ]; then',
    `        printf '%s\\n' "the Pod Identity association $id of ${where} has its session tags off, so the trust policy's conditions deny it; turn them on:" >&2`,
    `        printf '%s\\n' "  ${eks('update-pod-identity-association', '$id')} --no-disable-session-tags" >&2`,
    '      else',
    `        printf '%s\\n' "the Pod Identity association $id of ${where} exists, with role $ourrole" >&2`,
    '      fi',
    '    }',
    '  done',
    'fi',
  ];
}

/**
 * The script's aws calls: create-role, or for a role that exists update-assume-role-policy with the same trust policy
 * (which replaces the role's trust policy whole, so the old one is printed first); then put-role-policy; then every
 * other permission policy the role holds, printed with the command that removes it. No permission policy is removed by
 * the script: the operator decides (the manual procedure's `s3:*` policy on the bucket is the usual one).
 */
function existingRoleAware(plan: IamPlan): string[] {
  const name = shellQuote(plan.role.name);
  const [create, ...rest] = awsCommands(plan.role, plan.policyName, plan.credentials).map((argv) => argv.map(shellQuote).join(' '));
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

export const usage = '(--config FILE | --values FILE...) [--credentials irsa|pod-identity] [--oidc-provider ISSUER] [--cluster-name NAME]\n'
  + '              [--prefix PREFIX] [--kms-key-arn ARN] [--output json|aws-cli]\n'
  + '  --values, -f     instead of --config: the Helm chart\'s values file, as given to helm install -f; repeat it for\n'
  + '                   several files (later ones win), and the policies match the config the chart renders from them\n'
  + '  --credentials    irsa or pod-identity (default: credentials in the config or values): the trust policy for IRSA\'s\n'
  + '                   web identity, or for EKS Pod Identity (pods.eks.amazonaws.com, pinned to the ServiceAccount by\n'
  + '                   its session tags) and its association\n'
  + '  --oidc-provider  the cluster\'s OIDC issuer (aws eks describe-cluster --query cluster.identity.oidc.issuer), https://\n'
  + '                   optional; required with irsa; with pod-identity its statement stays beside Pod Identity\'s, for a\n'
  + '                   move between the modes\n'
  + '  --cluster-name   pod-identity: the EKS cluster of the association; required with --output aws-cli\n'
  + '  --prefix         confine object access (and listing) to <bucket>/<PREFIX>/; must lie inside artifactsDestination\n'
  + '  --kms-key-arn    the bucket\'s SSE-KMS key (arn:<partition>:kms:<region>:<account>:key/<id>): grants kms:Decrypt and\n'
  + '                   kms:GenerateDataKey on that key, only through S3 in the key\'s region\n'
  + '  --output         json (default): both policies, the role and the commands; aws-cli: a sh script that creates the\n'
  + '                   role (and with pod-identity the association)';


export const deprecatedOptions = { format: 'output' };
export const options = {
  credentials: { type: 'string' as const },
  'oidc-provider': { type: 'string' as const },
  'cluster-name': { type: 'string' as const },
  output: { type: 'string' as const },
  prefix: { type: 'string' as const },
  'kms-key-arn': { type: 'string' as const },
};

export async function run({ values, config }: CommandArgs): Promise<number> {
  const format = stringOption(values, 'output') ?? 'json';
  if (format !== 'json' && format !== 'aws-cli') throw new UsageError(`--output ${JSON.stringify(format)} is not one of json, aws-cli`);
  const plan = iamPlan(config, stringOption(values, 'oidc-provider'), {
    prefix: stringOption(values, 'prefix'),
    kmsKeyArn: stringOption(values, 'kms-key-arn'),
    credentials: credentialsOption(stringOption(values, 'credentials')),
    clusterName: stringOption(values, 'cluster-name'),
  });
  const text = format === 'json' ? renderJson(plan) : renderAwsCli(plan);
  for (const note of plan.notes) process.stderr.write(`iam-policy: note: ${note}\n`);
  process.stdout.write(text);
  return 0;
}
