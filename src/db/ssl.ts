// libpq's sslmode, exactly, for every command that connects to the tracking database: where sslmode and sslrootcert come
// from, which plaintext/TLS attempts libpq makes and in what order, what it checks, and when it falls back.
//
// node-postgres gives these words other meanings (its connection-string parser treats prefer/require/verify-ca as
// verify-full, PGSSLMODE=prefer as "TLS, verified", and it never falls back), so this module takes the ssl parameters
// out of the URL, reads PGSSLMODE/PGSSLROOTCERT itself, and hands pg an explicit `ssl` for each attempt.
// Rules cited below are from the libpq documentation ("SSL Support", table "SSL Mode Descriptions", and the sslmode /
// sslrootcert parameter descriptions) and libpq's own code (fe-connect.c, fe-secure-openssl.c).
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { checkServerIdentity, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { pemBlocks } from '../webhook/tls.js';
import pg from 'pg';
import type { Logger } from '../log.js';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** Wrong TLS settings, or a server whose TLS this sslmode refuses: waiting will not fix it. */
export class DatabaseTlsError extends Error {
  override name = 'DatabaseTlsError';
}

export interface RootCertificate {
  /** where it was named, for messages: `PGSSLROOTCERT /etc/ca/ca.crt` */
  readonly origin: string;
  /** PEM certificates; undefined for sslrootcert=system (Node's bundled CA list, plus NODE_EXTRA_CA_CERTS) */
  readonly pem?: string;
}

export interface TlsSettings {
  readonly sslMode: SslMode;
  /** where sslMode came from: `PGSSLMODE`, `sslmode= in --database-url`, or `libpq's default` */
  readonly sslModeOrigin: string;
  /** what the server's certificate chain is checked against; absent: no check (libpq without a root certificate) */
  readonly root?: RootCertificate;
}

export type Transport = 'plaintext' | 'tls';

export interface ConnectionPlan {
  /** the URL without the parameters this module owns, so pg cannot read them its own way */
  readonly connectionString?: string;
  readonly tls: TlsSettings;
  /** the attempts libpq makes, in order; a later one runs only when `judge` says the earlier failure allows it */
  readonly attempts: readonly Transport[];
}

export interface PlanOptions {
  /** postgres://user:password@host:port/db?sslmode=...&sslrootcert=...; the rest is left to pg (PGHOST, PGUSER, ...) */
  readonly databaseUrl?: string;
  readonly env: NodeJS.ProcessEnv;
}

const OWN_PARAMETERS = new Set(['sslmode', 'sslrootcert']);
// pg-connection-string reads `ssl` and `uselibpqcompat` its own way, and the other ssl* parameters (client certificates,
// CRLs, SNI, direct negotiation) are libpq features this command does not implement: refused by name, never half-honoured.
const REFUSED_PARAMETER = /^(ssl.*|uselibpqcompat|requiressl)$/i;

interface UrlParameters {
  readonly connectionString: string;
  readonly sslmode?: string;
  readonly sslrootcert?: string;
}

/** Takes sslmode and sslrootcert out of the URL's query, leaving every other byte as written. */
function splitUrl(url: string): UrlParameters {
  const q = url.indexOf('?');
  if (q < 0) return { connectionString: url };
  const hash = url.indexOf('#', q);
  const query = url.slice(q + 1, hash < 0 ? undefined : hash);
  const kept: string[] = [];
  const own: Record<string, string> = {};
  for (const part of query.split('&')) {
    const entry = [...new URLSearchParams(part)][0];
    if (!entry) continue;
    const [key, value] = entry;
    // The URL is a secret (it may carry the password), so only the parameter's name is quoted.
    if (OWN_PARAMETERS.has(key)) own[key] = value; // libpq: a later value for the same keyword replaces an earlier one
    else if (REFUSED_PARAMETER.test(key)) {
      throw new DatabaseTlsError(`--database-url parameter "${key}" is not supported: the TLS settings understood here are sslmode and sslrootcert (or PGSSLMODE and PGSSLROOTCERT)`);
    } else kept.push(part);
  }
  const base = url.slice(0, q) + (kept.length > 0 ? `?${kept.join('&')}` : '') + (hash < 0 ? '' : url.slice(hash));
  return { connectionString: base, sslmode: own.sslmode, sslrootcert: own.sslrootcert };
}

function parseMode(value: string, origin: string): SslMode {
  if ((SSL_MODES as readonly string[]).includes(value)) return value as SslMode;
  throw new DatabaseTlsError(`invalid sslmode ${JSON.stringify(value)} (${origin}): use one of ${SSL_MODES.join(', ')}`);
}

/** PEM text holding at least one certificate that parses, or a message naming the file and what is wrong with it. */
async function readRoot(path: string, origin: string): Promise<RootCertificate> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new DatabaseTlsError(`cannot read the root certificate file (${origin}): ${(err as Error).message}`);
  }
  const blocks = pemBlocks(pem);
  if (blocks.length === 0) throw new DatabaseTlsError(`the root certificate file (${origin}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new DatabaseTlsError(`the root certificate file (${origin}): certificate ${i + 1} of ${blocks.length} does not parse: ${(err as Error).message}`);
    }
  }
  return { origin, pem };
}

/** libpq's default root certificate file: ~/.postgresql/root.crt, home from HOME or the user database (pqGetHomeDirectory). */
function defaultRootPath(env: NodeJS.ProcessEnv): string | undefined {
  try {
    const home = env.HOME || homedir();
    return home ? join(home, '.postgresql', 'root.crt') : undefined;
  } catch {
    // libpq: "If pqGetHomeDirectory fails, act as though none of the files could be found."
    return undefined;
  }
}

/** libpq's test for the default file: stat() succeeds. Anything else than "not there" is left for readRoot to report. */
async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, (err: NodeJS.ErrnoException) => err.code !== 'ENOENT' && err.code !== 'ENOTDIR');
}

/**
 * Turns the URL and the environment into the connection attempts libpq would make. Reads the root certificate once,
 * so a file that cannot be used is reported before any connection, naming the file.
 */
export async function planConnection(opts: PlanOptions): Promise<ConnectionPlan> {
  const url = opts.databaseUrl === undefined ? undefined : splitUrl(opts.databaseUrl);
  const { env } = opts;

  // libpq: a connection-string keyword wins over its environment variable, which wins over the built-in default (prefer).
  const modeGiven = url?.sslmode !== undefined ? { value: url.sslmode, origin: 'sslmode= in --database-url' }
    : env.PGSSLMODE !== undefined ? { value: env.PGSSLMODE, origin: 'PGSSLMODE' } : undefined;
  // libpq: an empty sslrootcert counts as unset (initialize_SSL tests strlen > 0).
  const rootGiven = url?.sslrootcert ? { path: url.sslrootcert, origin: `sslrootcert=${url.sslrootcert} in --database-url` }
    : env.PGSSLROOTCERT ? { path: env.PGSSLROOTCERT, origin: `PGSSLROOTCERT ${env.PGSSLROOTCERT}` } : undefined;

  let sslMode: SslMode;
  let sslModeOrigin: string;
  if (modeGiven) {
    sslMode = parseMode(modeGiven.value, modeGiven.origin);
    sslModeOrigin = modeGiven.origin;
  } else if (rootGiven?.path === 'system') {
    // libpq: "When using sslrootcert=system, the default sslmode is changed to verify-full".
    sslMode = 'verify-full';
    sslModeOrigin = "libpq's default with sslrootcert=system";
  } else {
    sslMode = 'prefer';
    sslModeOrigin = "libpq's default";
  }

  // libpq: with sslrootcert=system "any weaker setting [than verify-full] will result in an error" (disable included).
  if (rootGiven?.path === 'system' && sslMode !== 'verify-full') {
    throw new DatabaseTlsError(`weak sslmode "${sslMode}" may not be used with sslrootcert=system (use "verify-full")`);
  }
  let root: RootCertificate | undefined;
  if (sslMode === 'disable') {
    // disable: "only try a non-SSL connection"; no certificate is ever looked at.
  } else if (rootGiven?.path === 'system') {
    root = { origin: "the system's trusted roots (sslrootcert=system)" };
  } else if (rootGiven) {
    // libpq ignores a named file that does not exist below verify-ca; here a file the operator named must be usable in
    // every mode, so a typo in a mount path is an error instead of a connection that silently checks nothing.
    root = await readRoot(rootGiven.path, rootGiven.origin);
  } else {
    const path = defaultRootPath(env);
    if (path && (await exists(path))) {
      // libpq: "If the root cert file exists, load it so we can perform certificate verification" (any sslmode).
      root = await readRoot(path, `libpq's default root certificate ${path}`);
    } else if (sslMode === 'verify-ca' || sslMode === 'verify-full') {
      // libpq: "stat() failed; assume root file doesn't exist. If sslmode is verify-ca or verify-full, this is an error."
      throw new DatabaseTlsError(`sslmode=${sslMode} (${sslModeOrigin}) needs a root certificate to check the server's certificate against: set PGSSLROOTCERT (the chart's database.tls.caSecret) or sslrootcert= in --database-url, or sslrootcert=system for the system's trusted roots${path ? `; libpq's default ${path} does not exist` : ''}`);
    }
  }

  return { connectionString: url?.connectionString, tls: { sslMode, sslModeOrigin, ...(root && { root }) }, attempts: attemptsFor(sslMode) };
}

