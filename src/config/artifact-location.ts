// What MLflow's schema allows an experiment's artifact location to be, and how MLflow itself builds one: pure string rules shared by config.ts (validation) and db/ (the trigger's SQL).

/** runs.artifact_uri is VARCHAR(200) in every MLflow schema. */
export const RUN_ARTIFACT_URI_LENGTH = 200;
/** A run id is uuid4().hex: 32 hexadecimal characters. */
export const RUN_ID_LENGTH = 32;
/**
 * The longest experiment location whose runs can still be created: 157.
 * MLflow's create_run stores `append_to_uri_path(<experiment location>, <run id>, "artifacts")` in runs.artifact_uri,
 * which adds "/" + 32-hex run id + "/artifacts" (43 characters) to the location. A longer location is accepted by
 * experiments.artifact_location (VARCHAR(256)) and then breaks every create_run in that experiment with
 * "value too long for type character varying(200)".
 */
export const MAX_LOCATION_LENGTH = RUN_ARTIFACT_URI_LENGTH - `/${'0'.repeat(RUN_ID_LENGTH)}/artifacts`.length;
/** Why MAX_LOCATION_LENGTH, in the words refusals and config errors use. */
export const LENGTH_REASON = `MLflow stores each run's <location>/<32-hex run id>/artifacts in runs.artifact_uri, VARCHAR(${RUN_ARTIFACT_URI_LENGTH})`;

/**
 * The root of locations the tracking server's artifact proxy serves: `mlflow-artifacts:/<path>` is stored by the server at
 * `<artifactsDestination>/<path>` with its own credentials, so clients need none.
 */
export const PROXY_ROOT = 'mlflow-artifacts:/';

/** direct: experiments point at S3 itself; proxied: at the tracking server's artifact proxy. */
export type LocationStyle = 'direct' | 'proxied';

/** The path of an s3:// or mlflow-artifacts:/ location, after its scheme and (for s3) bucket marker. */
export function locationPath(uri: string): string {
  return uri.startsWith(PROXY_ROOT) ? uri.slice(PROXY_ROOT.length) : uri.replace(/^s3:\/\//, '');
}

/** True when a "/"-separated path has a "." or ".." segment. */
export function hasDotSegment(path: string): boolean {
  return /(^|\/)\.\.?(\/|$)/.test(path);
}

/** A location prefix compared as a directory: with its trailing "/", so s3://team never admits s3://team-other/... */
export function withSlash(prefix: string): string {
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/**
 * Where project-id mode puts a project's artifacts: the base, to which the project id is appended. Proxied, the server maps
 * mlflow-artifacts:/<prefix>/<id> to <artifactsDestination>/<prefix>/<id>: the same S3 layout, written with its role.
 */
export function projectBase(style: LocationStyle, artifactsDestination: string, prefix: string): string {
  return `${style === 'proxied' ? PROXY_ROOT : `${artifactsDestination}/`}${prefix ? `${prefix}/` : ''}`;
}

/** The custom-location prefixes when none are configured: everything under the destination, in the style's spelling. */
export function defaultAllowedPrefix(style: LocationStyle, artifactsDestination: string): string {
  return projectBase(style, artifactsDestination, '');
}

/** Where a location's objects are in S3: an s3:// location itself; mlflow-artifacts:/<path> at <artifactsDestination>/<path>, where the proxy stores it. */
export function s3Location(location: string, artifactsDestination: string): string {
  return location.startsWith(PROXY_ROOT) ? `${artifactsDestination}/${locationPath(location)}` : location;
}

// Python's urllib.parse.uses_netloc: urlunparse writes "//" before the path for these schemes even without a host.
const USES_NETLOC = new Set(['', 'ftp', 'http', 'gopher', 'nntp', 'telnet', 'imap', 'wais', 'file', 'mms', 'https', 'shttp', 'snews',
  'prospero', 'rtsp', 'rtsps', 'rtspu', 'rsync', 'svn', 'svn+ssh', 'sftp', 'nfs', 'git', 'git+ssh', 'ws', 'wss', 'itms-services']);

/**
 * MLflow's default location for experiment N is `<this> + N`. Follows SqlAlchemyStore._get_artifact_location, which is
 * append_to_uri_path(root, str(id)) (mlflow/utils/uri.py): the id joins the root's path with posixpath.join, so a root
 * ending in "/" gets no second slash, "s3://bucket" becomes "s3://bucket/N", "mlflow-artifacts:/" becomes
 * "mlflow-artifacts:/N", and "file:/x" is rewritten to "file:///x/N". Roots with a query or fragment are not supported
 * (config refuses them); relative paths are resolved against MLflow's working directory, which we cannot know.
 */
export function mlflowDefaultPrefix(root: string): string {
  const slash = (path: string) => (path === '' ? path : withSlash(path));
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(root);
  if (!scheme) return slash(root);
  const [, name, rest] = scheme;
  if (rest.startsWith('//')) {
    const pathStart = rest.indexOf('/', 2);
    return pathStart < 0 ? `${root}/` : slash(root);
  }
  if (rest.startsWith('/')) return USES_NETLOC.has(name.toLowerCase()) ? `${name}://${slash(rest)}` : slash(root);
  return `${name}:${slash(rest)}`;
}
