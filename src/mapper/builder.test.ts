import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore } from '../db/store.ts';
import { createLogger } from '../observe/logger.ts';
import { ALLOW_ALL_POLICY_TEXT, parsePolicy } from '../policy/index.ts';
import type { TailnetNode } from '../state/model.ts';
import { Tailnet } from '../state/tailnet.ts';
import type { FilterRule, MapResponse } from '../tailcfg/index.ts';
import { MachinePublic, NodePublic, PrivateKey } from '../types/keys.ts';
import { MapBuilder, type MapSettings, type PeerEntry } from './builder.ts';
import { decodeMapBody } from './frame.ts';
import { TAGGED_DEVICES_USER_ID } from './node-view.ts';
import { PolicyView } from './policy-view.ts';

const HOUR = 3_600_000;
/** What the default policy compiles to: every tailnet address may reach every port. */
const ALLOW_ALL: FilterRule[] = [
  {
    SrcIPs: ['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48'],
    DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }],
  },
];
const SETTINGS: MapSettings = {
  baseDomain: 'tail.example',
  domain: 'example.com',
  derpMap: { Regions: { '900': { RegionID: 900, RegionCode: 'lab', RegionName: 'Lab', Nodes: [] } } },
  dnsConfig: { Proxied: true, Domains: ['tail.example'] },
};

