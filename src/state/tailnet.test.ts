import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore, type Store } from '../db/store.ts';
import { createLogger } from '../observe/logger.ts';
import type { Hostinfo } from '../tailcfg/index.ts';
import { WeftError } from '../types/errors.ts';
import { DiscoPublic, MachinePublic, NodePublic, PrivateKey } from '../types/keys.ts';
import type { NodeChange, TailnetNode } from './model.ts';
import { type Registration, Tailnet, type TailnetOptions } from './tailnet.ts';

const HOUR = 3_600_000;

interface Fixture {
  store: Store;
  tailnet: Tailnet;
  options: TailnetOptions;
  changes: NodeChange[];
  /** A reusable key of user "alice". */
  aliceKey: string;
  aliceId: number;
  bobId: number;
  /** Registers a node on a fresh (or the given) machine with a fresh node key. */
  register(opts?: {
    key?: string;
    machineKey?: MachinePublic;
    nodeKey?: NodePublic;
    hostname?: string;
    ephemeral?: boolean;
  }): Promise<Registration>;
  /** Like register, but asserts success and returns the node. */
  node(opts?: Parameters<Fixture['register']>[0]): Promise<TailnetNode>;
  /** A new model over the same database (closed at the end of the test instead of the first). */
  reload(): Promise<Tailnet>;
  key(opts: {
    userId: number | null;
    reusable?: boolean;
    ephemeral?: boolean;
    tags?: string[];
  }): Promise<string>;
}

