/**
 * The REST API in-process (Fastify inject, real SQLite file): request validation, the problem format,
 * authentication by API key, and that refused requests change nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { API_BODY_LIMIT, createApiApp } from '../../src/api/app.ts';
import type { HealthJson } from '../../src/api/wire.ts';
import { openStore, type Store } from '../../src/db/store.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { createMetrics } from '../../src/observe/metrics.ts';

let dir: string;
let store: Store;
let app: FastifyInstance;
let health: HealthJson = { status: 'pass', checks: { database: { status: 'pass' } } };
/** Requests injected with this header value count as arriving on the local admin socket. */
const LOCAL = 'x-test-local';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-api-'));
  store = (await openStore({ type: 'sqlite', path: join(dir, 'weft.db') })).store;
  app = createApiApp({
    store,
    logger: createLogger({ level: 'silent', format: 'json' }),
    metrics: createMetrics(),
    health: async () => health,
    isLocalAdmin: (req) => req.headers[LOCAL] === '1',
  });
  await app.ready();
});

after(async () => {
  await app?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

function local(method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) {
  return app.inject({
    method,
    url,
    headers: { [LOCAL]: '1' },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
}

function assertProblem(
  res: { statusCode: number; headers: Record<string, unknown>; json(): unknown },
  status: number,
  code: string,
  detail?: RegExp,
) {
  assert.equal(res.statusCode, status);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  const body = res.json() as { status: number; code: string; detail: string; title: string };
  assert.equal(body.status, status);
  assert.equal(body.code, code);
  assert.ok(body.title.length > 0);
  if (detail) assert.match(body.detail, detail);
}

const inAnHour = () => new Date(Date.now() + 3_600_000).toISOString();

describe('health', () => {
  test('passes while the database answers, fails with the failing part otherwise', async () => {
    const ok = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(ok.statusCode, 200);
    assert.match(String(ok.headers['content-type']), /^application\/health\+json/);
    assert.deepEqual(ok.json(), { status: 'pass', checks: { database: { status: 'pass' } } });

    health = { status: 'fail', checks: { database: { status: 'fail', output: 'disk I/O error' } } };
    const bad = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(bad.statusCode, 500);
    assert.equal(bad.json().checks.database.output, 'disk I/O error');
    health = { status: 'pass', checks: { database: { status: 'pass' } } };
  });
});

describe('users', () => {
  test('create, list, filter, rename, delete', async () => {
    const created = await local('POST', '/api/v1/user', {
      name: 'alice',
      displayName: 'Alice',
      email: 'alice@example.com',
    });
    assert.equal(created.statusCode, 200);
    const alice = created.json().user;
    assert.equal(alice.name, 'alice');
    assert.equal(typeof alice.id, 'string');
    assert.match(alice.createdAt, /^\d{4}-\d\d-\d\dT/);

    const listed = await local('GET', '/api/v1/user?name=alice');
    assert.deepEqual(listed.json(), { users: [alice] });

    const renamed = await local('POST', `/api/v1/user/${alice.id}/rename/alicia`);
    assert.equal(renamed.json().user.name, 'alicia');

    const deleted = await local('DELETE', `/api/v1/user/${alice.id}`);
    assert.deepEqual(deleted.json(), {});
    assert.deepEqual((await local('GET', '/api/v1/user?name=alicia')).json(), { users: [] });
  });

  test('bad input: a clear 400 and nothing created', async () => {
    const before = (await local('GET', '/api/v1/user')).json().users.length;
    assertProblem(
      await local('POST', '/api/v1/user', { name: '' }),
      400,
      'BAD_REQUEST',
      /body\.name: a user name cannot be empty/,
    );
    assertProblem(await local('POST', '/api/v1/user', { name: 'bo b' }), 400, 'BAD_REQUEST', /body\.name/);
    assertProblem(
      await local('POST', '/api/v1/user', { name: 'bob', colour: 'red' }),
      400,
      'BAD_REQUEST',
      /colour/,
    );
    assertProblem(
      await local('POST', '/api/v1/user', { name: 'bob', email: 'not-mail' }),
      400,
      'BAD_REQUEST',
      /body\.email/,
    );
    assertProblem(await local('POST', '/api/v1/user', [1, 2]), 400, 'BAD_REQUEST');
    assertProblem(await local('POST', '/api/v1/user'), 400, 'BAD_REQUEST');
    const garbage = await app.inject({
      method: 'POST',
      url: '/api/v1/user',
      headers: { [LOCAL]: '1', 'content-type': 'application/json' },
      payload: '{"name": "bob"',
    });
    assertProblem(garbage, 400, 'BAD_REQUEST', /not valid JSON/);
    const text = await app.inject({
      method: 'POST',
      url: '/api/v1/user',
      headers: { [LOCAL]: '1', 'content-type': 'text/plain' },
      payload: 'name=bob',
    });
    assertProblem(text, 415, 'UNSUPPORTED_MEDIA_TYPE');
    assert.equal((await local('GET', '/api/v1/user')).json().users.length, before);
  });

  test('an oversize body is refused from its Content-Length, before it is read', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/user',
      headers: { [LOCAL]: '1', 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'big', displayName: 'x'.repeat(API_BODY_LIMIT) }),
    });
    assertProblem(res, 413, 'BODY_TOO_LARGE');
    assert.deepEqual((await local('GET', '/api/v1/user?name=big')).json(), { users: [] });
  });

  test('duplicates, unknown ids and bad path parameters', async () => {
    await local('POST', '/api/v1/user', { name: 'dup' });
    assertProblem(
      await local('POST', '/api/v1/user', { name: 'dup' }),
      409,
      'USER_EXISTS',
      /"dup" already exists/,
    );
    assertProblem(await local('DELETE', '/api/v1/user/999999'), 404, 'USER_NOT_FOUND');
    assertProblem(await local('DELETE', '/api/v1/user/abc'), 400, 'BAD_REQUEST', /path\.id/);
    assertProblem(await local('POST', '/api/v1/user/999999/rename/x'), 404, 'USER_NOT_FOUND');
  });

  test('unknown endpoints answer a problem document', async () => {
    assertProblem(await local('GET', '/api/v1/nope'), 404, 'NOT_FOUND', /GET \/api\/v1\/nope/);
  });
});

