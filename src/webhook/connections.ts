// Connection limits both listeners share (the HTTPS webhook port and the plain metrics port): a total cap, a cap per
// client address well below it, and a deadline for a connection's first request, so that one client cannot hold
// every slot with connections it never uses. Refusals are counted by reason and logged at most once a minute each.
import type { Server } from 'node:net';
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

/** Why a connection was closed by us: the total cap, the per-address cap, or no request within the deadline. */
export type RefusalReason = 'total' | 'per-source' | 'no-request';

export interface ConnectionLimits {
  /** which listener, for the metric's label and the log: the HTTPS webhook port or the plain metrics port */
  readonly listener: 'webhook' | 'metrics';
  /** open connections at most; Node closes further ones on arrival, before a TLS handshake */
  readonly maxConnections: number;
  /** open connections from one client address at most */
  readonly maxPerSource: number;
  /** a connection that has sent nothing this long after it was set up is closed (one that began a request is left to Node's request timeout) */
  readonly firstRequestMs: number;
  /** where the first-request clock starts: 'secureConnection' after the TLS handshake (which has its own timeout), else 'connection' */
  readonly sessionEvent: 'connection' | 'secureConnection';
}

/** Each reason is logged at most this often, with the count since the last line. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

const MESSAGES: Record<RefusalReason, string> = {
  total: 'connections closed on arrival: server.maxConnections are open',
  'per-source': 'connections closed on arrival: this client address holds as many as it may',
  'no-request': 'connections closed: no request arrived within server.requestTimeoutSeconds',
};
/** The config keys behind each cap, named in the log line. */
const KEYS = {
  webhook: { total: 'maxConnections', perSource: 'maxConnectionsPerSource' },
  metrics: { total: 'metricsMaxConnections', perSource: 'metricsMaxConnectionsPerSource' },
} as const;

/** "::ffff:10.0.0.1" (an IPv4 client of a dual-stack listener) and "10.0.0.1" are the same client. */
const sourceOf = (socket: Socket) => (socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');

const kDeadline = Symbol('mlflow-irsa-webhook.first-request-deadline');
type Tracked = Socket & { [kDeadline]?: NodeJS.Timeout };

/**
 * Counts each refusal in mlflow_irsa_webhook_connections_dropped_total{listener, reason} and logs each reason at most
 * once a minute (a client that is refused thousands of times a second must not flood the log).
 */
function refusalRecorder(metrics: Metrics, logger: Logger, limits: ConnectionLimits): (reason: RefusalReason, source: string) => void {
  const last: Partial<Record<RefusalReason, number>> = {};
  const since: Partial<Record<RefusalReason, number>> = {};
  const keys = KEYS[limits.listener];
  const detail: Record<RefusalReason, object> = {
    total: { [keys.total]: limits.maxConnections },
    'per-source': { [keys.perSource]: limits.maxPerSource },
    'no-request': { requestTimeoutSeconds: limits.firstRequestMs / 1000 },
  };
  return (reason, source) => {
    metrics.connectionsDropped.inc({ listener: limits.listener, reason });
    since[reason] = (since[reason] ?? 0) + 1;
    const now = Date.now();
    if (now - (last[reason] ?? -Infinity) < REFUSAL_LOG_INTERVAL_MS) return;
    logger.warn({ listener: limits.listener, ...detail[reason], dropped: since[reason], source }, MESSAGES[reason]);
    last[reason] = now;
    since[reason] = 0;
  };
}

/**
 * Puts the limits on a listening server (an https.Server or http.Server, before it accepts). The per-address cap wraps
 * the server's own 'connection' listeners, so that a refused socket is closed before Node starts a TLS session or an
 * HTTP parser on it. The first-request deadline is cleared by the connection's first request; after that, Node's
 * keep-alive timeout (server.idleTimeoutSeconds, above the API server's 90 s) alone decides when an idle connection
 * closes, so the API server always closes first and never sends on a connection we are closing.
 */
export function limitConnections(server: Server, limits: ConnectionLimits, metrics: Metrics, logger: Logger): void {
  const refuse = refusalRecorder(metrics, logger, limits);
  server.maxConnections = limits.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => refuse('total', data?.remoteAddress?.replace(/^::ffff:/, '') ?? ''));

  const perSource = new Map<string, number>();
  const inner = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const source = sourceOf(socket);
    const open = perSource.get(source) ?? 0;
    if (open >= limits.maxPerSource) {
      socket.destroy();
      refuse('per-source', source);
      return;
    }
    perSource.set(source, open + 1);
    socket.once('close', () => {
      const left = (perSource.get(source) ?? 1) - 1;
      if (left > 0) perSource.set(source, left);
      else perSource.delete(source);
    });
    for (const listener of inner) listener.call(server, socket);
  });

  server.on(limits.sessionEvent, (socket: Tracked) => {
    const timer = setTimeout(() => {
      // a request under way is Node's to end: its headers and request timeouts answer 408, which a client understands
      if (socket.destroyed || socket.bytesRead > 0) return;
      socket.destroy();
      refuse('no-request', sourceOf(socket));
    }, limits.firstRequestMs);
    timer.unref();
    socket[kDeadline] = timer;
    socket.once('close', () => clearTimeout(timer));
  });
  server.prependListener('request', (req: IncomingMessage) => {
    const socket = req.socket as Tracked;
    if (socket[kDeadline] === undefined) return;
    clearTimeout(socket[kDeadline]);
    socket[kDeadline] = undefined;
  });
}
