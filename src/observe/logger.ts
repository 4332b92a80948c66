/**
 * The process logger: pino writing JSON lines to stdout, or human-readable lines when asked (or, with
 * no format configured, when stdout is a terminal). Secrets that can reach a log line are redacted.
 */
import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export type LogFormat = 'json' | 'pretty';

export interface LoggerOptions {
  level: string;
  /** Undefined: pretty on a terminal, JSON otherwise. */
  format?: LogFormat | undefined;
  /** Defaults to stdout; tests pass a stream to read what was logged. */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Paths pino replaces with "[redacted]" wherever they appear in a logged object. */
const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.password',
  '*.secret',
  '*.authKey',
  '*.apiKey',
];

export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? process.stdout;
  const format = options.format ?? (destination.isTTY ? 'pretty' : 'json');
  const base = {
    level: options.level,
    base: { service: 'weft' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (format === 'pretty') {
    // Synchronous and in-process: a worker-thread transport would lose the last lines on a crash.
    return pino(
      base,
      pretty({
        destination,
        sync: true,
        colorize: Boolean(destination.isTTY),
        ignore: 'pid,hostname,service',
      }),
    );
  }
  return pino({ ...base, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
