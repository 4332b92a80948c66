/**
 * The PostgreSQL test harness: a private server starts, hands out separate databases, and leaves
 * nothing behind (port closed, temp folder gone) once stopped.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { isLoopbackPortClosed } from '../harness/child.ts';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';

let server: PostgresServer;
let dataDir: string;
let startUpMs: number;

before(async () => {
  const started = performance.now();
  server = await startPostgres();
  startUpMs = Math.round(performance.now() - started);
  dataDir = await query(server.url(), 'SHOW data_directory').then((rows) => String(rows[0]?.data_directory));
});

// Safety net when a test fails half-way; stop() is idempotent.
after(() => server?.stop());

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

test('listens on loopback and runs as a private cluster with durability off', async (t) => {
  t.diagnostic(`postgres start-up took ${startUpMs} ms`);
  assert.equal(server.host, '127.0.0.1');
  assert.equal(server.url(), `postgres://postgres@127.0.0.1:${server.port}/postgres`);
  const [settings] = await query(
    server.url(),
    "SELECT current_setting('fsync') AS fsync, current_setting('listen_addresses') AS listen, " +
      "current_setting('server_encoding') AS encoding",
  );
  assert.deepEqual(settings, { fsync: 'off', listen: '127.0.0.1', encoding: 'UTF8' });
  assert.ok(!dataDir.startsWith('/var/lib/postgresql'), `unexpected data directory ${dataDir}`);
});

test('createDatabase returns separate, unique databases', async () => {
  const first = await server.createDatabase();
  const second = await server.createDatabase('other');
  assert.notEqual(first, second);
  assert.match(second, /\/other_[0-9a-f]{12}$/);

  await query(first, 'CREATE TABLE only_in_first (id integer)');
  const inFirst = await query(first, "SELECT to_regclass('only_in_first') AS t");
  const inSecond = await query(second, "SELECT to_regclass('only_in_first') AS t");
  assert.equal(inFirst[0]?.t, 'only_in_first');
  assert.equal(inSecond[0]?.t, null);
});

test('stop closes the port and removes the data directory, and is idempotent', async () => {
  assert.ok(existsSync(dataDir));
  await server.stop();
  await server.stop();
  assert.equal(await isLoopbackPortClosed(server.port), true);
  assert.equal(existsSync(dataDir), false);
});
