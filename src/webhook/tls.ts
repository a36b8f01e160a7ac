// Serving certificates: read and validate a cert/key pair, follow it on disk through rotation, or make one with selfsigned.
import { readFileSync, watchFile, unwatchFile, type Stats } from 'node:fs';
import { createSecureContext, DEFAULT_CIPHERS, type SecureContextOptions } from 'node:tls';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

const DAY_MS = 86_400_000;

export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

/**
 * Reads both files and proves they form a usable pair. Each check names the file and the rule, since OpenSSL's own
 * messages ("PEM routines::no start line") say neither; none quotes file content, as the key is a secret.
 */
export function readKeyPair(certFile: string, keyFile: string): KeyPair {
  const pair = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  const check = (what: string, fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      throw new Error(`${what} (${(err as Error).message})`);
    }
  };
  check(`${certFile} is not a PEM certificate`, () => new X509Certificate(pair.cert));
  check(`${keyFile} is not a PEM private key`, () => createPrivateKey(pair.key));
  // createSecureContext throws on a key that does not belong to the certificate
  check(`${keyFile} is not the private key of the certificate in ${certFile}`, () => createSecureContext(pair));
  return pair;
}

/**
 * Polls the files (stat follows the symlink swaps Kubernetes uses for Secret volumes, where fs.watch misses them)
 * and reports each new valid pair. A half-written pair (new cert, old key) is reported as an error and retried
 * at the next change, so the old context keeps serving meanwhile.
 */
export function watchKeyPair(
  certFile: string,
  keyFile: string,
  intervalMs: number,
  onPair: (pair: KeyPair) => void,
  onError: (err: Error) => void,
  current?: KeyPair,
): () => void {
  let last = current;
  const reread = () => {
    let pair: KeyPair;
    try {
      pair = readKeyPair(certFile, keyFile);
    } catch (err) {
      onError(err as Error);
      return;
    }
    if (last && last.cert === pair.cert && last.key === pair.key) return;
    last = pair;
    onPair(pair);
  };
  const check = (curr: Stats, prev: Stats) => {
    if (curr.mtimeMs === prev.mtimeMs && curr.ino === prev.ino && curr.size === prev.size) return;
    reread();
  };
  watchFile(certFile, { interval: intervalMs, persistent: false }, check);
  watchFile(keyFile, { interval: intervalMs, persistent: false }, check);
  // watchFile takes its baseline with a first stat that runs asynchronously, and reports only changes after it: a
  // rotation that lands between reading `current` and that stat would never be reported. One read after the first
  // interval closes that gap.
  const settle = setTimeout(reread, intervalMs);
  settle.unref();
  return () => {
    clearTimeout(settle);
    unwatchFile(certFile, check);
    unwatchFile(keyFile, check);
  };
}

/**
 * TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher only: no CBC, no SHA-1 MAC, no RSA key
 * exchange. Go's client (the API server) and every kubelet and Prometheus offer these. Both certificate kinds work:
 * the ECDSA one bootstrap-cert makes and the RSA one cert-manager issues by default.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
] as const;
/** TLS 1.3 suites as Node ships them (all AEAD); named here because a cipher list without them would turn TLS 1.3 off. */
export const TLS13_CIPHERS = DEFAULT_CIPHERS.split(':').filter((c) => c.startsWith('TLS_'));
const CIPHERS = [...TLS13_CIPHERS, ...TLS12_CIPHERS].join(':');

export function secureContextOptions(pair: KeyPair, minVersion: SecureContextOptions['minVersion']): SecureContextOptions {
  return { cert: pair.cert, key: pair.key, minVersion, ciphers: CIPHERS, honorCipherOrder: true };
}

export interface CertValidity {
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** what is wrong or soon will be, for the log after the certificate's name; undefined when it is good for more than 30 days */
  readonly problem?: { readonly level: 'error' | 'warn'; readonly message: string };
}

/** Certificates with fewer days left than this are logged at warn: cert-manager and bootstrap-cert renew at 30. */
export const EXPIRY_WARN_DAYS = 30;

/** When the serving certificate is valid, and whether it is expired, not valid yet, or expiring soon. */
export function certValidity(certPem: string, now = Date.now()): CertValidity {
  const x509 = new X509Certificate(certPem);
  const notBefore = new Date(x509.validFrom);
  const notAfter = new Date(x509.validTo);
  const days = daysLeft(x509, now);
  const range = `valid ${notBefore.toISOString()} to ${notAfter.toISOString()}`;
  let problem: CertValidity['problem'];
  if (now > notAfter.getTime()) problem = { level: 'error', message: `EXPIRED (${range}): clients refuse it; renew the certificate` };
  else if (now < notBefore.getTime()) problem = { level: 'error', message: `NOT YET VALID (${range}): clients refuse it; check the issuer's and this node's clocks` };
  else if (days < EXPIRY_WARN_DAYS) problem = { level: 'warn', message: `expires in ${days.toFixed(1)} days (${range}); it should have been renewed by now` };
  return { notBefore, notAfter, problem };
}

export interface CertificateAuthority extends KeyPair {}


// selfsigned (and its crypto stack) costs ~0.5 s to load; `serve` with certificate files, the chart's case, never needs it.
const loadSelfsigned = () => import('selfsigned');

/** A CA that signs serving certificates (bootstrap-cert), ECDSA P-256 for speed. */
export async function createCa(commonName: string, days: number): Promise<CertificateAuthority> {
  const now = Date.now();
  const { generate } = await loadSelfsigned();
  const ca = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    algorithm: 'sha256',
    curve: 'P-256',
    notBeforeDate: new Date(now - 5 * 60_000),
    notAfterDate: new Date(now + days * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: ca.cert, key: ca.private };
}

/** A serving certificate for these DNS names (or IP addresses), signed by `ca`, or self-signed without one. */
export async function createServingCert(dnsNames: string[], days: number, ca?: CertificateAuthority): Promise<KeyPair> {
  const now = Date.now();
  const { generate } = await loadSelfsigned();
  const result = await generate([{ name: 'commonName', value: dnsNames[0] }], {
    keyType: 'ec',
    algorithm: 'sha256',
    curve: 'P-256',
    notBeforeDate: new Date(now - 5 * 60_000),
    notAfterDate: new Date(now + days * DAY_MS),
    ...(ca ? { ca: { key: ca.key, cert: ca.cert } } : {}),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: dnsNames.map((value) => (isIP(value) ? { type: 7 as const, ip: value } : { type: 2 as const, value })) },
    ],
  });
  return { cert: result.cert, key: result.private };
}

/** Days until the certificate expires (negative once expired); a PEM text is parsed first. */
export function daysLeft(cert: string | X509Certificate, now = Date.now()): number {
  const x509 = typeof cert === 'string' ? new X509Certificate(cert) : cert;
  return (Date.parse(x509.validTo) - now) / DAY_MS;
}

/** The PEM certificate blocks of a text (a bundle, a tls.crt, a root file), in order. */
export function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