async function setup(t: TestContext, overrides: Partial<TailnetOptions> = {}): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-tailnet-'));
  const { store } = await openStore({ type: 'sqlite', path: join(dir, 'weft.db') });
  const options: TailnetOptions = {
    store,
    log: createLogger({ level: 'silent', format: 'json' }),
    prefixes: { v4: '100.64.0.0/10', v6: 'fd7a:115c:a1e0::/48', allocation: 'sequential' },
    ephemeralInactivityMs: HOUR,
    offlineGraceMs: 40,
    writeBehindMs: 30,
    ...overrides,
  };
  const tailnet = await Tailnet.load(options);
  let current = tailnet;
  t.after(async () => {
    await current.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const changes: NodeChange[] = [];
  tailnet.subscribe((change) => changes.push(change));
  const alice = await store.users.create({ name: 'alice' });
  const bob = await store.users.create({ name: 'bob' });
  const key: Fixture['key'] = async ({ userId, reusable = true, ephemeral = false, tags = [] }) =>
    (
      await store.preAuthKeys.create({
        userId,
        reusable,
        ephemeral,
        tags,
        expiration: new Date(Date.now() + HOUR),
      })
    ).text;
  const aliceKey = await key({ userId: alice.id });
  const register: Fixture['register'] = (opts = {}) =>
    tailnet.registerWithAuthKey({
      machineKey: opts.machineKey ?? PrivateKey.generate(MachinePublic).publicKey,
      nodeKey: opts.nodeKey ?? PrivateKey.generate(NodePublic).publicKey,
      authKey: opts.key ?? aliceKey,
      hostinfo: { Hostname: opts.hostname ?? 'host' },
      ephemeral: opts.ephemeral ?? false,
    });
  const fixture: Fixture = {
    store,
    tailnet,
    options,
    changes,
    aliceKey,
    aliceId: alice.id,
    bobId: bob.id,
    register,
    key,
    async reload() {
      current = await Tailnet.load(options);
      return current;
    },
    async node(opts) {
      const result = await register(opts);
      assert.ok(result.ok, `registration failed: ${JSON.stringify(result)}`);
      return result.node;
    },
  };
  return fixture;
}

function kinds(changes: NodeChange[]): string[] {
  return changes.map((c) => `${c.kind}:${c.node.id}`);
}

function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  return assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof WeftError, `expected a WeftError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** Waits until `predicate` holds, polling; fails after `ms`. */
async function until(predicate: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail('condition not reached in time');
    await sleep(5);
  }
}

describe('Tailnet registration', () => {
  test('addresses are handed out sequentially and a re-registering machine keeps its node', async (t) => {
    const f = await setup(t);
    const machineKey = PrivateKey.generate(MachinePublic).publicKey;
    const a = await f.node({ machineKey });
    const b = await f.node();
    const c = await f.node();
    assert.deepEqual(
      [a, b, c].map((n) => [n.ipv4, n.ipv6]),
      [
        ['100.64.0.1', 'fd7a:115c:a1e0::1'],
        ['100.64.0.2', 'fd7a:115c:a1e0::2'],
        ['100.64.0.3', 'fd7a:115c:a1e0::3'],
      ],
    );
    assert.deepEqual(kinds(f.changes), [`added:${a.id}`, `added:${b.id}`, `added:${c.id}`]);
    const oldKey = a.nodeKey;
    const versionBefore = a.version;
    f.changes.length = 0;

    // Same machine, same user (even with a different key of that user), new node key.
    const secondKey = await f.key({ userId: f.aliceId });
    const newNodeKey = PrivateKey.generate(NodePublic).publicKey;
    const again = await f.register({ machineKey, nodeKey: newNodeKey, key: secondKey });
    assert.ok(again.ok);
    assert.equal(again.created, false);
    assert.equal(again.node, a);
    assert.equal(again.node.id, a.id);
    assert.equal(again.node.ipv4, '100.64.0.1');
    assert.equal(again.node.givenName, 'host');
    assert.equal(again.node.nodeKey, newNodeKey);
    assert.equal(f.tailnet.nodeByKey(newNodeKey), a);
    assert.equal(f.tailnet.nodeByKey(oldKey), undefined);
    assert.ok(a.version > versionBefore);
    assert.equal(f.tailnet.size, 3);
    assert.equal(f.changes.length, 1);
    const [change] = f.changes;
    assert.ok(change?.kind === 'updated' && change.self);
    assert.equal((await f.store.nodes.getById(a.id)).nodeKey, newNodeKey);
  });

  test('a different user on the same machine gets a new node', async (t) => {
    const f = await setup(t);
    const machineKey = PrivateKey.generate(MachinePublic).publicKey;
    const a = await f.node({ machineKey });
    const bobKey = await f.key({ userId: f.bobId });
    const result = await f.register({ machineKey, key: bobKey });
    assert.ok(result.ok);
    assert.equal(result.created, true);
    assert.notEqual(result.node.id, a.id);
    assert.equal(result.node.userId, f.bobId);
    assert.equal(result.node.ipv4, '100.64.0.2');
    assert.equal(result.node.givenName, 'host-1');
    assert.equal(a.userId, f.aliceId);
    assert.equal(f.tailnet.size, 2);
    assert.equal(f.tailnet.user(f.bobId)?.name, 'bob');
  });

  test('a single-use key may be re-run by the same machine but not used by another', async (t) => {
    const f = await setup(t);
    const once = await f.key({ userId: f.aliceId, reusable: false });
    const machineKey = PrivateKey.generate(MachinePublic).publicKey;
    const first = await f.node({ machineKey, key: once });
    const rerun = await f.register({ machineKey, key: once });
    assert.ok(rerun.ok);
    assert.equal(rerun.created, false);
    assert.equal(rerun.node.id, first.id);
    assert.deepEqual(await f.register({ key: once }), { ok: false, reason: 'used' });
    assert.deepEqual(await f.register({ key: 'weft-auth-nonsense' }), { ok: false, reason: 'invalid' });
    assert.equal(f.tailnet.size, 1);
  });

  test('ephemeral comes from the key or the request; a tagged key makes an ownerless node', async (t) => {
    const f = await setup(t);
    const ephemeralKey = await f.key({ userId: f.aliceId, ephemeral: true });
    assert.equal((await f.node({ key: ephemeralKey })).ephemeral, true);
    assert.equal((await f.node({ ephemeral: true })).ephemeral, true);
    assert.equal((await f.node()).ephemeral, false);
    const taggedKey = await f.key({ userId: f.aliceId, tags: ['tag:server'] });
    const tagged = await f.node({ key: taggedKey });
    assert.equal(tagged.userId, null);
    assert.deepEqual(tagged.tags, ['tag:server']);
    const stored = await f.store.nodes.getById(tagged.id);
    assert.equal(stored.userId, null);
    assert.deepEqual(stored.tags, ['tag:server']);
  });

  test('given names get a suffix on collision; deleting a node frees its name and address', async (t) => {
    const f = await setup(t, {
      prefixes: { v4: '100.64.0.0/30', v6: 'fd7a:115c:a1e0::/126', allocation: 'sequential' },
    });
    const a = await f.node({ hostname: 'host' });
    const b = await f.node({ hostname: 'Host.local' });
    assert.equal(a.givenName, 'host');
    assert.equal(b.givenName, 'host-1');
    assert.equal(b.hostname, 'Host.local');
    assert.equal(b.ipv4, '100.64.0.2');
    f.changes.length = 0;
    await f.tailnet.deleteNode(a.id);
    assert.deepEqual(kinds(f.changes), [`removed:${a.id}`]);
    assert.equal(f.tailnet.node(a.id), undefined);
    assert.equal(f.tailnet.nodeByKey(a.nodeKey), undefined);
    assert.equal(await f.store.nodes.findById(a.id), undefined);
    // The /30 has two hosts; the third node only fits because the first one's address came free.
    const c = await f.node({ hostname: 'host' });
    assert.equal(c.givenName, 'host');
    assert.equal(c.ipv4, '100.64.0.1');
    assert.equal(c.ipv6, 'fd7a:115c:a1e0::1');
    assert.notEqual(c.id, a.id);
    await rejectsWith(f.tailnet.deleteNode(a.id), 'NODE_NOT_FOUND');
  });
});

describe('Tailnet map updates', () => {
  async function connected(t: TestContext) {
    const f = await setup(t);
    const node = await f.node({ hostname: 'host' });
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'host', OS: 'linux' } }, true);
    f.changes.length = 0;
    return { f, node };
  }

  function only(changes: NodeChange[]): NodeChange {
    assert.equal(changes.length, 1, `expected one change, got ${kinds(changes).join(', ')}`);
    const [change] = changes;
    assert.ok(change);
    changes.length = 0;
    return change;
  }

  test('endpoints, disco key and home DERP are patches', async (t) => {
    const { f, node } = await connected(t);
    let version = node.version;

    f.tailnet.applyMapUpdate(node, { capVersion: 120, endpoints: ['192.0.2.1:41641'] }, false);
    assert.deepEqual(only(f.changes), { kind: 'patched', node, patch: { endpoints: ['192.0.2.1:41641'] } });
    assert.ok(node.version > version);
    version = node.version;

    const discoKey = PrivateKey.generate(DiscoPublic).publicKey;
    f.tailnet.applyMapUpdate(node, { capVersion: 120, discoKey }, true);
    assert.deepEqual(only(f.changes), { kind: 'patched', node, patch: { discoKey } });
    assert.equal(node.discoKey, discoKey);
    assert.ok(node.version > version);

    const hostinfo: Hostinfo = { Hostname: 'host', OS: 'linux', NetInfo: { PreferredDERP: 7 } };
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo }, true);
    assert.deepEqual(only(f.changes), { kind: 'patched', node, patch: { derpRegion: 7 } });
    assert.equal(node.hostinfo.NetInfo?.PreferredDERP, 7);

    f.tailnet.applyMapUpdate(node, { capVersion: 121 }, true);
    assert.deepEqual(only(f.changes), { kind: 'patched', node, patch: { cap: 121 } });

    // Nothing new: nothing announced.
    f.tailnet.applyMapUpdate(node, { capVersion: 121, discoKey, endpoints: ['192.0.2.1:41641'] }, true);
    assert.equal(f.changes.length, 0);
  });

  test('other hostinfo changes are whole-node updates; NetInfo-only noise is not', async (t) => {
    const { f, node } = await connected(t);
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'host', OS: 'windows' } }, true);
    const change = only(f.changes);
    assert.ok(change.kind === 'updated' && change.self);
    assert.equal(node.hostinfo.OS, 'windows');

    const withLatency: Hostinfo = {
      Hostname: 'host',
      OS: 'windows',
      NetInfo: { DERPLatency: { '1-v4': 0.1 } },
    };
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: withLatency }, true);
    assert.equal(f.changes.length, 0);
  });

  test('a streaming request cannot erase endpoints; a lite update can', async (t) => {
    const { f, node } = await connected(t);
    f.tailnet.applyMapUpdate(node, { capVersion: 120, endpoints: ['192.0.2.1:1'] }, false);
    f.changes.length = 0;
    f.tailnet.applyMapUpdate(node, { capVersion: 120, endpoints: [] }, true);
    assert.deepEqual(node.endpoints, ['192.0.2.1:1']);
    assert.equal(f.changes.length, 0);
    f.tailnet.applyMapUpdate(node, { capVersion: 120, endpoints: [] }, false);
    assert.deepEqual(node.endpoints, []);
    assert.deepEqual(only(f.changes), { kind: 'patched', node, patch: { endpoints: [] } });
  });

  test('NetInfo is kept when a request omits it', async (t) => {
    const { f, node } = await connected(t);
    const netInfo = { PreferredDERP: 3, LinkType: 'wired' };
    f.tailnet.applyMapUpdate(
      node,
      { capVersion: 120, hostinfo: { Hostname: 'host', OS: 'linux', NetInfo: netInfo } },
      true,
    );
    f.changes.length = 0;
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'host', OS: 'macOS' } }, true);
    assert.equal(only(f.changes).kind, 'updated');
    assert.deepEqual(node.hostinfo.NetInfo, netInfo);
    assert.equal(node.hostinfo.OS, 'macOS');
  });

  test('a hostname change re-derives the given name, unless an admin renamed the node', async (t) => {
    const { f, node } = await connected(t);
    await f.node({ hostname: 'laptop' });
    f.changes.length = 0;
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'Laptop', OS: 'linux' } }, true);
    assert.equal(only(f.changes).kind, 'updated');
    assert.equal(node.hostname, 'Laptop');
    assert.equal(node.givenName, 'laptop-1');

    // The old name is free again (the rename is stored at once).
    await f.tailnet.flush();
    assert.equal((await f.store.nodes.getById(node.id)).givenName, 'laptop-1');
    assert.equal((await f.node({ hostname: 'host' })).givenName, 'host');

    await f.tailnet.rename(node.id, 'custom');
    f.changes.length = 0;
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'desktop', OS: 'linux' } }, true);
    assert.equal(only(f.changes).kind, 'updated');
    assert.equal(node.hostname, 'desktop');
    assert.equal(node.givenName, 'custom');
  });

  test('a name freed by a hostname change can be taken at once by another node', async (t) => {
    const { f, node } = await connected(t);
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'other', OS: 'linux' } }, true);
    // The rename is stored before any later registration decides on names.
    const result = await f.register({ hostname: 'host' });
    assert.ok(result.ok);
    assert.equal(result.node.givenName, 'host');
  });
  test('an admin rename right after a hostname change survives the write-behind flush', async (t) => {
    const { f, node } = await connected(t);
    f.tailnet.applyMapUpdate(node, { capVersion: 120, hostinfo: { Hostname: 'laptop', OS: 'linux' } }, true);
    await f.tailnet.rename(node.id, 'custom');
    await f.tailnet.flush();
    assert.equal(node.givenName, 'custom');
    assert.equal((await f.store.nodes.getById(node.id)).givenName, 'custom');
  });
});

describe('Tailnet presence', () => {
  test('online at once, offline only after the grace period, with last seen', async (t) => {
    const f = await setup(t, { offlineGraceMs: 30 });
    const node = await f.node();
    f.changes.length = 0;
    f.tailnet.sessionOpened(node);
    assert.equal(node.online, true);
    assert.deepEqual(f.changes, [{ kind: 'patched', node, patch: { online: true } }]);
    f.tailnet.sessionOpened(node); // a second stream: already online
    assert.equal(f.changes.length, 1);
    f.changes.length = 0;

    f.tailnet.sessionClosed(node);
    await sleep(60);
    assert.equal(f.changes.length, 0, 'one stream is still open');
    const before = Date.now();
    f.tailnet.sessionClosed(node);
    assert.equal(node.online, true, 'still online during the grace period');
    await until(() => f.changes.length > 0);
    const [change] = f.changes;
    assert.ok(change?.kind === 'patched');
    assert.equal(change.patch.online, false);
    assert.ok(change.patch.lastSeen instanceof Date);
    assert.ok(change.patch.lastSeen.getTime() >= before);
    assert.equal(node.online, false);
    assert.equal(node.lastSeen, change.patch.lastSeen);
  });

  test('a reconnect within the grace period never goes offline', async (t) => {
    const f = await setup(t, { offlineGraceMs: 30 });
    const node = await f.node();
    f.tailnet.sessionOpened(node);
    f.tailnet.sessionClosed(node);
    await new Promise((resolve) => setImmediate(resolve));
    f.tailnet.sessionOpened(node);
    f.changes.length = 0;
    await sleep(80);
    assert.equal(f.changes.length, 0);
    assert.equal(node.online, true);
    assert.equal(node.sessions, 1);
  });

  test('an inactive ephemeral node is removed; a connected one is not', async (t) => {
    const f = await setup(t, { ephemeralInactivityMs: 30, offlineGraceMs: 10 });
    const kept = await f.node({ ephemeral: true });
    f.tailnet.sessionOpened(kept);
    const node = await f.node({ ephemeral: true });
    const removals = () => kinds(f.changes.filter((c) => c.kind === 'removed'));
    await until(() => removals().length > 0);
    assert.deepEqual(removals(), [`removed:${node.id}`]);
    assert.equal(f.tailnet.node(node.id), undefined);
    assert.equal(await f.store.nodes.findById(node.id), undefined);

    await sleep(60);
    assert.ok(f.tailnet.node(kept.id), 'a node with a stream stays');
    f.changes.length = 0;
    f.tailnet.sessionClosed(kept);
    await until(() => f.changes.some((c) => c.kind === 'removed'));
    assert.deepEqual(kinds(f.changes), [`patched:${kept.id}`, `removed:${kept.id}`]);
    assert.equal(f.tailnet.size, 0);
  });
});

describe('Tailnet administration', () => {
  test('setExpiry, rename and deleteNode announce their changes', async (t) => {
    const f = await setup(t);
    const node = await f.node({ hostname: 'alpha' });
    const other = await f.node({ hostname: 'beta' });
    f.changes.length = 0;

    const expiry = new Date(Date.now() + HOUR);
    await f.tailnet.setExpiry(node.id, expiry);
    assert.deepEqual(f.changes, [{ kind: 'updated', node, self: true }]);
    assert.equal(node.expiry, expiry);
    assert.equal((await f.store.nodes.getById(node.id)).expiry?.getTime(), expiry.getTime());
    f.changes.length = 0;

    const renamed = await f.tailnet.rename(node.id, 'gamma');
    assert.equal(renamed, node);
    assert.equal(node.givenName, 'gamma');
    assert.deepEqual(f.changes, [{ kind: 'updated', node, self: true }]);
    assert.equal((await f.store.nodes.getById(node.id)).givenName, 'gamma');
    f.changes.length = 0;

    await rejectsWith(f.tailnet.rename(node.id, 'Bad_Name'), 'BAD_REQUEST');
    await rejectsWith(f.tailnet.rename(node.id, '-dash'), 'BAD_REQUEST');
    await rejectsWith(f.tailnet.rename(node.id, ''), 'BAD_REQUEST');
    await rejectsWith(f.tailnet.rename(node.id, 'beta'), 'NODE_NAME_TAKEN');
    await rejectsWith(f.tailnet.rename(999, 'free'), 'NODE_NOT_FOUND');
    assert.equal(f.changes.length, 0);
    await f.tailnet.rename(node.id, 'gamma'); // its own name is fine
    // The old name came free.
    await f.tailnet.rename(other.id, 'alpha');
    assert.equal(other.givenName, 'alpha');
    f.changes.length = 0;

    await f.tailnet.deleteNode(other.id);
    assert.deepEqual(f.changes, [{ kind: 'removed', node: other }]);
    assert.equal(f.tailnet.size, 1);
  });

  test('an expiry in the past makes the node expired', async (t) => {
    const f = await setup(t);
    const node = await f.node();
    await f.tailnet.setExpiry(node.id, new Date(Date.now() - 1000));
    assert.ok(node.expiry !== null && node.expiry.getTime() < Date.now());
  });
});

describe('Tailnet persistence', () => {
  test('map updates are written behind, and close() flushes what is pending', async (t) => {
    const writeBehindMs = 100;
    const f = await setup(t, { writeBehindMs });
    const node = await f.node();
    const other = await f.node();
    const start = performance.now();
    f.tailnet.applyMapUpdate(node, { capVersion: 100, endpoints: ['192.0.2.1:1'] }, false);
    const storedEndpoints = async () => (await f.store.nodes.getById(node.id)).endpoints;
    assert.deepEqual(await storedEndpoints(), [], 'not written at once');
    for (let i = 0; i < 200 && (await storedEndpoints()).length === 0; i++) await sleep(5);
    assert.ok(performance.now() - start >= writeBehindMs - 2, 'written after the delay');
    assert.deepEqual(await storedEndpoints(), ['192.0.2.1:1']);

    const discoKey = PrivateKey.generate(DiscoPublic).publicKey;
    f.tailnet.applyMapUpdate(node, { capVersion: 100, endpoints: ['192.0.2.2:2'], discoKey }, false);
    f.tailnet.applyMapUpdate(
      other,
      { capVersion: 100, hostinfo: { Hostname: 'renamed', OS: 'linux', NetInfo: { PreferredDERP: 2 } } },
      true,
    );
    f.tailnet.sessionOpened(other);
    const closedAt = Date.now();
    await f.tailnet.close();

    const stored = await f.store.nodes.getById(node.id);
    assert.deepEqual(stored.endpoints, ['192.0.2.2:2']);
    assert.equal(stored.discoKey, discoKey);
    const storedOther = await f.store.nodes.getById(other.id);
    assert.equal(storedOther.givenName, 'renamed');
    assert.ok(storedOther.lastSeen !== null && storedOther.lastSeen.getTime() >= closedAt - 1000);

    // A fresh model over the same database sees all of it.
    const reloaded = await f.reload();
    assert.equal(reloaded.size, 2);
    const again = reloaded.node(node.id);
    assert.ok(again);
    assert.deepEqual(again.endpoints, ['192.0.2.2:2']);
    assert.equal(again.discoKey, discoKey);
    assert.equal(again.ipv4, node.ipv4);
    assert.equal(again.online, false);
    assert.equal(again.sessions, 0);
    assert.equal(again.capVersion, 0);
    assert.equal(reloaded.nodeByKey(node.nodeKey), again);
    const otherAgain = reloaded.node(other.id);
    assert.equal(otherAgain?.givenName, 'renamed');
    assert.equal(otherAgain?.hostinfo.NetInfo?.PreferredDERP, 2);
    assert.equal(reloaded.user(f.aliceId)?.name, 'alice');
    // Names and addresses in use are known to the reloaded model.
    const result = await reloaded.registerWithAuthKey({
      machineKey: PrivateKey.generate(MachinePublic).publicKey,
      nodeKey: PrivateKey.generate(NodePublic).publicKey,
      authKey: f.aliceKey,
      hostinfo: { Hostname: 'renamed' },
      ephemeral: false,
    });
    assert.ok(result.ok);
    assert.equal(result.node.givenName, 'renamed-1');
    assert.equal(result.node.ipv4, '100.64.0.3');
  });
});

describe('routes, HA primaries, server-set tags and key expiry', () => {
  const routed = (routes: string[]): Hostinfo => ({ Hostname: 'router', RoutableIPs: routes });

  test('approval: canonical, advertised routes only; one exit route approves both; approvals survive withdrawal', async (t) => {
    const f = await setup(t);
    const node = await f.node({ hostname: 'router' });
    f.tailnet.applyMapUpdate(
      node,
      { hostinfo: routed(['10.1.0.0/16', '0.0.0.0/0', '::/0']), capVersion: 113 },
      true,
    );
    await rejectsWith(f.tailnet.setApprovedRoutes(node.id, ['10.1.0.0/33']), 'BAD_REQUEST');
    await rejectsWith(f.tailnet.setApprovedRoutes(node.id, ['10.1.2.3/16']), 'BAD_REQUEST');
    await rejectsWith(f.tailnet.setApprovedRoutes(node.id, ['10.2.0.0/16']), 'ROUTE_NOT_ADVERTISED');
    await rejectsWith(f.tailnet.setApprovedRoutes(999, ['10.1.0.0/16']), 'NODE_NOT_FOUND');
    assert.deepEqual(node.approvedRoutes, [], 'a refused call changes nothing');

    await f.tailnet.setApprovedRoutes(node.id, ['10.1.0.0/16', '::/0']);
    assert.deepEqual(node.approvedRoutes, ['0.0.0.0/0', '10.1.0.0/16', '::/0']);
    assert.deepEqual((await f.store.nodes.getById(node.id)).approvedRoutes, [
      '0.0.0.0/0',
      '10.1.0.0/16',
      '::/0',
    ]);

    f.tailnet.applyMapUpdate(node, { hostinfo: routed([]), capVersion: 113 }, true);
    await f.tailnet.setApprovedRoutes(node.id, ['10.1.0.0/16']);
    assert.deepEqual(node.approvedRoutes, ['10.1.0.0/16'], 'a withdrawn route may stay approved');
  });

  test('one online primary per route; failover to the lowest online id; the old primary does not reclaim it', async (t) => {
    const f = await setup(t);
    const [a, b, c] = [await f.node(), await f.node(), await f.node()];
    for (const node of [a, b, c]) {
      f.tailnet.applyMapUpdate(node, { hostinfo: routed(['10.9.0.0/24']), capVersion: 113 }, true);
      await f.tailnet.setApprovedRoutes(node.id, ['10.9.0.0/24']);
    }
    assert.equal(f.tailnet.primaries().size, 0, 'offline routers serve nothing');
    f.tailnet.sessionOpened(c);
    assert.equal(f.tailnet.primaries().get('10.9.0.0/24'), c.id);
    f.tailnet.sessionOpened(a);
    f.tailnet.sessionOpened(b);
    assert.equal(f.tailnet.primaries().get('10.9.0.0/24'), c.id, 'sticky while the primary is online');

    f.changes.length = 0;
    f.tailnet.sessionClosed(c);
    await eventuallyTrue(() => f.tailnet.primaries().get('10.9.0.0/24') === a.id);
    assert.deepEqual(f.tailnet.primaryRoutesOf(a.id), ['10.9.0.0/24']);
    assert.deepEqual(f.tailnet.primaryRoutesOf(c.id), []);
    const updated = f.changes.filter((ch) => ch.kind === 'updated').map((ch) => ch.node.id);
    assert.ok(updated.includes(a.id) && updated.includes(c.id), 'old and new primary are announced');

    f.tailnet.sessionOpened(c);
    assert.equal(f.tailnet.primaries().get('10.9.0.0/24'), a.id, 'no failback to the returning router');
    await f.tailnet.setApprovedRoutes(a.id, []);
    assert.equal(f.tailnet.primaries().get('10.9.0.0/24'), b.id, 'unapproving the primary moves the route');
    await f.tailnet.deleteNode(b.id);
    assert.equal(f.tailnet.primaries().get('10.9.0.0/24'), c.id);
  });

  test('server-set tags replace the owner and disable key expiry; a tagged node keeps at least one tag', async (t) => {
    const f = await setup(t, { keyExpiryMs: HOUR });
    const node = await f.node();
    assert.ok(
      node.expiry !== null && node.expiry.getTime() > Date.now() + HOUR - 60_000,
      'default expiry applied',
    );
    await f.tailnet.setTags(node.id, ['tag:web', 'tag:web', 'tag:db']);
    assert.deepEqual(node.tags, ['tag:db', 'tag:web']);
    assert.equal(node.userId, null);
    assert.equal(node.expiry, null);
    const stored = await f.store.nodes.getById(node.id);
    assert.deepEqual([stored.userId, stored.tags, stored.expiry], [null, ['tag:db', 'tag:web'], null]);
    await rejectsWith(f.tailnet.setTags(node.id, []), 'BAD_REQUEST');

    f.tailnet.usePolicy({
      tagsFor: (_owner, _requested) => ({ denied: ['tag:nope'] }),
      autoApprovedRoutes: () => [],
    });
    await assert.rejects(
      f.tailnet.setTags(node.id, ['tag:nope']),
      /requested tags \[tag:nope\] are invalid or not permitted/,
    );
    assert.deepEqual(node.tags, ['tag:db', 'tag:web']);
  });
});

async function eventuallyTrue(check: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    assert.ok(Date.now() < deadline, 'condition not met in time');
    await sleep(10);
  }
}