describe('pre-auth keys', () => {
  test('create returns the whole key once; list shows only its prefix', async () => {
    const user = (await local('POST', '/api/v1/user', { name: 'kim' })).json().user;
    const res = await local('POST', '/api/v1/preauthkey', {
      user: user.id,
      reusable: true,
      expiration: inAnHour(),
      aclTags: ['tag:ci', 'tag:ci'],
    });
    assert.equal(res.statusCode, 200);
    const key = res.json().preAuthKey;
    assert.match(key.key, /^weft-auth-[0-9a-f]{12}-[0-9a-f]{64}$/);
    assert.equal(key.prefix, key.key.slice(0, 'weft-auth-'.length + 12));
    assert.deepEqual(key.aclTags, ['tag:ci']);
    assert.equal(key.user.name, 'kim');
    assert.equal(key.reusable, true);
    assert.equal(key.ephemeral, false);

    const listed = (await local('GET', `/api/v1/preauthkey?user=${user.id}`)).json().preAuthKeys;
    assert.equal(listed.length, 1);
    assert.equal(listed[0].key, undefined);
    assert.equal(listed[0].prefix, key.prefix);
    assert.ok(!JSON.stringify(listed).includes(key.key));

    const expired = await local('POST', '/api/v1/preauthkey/expire', { prefix: key.prefix });
    assert.ok(new Date(expired.json().preAuthKey.expiration) <= new Date());
    assertProblem(
      await local('POST', '/api/v1/preauthkey/expire', { prefix: key.prefix }),
      409,
      'PREAUTHKEY_EXPIRED',
      /already expired/,
    );
  });

  test('bad input is refused and creates no key', async () => {
    const user = (await local('POST', '/api/v1/user', { name: 'lee' })).json().user;
    const count = async () => (await local('GET', '/api/v1/preauthkey')).json().preAuthKeys.length;
    const before = await count();
    assertProblem(
      await local('POST', '/api/v1/preauthkey', { user: '999999', expiration: inAnHour() }),
      404,
      'USER_NOT_FOUND',
    );
    assertProblem(
      await local('POST', '/api/v1/preauthkey', { user: user.id, expiration: '2000-01-01T00:00:00Z' }),
      400,
      'BAD_REQUEST',
      /in the future/,
    );
    assertProblem(
      await local('POST', '/api/v1/preauthkey', { user: user.id, expiration: 'tomorrow' }),
      400,
      'BAD_REQUEST',
      /expiration/,
    );
    assertProblem(
      await local('POST', '/api/v1/preauthkey', {
        user: user.id,
        expiration: inAnHour(),
        aclTags: ['server'],
      }),
      400,
      'BAD_REQUEST',
      /tags start with "tag:"/,
    );
    assertProblem(
      await local('POST', '/api/v1/preauthkey', { user: user.id, expiration: inAnHour(), reusable: 'yes' }),
      400,
      'BAD_REQUEST',
    );
    assertProblem(
      await local('POST', '/api/v1/preauthkey/expire', { prefix: 'weft-auth-000000000000' }),
      404,
      'PREAUTHKEY_NOT_FOUND',
    );
    assertProblem(
      await local('POST', '/api/v1/preauthkey/expire', { prefix: 'xyz' }),
      400,
      'BAD_REQUEST',
      /not a pre-auth key prefix/,
    );
    assert.equal(await count(), before);
  });
});

