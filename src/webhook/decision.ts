// What one review's decision leaves behind: its log line and its metrics, the two per-request costs besides the review.
import { pino, type Logger } from 'pino';
import { loggable, type Decision } from './admission.js';
import { jsonString } from '../mutators/json.js';
import type { Metrics } from './metrics.js';

/**
 * The kinds the webhook's rules send. Any other kind comes from a client we do not serve, and is counted as "other": a
 * label value taken from the request would let any caller mint time series (of any length) that live as long as the process.
 */
const KIND_LABELS = new Set(['apps/v1/Deployment', 'v1/ServiceAccount']);
export const kindLabel = (kind: string) => (KIND_LABELS.has(kind) ? kind : 'other');

export function recordDecision(metrics: Metrics, d: Decision, seconds: number): void {
  const kind = kindLabel(d.kind);
  metrics.requests.inc({ kind, operation: d.operation, outcome: d.outcome });
  metrics.duration.observe({ outcome: d.outcome }, seconds);
  if (d.outcome === 'patched') metrics.patches.inc({ kind });
}

export type DecisionLog = (d: Decision, reqId: string, seconds: number) => void;

type Level = 'error' | 'warn' | 'info' | 'debug';

/** The level of a decision's line: failed-open is an error, a warning a warning, a request not ours only debug. */
function levelOf(d: Decision): Level {
  if (d.outcome === 'failed-open') return 'error';
  if (d.warnings.length > 0) return 'warn';
  return d.outcome === 'ignored' ? 'debug' : 'info';
}

const messageOf = (d: Decision) => (d.outcome === 'failed-open' ? 'mutation failed; admitted unchanged' : 'admission decision');

/** The line's fields, in its order: only Decision's fixed fields, never object content. */
function fieldsOf(d: Decision, reqId: string, seconds: number) {
  return {
    reqId, ...loggable(d), operation: d.operation, dryRun: d.dryRun, outcome: d.outcome, patched: d.outcome === 'patched',
    patchOps: d.patchOps, durationMs: Math.round(seconds * 1e6) / 1e3,
    ...(d.outcome === 'failed-open' ? { error: d.error } : d.warnings.length > 0 ? { warnings: d.warnings } : {}),
  };
}

/**
 * Writes one line per decision through pino itself: the reference for decisionLogger's lines, and its way when the
 * logger's destination is not a plain stream. Its fields never match the redaction list, so the child skips redaction.
 */
export function pinoDecisionLogger(logger: Logger): DecisionLog {
  const log = logger.child({}, { redact: [] });
  return (d, reqId, seconds) => {
    const level = levelOf(d);
    if (log.isLevelEnabled(level)) log[level](fieldsOf(d, reqId, seconds), messageOf(d));
  };
}

/**
 * pino's ISO time, made once per millisecond rather than once per line: Date's toISOString was a third of a line's
 * cost, and the text changes only when the millisecond does. Any other time function is called per line.
 */
function cachedPerMs(time: () => string): () => string {
  if (time !== pino.stdTimeFunctions.isoTime) return time;
  let ms = -1;
  let text = '';
  return () => {
    const now = Date.now();
    if (now !== ms) {
      ms = now;
      text = time();
    }
    return text;
  };
}

type PinoInternals = Record<symbol, unknown> & { levelVal: number; levels: { values: Record<string, number> } };

/**
 * The decision line, one per review: the bytes pino would write for it, written to the logger's own destination.
 * pino's generic path walks the object, escapes every key and value and formats the level per line, about twice
 * what this costs (bench/micro.js); here the field names are fixed and only the request-chosen strings are escaped,
 * while the level prefix, time, bindings, line end and destination are the logger's own (pino.symbols, which pino
 * exports for integrations). test/webhook.test.ts compares the lines with pinoDecisionLogger's for every outcome.
 */
export function decisionLogger(logger: Logger): DecisionLog {
  const p = logger as unknown as PinoInternals;
  const S = pino.symbols;
  const stream = p[S.streamSym] as { write(line: string): void } & Record<symbol, unknown>;
  // A multistream wants each line's level alongside; mixins, hooks, a log formatter, a message prefix or a nested key
  // change lines: pino's own path for a logger with any of those (ours has none).
  const formatters = p[S.formattersSym] as { log?: unknown } | undefined;
  if (stream[S.needsMetadataGsym] || p[S.mixinSym] || (p[S.hooksSym] as { logMethod?: unknown } | undefined)?.logMethod || formatters?.log
    || p[(S as unknown as Record<string, symbol>).msgPrefixSym] || p[S.nestedKeySym]) {
    return pinoDecisionLogger(logger);
  }
  const levels = p.levels.values;
  const prefix = p[S.lsCacheSym] as Record<number, string>;
  const time = cachedPerMs(p[S.timeSym] as () => string);
  const end = p[S.endSym] as string;
  const msg = jsonString(p[S.messageKeySym] as string);
  return (d, reqId, seconds) => {
    const num = levels[levelOf(d)];
    if (num < p.levelVal) return;
    const l = loggable(d);
    let line = `${prefix[num]}${time()}${p[S.chindingsSym] as string},"reqId":${jsonString(reqId)},"uid":${jsonString(l.uid)},"kind":${jsonString(l.kind)}`
      + `,"namespace":${jsonString(l.namespace)},"name":${jsonString(l.name)},"operation":"${d.operation}","dryRun":${d.dryRun}`
      + `,"outcome":"${d.outcome}","patched":${d.outcome === 'patched'},"patchOps":${d.patchOps},"durationMs":${Math.round(seconds * 1e6) / 1e3}`;
    if (d.outcome === 'failed-open') {
      if (d.error !== undefined) line += `,"error":${jsonString(d.error)}`;
    } else if (d.warnings.length > 0) line += `,"warnings":${JSON.stringify(d.warnings)}`;
    stream.write(`${line},${msg}:${jsonString(messageOf(d))}${end}`);
  };
}
