/**
 * The repository layer against both dialects: a SQLite file and a real PostgreSQL server started for
 * this file. The same cases run on both, and the migrated schemas must agree.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeSchema, MIGRATION_NAMES } from '../../src/db/migrations.ts';
import { type DatabaseOptions, openStore, type Store } from '../../src/db/store.ts';
import { WeftError } from '../../src/types/errors.ts';
import { DiscoPublic, MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';

const HOUR = 3_600_000;

/** The same token with its last hex digit changed (never to itself). */
function tamper(token: string): string {
  return token.slice(0, -1) + (token.endsWith('0') ? '1' : '0');
}

let postgres: PostgresServer;
let tempDir: string;

before(async () => {
  tempDir = await mkdtemp(join(tmpdir(), 'weft-db-'));
  postgres = await startPostgres();
});

after(async () => {
  await postgres?.stop();
  await rm(tempDir, { recursive: true, force: true });
});

const dialects: Record<'sqlite' | 'postgres', () => Promise<DatabaseOptions>> = {
  sqlite: async () => ({ type: 'sqlite', path: join(tempDir, `${crypto.randomUUID()}.db`) }),
  postgres: async () => ({ type: 'postgres', url: await postgres.createDatabase('weft_repo') }),
};

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof WeftError, `expected a WeftError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

function newNode(userId: number | null, n: number) {
  return {
    machineKey: PrivateKey.generate(MachinePublic).publicKey,
    nodeKey: PrivateKey.generate(NodePublic).publicKey,
    discoKey: PrivateKey.generate(DiscoPublic).publicKey,
    ipv4: `100.64.0.${n}`,
    ipv6: `fd7a:115c:a1e0::${n}`,
    hostname: `host-${n}`,
    givenName: `host-${n}`,
    userId,
    registerMethod: 'authkey' as const,
  };
}

for (const [dialect, options] of Object.entries(dialects)) {
  describe(`repositories on ${dialect}`, () => {
    let store: Store;
    let openedWith: DatabaseOptions;

    before(async () => {
      openedWith = await options();
      const opened = await openStore(openedWith);
      assert.deepEqual(opened.applied, MIGRATION_NAMES);
      store = opened.store;
    });

    after(async () => {
      await store?.close();
    });

    test('migrations are idempotent: a second open applies nothing', async () => {
      const again = await openStore(openedWith);
      try {
        assert.deepEqual(again.applied, []);
      } finally {
        await again.store.close();
      }
    });

    test('users: create, list, find, rename, duplicate names refused', async () => {
      const alice = await store.users.create({
        name: 'alice',
        displayName: 'Alice',
        email: 'alice@example.com',
      });
      assert.equal(alice.name, 'alice');
      assert.equal(alice.displayName, 'Alice');
      assert.ok(alice.createdAt instanceof Date);
      assert.equal(typeof alice.id, 'number');

      await rejectsWith(store.users.create({ name: 'alice' }), 'USER_EXISTS', /"alice"/);
      const bob = await store.users.create({ name: 'bob' });
      assert.deepEqual(
        (await store.users.list()).map((u) => u.name),
        ['alice', 'bob'],
      );
      assert.deepEqual(
        (await store.users.list({ email: 'alice@example.com' })).map((u) => u.id),
        [alice.id],
      );

      const renamed = await store.users.rename(bob.id, 'robert');
      assert.equal(renamed.name, 'robert');
      assert.equal((await store.users.getByName('robert')).id, bob.id);
      await rejectsWith(store.users.rename(bob.id, 'alice'), 'USER_EXISTS');
      await rejectsWith(store.users.getByName('bob'), 'USER_NOT_FOUND', /"bob"/);
      await rejectsWith(store.users.rename(99_999, 'x'), 'USER_NOT_FOUND');
    });

    test('users: delete refuses while nodes remain, then removes the user and their keys', async () => {
      const carol = await store.users.create({ name: 'carol' });
      const key = await store.preAuthKeys.create({
        userId: carol.id,
        reusable: false,
        ephemeral: false,
        tags: [],
        expiration: new Date(Date.now() + HOUR),
      });
      const node = await store.nodes.create(newNode(carol.id, 10));

      await rejectsWith(store.users.delete(carol.id), 'USER_HAS_NODES', /still owns 1 node/);
      assert.ok(await store.users.findById(carol.id), 'nothing changed');
      assert.ok(await store.preAuthKeys.findById(key.key.id), 'nothing changed');

      await store.nodes.delete(node.id);
      await store.users.delete(carol.id);
      assert.equal(await store.users.findById(carol.id), undefined);
      assert.equal(await store.preAuthKeys.findById(key.key.id), undefined);
      await rejectsWith(store.users.delete(carol.id), 'USER_NOT_FOUND');
    });

    test('nodes: every column round-trips with its JS type', async () => {
      const dave = await store.users.create({ name: 'dave' });
      const expiry = new Date(Date.now() + 90 * 24 * HOUR);
      const input = {
        ...newNode(dave.id, 20),
        tags: ['tag:server'],
        ephemeral: true,
        expiry,
        lastSeen: new Date(1_700_000_000_123),
        endpoints: ['192.0.2.1:41641', '[2001:db8::1]:41641'],
        hostinfo: { OS: 'linux', Hostname: 'host-20', RoutableIPs: ['10.0.0.0/24'] },
        approvedRoutes: ['10.0.0.0/24'],
      };
      const created = await store.nodes.create(input);
      const read = await store.nodes.getById(created.id);
      assert.deepEqual(read, created);
      assert.equal(read.machineKey, input.machineKey);
      assert.equal(read.ephemeral, true);
      assert.deepEqual(read.tags, ['tag:server']);
      assert.deepEqual(read.endpoints, input.endpoints);
      assert.deepEqual(read.hostinfo, input.hostinfo);
      assert.deepEqual(read.approvedRoutes, input.approvedRoutes);
      assert.equal(read.expiry?.getTime(), expiry.getTime());
      assert.equal(read.lastSeen?.getTime(), 1_700_000_000_123);
      assert.equal(read.authKeyId, null);

      assert.equal((await store.nodes.findByNodeKey(input.nodeKey))?.id, created.id);
      assert.deepEqual(
        (await store.nodes.listByMachineKey(input.machineKey)).map((n) => n.id),
        [created.id],
      );
      assert.deepEqual(
        (await store.nodes.list({ userId: dave.id })).map((n) => n.id),
        [created.id],
      );

      const updated = await store.nodes.update(created.id, {
        givenName: 'renamed',
        expiry: null,
        endpoints: [],
      });
      assert.equal(updated.givenName, 'renamed');
      assert.equal(updated.expiry, null);
      assert.deepEqual(updated.endpoints, []);
      assert.equal(updated.hostname, 'host-20');

      await store.nodes.delete(created.id);
      await rejectsWith(store.nodes.getById(created.id), 'NODE_NOT_FOUND');
      await rejectsWith(store.nodes.delete(created.id), 'NODE_NOT_FOUND');
      await rejectsWith(store.nodes.update(created.id, { hostname: 'x' }), 'NODE_NOT_FOUND');
    });

    test('nodes: node keys, given names and addresses are unique', async () => {
      const erin = await store.users.create({ name: 'erin' });
      const first = await store.nodes.create(newNode(erin.id, 30));
      const clash = newNode(erin.id, 31);
      await assert.rejects(store.nodes.create({ ...clash, nodeKey: first.nodeKey }));
      await assert.rejects(store.nodes.create({ ...clash, givenName: first.givenName }));
      await assert.rejects(store.nodes.create({ ...clash, ipv4: first.ipv4 }));
      // Same machine, second node (e.g. another user): allowed.
      await store.nodes.create({ ...clash, machineKey: first.machineKey });
    });

    test('pre-auth keys: stored hashed, checked, expired by prefix', async () => {
      const frank = await store.users.create({ name: 'frank' });
      const expiration = new Date(Date.now() + HOUR);
      const { key, text } = await store.preAuthKeys.create({
        userId: frank.id,
        reusable: false,
        ephemeral: true,
        tags: ['tag:ci'],
        expiration,
      });
      assert.match(text, /^weft-auth-[0-9a-f]{12}-[0-9a-f]{64}$/);
      assert.ok(text.includes(key.prefix));
      assert.deepEqual(key.tags, ['tag:ci']);
      assert.equal(key.ephemeral, true);
      assert.equal(key.used, false);

      const stored = await store.kysely
        .selectFrom('pre_auth_keys')
        .selectAll()
        .where('id', '=', key.id)
        .executeTakeFirstOrThrow();
      assert.ok(!JSON.stringify(stored).includes(text.slice(-64)), 'the secret is not stored');

      assert.deepEqual(await store.preAuthKeys.check(text), { ok: true, key });
      assert.deepEqual(await store.preAuthKeys.check(tamper(text)), { ok: false, reason: 'invalid' });
      assert.deepEqual(await store.preAuthKeys.check('garbage'), { ok: false, reason: 'invalid' });

      const racing = await Promise.all([
        store.preAuthKeys.consume(key.id),
        store.preAuthKeys.consume(key.id),
      ]);
      assert.deepEqual(racing.sort(), [false, true], 'a single-use key is used exactly once');
      assert.deepEqual(await store.preAuthKeys.check(text), {
        ok: false,
        reason: 'used',
        key: { ...key, used: true },
      });

      assert.equal((await store.preAuthKeys.resolve(text)).id, key.id);
      assert.equal((await store.preAuthKeys.resolve(`weft-auth-${key.prefix}`)).id, key.id);
      await rejectsWith(store.preAuthKeys.resolve('weft-auth-ffffffffffff'), 'PREAUTHKEY_NOT_FOUND');
      await rejectsWith(store.preAuthKeys.resolve('not a key'), 'BAD_REQUEST');

      const expired = await store.preAuthKeys.expire(key.id);
      assert.ok(expired.expiration.getTime() <= Date.now());
      await rejectsWith(store.preAuthKeys.expire(key.id), 'PREAUTHKEY_EXPIRED', /already expired/);
    });

    test('pre-auth keys: reusable keys stay valid after use, expired ones do not', async () => {
      const gina = await store.users.create({ name: 'gina' });
      const reusable = await store.preAuthKeys.create({
        userId: gina.id,
        reusable: true,
        ephemeral: false,
        tags: [],
        expiration: new Date(Date.now() + HOUR),
      });
      assert.equal(await store.preAuthKeys.consume(reusable.key.id), true);
      assert.equal(await store.preAuthKeys.consume(reusable.key.id), true);
      assert.equal((await store.preAuthKeys.check(reusable.text)).ok, true);
      const later = new Date(Date.now() + 2 * HOUR);
      const lateCheck = await store.preAuthKeys.check(reusable.text, later);
      assert.deepEqual([lateCheck.ok, !lateCheck.ok && lateCheck.reason], [false, 'expired']);
      assert.deepEqual(
        (await store.preAuthKeys.list({ userId: gina.id })).map((k) => k.id),
        [reusable.key.id],
      );
    });

    test('pre-auth keys: an ambiguous prefix is refused', async () => {
      const keys = await store.preAuthKeys.list();
      // With 16 possible first hex digits, enough keys guarantee two share one.
      const user = await store.users.create({ name: 'henry' });
      for (let i = 0; i < 17; i++) {
        keys.push(
          (
            await store.preAuthKeys.create({
              userId: user.id,
              reusable: false,
              ephemeral: false,
              tags: [],
              expiration: new Date(Date.now() + HOUR),
            })
          ).key,
        );
      }
      const counts = new Map<string, number>();
      for (const k of keys) counts.set(k.prefix[0] ?? '', (counts.get(k.prefix[0] ?? '') ?? 0) + 1);
      const shared = [...counts].find(([, n]) => n > 1)?.[0];
      assert.ok(shared);
      await rejectsWith(
        store.preAuthKeys.resolve(shared),
        'PREAUTHKEY_AMBIGUOUS',
        /matches \d+ pre-auth keys/,
      );
    });

    test('API keys: authenticate, record last use, expire', async () => {
      const { key, text } = await store.apiKeys.create(new Date(Date.now() + 90 * 24 * HOUR));
      assert.match(text, /^weft-api-[0-9a-f]{12}-[0-9a-f]{64}$/);
      assert.equal(key.lastSeen, null);

      const now = new Date();
      const seen = await store.apiKeys.authenticate(text, now);
      assert.equal(seen?.id, key.id);
      assert.equal((await store.apiKeys.resolve(key.prefix)).lastSeen?.getTime(), now.getTime());
      assert.equal(await store.apiKeys.authenticate(tamper(text)), undefined);
      assert.equal(await store.apiKeys.authenticate(text.replace('weft-api-', 'weft-auth-')), undefined);

      await store.apiKeys.expire(key.id);
      assert.equal(await store.apiKeys.authenticate(text), undefined);
      await rejectsWith(store.apiKeys.expire(key.id), 'APIKEY_EXPIRED');
      await rejectsWith(store.apiKeys.expire(99_999), 'APIKEY_NOT_FOUND');
    });

    test('policies: append-only versions, newest in force', async () => {
      assert.equal(await store.policies.current(), undefined);
      const first = await store.policies.append('{"acls": []}', null);
      const second = await store.policies.append('{"acls": [] /* v2 */}', 'apikey:abc123');
      assert.deepEqual(await store.policies.current(), second);
      assert.equal(second.author, 'apikey:abc123');
      assert.equal(first.author, null);
      assert.deepEqual(
        (await store.policies.history()).map((v) => v.id),
        [second.id, first.id],
      );
    });

    test('settings: absent until put, then the stored JSON, replaced whole by the next put', async () => {
      assert.equal(await store.settings.get('dns'), undefined);
      const first = { nameservers: { global: ['1.1.1.1'], split: {} }, searchDomains: ['corp.example'] };
      await store.settings.put('dns', first, new Date('2026-01-01T00:00:00Z'));
      assert.deepEqual(await store.settings.get('dns'), first);
      const second = {
        nameservers: { global: [], split: { 'b.example': ['10.0.0.53'] } },
        searchDomains: [],
      };
      await store.settings.put('dns', second);
      assert.deepEqual(await store.settings.get('dns'), second);
      assert.equal(await store.settings.get('other'), undefined);
      const rows = await store.kysely.selectFrom('settings').select('key').execute();
      assert.deepEqual(
        rows.map((row) => row.key),
        ['dns'],
      );
    });

    test('transactions roll back every write when the work throws', async () => {
      await assert.rejects(
        store.transaction(async (repos) => {
          await repos.users.create({ name: 'ivan' });
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await store.users.findByName('ivan'), undefined);
      const made = await store.transaction((repos) => repos.users.create({ name: 'ivan' }));
      assert.equal((await store.users.getByName('ivan')).id, made.id);
    });

    test('ping succeeds on a healthy database', async () => {
      await store.ping();
    });
  });
}

test('PostgreSQL: replicas starting together migrate once, under the lock', async () => {
  const url = await postgres.createDatabase('weft_race');
  const opened = await Promise.all([1, 2, 3].map(() => openStore({ type: 'postgres', url })));
  try {
    const applied = opened.map((o) => o.applied).sort((a, b) => b.length - a.length);
    assert.deepEqual(applied, [MIGRATION_NAMES, [], []]);
  } finally {
    await Promise.all(opened.map((o) => o.store.close()));
  }
});

test('both dialects migrate to the same tables and columns', async () => {
  const schemas = [];
  for (const options of Object.values(dialects)) {
    const { store } = await openStore(await options());
    try {
      schemas.push(await describeSchema(store.kysely));
    } finally {
      await store.close();
    }
  }
  assert.deepEqual(schemas[0], schemas[1]);
  assert.deepEqual(
    Object.keys(schemas[0] ?? {}).filter((t) => !t.startsWith('kysely_')),
    ['api_keys', 'nodes', 'oauth_clients', 'oauth_tokens', 'policies', 'pre_auth_keys', 'settings', 'users'],
  );
});
