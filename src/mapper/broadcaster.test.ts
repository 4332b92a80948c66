import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
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
import type { MapResponse } from '../tailcfg/index.ts';
import { DiscoPublic, MachinePublic, NodePublic, PrivateKey } from '../types/keys.ts';
import { type BroadcasterOptions, MapBroadcaster } from './broadcaster.ts';
import { MapBuilder } from './builder.ts';
import { type Compression, decodeMapBody } from './frame.ts';
import { PolicyView } from './policy-view.ts';
import type { FrameSink } from './session.ts';

const HOUR = 3_600_000;

class FakeSink extends EventEmitter implements FrameSink {
  readonly chunks: Buffer[] = [];
  writableLength = 0;
  destroyed = false;
  ended = 0;

  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }

  end(): void {
    this.ended += 1;
  }
}

function decode(frame: Buffer): MapResponse {
  assert.equal(frame.readUInt32LE(0), frame.length - 4);
  const body = frame.subarray(4);
  const json = decodeMapBody(body);
  return JSON.parse(json.toString()) as MapResponse;
}

interface Client {
  node: TailnetNode;
  sink: FakeSink;
  /** Everything after the first full map, decoded. */
  deltas(): MapResponse[];
}

async function setup(t: TestContext, options: Partial<BroadcasterOptions> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'weft-broadcast-'));
  const { store } = await openStore({ type: 'sqlite', path: join(dir, 'weft.db') });
  const log = createLogger({ level: 'silent', format: 'json' });
  const tailnet = await Tailnet.load({
    store,
    log,
    prefixes: { v4: '100.64.0.0/10', v6: 'fd7a:115c:a1e0::/48', allocation: 'sequential' },
    ephemeralInactivityMs: HOUR,
    offlineGraceMs: 5,
    writeBehindMs: 10,
  });
  const policy = new PolicyView(tailnet, parsePolicy(ALLOW_ALL_POLICY_TEXT), 'https://weft.example');
  const builder = new MapBuilder(
    tailnet,
    { baseDomain: 'tail.example', domain: 'example.com', derpMap: { Regions: {} }, dnsConfig: {} },
    policy,
  );
  const broadcaster = new MapBroadcaster(tailnet, builder, {
    log,
    // Long enough that only explicit flush() calls deliver, unless a test asks otherwise.
    batchDelayMs: 60_000,
    keepAliveMs: 60_000,
    keepAliveJitterMs: 0,
    maxQueuedBytes: 1 << 20,
    ...options,
  });
  t.after(async () => {
    broadcaster.close();
    await tailnet.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const user = await store.users.create({ name: 'alice' });
  const { text: authKey } = await store.preAuthKeys.create({
    userId: user.id,
    reusable: true,
    ephemeral: false,
    tags: [],
    expiration: new Date(Date.now() + HOUR),
  });
  const add = async (hostname: string): Promise<TailnetNode> => {
    const result = await tailnet.registerWithAuthKey({
      machineKey: PrivateKey.generate(MachinePublic).publicKey,
      nodeKey: PrivateKey.generate(NodePublic).publicKey,
      authKey,
      hostinfo: { Hostname: hostname },
      ephemeral: false,
    });
    assert.ok(result.ok);
    return result.node;
  };
  const connect = async (node: TailnetNode, compression: Compression = 'none'): Promise<Client> => {
    const sink = new FakeSink();
    broadcaster.openSession(node, sink, compression);
    await settle();
    assert.equal(sink.chunks.length, 1);
    assert.equal(decode(sink.chunks[0] ?? Buffer.alloc(0)).Node?.ID, node.id, 'a full map first');
    return { node, sink, deltas: () => sink.chunks.slice(1).map(decode) };
  };
  /** Registers nodes and connects each; the registrations' own changes are delivered before anyone listens. */
  const network = async (names: string[], compression: Compression = 'none'): Promise<Client[]> => {
    const nodes = [];
    for (const name of names) nodes.push(await add(name));
    broadcaster.flush();
    const clients = [];
    for (const node of nodes) clients.push(await connect(node, compression));
    return clients;
  };
  /** flush() and let the session queues write. */
  const deliver = async () => {
    broadcaster.flush();
    await settle();
  };
  return { tailnet, builder, broadcaster, add, connect, network, deliver };
}

const settle = () => sleep(0);

function ids(nodes: { ID: number }[] | undefined): number[] | undefined {
  return nodes?.map((n) => n.ID);
}

describe('MapBroadcaster coalescing', () => {
  test('a node added then patched goes out once, whole and current', async (t) => {
    const { tailnet, add, network, deliver } = await setup(t);
    const [a, b] = await network(['a', 'b']);
    const c = await add('c');
    tailnet.sessionOpened(c);
    tailnet.applyMapUpdate(c, { capVersion: 0, endpoints: ['192.0.2.3:1'] }, false);
    await deliver();
    for (const client of [a, b]) {
      const deltas = client?.deltas();
      assert.equal(deltas?.length, 1, 'one message per recipient');
      const [message] = deltas ?? [];
      assert.deepEqual(ids(message?.PeersChanged), [c.id]);
      assert.equal(message?.PeersChanged?.[0]?.Online, true);
      assert.deepEqual(message?.PeersChanged?.[0]?.Endpoints, ['192.0.2.3:1']);
      assert.equal(message?.PeersChangedPatch, undefined);
      assert.equal(message?.Node, undefined);
    }
  });

  test('several patches of one node merge into one PeerChange', async (t) => {
    const { tailnet, network, deliver } = await setup(t);
    const [a, b] = await network(['a', 'b']);
    assert.ok(a && b);
    const discoKey = PrivateKey.generate(DiscoPublic).publicKey;
    tailnet.applyMapUpdate(b.node, { capVersion: 0, endpoints: ['192.0.2.2:1'] }, false);
    tailnet.applyMapUpdate(b.node, { capVersion: 0, discoKey }, true);
    tailnet.sessionOpened(b.node);
    await deliver();
    assert.deepEqual(a.deltas(), [
      {
        PeersChangedPatch: [
          { NodeID: b.node.id, Endpoints: ['192.0.2.2:1'], DiscoKey: discoKey, Online: true },
        ],
        OnlineChange: { [b.node.id]: true },
        ControlTime: a.deltas()[0]?.ControlTime,
      },
    ]);
    assert.deepEqual(b.deltas(), [], 'a node is never told about its own patches');
  });

  test('a node removed after a patch is only removed; its own stream ends at once', async (t) => {
    const { tailnet, broadcaster, network, deliver } = await setup(t);
    const [a, b, c] = await network(['a', 'b', 'c']);
    assert.ok(a && b && c);
    assert.equal(broadcaster.sessionCount, 3);
    tailnet.applyMapUpdate(c.node, { capVersion: 0, endpoints: ['192.0.2.3:1'] }, false);
    await tailnet.deleteNode(c.node.id);
    assert.equal(c.sink.ended, 1, 'closed before the batch goes out');
    assert.equal(broadcaster.sessionCount, 2);
    await deliver();
    for (const client of [a, b]) {
      const [message, ...rest] = client.deltas();
      assert.deepEqual(rest, []);
      assert.deepEqual(message?.PeersRemoved, [c.node.id]);
      assert.equal(message?.PeersChangedPatch, undefined);
      assert.equal(message?.PeersChanged, undefined);
    }
    assert.deepEqual(c.deltas(), []);
  });

  test('an update after a patch replaces it with the whole node', async (t) => {
    const { tailnet, network, deliver } = await setup(t);
    const [a, b] = await network(['a', 'b']);
    assert.ok(a && b);
    tailnet.applyMapUpdate(b.node, { capVersion: 0, endpoints: ['192.0.2.2:1'] }, false);
    await tailnet.rename(b.node.id, 'bee');
    tailnet.applyMapUpdate(b.node, { capVersion: 0, endpoints: ['192.0.2.2:2'] }, false);
    await deliver();
    const [message, ...rest] = a.deltas();
    assert.deepEqual(rest, []);
    assert.equal(message?.PeersChangedPatch, undefined);
    assert.deepEqual(ids(message?.PeersChanged), [b.node.id]);
    assert.equal(message?.PeersChanged?.[0]?.Name, 'bee.tail.example.');
    assert.deepEqual(message?.PeersChanged?.[0]?.Endpoints, ['192.0.2.2:2']);
  });
});

describe('MapBroadcaster delivery', () => {
  test('one message per recipient per window, sorted, never containing the recipient', async (t) => {
    const { tailnet, network, deliver } = await setup(t);
    const clients = await network(['a', 'b', 'c', 'd']);
    const [a, b, c, d] = clients;
    assert.ok(a && b && c && d);
    await tailnet.rename(d.node.id, 'dee');
    await tailnet.rename(b.node.id, 'bee');
    tailnet.sessionOpened(c.node);
    tailnet.applyMapUpdate(a.node, { capVersion: 0, endpoints: ['192.0.2.1:1'] }, false);
    await deliver();
    for (const client of clients) {
      const deltas = client.deltas();
      assert.equal(deltas.length, 1, `node ${client.node.id} got ${deltas.length} messages`);
      const [message] = deltas;
      const changed = ids(message?.PeersChanged) ?? [];
      const patched = message?.PeersChangedPatch?.map((p) => p.NodeID) ?? [];
      assert.ok(!changed.includes(client.node.id), 'not in its own PeersChanged');
      assert.ok(!patched.includes(client.node.id), 'not in its own patches');
      assert.deepEqual(
        changed,
        [b.node.id, d.node.id].filter((id) => id !== client.node.id),
      );
      assert.deepEqual(
        patched,
        [a.node.id, c.node.id].filter((id) => id !== client.node.id),
      );
    }
  });

  test('a change to a node itself gives that node a new Node, and its peers the whole node', async (t) => {
    const { tailnet, network, deliver } = await setup(t);
    const [a, b] = await network(['a', 'b']);
    assert.ok(a && b);
    await tailnet.rename(b.node.id, 'bee');
    await deliver();
    const [own, ...ownRest] = b.deltas();
    assert.deepEqual(ownRest, []);
    assert.equal(own?.Node?.ID, b.node.id);
    assert.equal(own?.Node?.Name, 'bee.tail.example.');
    assert.equal(own?.PeersChanged, undefined);
    const [peer, ...peerRest] = a.deltas();
    assert.deepEqual(peerRest, []);
    assert.equal(peer?.Node, undefined);
    assert.deepEqual(ids(peer?.PeersChanged), [b.node.id]);
  });

  test('a policy change re-diffs peers: who appears, who goes, and whose routes changed', async (t) => {
    const { tailnet, broadcaster, network, deliver } = await setup(t);
    const [a, b, r] = await network(['a', 'b', 'r']);
    assert.ok(a && b && r);
    tailnet.sessionOpened(r.node); // only an online router is elected primary for its subnet
    tailnet.applyMapUpdate(
      r.node,
      { hostinfo: { Hostname: 'r', RoutableIPs: ['10.1.0.0/16'] }, capVersion: 113 },
      true,
    );
    await tailnet.setApprovedRoutes(r.node.id, ['10.1.0.0/16']);
    await deliver();
    const routed = a
      .deltas()
      .flatMap((d) => d.PeersChanged ?? [])
      .find((p) => p.ID === r.node.id);
    assert.ok(routed?.AllowedIPs?.includes('10.1.0.0/16'), 'allow-all: a may use the subnet');
    const seen = a.deltas().length;

    // Only tailnet addresses on either side: r stays a's peer, without its subnet; b is untouched.
    broadcaster.policyChanged(
      parsePolicy('{"acls": [{"action": "accept", "src": ["100.64.0.0/10"], "dst": ["100.64.0.0/10:*"]}]}'),
    );
    await deliver();
    const [delta, ...rest] = a.deltas().slice(seen);
    assert.deepEqual(rest, []);
    assert.deepEqual(ids(delta?.PeersChanged), [r.node.id]);
    assert.equal(delta?.PeersChanged?.[0]?.AllowedIPs?.includes('10.1.0.0/16'), false);
    assert.equal(delta?.PeersRemoved, undefined);
    assert.ok(delta?.PacketFilter, 'and the new filter');

    // Now a may reach b alone: r leaves a's peers, b stays without being resent.
    broadcaster.policyChanged(
      parsePolicy(`{"acls": [{"action": "accept", "src": ["${a.node.ipv4}"], "dst": ["${b.node.ipv4}:*"]}]}`),
    );
    await deliver();
    const [last] = a.deltas().slice(seen + 1);
    assert.deepEqual(last?.PeersRemoved, [r.node.id]);
    assert.equal(last?.PeersChanged, undefined);
  });

  test('uninvolved recipients share one encoded, compressed frame', async (t) => {
    const { tailnet, network, deliver } = await setup(t);
    const clients = await network(['a', 'b', 'c', 'd'], 'zstd');
    const [a, b, c, d] = clients;
    assert.ok(a && b && c && d);
    tailnet.applyMapUpdate(d.node, { capVersion: 0, endpoints: ['192.0.2.4:1'] }, false);
    await tailnet.rename(c.node.id, 'cee');
    await deliver();
    const [frameA] = a.sink.chunks.slice(1);
    const [frameB] = b.sink.chunks.slice(1);
    assert.ok(frameA && frameB);
    assert.equal(frameA, frameB, 'the same Buffer for a and b');
    assert.deepEqual(ids(decode(frameA).PeersChanged), [c.node.id]);
    // c (its own Node, no self patch) and d (no own patch) each get their own message.
    const [frameC] = c.sink.chunks.slice(1);
    const [frameD] = d.sink.chunks.slice(1);
    assert.ok(frameC && frameD);
    assert.notEqual(frameC, frameA);
    assert.notEqual(frameD, frameA);
    assert.equal(decode(frameC).Node?.Name, 'cee.tail.example.');
    assert.equal(decode(frameD).PeersChangedPatch, undefined);
    assert.deepEqual(ids(decode(frameD).PeersChanged), [c.node.id]);
  });

  test('recipients with different compression get different frames of the same message', async (t) => {
    const { tailnet, add, connect, broadcaster, deliver } = await setup(t);
    const a = await add('a');
    const b = await add('b');
    const c = await add('c');
    broadcaster.flush();
    const zstd = await connect(a, 'zstd');
    const none = await connect(b, 'none');
    tailnet.sessionOpened(c);
    await deliver();
    const [zstdFrame] = zstd.sink.chunks.slice(1);
    const [noneFrame] = none.sink.chunks.slice(1);
    assert.ok(zstdFrame && noneFrame);
    assert.notDeepEqual(zstdFrame, noneFrame);
    assert.deepEqual(decode(zstdFrame), decode(noneFrame));
  });

  test('a flush with nothing pending sends nothing', async (t) => {
    const { tailnet, network, deliver } = await setup(t);
    const clients = await network(['a', 'b']);
    await deliver();
    assert.deepEqual(
      clients.map((c) => c.sink.chunks.length),
      [1, 1],
    );
    // After a real delivery, flushing again (twice) adds nothing.
    const [a] = clients;
    assert.ok(a);
    tailnet.applyMapUpdate(a.node, { capVersion: 0, endpoints: ['192.0.2.1:1'] }, false);
    await deliver();
    await deliver();
    assert.deepEqual(
      clients.map((c) => c.sink.chunks.length),
      [1, 2],
    );
  });

  test('the batch timer delivers changes of one window as one message', async (t) => {
    const { tailnet, network } = await setup(t, { batchDelayMs: 20 });
    const [a, b] = await network(['a', 'b']);
    assert.ok(a && b);
    tailnet.applyMapUpdate(b.node, { capVersion: 0, endpoints: ['192.0.2.2:1'] }, false);
    tailnet.sessionOpened(b.node);
    await settle();
    assert.deepEqual(a.deltas(), [], 'nothing before the window ends');
    for (let i = 0; i < 500 && a.deltas().length === 0; i++) await sleep(2);
    await sleep(30);
    assert.deepEqual(
      a.deltas().map((m) => m.PeersChangedPatch),
      [[{ NodeID: b.node.id, Endpoints: ['192.0.2.2:1'], Online: true }]],
    );
  });

  test('a client that fell behind gets a fresh full map once it drained', async (t) => {
    const { tailnet, network, deliver } = await setup(t, { maxQueuedBytes: 1000 });
    const [a, b] = await network(['a', 'b']);
    assert.ok(a && b);
    a.sink.writableLength = 5000;
    tailnet.applyMapUpdate(b.node, { capVersion: 0, endpoints: ['192.0.2.2:1'] }, false);
    await deliver();
    assert.deepEqual(a.deltas(), [], 'dropped while the client is behind');
    a.sink.writableLength = 0;
    a.sink.emit('drain');
    await settle();
    const [full, ...rest] = a.deltas();
    assert.deepEqual(rest, []);
    assert.equal(full?.Node?.ID, a.node.id);
    assert.deepEqual(ids(full?.Peers), [b.node.id]);
    assert.deepEqual(full?.Peers?.[0]?.Endpoints, ['192.0.2.2:1']);
  });

  test('a client that fell behind with no peers left is disconnected instead', async (t) => {
    const { tailnet, broadcaster, network, deliver } = await setup(t, { maxQueuedBytes: 1000 });
    const [a, b] = await network(['a', 'b']);
    assert.ok(a && b);
    a.sink.writableLength = 5000;
    await tailnet.deleteNode(b.node.id);
    await deliver();
    a.sink.writableLength = 0;
    a.sink.emit('drain');
    await settle();
    assert.equal(a.sink.ended, 1);
    assert.equal(broadcaster.sessionCount, 0);
  });

  test('new DNS settings reach every session in one shared frame per compression, and later full maps', async (t) => {
    const { tailnet, broadcaster, add, connect, deliver } = await setup(t);
    const [nodeA, nodeB, nodeC] = [await add('a'), await add('b'), await add('c')];
    broadcaster.flush();
    const [a, b, c] = [await connect(nodeA, 'zstd'), await connect(nodeB, 'zstd'), await connect(nodeC)];
    const dns = {
      Proxied: true,
      Domains: ['tail.example'],
      Routes: { 'corp.example': [] },
      ExtraRecords: [{ Name: 'grafana.tail.example', Type: 'A', Value: '100.64.0.9' }],
    };
    broadcaster.dnsChanged(dns);
    await deliver();
    const [frameA, ...restA] = a.sink.chunks.slice(1);
    const [frameB] = b.sink.chunks.slice(1);
    const [frameC] = c.sink.chunks.slice(1);
    assert.ok(frameA && frameB && frameC);
    assert.deepEqual(restA, [], 'one message');
    assert.equal(frameA, frameB, 'the same Buffer for sessions with the same compression');
    assert.notEqual(frameC, frameA);
    for (const frame of [frameA, frameC]) {
      const message = decode(frame);
      assert.deepEqual(message.DNSConfig, dns);
      assert.equal(message.Node, undefined);
      assert.equal(message.PeersChanged, undefined);
    }
    // Routes values stay lists on the wire.
    assert.match(JSON.stringify(decode(frameC).DNSConfig), /"corp\.example":\[\]/);
    // Sent once: the next batch without changes says nothing.
    await deliver();
    assert.equal(a.sink.chunks.length, 2);
    // A client connecting now gets the new settings in its full map.
    const late = await connect(nodeA);
    assert.deepEqual(decode(late.sink.chunks[0] ?? Buffer.alloc(0)).DNSConfig, dns);
    // DNS in the same batch as a peer change: both in one message; unequal deltas don't share a frame.
    broadcaster.dnsChanged({ Proxied: false });
    tailnet.applyMapUpdate(c.node, { capVersion: 0, endpoints: ['192.0.2.3:1'] }, false);
    await deliver();
    const [, nextA] = a.deltas();
    const [, nextC] = c.deltas();
    assert.deepEqual(nextA?.DNSConfig, { Proxied: false });
    assert.deepEqual(
      nextA?.PeersChangedPatch?.map((p) => p.NodeID),
      [c.node.id],
    );
    assert.deepEqual(nextC?.DNSConfig, { Proxied: false });
    assert.equal(nextC?.PeersChangedPatch, undefined);
  });

  test('close() ends every session', async (t) => {
    const { broadcaster, network } = await setup(t);
    const clients = await network(['a', 'b']);
    broadcaster.close();
    assert.deepEqual(
      clients.map((c) => c.sink.ended),
      [1, 1],
    );
    assert.equal(broadcaster.sessionCount, 0);
  });
});