/** The order of attempts, from the SSL Mode Descriptions table. */
export function attemptsFor(mode: SslMode): Transport[] {
  switch (mode) {
    case 'disable': return ['plaintext']; // "only try a non-SSL connection"
    case 'allow': return ['plaintext', 'tls']; // "first try a non-SSL connection; if that fails, try an SSL connection"
    case 'prefer': return ['tls', 'plaintext']; // "first try an SSL connection; if that fails, try a non-SSL connection"
    default: return ['tls']; // require, verify-ca, verify-full: "only try an SSL connection"
  }
}

/** pg's `ssl` for a TLS attempt: what libpq checks of the server's certificate. */
export function tlsOptions(tls: TlsSettings): ConnectionOptions {
  // libpq without a root certificate (allow, prefer, require): "continue without performing any server cert verification".
  if (!tls.root) return { rejectUnauthorized: false };
  return {
    // libpq with a root certificate: SSL_VERIFY_PEER in every sslmode, so the chain must lead to it; this is what makes
    // require "the same as verify-ca" when a root CA file is present. A named file replaces, never adds to, Node's roots.
    rejectUnauthorized: true,
    ...(tls.root.pem !== undefined && { ca: tls.root.pem }),
    // libpq checks the host name against the certificate only in verify-full (pq_verify_peer_name_matches_certificate).
    checkServerIdentity: tls.sslMode === 'verify-full' ? checkServerIdentity : () => undefined,
  };
}

