// The one schema of the config file: config.ts validates with it, and the Helm chart's values.schema.json is generated from it.
// Patterns stay RE2-compatible (no look-around) because Helm checks values.schema.json with Go's regexp;
// rules a plain pattern cannot say live in config.ts `refine`.
import { DEFAULT_REMOVE_ENV } from '../mutators/overrides.js';

const dnsLabel = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const dnsSubdomain = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const envName = '^[-._a-zA-Z][-._a-zA-Z0-9]*$';
// arn:<partition>:iam::<12-digit account>:role/<optional path/>name
export const roleArnPattern = '^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/([\\x21-\\x2E\\x30-\\x7E]+/)*[\\w+=,.@-]{1,64}$';
// s3://<bucket>[/prefix]; the bucket's finer rules (no "..", not an IP address, reserved affixes) are in config.ts
export const s3UriPattern = '^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._-]+)*/?$';
// mlflow-artifacts:/[path]: a location the tracking server's artifact proxy maps to <artifactsDestination>/[path]; never the
// mlflow-artifacts://host/... form, which names another server
export const proxiedUriPattern = '^mlflow-artifacts:/([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?)?$';
// MLflow tag keys we accept for our own tags: plain characters only, since the key is baked into SQL (quoted all the same)
const tagKey = '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$';

