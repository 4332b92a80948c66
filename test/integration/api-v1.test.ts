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
import type { NewNode } from '../../src/db/repos/nodes.ts';
import { openStore, type Store } from '../../src/db/store.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { createMetrics } from '../../src/observe/metrics.ts';
import type { NodeChange } from '../../src/state/model.ts';
import { Tailnet } from '../../src/state/tailnet.ts';
import { seedNode } from '../harness/seed.ts';

let dir: string;
let store: Store;
let tailnet: Tailnet;
let app: FastifyInstance;
let health: HealthJson = { status: 'pass', checks: { database: { status: 'pass' } } };
/** Requests injected with this header value count as arriving on the local admin socket. */
const LOCAL = 'x-test-local';
const silent = createLogger({ level: 'silent', format: 'json' });

function loadTailnet(from: Store): Promise<Tailnet> {
  return Tailnet.load({
    store: from,
    log: silent,
    prefixes: { v4: '100.64.0.0/10', v6: 'fd7a:115c:a1e0::/48', allocation: 'sequential' },
    ephemeralInactivityMs: 60_000,
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-api-'));
  store = (await openStore({ type: 'sqlite', path: join(dir, 'weft.db') })).store;
  tailnet = await loadTailnet(store);
  app = createApiApp({
    store,
    tailnet,
    logger: silent,
    metrics: createMetrics(),
    health: async () => health,
    isLocalAdmin: (req) => req.headers[LOCAL] === '1',
  });
  await app.ready();
});

after(async () => {
  await app?.close();
  await tailnet?.close();
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

describe('nodes', () => {
  // Its own database: the tailnet reads nodes once, at load, so they are seeded before it starts.
  let nodeDir: string;
  let nodeStore: Store;
  let net: Tailnet;
  let nodeApp: FastifyInstance;
  const changes: NodeChange[] = [];
  const ids: Record<'laptop' | 'phone' | 'server', number> = { laptop: 0, phone: 0, server: 0 };
  const lastSeen = new Date('2025-01-02T03:04:05.000Z');

  const call = (method: 'GET' | 'POST' | 'DELETE', url: string) =>
    nodeApp.inject({ method, url, headers: { [LOCAL]: '1' } });

  before(async () => {
    nodeDir = await mkdtemp(join(tmpdir(), 'weft-api-nodes-'));
    nodeStore = (await openStore({ type: 'sqlite', path: join(nodeDir, 'weft.db') })).store;
    const alice = await nodeStore.users.create({ name: 'alice' });
    const bob = await nodeStore.users.create({ name: 'bob' });
    const seed = async (n: number, name: string, userId: number | null, extra: Partial<NewNode> = {}) =>
      seedNode(nodeStore, n, name, userId, extra);
    ids.laptop = await seed(1, 'laptop', alice.id, {
      hostinfo: { Hostname: 'laptop', OS: 'linux', IPNVersion: '1.80.0-t1234' },
      lastSeen,
    });
    ids.phone = await seed(2, 'phone', bob.id, { expiry: new Date(Date.now() + 86_400_000) });
    ids.server = await seed(3, 'server', null, { tags: ['tag:server'], ephemeral: true });
    net = await loadTailnet(nodeStore);
    net.subscribe((change) => changes.push(change));
    nodeApp = createApiApp({
      store: nodeStore,
      tailnet: net,
      logger: silent,
      health: async () => health,
      isLocalAdmin: (req) => req.headers[LOCAL] === '1',
      baseDomain: 'example.ts.net',
    });
    await nodeApp.ready();
  });

  after(async () => {
    await nodeApp?.close();
    await net?.close();
    await nodeStore?.close();
    await rm(nodeDir, { recursive: true, force: true });
  });

  test('list all nodes sorted by id, or only one user’s', async () => {
    const res = await call('GET', '/api/v1/node');
    assert.equal(res.statusCode, 200);
    const nodes = res.json().nodes;
    assert.deepEqual(
      nodes.map((n: { id: string; name: string }) => [n.id, n.name]),
      [
        [String(ids.laptop), 'laptop'],
        [String(ids.phone), 'phone'],
        [String(ids.server), 'server'],
      ],
    );
    const laptop = nodes[0];
    const stored = net.node(ids.laptop);
    assert.ok(stored);
    assert.deepEqual(laptop, {
      id: String(ids.laptop),
      machineKey: stored.machineKey,
      nodeKey: stored.nodeKey,
      discoKey: stored.discoKey,
      ipAddresses: ['100.64.0.1', 'fd7a:115c:a1e0::1'],
      name: 'laptop',
      givenName: 'laptop',
      hostname: 'laptop',
      fqdn: 'laptop.example.ts.net',
      user: laptop.user,
      tags: [],
      online: false,
      lastSeen: lastSeen.toISOString(),
      expiry: null,
      expired: false,
      ephemeral: false,
      registerMethod: 'authkey',
      createdAt: stored.createdAt.toISOString(),
      os: 'linux',
      clientVersion: '1.80.0-t1234',
      availableRoutes: [],
      approvedRoutes: [],
      subnetRoutes: [],
      authorized: true,
    });
    assert.equal(laptop.user.name, 'alice');
    assert.equal(nodes[1].os, '');
    assert.equal(nodes[1].expired, false);
    assert.equal(nodes[2].user, null);
    assert.deepEqual(nodes[2].tags, ['tag:server']);
    assert.equal(nodes[2].ephemeral, true);

    const bobs = (await call('GET', '/api/v1/node?user=bob')).json().nodes;
    assert.deepEqual(
      bobs.map((n: { name: string }) => n.name),
      ['phone'],
    );
    assertProblem(await call('GET', '/api/v1/node?user=nobody'), 404, 'USER_NOT_FOUND', /"nobody"/);
    assertProblem(await call('GET', '/api/v1/node?colour=red'), 400, 'BAD_REQUEST', /colour/);
  });

  test('show one node; unknown and malformed ids', async () => {
    const res = await call('GET', `/api/v1/node/${ids.phone}`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().node.name, 'phone');
    assert.equal(res.json().node.user.name, 'bob');
    assertProblem(await call('GET', '/api/v1/node/999999'), 404, 'NODE_NOT_FOUND', /no node with id 999999/);
    assertProblem(await call('GET', '/api/v1/node/abc'), 400, 'BAD_REQUEST', /path\.id/);
    assertProblem(await call('GET', '/api/v1/node/0'), 400, 'BAD_REQUEST', /path\.id/);
    assertProblem(await call('DELETE', '/api/v1/node/-1'), 400, 'BAD_REQUEST', /path\.id/);
  });

  test('remote callers need an API key for nodes too', async () => {
    const res = await nodeApp.inject({ method: 'GET', url: '/api/v1/node' });
    assertProblem(res, 401, 'UNAUTHENTICATED');
  });

  test('rename goes through the tailnet: peers and the node itself are told', async () => {
    changes.length = 0;
    const res = await call('POST', `/api/v1/node/${ids.laptop}/rename/workstation`);
    assert.equal(res.statusCode, 200);
    const node = res.json().node;
    assert.equal(node.name, 'workstation');
    assert.equal(node.givenName, 'workstation');
    assert.equal(node.hostname, 'laptop', 'the reported host name is kept');
    assert.equal(node.fqdn, 'workstation.example.ts.net');
    assert.equal(net.node(ids.laptop)?.givenName, 'workstation');
    assert.equal((await nodeStore.nodes.getById(ids.laptop)).givenName, 'workstation');
    assert.equal(changes.length, 1);
    const change = changes[0];
    assert.equal(change?.kind, 'updated');
    assert.equal(change.kind === 'updated' && change.self, true);
    assert.equal(change?.node.id, ids.laptop);

    changes.length = 0;
    assertProblem(
      await call('POST', `/api/v1/node/${ids.laptop}/rename/Bad_Name`),
      400,
      'BAD_REQUEST',
      /lowercase letters/,
    );
    assertProblem(await call('POST', `/api/v1/node/${ids.laptop}/rename/a%2Fb`), 400, 'BAD_REQUEST');
    assertProblem(
      await call('POST', `/api/v1/node/${ids.laptop}/rename/phone`),
      409,
      'NODE_NAME_TAKEN',
      /"phone"/,
    );
    assertProblem(await call('POST', '/api/v1/node/999999/rename/free'), 404, 'NODE_NOT_FOUND');
    assert.equal(changes.length, 0, 'refused renames announce nothing');
    assert.equal(net.node(ids.laptop)?.givenName, 'workstation');

    // Renaming to its own name is not a clash.
    assert.equal((await call('POST', `/api/v1/node/${ids.laptop}/rename/workstation`)).statusCode, 200);
  });

  test('expire sets the key expiry to now', async () => {
    changes.length = 0;
    const before = Date.now();
    const res = await call('POST', `/api/v1/node/${ids.phone}/expire`);
    assert.equal(res.statusCode, 200);
    const node = res.json().node;
    assert.equal(node.expired, true);
    const expiry = new Date(node.expiry).getTime();
    assert.ok(expiry >= before && expiry <= Date.now(), `expiry ${node.expiry}`);
    assert.equal(net.node(ids.phone)?.expiry?.getTime(), expiry);
    assert.equal((await nodeStore.nodes.getById(ids.phone)).expiry?.getTime(), expiry);
    assert.deepEqual(
      changes.map((c) => [c.kind, c.node.id]),
      [['updated', ids.phone]],
    );
    assertProblem(await call('POST', '/api/v1/node/999999/expire'), 404, 'NODE_NOT_FOUND');
  });

  test('expire with a body: a later time extends the key, null disables expiry; bad bodies change nothing', async () => {
    const post = (body: unknown) =>
      nodeApp.inject({
        method: 'POST',
        url: `/api/v1/node/${ids.phone}/expire`,
        headers: { [LOCAL]: '1' },
        payload: body as object,
      });
    const later = new Date(Date.now() + 86_400_000);
    const extended = await post({ expiry: later.toISOString() });
    assert.equal(extended.statusCode, 200, extended.body);
    assert.equal(extended.json().node.expiry, later.toISOString());
    assert.equal(extended.json().node.expired, false);
    const never = await post({ expiry: null });
    assert.equal(never.json().node.expiry, null);
    assertProblem(await post({ expiry: 'tomorrow' }), 400, 'BAD_REQUEST', /body\.expiry/);
    assertProblem(await post({ when: null }), 400, 'BAD_REQUEST', /when/);
    assert.equal(net.node(ids.phone)?.expiry, null);
  });

  test('approve_routes sets the approved list; bad routes, unadvertised ones and unknown nodes are refused', async () => {
    const laptop = net.node(ids.laptop);
    assert.ok(laptop);
    net.applyMapUpdate(
      laptop,
      {
        hostinfo: { ...laptop.hostinfo, RoutableIPs: ['10.20.0.0/16', '0.0.0.0/0', '::/0'] },
        capVersion: 113,
      },
      false,
    );
    const post = (id: number, body: unknown) =>
      nodeApp.inject({
        method: 'POST',
        url: `/api/v1/node/${id}/approve_routes`,
        headers: { [LOCAL]: '1' },
        payload: body as object,
      });
    assertProblem(await post(ids.laptop, { routes: ['10.20.0.0/99'] }), 400, 'BAD_REQUEST', /is not a route/);
    assertProblem(
      await post(ids.laptop, { routes: ['10.20.1.0/16'] }),
      400,
      'BAD_REQUEST',
      /host bits set; the route is 10\.20\.0\.0\/16/,
    );
    assertProblem(
      await post(ids.laptop, { routes: ['10.30.0.0/16'] }),
      400,
      'ROUTE_NOT_ADVERTISED',
      /does not advertise 10\.30\.0\.0\/16/,
    );
    assertProblem(await post(999_999, { routes: [] }), 404, 'NODE_NOT_FOUND');
    assertProblem(await post(ids.laptop, { routes: '10.20.0.0/16' }), 400, 'BAD_REQUEST', /body\.routes/);
    assert.deepEqual(net.node(ids.laptop)?.approvedRoutes, []);

    const ok = await post(ids.laptop, { routes: ['10.20.0.0/16', '0.0.0.0/0'] });
    assert.equal(ok.statusCode, 200, ok.body);
    const node = ok.json().node;
    assert.deepEqual(node.availableRoutes, ['10.20.0.0/16', '0.0.0.0/0', '::/0']);
    assert.deepEqual(
      node.approvedRoutes,
      ['0.0.0.0/0', '10.20.0.0/16', '::/0'],
      'one exit route approves both',
    );
    // Offline: exit routes are served (no election), the subnet only by an online primary.
    assert.deepEqual(node.subnetRoutes, ['0.0.0.0/0', '::/0']);
    assert.deepEqual((await nodeStore.nodes.getById(ids.laptop)).approvedRoutes, [
      '0.0.0.0/0',
      '10.20.0.0/16',
      '::/0',
    ]);
  });

  test('tags: server-set tags replace the owner; bad tags are refused', async () => {
    const post = (id: number, body: unknown) =>
      nodeApp.inject({
        method: 'POST',
        url: `/api/v1/node/${id}/tags`,
        headers: { [LOCAL]: '1' },
        payload: body as object,
      });
    assertProblem(await post(ids.phone, { tags: ['server'] }), 400, 'BAD_REQUEST', /tags start with "tag:"/);
    assertProblem(await post(999_999, { tags: ['tag:x'] }), 404, 'NODE_NOT_FOUND');
    const res = await post(ids.phone, { tags: ['tag:mobile'] });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().node.user, null);
    assert.deepEqual(res.json().node.tags, ['tag:mobile']);
    assertProblem(await post(ids.phone, { tags: [] }), 400, 'BAD_REQUEST', /at least one/);
  });

  test('delete removes the node from the tailnet and the database', async () => {
    changes.length = 0;
    const res = await call('DELETE', `/api/v1/node/${ids.server}`);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), {});
    assert.equal(net.node(ids.server), undefined);
    assert.equal(await nodeStore.nodes.findById(ids.server), undefined);
    assert.deepEqual(
      changes.map((c) => [c.kind, c.node.id]),
      [['removed', ids.server]],
    );
    assertProblem(await call('GET', `/api/v1/node/${ids.server}`), 404, 'NODE_NOT_FOUND');
    assertProblem(await call('DELETE', `/api/v1/node/${ids.server}`), 404, 'NODE_NOT_FOUND');
    assert.deepEqual(
      (await call('GET', '/api/v1/node')).json().nodes.map((n: { name: string }) => n.name),
      ['workstation', 'phone'],
    );
    // The freed name can be taken again.
    assert.equal((await call('POST', `/api/v1/node/${ids.phone}/rename/server`)).statusCode, 200);
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

  test('an API key may belong to a user; an unknown user creates no key', async () => {
    const owner = (await local('POST', '/api/v1/user', { name: 'keyowner' })).json().user;
    const before = (await local('GET', '/api/v1/apikey')).json().apiKeys.length;
    assertProblem(
      await local('POST', '/api/v1/apikey', { expiration: inAnHour(), user: '999999' }),
      404,
      'USER_NOT_FOUND',
    );
    assert.equal((await local('GET', '/api/v1/apikey')).json().apiKeys.length, before);
    const apiKey = (await local('POST', '/api/v1/apikey', { expiration: inAnHour(), user: owner.id })).json()
      .apiKey;
    const listed = (await local('GET', '/api/v1/apikey')).json().apiKeys;
    const mine = listed.find((k: { prefix: string }) => apiKey.startsWith(k.prefix));
    assert.equal(mine.user.name, 'keyowner');
    assert.ok(
      listed.some((k: { user: unknown }) => k.user === null),
      'keys without a user say null',
    );
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
      tailnet,
      logger: silent,
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