/** How far an attempt got before it failed; libpq's fallbacks depend on it. */
export type Phase = 'connecting' | 'tls-handshake' | 'startup' | 'authenticated';

/**
 * Follows an attempt through its phases by pg's connection events ('connect', 'sslconnect', 'authenticationOk') and
 * the TLS socket's 'secureConnect'. pg reports a failed handshake as a plain socket error, so this is how a handshake
 * failure (which libpq's prefer falls back from) is told apart from a network failure before or after it.
 */
export function watchPhase(client: pg.Client, transport: Transport): () => Phase {
  let phase: Phase = 'connecting';
  const con = client.connection;
  if (transport === 'plaintext') con.once('connect', () => { phase = 'startup'; });
  con.once('sslconnect', () => {
    phase = 'tls-handshake';
    (con.stream as TLSSocket).once('secureConnect', () => { phase = 'startup'; });
  });
  con.once('authenticationOk', () => { phase = 'authenticated'; });
  return () => phase;
}

// OpenSSL's certificate verification results as Node names them (the "X509 certificate error codes" in Node's tls docs).
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_CRL', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CRL_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID', 'CRL_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD', 'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED', 'INVALID_CA',
  'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
]);
/** Socket failures that a retry may cure, in any phase. */
const NETWORK_ERROR = /^E[A-Z]+$/;
/** pg's error when the server answers the SSLRequest with 'N' (ssl = off). */
const TLS_REFUSED = /^The server does not support SSL connections$|^There was an error establishing an SSL connection$/;

export interface Judgement {
  /** the error to report for this attempt (a DatabaseTlsError when the TLS rules refused the server) */
  readonly error: Error;
  /** libpq would make the next attempt in the plan after this failure */
  readonly fallBack: boolean;
  /** the failure is the expected step of a fallback, not worth reporting beside a later error (prefer against a server without TLS) */
  readonly expected: boolean;
}

function modeLabel(tls: TlsSettings): string {
  const checks = tls.root && tls.sslMode !== 'verify-ca' && tls.sslMode !== 'verify-full' ? ', which checks the chain because a root certificate is given' : '';
  return `sslmode=${tls.sslMode}${checks}`;
}

