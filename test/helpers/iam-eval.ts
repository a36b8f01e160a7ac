// Judges IAM policies by evaluation, with an independent IAM policy evaluator (@cloud-copilot/iam-simulate, a
// test-only dependency): each call MLflow and boto3 make, and each neighbour that must stay denied, is a request.
import { runSimulation, runUnsafeSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { createValidatedPolicy, validateIdentityPolicy, validateTrustPolicy } from '@cloud-copilot/iam-policy';
import type { Config } from '../../src/config/config.js';
import type { IamPlan, PolicyDocument } from '../../src/iam-policy.js';

export type Verdict = 'allow' | 'deny';

export interface IamRequest {
  /** a stable short name, for tests that pick cases (the procedure's failures) */
  readonly id: string;
  /** the client call, or the neighbour it stands for */
  readonly what: string;
  readonly action: string;
  readonly resource: string;
  readonly context?: Readonly<Record<string, string>>;
  /** who asks: the role's session for S3 and KMS, the token's OIDC provider or the EKS service for the trust policy */
  readonly principal: string;
}

export interface IamCase {
  readonly request: IamRequest;
  readonly expect: Verdict;
}

/** What a plan is about: the facts the requests are built from. */
export interface Subject {
  readonly partition: string;
  readonly account: string;
  readonly roleArn: string;
  readonly roleName: string;
  readonly bucket: string;
  /** the object prefix the policy grants, "" for the whole bucket */
  readonly prefix: string;
  readonly credentials: 'irsa' | 'pod-identity';
  /** host/path of the OIDC provider the plan trusts; undefined for a pod-identity plan without one */
  readonly provider?: string;
  readonly audience: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly kmsKey?: { readonly arn: string; readonly region: string; readonly account: string };
}

export const subjectOf = (plan: IamPlan, config: Config): Subject => ({
  partition: plan.role.partition,
  account: plan.role.account,
  roleArn: plan.role.arn,
  roleName: plan.role.name,
  bucket: plan.bucket,
  prefix: plan.objectPrefix,
  credentials: plan.credentials,
  provider: plan.oidcProvider,
  audience: config.token.audience,
  namespace: config.namespace,
  serviceAccount: config.serviceAccount,
  kmsKey: plan.kmsKey,
});

const providerArn = (s: Subject, provider: string) => `arn:${s.partition}:iam::${s.account}:oidc-provider/${provider}`;
/** The role's session as MLflow's boto3 holds it after AssumeRoleWithWebIdentity. */
export const sessionArn = (s: Subject) => `arn:${s.partition}:sts::${s.account}:assumed-role/${s.roleName}/botocore-session-1767225600`;

/** A cluster's OIDC provider for the IRSA requests of a plan that trusts none (pod-identity without --oidc-provider). */
const SOME_PROVIDER = 'oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE';

/** Every case denied: for the mode a plan does not trust. */
const allDenied = (cases: IamCase[]): IamCase[] => cases.map((c) => ({ ...c, expect: 'deny' }));

/**
 * Who may assume the role with IRSA: the configured ServiceAccount's token with the configured audience, and nobody
 * else; and nobody at all when the plan trusts no OIDC provider.
 */
export function trustCases(s: Subject): IamCase[] {
  const cases = webIdentityCases({ ...s, provider: s.provider ?? SOME_PROVIDER });
  return s.provider === undefined ? allDenied(cases) : cases;
}

function webIdentityCases(s: Subject & { provider: string }): IamCase[] {
  const sub = (ns: string, sa: string) => `system:serviceaccount:${ns}:${sa}`;
  const otherProvider = s.provider.replace(/\/id\/.*$/, `/id/${'0F'.repeat(16)}`);
  const otherNamespace = s.namespace === 'default' ? 'kube-system' : 'default';
  const token = (id: string, what: string, claims: { sub: string; aud: string }, provider = s.provider): IamRequest => ({
    id,
    what,
    action: 'sts:AssumeRoleWithWebIdentity',
    resource: s.roleArn,
    principal: providerArn(s, provider),
    context: { [`${provider}:sub`]: claims.sub, [`${provider}:aud`]: claims.aud },
  });
  return [
    { expect: 'allow', request: token('trust.mlflow', `the token of ${sub(s.namespace, s.serviceAccount)} for ${s.audience}`, { sub: sub(s.namespace, s.serviceAccount), aud: s.audience }) },
    { expect: 'deny', request: token('trust.other-service-account', 'another ServiceAccount of the namespace', { sub: sub(s.namespace, 'default'), aud: s.audience }) },
    { expect: 'deny', request: token('trust.other-namespace', 'a ServiceAccount of the same name in another namespace', { sub: sub(otherNamespace, s.serviceAccount), aud: s.audience }) },
    { expect: 'deny', request: token('trust.name-extension', 'a ServiceAccount whose name only starts with the configured one', { sub: sub(s.namespace, `${s.serviceAccount}-debug`), aud: s.audience }) },
    { expect: 'deny', request: token('trust.other-provider', 'the same ServiceAccount in another cluster (another OIDC provider of the account)', { sub: sub(s.namespace, s.serviceAccount), aud: s.audience }, otherProvider) },
    { expect: 'deny', request: token('trust.other-audience', 'the ServiceAccount\'s default API token (audience https://kubernetes.default.svc)', { sub: sub(s.namespace, s.serviceAccount), aud: 'https://kubernetes.default.svc' }) },
    { expect: 'deny', request: { id: 'trust.iam-user', what: 'an IAM user of the account (sts:AssumeRole)', action: 'sts:AssumeRole', resource: s.roleArn, principal: `arn:${s.partition}:iam::${s.account}:user/someone` } },
  ];
}

/**
 * Who may assume the role with EKS Pod Identity: the EKS service, for an association of the configured namespace and
 * ServiceAccount (the session tags it passes) in the role's own account, both actions it calls (AssumeRole with tags,
 * so TagSession too); and nobody at all when the plan is for IRSA.
 */
export function podIdentityTrustCases(s: Subject): IamCase[] {
  const otherNamespace = s.namespace === 'default' ? 'kube-system' : 'default';
  const otherAccount = s.account === '444455556666' ? '777788889999' : '444455556666';
  const request = (id: string, what: string, action: string, tags: { ns?: string; sa?: string; account?: string }, principal = 'pods.eks.amazonaws.com'): IamRequest => ({
    id,
    what,
    action,
    resource: s.roleArn,
    principal,
    context: {
      ...(tags.ns !== undefined && { 'aws:RequestTag/kubernetes-namespace': tags.ns }),
      ...(tags.sa !== undefined && { 'aws:RequestTag/kubernetes-service-account': tags.sa }),
      ...(tags.account !== undefined && { 'aws:SourceAccount': tags.account }),
    },
  });
  const ours = { ns: s.namespace, sa: s.serviceAccount, account: s.account };
  const cases: IamCase[] = [];
  for (const action of ['sts:AssumeRole', 'sts:TagSession']) {
    const a = action.slice(4);
    cases.push(
      { expect: 'allow', request: request(`pod-identity.${a}.mlflow`, `${action} by EKS Pod Identity for ${s.namespace}/${s.serviceAccount}`, action, ours) },
      { expect: 'deny', request: request(`pod-identity.${a}.other-namespace`, 'an association of a ServiceAccount of the same name in another namespace', action, { ...ours, ns: otherNamespace }) },
      { expect: 'deny', request: request(`pod-identity.${a}.other-service-account`, 'an association of another ServiceAccount of the namespace', action, { ...ours, sa: 'default' }) },
      { expect: 'deny', request: request(`pod-identity.${a}.name-extension`, 'a ServiceAccount whose name only starts with the configured one', action, { ...ours, sa: `${s.serviceAccount}-debug` }) },
      { expect: 'deny', request: request(`pod-identity.${a}.other-account`, 'on behalf of another account (a confused deputy)', action, { ...ours, account: otherAccount }) },
      { expect: 'deny', request: request(`pod-identity.${a}.no-session-tags`, 'an association with its session tags off', action, { account: s.account }) },
      { expect: 'deny', request: request(`pod-identity.${a}.other-service`, 'another service with the same tags (ec2.amazonaws.com)', action, ours, 'ec2.amazonaws.com') },
    );
  }
  return s.credentials === 'pod-identity' ? cases : allDenied(cases);
}

/** What the role's session may do: every call MLflow and boto3 make for artifacts, and none of their neighbours. */
export function permissionCases(s: Subject): IamCase[] {
  const bucketArn = `arn:${s.partition}:s3:::${s.bucket}`;
  const base = s.prefix ? `${s.prefix}/` : '';
  // <experiment location>/<run id>/artifacts, with the experiment location inside the granted prefix
  const run = `${base}3a1f7e2c/8f14e45fceea167a5a36dedd4bea2543/artifacts`;
  const principal = sessionArn(s);
  const req = (expect: Verdict, id: string, what: string, action: string, resource: string, context?: Record<string, string>): IamCase =>
    ({ expect, request: { id, what, action, resource, principal, ...(context ? { context } : {}) } });
  const list = (expect: Verdict, id: string, what: string, prefix: string | undefined, bucket = bucketArn) =>
    req(expect, id, what, 's3:ListBucket', bucket, prefix === undefined ? undefined : { 's3:prefix': prefix, 's3:delimiter': '/' });
  const model = `${bucketArn}/${run}/model/model.pkl`;

  const cases: IamCase[] = [
    list('allow', 's3.list-artifacts', 'ListObjectsV2, list_artifacts (Prefix <run>/artifacts/)', `${run}/`),
    req('allow', 's3.list-for-delete', 'ListObjectsV2, delete_artifacts (Prefix <run>/artifacts, no trailing /)', 's3:ListBucket', bucketArn, { 's3:prefix': run }),
    list('allow', 's3.list-subdirectory', 'ListObjectsV2, list_artifacts("model")', `${run}/model/`),
    req('allow', 's3.bucket-location', 'GetBucketLocation', 's3:GetBucketLocation', bucketArn),
    req('allow', 's3.get', 'HeadObject and GetObject, download_file', 's3:GetObject', model),
    req('allow', 's3.put', 'PutObject, upload_file below the multipart threshold', 's3:PutObject', `${bucketArn}/${run}/metrics.json`),
    req('allow', 's3.multipart-create-upload-complete', 'CreateMultipartUpload, UploadPart, CompleteMultipartUpload (s3:PutObject)', 's3:PutObject', model),
    req('allow', 's3.multipart-abort', 'AbortMultipartUpload, after a failed part', 's3:AbortMultipartUpload', model),
    req('allow', 's3.multipart-list-parts', 'ListParts', 's3:ListMultipartUploadParts', model),
    req('allow', 's3.delete', 'DeleteObjects, delete_artifacts', 's3:DeleteObject', model),
    // S3 gives ListMultipartUploads no s3:prefix condition key, so it cannot be confined to a prefix: granted only when
    // the whole bucket is
    req(s.prefix ? 'deny' : 'allow', 's3.list-multipart-uploads', 'ListMultipartUploads', 's3:ListBucketMultipartUploads', bucketArn),

    // other buckets, the look-alike first
    ...[`${s.bucket}-backup`, 'other-team-data'].flatMap((b) => {
      const other = `arn:${s.partition}:s3:::${b}`;
      return [
        list('deny', `s3.other-bucket-list.${b}`, `ListObjectsV2 in ${b}`, `${run}/`, other),
        req('deny', `s3.other-bucket-get.${b}`, `GetObject in ${b}`, 's3:GetObject', `${other}/${run}/model/model.pkl`),
        req('deny', `s3.other-bucket-put.${b}`, `PutObject in ${b}`, 's3:PutObject', `${other}/${run}/model/model.pkl`),
        req('deny', `s3.other-bucket-delete.${b}`, `DeleteObject in ${b}`, 's3:DeleteObject', `${other}/${run}/model/model.pkl`),
      ];
    }),
    // managing the bucket, ACLs, and object versions (a versioned bucket's history)
    ...['s3:DeleteBucket', 's3:PutBucketPolicy', 's3:DeleteBucketPolicy', 's3:PutLifecycleConfiguration', 's3:PutEncryptionConfiguration',
      's3:PutBucketPublicAccessBlock', 's3:PutBucketVersioning', 's3:PutBucketAcl', 's3:GetBucketAcl']
      .map((action) => req('deny', `s3.${action.slice(3)}`, action.slice(3), action, bucketArn)),
    ...['s3:PutObjectAcl', 's3:GetObjectAcl', 's3:DeleteObjectVersion']
      .map((action) => req('deny', `s3.${action.slice(3)}`, `${action.slice(3)} on an artifact`, action, model)),
  ];

  if (s.prefix) {
    // other prefixes, the look-alike first: <prefix>x/ shares the prefix's characters but not its "directory"
    for (const [name, other] of [['look-alike', `${s.prefix}x`], ['other', 'other-team']]) {
      const key = `${bucketArn}/${other}/3a1f7e2c/model.pkl`;
      cases.push(
        list('deny', `s3.${name}-prefix-list`, `ListObjectsV2 under ${other}/`, `${other}/`),
        req('deny', `s3.${name}-prefix-get`, `GetObject under ${other}/`, 's3:GetObject', key),
        req('deny', `s3.${name}-prefix-put`, `PutObject under ${other}/`, 's3:PutObject', key),
        req('deny', `s3.${name}-prefix-delete`, `DeleteObject under ${other}/`, 's3:DeleteObject', key),
        req('deny', `s3.${name}-prefix-abort`, `AbortMultipartUpload under ${other}/`, 's3:AbortMultipartUpload', key),
        req('deny', `s3.${name}-prefix-list-parts`, `ListParts under ${other}/`, 's3:ListMultipartUploadParts', key),
      );
    }
    cases.push(
      list('deny', 's3.list-prefix-without-slash', `ListObjectsV2 with Prefix ${s.prefix} (no /: it would list ${s.prefix}x/ too)`, s.prefix),
      list('deny', 's3.list-bucket-root', 'ListObjectsV2 of the bucket root', ''),
      list('deny', 's3.list-without-prefix', 'ListObjectsV2 without a Prefix', undefined),
    );
  }

  const region = s.kmsKey?.region ?? 'us-west-2';
  const viaS3 = { 'kms:ViaService': `s3.${region}.amazonaws.com` };
  if (s.kmsKey) {
    const key = s.kmsKey.arn;
    const otherKey = key.replace(/key\/.*$/, 'key/0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f');
    const otherRegion = region === 'us-east-1' ? 'us-west-2' : 'us-east-1';
    cases.push(
      req('allow', 'kms.generate-data-key', 'GenerateDataKey by S3, for PutObject and CreateMultipartUpload', 'kms:GenerateDataKey', key, viaS3),
      req('allow', 'kms.decrypt', 'Decrypt by S3, for GetObject, UploadPart and CompleteMultipartUpload', 'kms:Decrypt', key, viaS3),
      req('deny', 'kms.decrypt-direct', 'Decrypt called directly with the role\'s credentials', 'kms:Decrypt', key),
      req('deny', 'kms.decrypt-other-service', 'Decrypt through another service (EBS)', 'kms:Decrypt', key, { 'kms:ViaService': `ec2.${region}.amazonaws.com` }),
      req('deny', 'kms.decrypt-other-region', `Decrypt through S3 in ${otherRegion}`, 'kms:Decrypt', key, { 'kms:ViaService': `s3.${otherRegion}.amazonaws.com` }),
      req('deny', 'kms.other-key', 'GenerateDataKey by S3 with another key', 'kms:GenerateDataKey', otherKey, viaS3),
      ...['kms:Encrypt', 'kms:ReEncryptFrom', 'kms:CreateGrant', 'kms:DescribeKey', 'kms:ScheduleKeyDeletion', 'kms:PutKeyPolicy']
        .map((action) => req('deny', `kms.${action.slice(4)}`, `${action.slice(4)} on the key`, action, key, viaS3)),
    );
  } else {
    const someKey = `arn:${s.partition}:kms:${region}:${s.account}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
    cases.push(req('deny', 'kms.without-key-option', 'Decrypt by S3, when no --kms-key-arn was given', 'kms:Decrypt', someKey, viaS3));
  }
  return cases;
}

/** The key policy of a KMS key: the AWS default (the account's IAM policies decide), or, for a key in another
 * account, one that lets this role use it, so that the role's own IAM policy is what the request turns on. */
function keyPolicy(s: Subject, keyArn: string): PolicyDocument | object {
  const keyAccount = keyArn.split(':')[4];
  const principal = keyAccount === s.account ? `arn:${s.partition}:iam::${keyAccount}:root` : s.roleArn;
  return { Version: '2012-10-17', Statement: [{ Sid: 'KeyUsers', Effect: 'Allow', Principal: { AWS: principal }, Action: 'kms:*', Resource: '*' }] };
}

const accountOf = (arn: string, s: Subject) => arn.split(':')[4] || s.account;

function simulation(s: Subject, r: IamRequest, identity: object | undefined, resourcePolicy: object | undefined): Simulation {
  return {
    request: { principal: r.principal, action: r.action, resource: { resource: r.resource, accountId: accountOf(r.resource, s) }, contextVariables: { ...r.context } },
    identityPolicies: identity ? [{ name: 'role-policy', policy: identity }] : [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    ...(resourcePolicy ? { resourcePolicy } : {}),
  };
}

/**
 * The role's permissions policy on one request. The evaluator checks the policy's grammar, the action, the resource
 * type and the context keys; any of those wrong, or a context key it would ignore, is an error, never a quiet "deny".
 */
export async function judgePermissions(s: Subject, policy: object, r: IamRequest): Promise<Verdict> {
  const result = await runSimulation(simulation(s, r, policy, r.action.startsWith('kms:') ? keyPolicy(s, r.resource) : undefined), {});
  if (result.resultType !== 'single') throw new Error(`${r.id}: the evaluator refused the request: ${JSON.stringify(result)}`);
  if (result.result.ignoredContextKeys?.length) throw new Error(`${r.id}: the evaluator ignores context keys ${result.result.ignoredContextKeys.join(', ')}`);
  return result.overallResult === 'Allowed' ? 'allow' : 'deny';
}

/**
 * The role's trust policy on one request. The evaluator's action data lacks the EKS providers' condition keys
 * (<provider>:sub, :aud), so its validating entry point would ignore them: it checks the policy and request first,
 * and its unvalidated entry point, which evaluates every key given, decides.
 */
export async function judgeTrust(s: Subject, policy: object, r: IamRequest): Promise<Verdict> {
  const sim = simulation(s, r, undefined, policy);
  const checked = await runSimulation(sim, {});
  if (checked.resultType !== 'single') throw new Error(`${r.id}: the evaluator refused the request: ${JSON.stringify(checked)}`);
  const providerKeys = Object.keys(r.context ?? {});
  const ignored = (checked.result.ignoredContextKeys ?? []).filter((k) => !providerKeys.includes(k));
  if (ignored.length > 0) throw new Error(`${r.id}: the evaluator ignores context keys ${ignored.join(', ')}`);
  const errors = validateTrustPolicy(policy);
  if (errors.length > 0) throw new Error(`not a valid trust policy: ${JSON.stringify(errors)}`);
  const verdict = runUnsafeSimulation({ ...sim, resourcePolicy: createValidatedPolicy(policy, validateTrustPolicy, { name: 'trust-policy' }) }, {});
  return verdict === 'Allowed' ? 'allow' : 'deny';
}

/** Grammar of a permissions policy as IAM checks it on put-role-policy. */
export const identityPolicyErrors = (policy: object) => validateIdentityPolicy(policy);

/**
 * Policies that allow everything the cases ask for. Each case must be allowed under them: then a "deny" under the
 * policies being judged comes from those policies, not from a request the evaluator could never allow.
 */
export const allowAll = {
  permissions: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: ['s3:*', 'kms:*'], Resource: '*' }] },
  trust: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: ['sts:AssumeRoleWithWebIdentity', 'sts:AssumeRole', 'sts:TagSession'] }] },
};