export const configSchema = {
  $id: 'https://github.com/mlflow-irsa-webhook/config.schema.json',
  title: 'mlflow-irsa-webhook configuration',
  type: 'object',
  additionalProperties: false,
  required: ['roleArn', 'artifactsDestination'],
  properties: {
    roleArn: {
      type: 'string',
      pattern: roleArnPattern,
      description: 'IAM role MLflow assumes, arn:aws[-cn|-us-gov]:iam::<12-digit account>:role/[path/]name',
    },
    artifactsDestination: {
      type: 'string',
      pattern: s3UriPattern,
      description: 'S3 location for artifacts, s3://<bucket>[/prefix]; becomes MLFLOW_ARTIFACTS_DESTINATION',
    },
    credentials: {
      type: 'string',
      enum: ['irsa', 'pod-identity'],
      default: 'irsa',
      description: 'how MLflow gets the role: irsa (web identity: token volume, AWS_ROLE_ARN, the ServiceAccount\'s role-arn annotation) or pod-identity (an EKS Pod Identity association; the webhook removes the IRSA parts)',
    },
    namespace: { type: 'string', pattern: dnsLabel, maxLength: 63, default: 'domino-platform', description: 'namespace of the MLflow Deployment and ServiceAccount' },
    deployment: { type: 'string', pattern: dnsSubdomain, maxLength: 253, default: 'mlflow', description: 'name of the MLflow Deployment' },
    container: { type: 'string', pattern: dnsLabel, maxLength: 63, default: 'mlflow', description: 'container in the Deployment that gets the token mount and env' },
    serviceAccount: { type: 'string', pattern: dnsSubdomain, maxLength: 253, default: 'mlflow', description: 'name of the MLflow ServiceAccount' },
    region: {
      type: 'string',
      pattern: '^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$',
      description: 'AWS region; when set adds AWS_REGION, AWS_DEFAULT_REGION, AWS_STS_REGIONAL_ENDPOINTS=regional',
    },
    token: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'the projected service-account token volume',
      properties: {
        audience: { type: 'string', minLength: 1, maxLength: 253, default: 'sts.amazonaws.com', description: 'token audience; must match the IAM OIDC provider' },
        expirationSeconds: { type: 'integer', minimum: 600, maximum: 86400, default: 86400, description: 'token lifetime, 600..86400' },
        volumeName: { type: 'string', pattern: dnsLabel, maxLength: 63, default: 'aws-iam-token', description: 'volume name; aws-iam-token agrees with the EKS pod-identity webhook' },
        mountPath: { type: 'string', pattern: '^/[^:]*$', maxLength: 1024, default: '/var/run/secrets/eks.amazonaws.com/serviceaccount', description: 'absolute directory the token is mounted in' },
        defaultMode: { type: 'integer', minimum: 0, maximum: 511, default: 420, description: 'file mode of the token, decimal (420 = 0644)' },
      },
    },
    removeEnv: {
      type: 'array',
      items: { type: 'string', pattern: envName, maxLength: 256 },
      uniqueItems: true,
      default: [...DEFAULT_REMOVE_ENV],
      description: 'env names removed from the container wherever they stand, each named in an admission warning; the default is every variable botocore reads before web identity or that breaks it',
    },
    trigger: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'the tracking-database trigger that sets each experiment\'s artifact location',
      properties: {
        mode: { type: 'string', enum: ['project-id', 'custom-location'], default: 'project-id', description: 'project-id: <artifactsDestination>/<prefix>/<project id> (direct) or mlflow-artifacts:/<prefix>/<project id> (proxied); custom-location: the tag value itself' },
        locationStyle: {
          type: 'string',
          enum: ['direct', 'proxied'],
          default: 'direct',
          description: 'direct: locations are s3:// URIs, clients need AWS credentials; proxied: mlflow-artifacts:/ URIs, clients go through the tracking server and need none',
        },
        projectTag: { type: 'string', pattern: tagKey, maxLength: 250, default: 'mlflow.domino.project_id', description: 'experiment tag holding the Domino project id' },
        locationTag: { type: 'string', pattern: tagKey, maxLength: 250, default: 'domino.artifacts_location', description: 'experiment tag holding a custom location' },
        prefix: { type: 'string', pattern: '^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$', maxLength: 128, default: 'mlflow', description: 'path between artifactsDestination and the project id ("" for none; no "." or ".." segments)' },
        allowedLocationPrefixes: {
          type: 'array',
          items: { type: 'string', pattern: `${s3UriPattern}|${proxiedUriPattern}` },
          uniqueItems: true,
          default: [],
          description: 'custom locations must start with one of these (s3://<bucket>[/path] or mlflow-artifacts:/[path]); empty means [<artifactsDestination>/] (direct) or [mlflow-artifacts:/] (proxied)',
        },
        schema: { type: 'string', pattern: '^[a-z_][a-z0-9_]{0,62}$', default: 'public', description: 'PostgreSQL schema holding MLflow\'s tables' },
        locationPolicy: {
          type: 'string',
          enum: ['off', 'audit', 'enforce'],
          // no `default`: unset, it is audit, or what the deprecated enforceLocations maps to (config.ts), which a filled-in default would hide
          description: 'experiment locations written directly (not through our tag) other than empty, MLflow\'s default <defaultArtifactRoot>/<id>, or (custom-location) an allowed one: off, audit (let through and recorded for doctor), or enforce (refused); unset: audit',
        },
        enforceLocations: {
          // null as well: `--set trigger.enforceLocations=null` removes it, with or without an earlier chart's default beneath
          type: ['boolean', 'null'],
          description: 'deprecated, use locationPolicy: true is enforce, false is off (null: unset); refused when it disagrees with locationPolicy',
        },
        defaultArtifactRoot: {
          type: 'string',
          pattern: '^([A-Za-z][A-Za-z0-9+.-]*:|/)[^\\s?#]*$',
          maxLength: 200,
          description: 'MLflow\'s --default-artifact-root (absolute path or URI, no ? or #); unset: taken from experiment 0 (Default) at install, and locationPolicy enforce fails when neither gives one',
        },
      },
    },
    migration: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'the copy of artifacts from the artifacts destination the webhook replaced (migrate-artifacts)',
      properties: {
        completedFrom: {
          type: 'array',
          items: { type: 'string', pattern: s3UriPattern, description: 'an old artifacts destination, s3://<bucket>[/prefix]' },
          uniqueItems: true,
          default: [],
          description: 'old artifacts destinations (s3://<bucket>[/prefix]) whose copy to artifactsDestination is done; doctor stops warning about them',
        },
      },
    },
    server: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'HTTPS server settings of `serve`',
      properties: {
        port: { type: 'integer', minimum: 1, maximum: 65535, default: 8443, description: 'HTTPS port' },
        host: { type: 'string', minLength: 1, default: '::', description: 'listen address; "::" answers IPv6 and IPv4 (dual stack), and falls back to 0.0.0.0 on a kernel without IPv6' },
        tlsMinVersion: { type: 'string', enum: ['TLSv1.2', 'TLSv1.3'], default: 'TLSv1.2', description: 'lowest TLS version accepted' },
        bodyLimitBytes: { type: 'integer', minimum: 1024, maximum: 67108864, default: 3145728, description: 'largest AdmissionReview accepted (the API server sends at most 3 MiB)' },
        requestTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 300, default: 10, description: 'a request (headers and body) must arrive within this' },
        idleTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: 120, description: 'a kept-alive connection idle this long is closed; keep it above the API server\'s 90 s, so the caller closes first and never sends on a connection being closed' },
        drainSeconds: { type: 'number', minimum: 0, maximum: 300, default: 5, description: 'on SIGTERM, /readyz answers 503 this long before the listener closes' },
        maxConnections: { type: 'integer', minimum: 1, maximum: 100000, default: 1000, description: 'open connections at most (each TLS connection holds ~30 KiB); further ones are closed at once and counted' },
        maxConnectionsPerSource: { type: 'integer', minimum: 1, maximum: 100000, default: 64, description: 'open connections from one client address at most, at or below maxConnections; one API server keeps up to 25 idle ones' },
        certReloadSeconds: { type: 'number', minimum: 0.05, maximum: 3600, default: 5, description: 'how often the cert and key files are checked for rotation' },
        metricsPort: { type: 'integer', minimum: 0, maximum: 65535, default: 0, description: 'plain-HTTP port serving GET /metrics, /healthz and /readyz (the kubelet\'s probes), for Prometheus without the webhook\'s CA; 0 = off' },
        metricsMaxConnections: { type: 'integer', minimum: 1, maximum: 100000, default: 64, description: 'open connections to metricsPort at most; further ones are closed at once and counted' },
        metricsMaxConnectionsPerSource: { type: 'integer', minimum: 1, maximum: 100000, default: 8, description: 'open connections to metricsPort from one client address at most, at or below metricsMaxConnections' },
        metricsIdleTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: 15, description: 'a kept-alive connection to metricsPort idle this long is closed (scrapers and probes send GETs, which clients retry)' },
      },
    },
    reconcile: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'self-healing inside `serve`: restarts an mlflow Deployment that rolled out without the mutation',
      properties: {
        enabled: { type: 'boolean', default: true, description: 'watch the target Deployment and ServiceAccount and repair them (needs cluster credentials)' },
        intervalSeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 60, description: 'poll interval, beside the watch' },
        minRestartIntervalSeconds: { type: 'integer', minimum: 1, maximum: 604800, default: 600, description: 'at most one restart per this; doubles while restarts do not stick' },
        maxRestartIntervalSeconds: { type: 'integer', minimum: 1, maximum: 604800, default: 21600, description: 'the doubling backoff stops growing here' },
        leaseName: { type: 'string', pattern: dnsSubdomain, maxLength: 253, default: 'mlflow-irsa-webhook-reconcile', description: 'coordination.k8s.io Lease that elects the one replica that acts' },
        leaseDurationSeconds: { type: 'integer', minimum: 2, maximum: 300, default: 15, description: 'how long a leader holds the Lease without renewing' },
      },
    },
    logLevel: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'pino log level' },
  },
} as const;
