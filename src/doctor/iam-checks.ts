// doctor's check of the IAM role's trust policy, for IRSA or for EKS Pod Identity.
import { NAMESPACE_TAG, parseRoleArn, POD_IDENTITY_SERVICE, podIdentityTrustPolicy, SERVICE_ACCOUNT_TAG, shellQuote, trustPolicy, type RoleRef } from '../iam-policy.js';
import { type JsonObject } from '../mutators/index.js';
import { isObject } from '../mutators/json.js';
import { CLI, type DoctorContext, type DoctorFacts, Verbatim, type Verdict, type Words, fail, list, obj, pass, sh, skip, warn } from './facts.js';

// ---- IAM ---------------------------------------------------------------------------------------------------------

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

/** The policy document from the file: the document itself, or get-role's whole answer. */
function policyDocument(raw: unknown): JsonObject | undefined {
  const role = obj(obj(raw).Role);
  const doc = isObject(role.AssumeRolePolicyDocument) ? role.AssumeRolePolicyDocument : raw;
  return isObject(doc) && doc.Statement !== undefined ? doc : undefined;
}

/** The strings of a policy element that may be one string or a list. */
const strings = (v: unknown): string[] => asList(v).filter((x): x is string => typeof x === 'string');

/**
 * The trust policy for Pod Identity: a statement that lets pods.eks.amazonaws.com call both sts:AssumeRole and
 * sts:TagSession (AssumeRole with session tags needs both), only with our namespace's and ServiceAccount's session
 * tags (without them any association in the account may use the role), and on behalf of the role's own account.
 */