async function setup(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'weft-builder-'));
  const { store } = await openStore({ type: 'sqlite', path: join(dir, 'weft.db') });
  const tailnet = await Tailnet.load({
    store,
    log: createLogger({ level: 'silent', format: 'json' }),
    prefixes: { v4: '100.64.0.0/10', v6: 'fd7a:115c:a1e0::/48', allocation: 'sequential' },
    ephemeralInactivityMs: HOUR,
    offlineGraceMs: 5,
    writeBehindMs: 10,
  });
  t.after(async () => {
    await tailnet.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const alice = await store.users.create({ name: 'alice', displayName: 'Alice', email: 'alice@example.com' });
  const bob = await store.users.create({ name: 'bob' });
  const keyFor = async (userId: number, tags: string[] = []) =>
    (
      await store.preAuthKeys.create({
        userId,
        reusable: true,
        ephemeral: false,
        tags,
        expiration: new Date(Date.now() + HOUR),
      })
    ).text;
  const aliceKey = await keyFor(alice.id);
  const bobKey = await keyFor(bob.id);
  const taggedKey = await keyFor(alice.id, ['tag:server']);
  const add = async (hostname: string, authKey = aliceKey): Promise<TailnetNode> => {
    const result = await tailnet.registerWithAuthKey({
      machineKey: PrivateKey.generate(MachinePublic).publicKey,
      nodeKey: PrivateKey.generate(NodePublic).publicKey,
      authKey,
      hostinfo: { Hostname: hostname, OS: 'linux' },
      ephemeral: false,
    });
    assert.ok(result.ok);
    return result.node;
  };
  const policy = new PolicyView(tailnet, parsePolicy(ALLOW_ALL_POLICY_TEXT), 'https://weft.example');
  const builder = new MapBuilder(tailnet, SETTINGS, policy);
  return { tailnet, builder, add, alice, bob, bobKey, taggedKey };
}

function entry(node: TailnetNode): PeerEntry {
  return { node, routes: [] };
}

function parse(json: Buffer): MapResponse {
  return JSON.parse(json.toString()) as MapResponse;
}

function peerJson(builder: MapBuilder, node: TailnetNode): Record<string, unknown> {
  return JSON.parse(builder.fragment(node).toString()) as Record<string, unknown>;
}

describe('MapBuilder.fullMap', () => {
  test('a complete first message: self, sorted peers, deduplicated profiles, filter, time', async (t) => {
    const { tailnet, builder, add, alice, bob, bobKey } = await setup(t);
    const a = await add('alpha');
    const b = await add('beta');
    const c = await add('gamma', bobKey);
    const d = await add('delta');
    const before = Date.now();
    const map = parse(builder.fullMap(b));

    assert.equal(map.Node?.ID, b.id);
    assert.equal(map.Node?.Name, 'beta.tail.example.');
    assert.deepEqual(map.Node?.Addresses, ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128']);
    assert.equal(map.Node?.MachineAuthorized, true);
    assert.deepEqual(
      map.Peers?.map((p) => p.ID),
      [a.id, c.id, d.id],
    );
    assert.ok(
      map.Peers?.every((p, i, all) => i === 0 || (all[i - 1]?.ID ?? 0) < p.ID),
      'sorted by id',
    );
    assert.deepEqual(map.UserProfiles, [
      { ID: alice.id, LoginName: 'alice@example.com', DisplayName: 'Alice' },
      { ID: bob.id, LoginName: 'bob@', DisplayName: 'bob' },
    ]);
    assert.deepEqual(map.PacketFilter, ALLOW_ALL);
    assert.deepEqual(map.DERPMap, SETTINGS.derpMap);
    assert.deepEqual(map.DNSConfig, SETTINGS.dnsConfig);
    assert.equal(map.Domain, 'example.com');
    assert.equal(map.CollectServices, false);
    assert.ok(typeof map.ControlTime === 'string');
    const controlTime = Date.parse(map.ControlTime);
    assert.ok(controlTime >= before - 1000 && controlTime <= Date.now() + 1000);
    assert.equal(tailnet.size, 4);
  });

  test('a node alone gets no Peers field', async (t) => {
    const { builder, add, alice } = await setup(t);
    const a = await add('alpha');
    const map = parse(builder.fullMap(a));
    assert.equal('Peers' in map, false);
    assert.equal(map.Node?.ID, a.id);
    assert.deepEqual(
      map.UserProfiles?.map((p) => p.ID),
      [alice.id],
    );
  });

  test('peers are spliced in from their cached fragments', async (t) => {
    const { builder, add } = await setup(t);
    const a = await add('alpha');
    const b = await add('beta');
    const map = builder.fullMap(a);
    assert.ok(map.includes(builder.fragment(b)));
    assert.deepEqual(parse(map).Peers?.[0], peerJson(builder, b));
  });
});

describe('MapBuilder full map frames', () => {
  test('a zstd full map spliced from peer blocks decodes to the same JSON as the plain map', async (t) => {
    const { builder, add } = await setup(t);
    const nodes: TailnetNode[] = [];
    for (let i = 0; i < 5; i++) nodes.push(await add(`node-${i}`));
    for (const node of nodes) {
      const { frame, state } = builder.fullMapFrame(node, 'zstd');
      const bytes = await frame;
      assert.equal(bytes.readUInt32LE(0), bytes.length - 4);
      const json = decodeMapBody(bytes.subarray(4));
      const untimed = (map: MapResponse) => ({ ...map, ControlTime: undefined });
      assert.deepEqual(untimed(parse(json)), untimed(parse(builder.fullMap(node))));
      assert.equal(parse(json).Peers?.length, 4);
      assert.deepEqual(
        [...state.peers.keys()],
        nodes.filter((n) => n !== node).map((n) => n.id),
      );
    }
    const plain = await builder.fullMapFrame(nodes[0] as TailnetNode, 'none').frame;
    assert.deepEqual(parse(plain.subarray(4)).Peers, parse(builder.fullMap(nodes[0] as TailnetNode)).Peers);
  });
});

describe('MapBuilder peer fragments', () => {
  test('encoded once per node version', async (t) => {
    const { tailnet, builder, add } = await setup(t);
    const a = await add('alpha');
    const first = builder.fragment(a);
    assert.equal(builder.fragment(a), first, 'the same Buffer while the version stands');
    // A cached fragment must not be a slice of Node's shared pool, or it would pin a whole slab.
    assert.equal(first.buffer.byteLength, first.length, 'the fragment owns exactly its own memory');
    builder.fullMap(await add('beta'));
    assert.equal(builder.fragment(a), first, 'building a map reuses it');

    tailnet.applyMapUpdate(a, { capVersion: 0, endpoints: ['192.0.2.1:41641'] }, false);
    const second = builder.fragment(a);
    assert.notEqual(second, first);
    assert.deepEqual(peerJson(builder, a).Endpoints, ['192.0.2.1:41641']);
    assert.equal(builder.fragment(a), second);

    builder.forget(a.id);
    const third = builder.fragment(a);
    assert.notEqual(third, second);
    assert.deepEqual(third, second);
  });

  test('LastSeen only for offline peers; Online always', async (t) => {
    const { tailnet, builder, add } = await setup(t);
    const a = await add('alpha');
    let peer = peerJson(builder, a);
    assert.equal(peer.Online, false);
    assert.equal('LastSeen' in peer, false, 'never seen: no LastSeen');

    tailnet.sessionOpened(a);
    tailnet.sessionClosed(a);
    for (let i = 0; i < 200 && a.online; i++) await sleep(2);
    assert.equal(a.online, false);
    assert.ok(a.lastSeen !== null);
    peer = peerJson(builder, a);
    assert.equal(peer.Online, false);
    assert.equal(peer.LastSeen, a.lastSeen.toISOString());

    tailnet.sessionOpened(a);
    peer = peerJson(builder, a);
    assert.equal(peer.Online, true);
    assert.equal('LastSeen' in peer, false, 'online: no LastSeen even though one is stored');
    tailnet.sessionClosed(a);
  });

  test('expired nodes say so, to peers and themselves', async (t) => {
    const { tailnet, builder, add } = await setup(t);
    const a = await add('alpha');
    const future = new Date(Date.now() + HOUR);
    await tailnet.setExpiry(a.id, future);
    assert.equal(peerJson(builder, a).KeyExpiry, future.toISOString());
    assert.equal('Expired' in peerJson(builder, a), false);

    const past = new Date(Date.now() - 1000);
    await tailnet.setExpiry(a.id, past);
    const peer = peerJson(builder, a);
    assert.equal(peer.Expired, true);
    assert.equal(peer.KeyExpiry, past.toISOString());
    assert.equal(builder.selfNode(a).Expired, true);
  });

  test('a tagged node belongs to the tagged-devices user', async (t) => {
    const { builder, add, alice, taggedKey } = await setup(t);
    const owned = await add('alpha');
    const tagged = await add('server', taggedKey);
    assert.equal(peerJson(builder, tagged).User, TAGGED_DEVICES_USER_ID);
    assert.equal(TAGGED_DEVICES_USER_ID, 2147455555);
    assert.deepEqual(peerJson(builder, tagged).Tags, ['tag:server']);
    const map = parse(builder.fullMap(owned));
    assert.deepEqual(map.UserProfiles, [
      { ID: alice.id, LoginName: 'alice@example.com', DisplayName: 'Alice' },
      { ID: TAGGED_DEVICES_USER_ID, LoginName: 'tagged-devices', DisplayName: 'Tagged Devices' },
    ]);
    assert.equal(parse(builder.fullMap(tagged)).Node?.User, TAGGED_DEVICES_USER_ID);
  });
});

describe('MapBuilder.delta', () => {
  const controlTime = new Date('2026-08-22T12:00:00.000Z');

  test('nothing to say: undefined', async (t) => {
    const { builder } = await setup(t);
    assert.equal(builder.delta({ changed: [], removed: [], patches: [], controlTime }), undefined);
  });

  test('only the parts that changed, with PeersChanged spliced in', async (t) => {
    const { builder, add, bob, bobKey } = await setup(t);
    const a = await add('alpha');
    const b = await add('beta', bobKey);
    const c = await add('gamma', bobKey);

    const removedOnly = builder.delta({ changed: [], removed: [9], patches: [], controlTime });
    assert.ok(removedOnly);
    assert.deepEqual(parse(removedOnly), { PeersRemoved: [9], ControlTime: controlTime.toISOString() });

    const patched = builder.delta({
      changed: [],
      removed: [],
      patches: [{ NodeID: b.id, Online: true }],
      controlTime,
    });
    assert.ok(patched);
    assert.deepEqual(parse(patched), {
      PeersChangedPatch: [{ NodeID: b.id, Online: true }],
      OnlineChange: { [b.id]: true },
      ControlTime: controlTime.toISOString(),
    });

    const changed = builder.delta({ changed: [entry(b), entry(c)], removed: [], patches: [], controlTime });
    assert.ok(changed);
    const message = parse(changed);
    assert.deepEqual(Object.keys(message).sort(), ['ControlTime', 'PeersChanged', 'UserProfiles']);
    assert.deepEqual(message.PeersChanged, [peerJson(builder, b), peerJson(builder, c)]);
    assert.deepEqual(
      message.UserProfiles?.map((p) => p.ID),
      [bob.id],
    );
    assert.ok(changed.includes(builder.fragment(b)));

    const self = builder.delta({ self: a, changed: [entry(b)], removed: [c.id], patches: [], controlTime });
    assert.ok(self);
    const selfMessage = parse(self);
    assert.equal(selfMessage.Node?.ID, a.id);
    assert.deepEqual(selfMessage.PeersRemoved, [c.id]);
    assert.deepEqual(
      selfMessage.PeersChanged?.map((p) => p.ID),
      [b.id],
    );
    assert.equal(selfMessage.UserProfiles?.length, 2);
  });
});
