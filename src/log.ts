// The one pino logger factory: JSON lines, and redaction of every field that can carry a secret.
import { pino, type Logger, type DestinationStream } from 'pino';

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

export type { Logger };