function judgePodIdentityTrust(doc: JsonObject, role: RoleRef, c: DoctorContext): Verdict {
  const fix = `${CLI} iam-policy --config ${shellQuote(c.configFile)} --cluster-name <cluster> --output aws-cli > role.sh && sh role.sh`;
  const allows = list(asList(doc.Statement)).filter((s) => s.Effect === 'Allow');
  const statements = allows.filter((s) => strings(obj(s.Principal).Service).includes(POD_IDENTITY_SERVICE));
  const irsa = [...new Set(allows.flatMap((s) => strings(obj(s.Principal).Federated)).map((arn) => arn.replace(/^arn:[^:]+:iam::\d+:oidc-provider\//, '')))];
  const alsoIrsa = irsa.length > 0 ? `; it also trusts ${irsa.join(', ')} (IRSA): remove that statement once no cluster uses IRSA for this role` : '';
  if (statements.length === 0) return fail(`no statement trusts ${POD_IDENTITY_SERVICE}, so EKS Pod Identity cannot assume ${role.name}${irsa.length > 0 ? ` (it trusts ${irsa.join(', ')}: IRSA only)` : ''}`, fix);
  const want = obj(podIdentityTrustPolicy(role, c.config).Statement[0].Condition).StringEquals as Record<string, string>;
  const problems: string[] = [];
  for (const s of statements) {
    const actions = strings(s.Action);
    const missing = ['sts:AssumeRole', 'sts:TagSession'].filter((a) => !actions.includes(a) && !actions.includes('sts:*'));
    const equals = obj(obj(s.Condition).StringEquals);
    const like = obj(obj(s.Condition).StringLike);
    const unmet = [NAMESPACE_TAG, SERVICE_ACCOUNT_TAG].filter((key) => {
      const values = strings(equals[key]);
      return values.length === 0 || values.some((v) => v !== want[key]);
    });
    const source = strings(equals['aws:SourceAccount']);
    const wrongSource = source.length > 0 && source.some((a) => a !== role.account);
    if (missing.length === 0 && unmet.length === 0 && !wrongSource) {
      const allowed = `the trust policy lets EKS Pod Identity assume ${role.name} for ${c.config.namespace}/${c.config.serviceAccount} only`;
      if (source.length === 0) {
        return warn(`${allowed}, but not only on behalf of account ${role.account} (no aws:SourceAccount condition, which AWS recommends against a confused deputy)${alsoIrsa}`, fix);
      }
      return pass(`${allowed}, on behalf of account ${role.account}${alsoIrsa}`);
    }
    const said = [
      ...missing.map((a) => `${a} is not allowed${a === 'sts:TagSession' ? ' (Pod Identity assumes the role with session tags, which needs it)' : ''}`),
      ...unmet.map((key) => `${key} must equal ${want[key]}${like[key] !== undefined ? ' (a StringLike pattern is broader than the one value)' : `, is ${JSON.stringify(equals[key] ?? null)}`}`),
      ...(wrongSource ? [`aws:SourceAccount must be ${role.account}, is ${JSON.stringify(equals['aws:SourceAccount'])}`] : []),
    ];
    problems.push(said.join('; '));
  }
  const anyAssociation = problems.some((p) => p.includes(`${NAMESPACE_TAG} must equal`) && p.includes(`${SERVICE_ACCOUNT_TAG} must equal`));
  return fail(`${POD_IDENTITY_SERVICE}: ${problems.join(' / ')}${anyAssociation ? ' (without the tag conditions any association in the account may use the role)' : ''}`, fix);
}

export function judgeTrust(f: DoctorFacts, c: DoctorContext): Verdict {
  const role = parseRoleArn(c.config.roleArn);
  if (!f.trust) return skip(`no --trust-policy given (aws iam get-role --role-name ${role.name} --query Role.AssumeRolePolicyDocument > trust.json)`);
  if (!f.trust.policy.ok) return fail(f.trust.policy.error, sh`aws iam get-role --role-name ${role.name} --query Role.AssumeRolePolicyDocument > trust.json`);
  const doc = policyDocument(f.trust.policy.value);
  if (!doc) return fail('the --trust-policy file is not an IAM policy document (no Statement)', sh`aws iam get-role --role-name ${role.name} --query Role.AssumeRolePolicyDocument > trust.json`);
  if (c.config.credentials === 'pod-identity') return judgePodIdentityTrust(doc, role, c);
  const allows = list(asList(doc.Statement)).filter((s) => s.Effect === 'Allow'
    && asList(s.Action).some((a) => a === 'sts:AssumeRoleWithWebIdentity' || a === 'sts:*'));
  const federated = (s: JsonObject) => asList(obj(s.Principal).Federated).filter((v): v is string => typeof v === 'string');
  const providersIn = [...new Set(allows.flatMap(federated).map((arn) => arn.replace(/^arn:[^:]+:iam::\d+:oidc-provider\//, '')))];
  const known = f.trust.provider.ok ? f.trust.provider.value : undefined;
  // without the cluster's own issuer, judge the policy against the providers it names (and say so)
  const candidates = known ? [known.value] : providersIn;
  const script = (provider: Words) => sh`${CLI} iam-policy --config ${c.configFile} --oidc-provider ${provider} --output aws-cli  # then: aws iam update-assume-role-policy --role-name ${role.name} --policy-document file://trust-policy.json`;
  const fixFor = script(known?.value ?? providersIn[0] ?? new Verbatim('<the cluster\'s OIDC issuer>'));
  if (candidates.length === 0) return fail('no statement allows sts:AssumeRoleWithWebIdentity for an OIDC provider', fixFor);
  const problems: string[] = [];
  for (const provider of candidates) {
    const want = trustPolicy(role, provider, c.config).Statement[0];
    const wantArn = (want.Principal as { Federated: string }).Federated;
    const statements = allows.filter((s) => federated(s).includes(wantArn));
    if (statements.length === 0) {
      problems.push(`no statement trusts ${wantArn}`);
      continue;
    }
    const wanted = Object.entries(want.Condition!.StringEquals);
    for (const s of statements) {
      const cond = obj(s.Condition);
      const unmet = wanted.filter(([key, value]) => !asList(obj(cond.StringEquals)[key]).includes(value));
      if (unmet.length === 0) {
        const allowed = `the trust policy lets ${provider} tokens with sub system:serviceaccount:${c.config.namespace}:${c.config.serviceAccount} and aud ${c.config.token.audience} assume ${role.name}`;
        if (known) return pass(`${allowed} (the cluster's issuer, from ${known.source})`);
        return warn(`${allowed}, but whether ${provider} is this cluster's issuer is unknown (${f.trust.provider.ok ? '' : f.trust.provider.error}); pass --oidc-provider`,
          'aws eks describe-cluster --name <cluster> --query cluster.identity.oidc.issuer --output text');
      }
      const loose = unmet.filter(([key]) => obj(cond.StringLike)[key] !== undefined);
      problems.push(`${wantArn}: ${unmet.map(([key, value]) => `${key} must equal ${value}${loose.some(([k]) => k === key) ? ' (a StringLike pattern is broader than the one service account)' : `, is ${JSON.stringify(obj(cond.StringEquals)[key] ?? null)}`}`).join('; ')}`);
    }
  }
  const others = known ? providersIn.filter((p) => p !== known.value) : [];
  return fail(`${problems.join('; ')}${others.length > 0 ? ` (it trusts ${others.join(', ')}: another cluster?)` : ''}`, fixFor);
}
