/**
 * Recognises constraint violations from either driver, so repositories can turn a race that the
 * database caught into the same catalogued error as the check that usually catches it first.
 */

const SQLITE_CONSTRAINT_UNIQUE = 2067;
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_FOREIGNKEY = 787;
const PG_UNIQUE_VIOLATION = '23505';
const PG_FOREIGN_KEY_VIOLATION = '23503';

interface DriverError {
  code?: unknown;
  errcode?: unknown;
}

function driverError(err: unknown): DriverError {
  return typeof err === 'object' && err !== null ? (err as DriverError) : {};
}

export function isUniqueViolation(err: unknown): boolean {
  const { code, errcode } = driverError(err);
  return (
    code === PG_UNIQUE_VIOLATION ||
    errcode === SQLITE_CONSTRAINT_UNIQUE ||
    errcode === SQLITE_CONSTRAINT_PRIMARYKEY
  );
}

export function isForeignKeyViolation(err: unknown): boolean {
  const { code, errcode } = driverError(err);
  return code === PG_FOREIGN_KEY_VIOLATION || errcode === SQLITE_CONSTRAINT_FOREIGNKEY;
}

// SQLite primary result codes meaning the database itself is unusable, not that a statement was wrong.
const SQLITE_UNAVAILABLE = new Set([
  5, // BUSY: another process holds the write lock past the busy timeout
  8, // READONLY
  10, // IOERR
  11, // CORRUPT
  13, // FULL
  14, // CANTOPEN
  26, // NOTADB
]);

const NETWORK_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EPIPE',
]);

/**
 * True when an error says the database cannot be reached or used at all (server down, connection
 * lost, disk full), as opposed to a query it refused. Those are answered 503, not 500.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some(isDatabaseUnavailable);
  const { code, errcode } = driverError(err);
  if (typeof errcode === 'number') return SQLITE_UNAVAILABLE.has(errcode & 0xff);
  if (typeof code === 'string') {
    // PostgreSQL classes 08 (connection exception), 53 (insufficient resources), 57P0x (shutting down).
    if (NETWORK_ERRORS.has(code) || /^(08|53|57P0)/.test(code)) return true;
  }
  // pg reports a lost connection or a pool connect timeout with plain messages and no code.
  const message = err instanceof Error ? err.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(
    message,
  );
}
