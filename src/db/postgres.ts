/**
 * Kysely over `pg` for PostgreSQL deployments (several replicas share one database).
 *
 * The pool gets its own type parsers rather than pg's process-wide defaults: int8 (ids, counts) is
 * returned as a JS number — ids stay far below 2^53 — so rows look the same as under SQLite.
 */
import { PostgresDialect } from 'kysely';
import pg from 'pg';

const INT8_OID = 20;

const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => Number.parseInt(value, 10);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

export interface PostgresDialectOptions {
  url: string;
  /** Called for errors on idle pooled connections (e.g. the server restarted); pg would crash otherwise. */
  onIdleError: (err: Error) => void;
}

export function createPostgresDialect(options: PostgresDialectOptions): PostgresDialect {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: 10,
    // Fail fast when the server is unreachable: /health must answer while the database is down.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    types: typeParsers,
  });
  pool.on('error', options.onIdleError);
  return new PostgresDialect({ pool });
}