describe('authentication', () => {
  test('remote requests need a valid, unexpired API key', async () => {
    assertProblem(
      await app.inject({ method: 'GET', url: '/api/v1/user' }),
      401,
      'UNAUTHENTICATED',
      /apikeys create/,
    );
    const wrong = await app.inject({
      method: 'GET',
      url: '/api/v1/user',
      headers: { authorization: `Bearer weft-api-000000000000-${'0'.repeat(64)}` },
    });
    assertProblem(wrong, 401, 'UNAUTHENTICATED');

    const apiKey = (await local('POST', '/api/v1/apikey', { expiration: inAnHour() })).json().apiKey;
    assert.match(apiKey, /^weft-api-/);
    const ok = await app.inject({
      method: 'GET',
      url: '/api/v1/user',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    assert.equal(ok.statusCode, 200);

    const listed = (await local('GET', '/api/v1/apikey')).json().apiKeys;
    const mine = listed.find((k: { prefix: string }) => apiKey.startsWith(k.prefix));
    assert.ok(mine.lastSeen, 'use is recorded');
    assert.ok(!JSON.stringify(listed).includes(apiKey));

    await local('POST', '/api/v1/apikey/expire', { prefix: apiKey });
    const afterExpiry = await app.inject({
      method: 'GET',
      url: '/api/v1/user',
      headers: { authorization: `Bearer ${apiKey}` },
    });
    assertProblem(afterExpiry, 401, 'UNAUTHENTICATED', /expired/);
  });

  test('/health needs no key', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  });
});

describe('metrics', () => {
  test('requests are counted by route pattern, not by raw URL', async () => {
    const metrics = createMetrics();
    const counted = createApiApp({
      store,
      logger: createLogger({ level: 'silent', format: 'json' }),
      metrics,
      health: async () => health,
      isLocalAdmin: () => true,
    });
    await counted.inject({ method: 'DELETE', url: '/api/v1/user/424242' });
    const text = await metrics.registry.metrics();
    assert.match(
      text,
      /weft_http_requests_total\{method="DELETE",route="\/api\/v1\/user\/:id",status="404"\} 1/,
    );
    await counted.close();
  });
});
