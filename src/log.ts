// The one pino logger factory: JSON lines, and redaction of every field that can carry a secret.
import { writeSync } from 'node:fs';
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

/** Past this many characters a turn's lines are written at once, so the buffer stays small whatever the load. */
const TURN_FLUSH_CHARS = 64 * 1024;
const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * The server's log destination: its lines written to a file descriptor synchronously, as pino's sync destination
 * does, but with one write(2) per event-loop turn instead of one per line. Under load one turn answers many requests,
 * and the syscall to the container runtime's pipe was the dearest part of a decision line (bench/micro.js).
 * pino's asynchronous destination batches too, but hands each write to libuv's thread pool and keeps an unbounded
 * buffer when the reader stalls. Here the lines are in the pipe, in order, before the turn that wrote them ends; the
 * buffer holds one turn's lines at most (64 KiB, then written at once); what is left when the process exits (the
 * drain after SIGTERM, an uncaught exception) is written by an 'exit' handler. Only a SIGKILL within a turn loses
 * that turn's lines, as it loses the answers that turn is sending. A full non-blocking pipe is waited for, as a
 * blocking write would be; a reader that is gone (EPIPE) ends the logging, as with pino's own destinations.
 */
export class TurnBufferedDestination {
  private pending = '';
  private scheduled = false;
  private closed = false;
  private readonly flushLater = () => {
    this.scheduled = false;
    this.flushSync();
  };

  constructor(private readonly fd = 1) {
    process.on('exit', () => this.flushSync());
  }

  write(line: string): boolean {
    if (this.closed) return true;
    this.pending += line;
    if (this.pending.length >= TURN_FLUSH_CHARS) this.flushSync();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushLater);
    }
    return true;
  }

  flushSync(): void {
    if (this.pending.length === 0) return;
    const data = Buffer.from(this.pending);
    this.pending = '';
    for (let off = 0; off < data.length && !this.closed;) {
      try {
        off += writeSync(this.fd, data, off);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') Atomics.wait(pause, 0, 0, 1);
        else if (code === 'EPIPE') this.closed = true;
        else throw err;
      }
    }
  }
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
