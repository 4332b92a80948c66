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
