// The one pino logger factory: JSON lines, and redaction of every field that can carry a secret.
import { pino, type Bindings, type ChildLoggerOptions, type Logger, type DestinationStream } from 'pino';

/** Paths pino blanks before a line is written. Object bodies are never logged, but these guard every other path too. */
export const REDACT_PATHS = [
  'password', '*.password', 'PGPASSWORD', '*.PGPASSWORD',
  'connectionString', '*.connectionString', 'databaseUrl', '*.databaseUrl',
  'headers.authorization', '*.headers.authorization', 'req.headers.authorization',
  'env', '*.env', 'object', '*.object', 'oldObject', '*.oldObject',
];

export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'mlflow-irsa-webhook' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * A request's logger that becomes a pino child (carrying the request id) only when a line is written through it.
 * fastify makes one per request, and a pino child costs ~2 µs; here requests log through it only when rejected (the
 * decision line carries the id itself), so most requests never need it.
 */
export interface LazyChildLogger extends Pick<Logger, (typeof LEVELS)[number]> {}
export class LazyChildLogger {
  private made?: Logger;
  constructor(private readonly parent: Logger, private readonly bindings: Bindings, private readonly options: ChildLoggerOptions) {}

  /** the pino child, made on first use */
  get logger(): Logger {
    return (this.made ??= this.parent.child(this.bindings, this.options));
  }
  get level(): string {
    return this.logger.level;
  }
  set level(level: string) {
    this.logger.level = level;
  }
  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options);
  }
}
for (const level of LEVELS) {
  Object.defineProperty(LazyChildLogger.prototype, level, {
    value(this: LazyChildLogger, ...args: Parameters<Logger['info']>) {
      this.logger[level](...args);
    },
  });
}

/** fastify's childLoggerFactory: a LazyChildLogger instead of a pino child per request. */
export function lazyChildLogger(logger: Logger, bindings: Bindings, options: ChildLoggerOptions): LazyChildLogger {
  return new LazyChildLogger(logger, bindings, options);
}

export type { Logger };