/** What a failed attempt means under libpq's rules: the error to report, and whether the next attempt is made. */
export function judge(tls: TlsSettings, transport: Transport, phase: Phase, err: unknown, host: string): Judgement {
  const e = (err instanceof Error ? err : new Error(String(err))) as Error & { code?: string };
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (transport === 'tls' && phase === 'connecting' && TLS_REFUSED.test(e.message)) {
    // The server answered 'N' to the SSLRequest. require/verify-*: libpq fails ("server does not support SSL, but SSL
    // was required"); prefer: "proceed with normal startup" in plaintext; allow (TLS was its second try): the plaintext
    // failure before it stands.
    const required = tls.sslMode !== 'prefer' && tls.sslMode !== 'allow';
    const fix = required ? ', and this sslmode requires it: turn TLS on in the server, or use sslmode=prefer' : '';
    return {
      error: new DatabaseTlsError(`${modeLabel(tls)}: the server at "${host}" does not support TLS (SSL)${fix}`),
      fallBack: tls.sslMode === 'prefer',
      expected: true,
    };
  }
  if (transport === 'tls' && phase === 'tls-handshake' && !(code && NETWORK_ERROR.test(code)) && e.message !== 'timeout expired') {
    // libpq: "SSL handshake failed. We will retry with a plaintext connection, if permitted by sslmode" (prefer only).
    // Node 22+ appends advice about its own --use-system-ca flag to certificate errors; the root here is the one sslmode
    // names (PGSSLROOTCERT, sslrootcert=), so that advice would mislead, and the message should read the same on every Node.
    const reason = `${e.message.replace(/; if the root CA is installed locally, try running Node\.js with --use-system-ca$/, '')}${code ? ` [${code}]` : ''}`;
    const message = code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? `${modeLabel(tls)}: server certificate does not name the host "${host}": ${reason}`
      : code && CERTIFICATE_ERRORS.has(code) && tls.root
        ? `${modeLabel(tls)}: server certificate for "${host}" is not trusted by ${tls.root.origin}: ${reason}`
        : `${modeLabel(tls)}: TLS handshake with "${host}" failed: ${reason}`;
    return { error: new DatabaseTlsError(message), fallBack: tls.sslMode === 'prefer', expected: false };
  }
  // libpq: an ErrorResponse before authentication completes (pg_hba.conf refused this transport, or the password) makes
  // allow retry over TLS and prefer retry in plaintext; "cannot connect now" (57P03) does not (it tries the next host).
  // Errors after authentication (a missing database) are final, as in libpq's CONNECTION_AUTH_OK state.
  const serverRefused = err instanceof pg.DatabaseError && phase !== 'authenticated' && code !== '57P03';
  const fallBack = serverRefused && ((tls.sslMode === 'allow' && transport === 'plaintext') || (tls.sslMode === 'prefer' && transport === 'tls'));
  return { error: e, fallBack, expected: false };
}

/** One error for the whole series: the last attempt's, with what the earlier attempts said (libpq lists them all). */
export function combine(failures: ReadonlyArray<Judgement & { transport: Transport }>): Error {
  const last = failures[failures.length - 1];
  // allow whose TLS retry met a server without TLS: libpq goes on in plaintext and meets the first failure again.
  const decisive = failures.length > 1 && last.expected && !last.fallBack ? failures[0] : last;
  const others = failures.filter((f) => f !== decisive && !f.expected);
  if (others.length === 0) return decisive.error;
  const message = `${decisive.error.message} (${decisive.transport === 'tls' ? 'over TLS' : 'in plaintext'}; before that, ${others.map((f) => `${f.transport === 'tls' ? 'over TLS' : 'in plaintext'}: ${f.error.message}`).join('; ')})`;
  const code = (decisive.error as Error & { code?: string }).code;
  return decisive.error instanceof DatabaseTlsError ? new DatabaseTlsError(message) : Object.assign(new Error(message), code ? { code } : {});
}

export interface Connected {
  readonly client: pg.Client;
  readonly transport: Transport;
}

export interface OpenOptions {
  /** the rest of pg's settings (application_name, connectionTimeoutMillis); never `ssl` or `connectionString` */
  readonly client: Omit<pg.ClientConfig, 'ssl' | 'connectionString'>;
  readonly logger: Logger;
  /** blanks secrets out of any text that reaches the log */
  readonly scrub: (text: string) => string;
}

/** Makes the plan's attempts in order until one connects; the caller ends the client. */
export async function openConnection(plan: ConnectionPlan, opts: OpenOptions): Promise<Connected> {
  const failures: Array<Judgement & { transport: Transport }> = [];
  for (const [i, transport] of plan.attempts.entries()) {
    const client = new pg.Client({
      ...opts.client,
      connectionString: plan.connectionString,
      // Always explicit: left undefined, pg would read PGSSLMODE with its own meaning.
      ssl: transport === 'tls' ? tlsOptions(plan.tls) : false,
    });
    // A connection that dies while idle emits 'error'; without a listener that would crash the process instead of failing the attempt.
    client.on('error', (err) => opts.logger.debug({ reason: opts.scrub(err.message) }, 'database connection error'));
    const phase = watchPhase(client, transport);
    try {
      await client.connect();
      return { client, transport };
    } catch (err) {
      await client.end().catch(() => undefined);
      const judgement = { ...judge(plan.tls, transport, phase(), err, client.host), transport };
      failures.push(judgement);
      const next = plan.attempts[i + 1];
      if (!judgement.fallBack || next === undefined) break;
      opts.logger[judgement.expected ? 'info' : 'warn'](
        { sslmode: plan.tls.sslMode, reason: opts.scrub(judgement.error.message) },
        next === 'tls' ? `the server refused plaintext; sslmode=${plan.tls.sslMode} tries TLS`
          : judgement.expected ? `the server does not support TLS; sslmode=${plan.tls.sslMode} goes on in plaintext`
            : `TLS failed; sslmode=${plan.tls.sslMode} goes on in plaintext`,
      );
    }
  }
  throw combine(failures);
}
