/**
 * The control protocol in-process: a real weft (startServer on a temp SQLite data dir) and the fake
 * ts2021 client from test/harness/control-client.ts, which speaks the wire protocol byte for byte.
 *
 *   discovery     GET /key, the server key surviving a restart
 *   register      pre-auth keys (every rejection's exact Error text), re-registration, key rotation,
 *                 logout, wrong machine, too-old client, HTTP upgrade and WebSocket transports
 *   map           the first full map field by field, the [u32 LE len][zstd] framing, deltas (joins,
 *                 patches, whole-node changes, removals, expiry, online/offline), coalescing, shared
 *                 frames, keep-alives, one-shot maps, superseded long polls, given names
 *   restart       nodes and addresses survive a restart; a known node logs in again without a key
 *
 * Timings are shortened through ServerTuning; waits poll with short intervals and bounded deadlines.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/index.ts';
import { AUTH_KEY_ERRORS, WRONG_MACHINE_ERROR } from '../../src/control/register.ts';
import type { User } from '../../src/db/records.ts';
import { decodeMapBody } from '../../src/mapper/frame.ts';
import { TAGGED_DEVICES_USER_ID } from '../../src/mapper/node-view.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { type RunningServer, type ServerTuning, startServer } from '../../src/server/server.ts';
import type { TailnetNode } from '../../src/state/model.ts';
import { MIN_SUPPORTED_CAPABILITY_VERSION, unsupportedVersionMessage } from '../../src/tailcfg/index.ts';
import { DiscoPublic, type MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import {
  type ConnectOptions,
  type ControlConnection,
  type ControlResponse,
  connectControl,
  DEFAULT_CAP_VERSION,
  type MapMessage,
  type MapStream,
} from '../harness/control-client.ts';
import { eventually } from '../harness/wait.ts';

const BASE_DOMAIN = 'tailnet.test';
const CAP = DEFAULT_CAP_VERSION;
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const HOUR = 3_600_000;
/** How fast a change must reach connected peers. */
const PROPAGATION_MS = 1_000;
/** Bounded wait for things that should happen "now" (a few batch windows). */
const WAIT_MS = 3_000;
/** How the in-process tests poll the model: often, within the usual wait. */
const POLL = { timeoutMs: WAIT_MS, intervalMs: 10 };

// biome-ignore lint/suspicious/noExplicitAny: protocol JSON is read field by field
type Json = any;

// ---- server ----

const DERP_MAP = {
  Regions: {
    900: {
      RegionID: 900,
      RegionCode: 'test',
      RegionName: 'Test region',
      Nodes: [{ Name: '900a', RegionID: 900, HostName: '127.0.0.1', DERPPort: 3340 }],
    },
  },
};

interface Weft {
  running: RunningServer;
  url: string;
  dataDir: string;
  tuning: ServerTuning;
  alice: User;
  close(): Promise<void>;
}

const servers: Weft[] = [];
const connections: ControlConnection[] = [];
const tempDirs: string[] = [];

async function newDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-control-'));
  tempDirs.push(dir);
  await writeFile(join(dir, 'derp.json'), JSON.stringify(DERP_MAP));
  return dir;
}

async function startWeft(options: { dataDir?: string; tuning?: ServerTuning } = {}): Promise<Weft> {
  const dataDir = options.dataDir ?? (await newDataDir());
  const tuning = options.tuning ?? {};
  const config = parseConfig({
    listen_addr: '127.0.0.1:0',
    metrics_listen_addr: '',
    data_dir: dataDir,
    dns: { base_domain: BASE_DOMAIN },
    // The embedded relay is tested in derp-embedded.test.ts; here the map is only what the file says.
    derp: { server: { enabled: false }, paths: [join(dataDir, 'derp.json')] },
  });
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  const log = createLogger({ level: 'warn', format: 'json', destination: discard });
  const running = await startServer(config, log, tuning);
  const alice =
    (await running.store.users.list()).find((u) => u.name === 'alice') ??
    (await running.store.users.create({ name: 'alice' }));
  let closed = false;
  const weft: Weft = {
    running,
    url: `http://${running.httpAddress}`,
    dataDir,
    tuning,
    alice,
    close: async () => {
      if (closed) return;
      closed = true;
      await running.close();
    },
  };
  servers.push(weft);
  return weft;
}

interface KeyOptions {
  userId?: number | null;
  reusable?: boolean;
  ephemeral?: boolean;
  tags?: string[];
  expiration?: Date;
}

async function authKey(weft: Weft, options: KeyOptions = {}): Promise<string> {
  const { text } = await weft.running.store.preAuthKeys.create({
    userId: options.userId === undefined ? weft.alice.id : options.userId,
    reusable: options.reusable ?? false,
    ephemeral: options.ephemeral ?? false,
    tags: options.tags ?? [],
    expiration: options.expiration ?? new Date(Date.now() + HOUR),
  });
  return text;
}

after(async () => {
  await Promise.allSettled(connections.map((c) => c.close()));
  for (const weft of servers.reverse()) await weft.close();
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

// ---- fake node ----

/** One machine (one Noise connection) acting as a tailscaled: a node key, a disco key, a hostname. */
class FakeNode {
  readonly weft: Weft;
  readonly conn: ControlConnection;
  nodeKey = PrivateKey.generate(NodePublic);
  discoKey = PrivateKey.generate(DiscoPublic);
  hostinfo: Json;
  endpoints: string[];
  readonly streams: MapStream[] = [];

  private constructor(weft: Weft, conn: ControlConnection, hostname: string, index: number) {
    this.weft = weft;
    this.conn = conn;
    this.hostinfo = { Hostname: hostname, OS: 'linux', IPNVersion: '1.96.0' };
    this.endpoints = [`192.0.2.${index % 250}:41641`, `[2001:db8::${index.toString(16)}]:41641`];
  }

  static #count = 0;

  static async connect(weft: Weft, hostname: string, options: ConnectOptions = {}): Promise<FakeNode> {
    const conn = await connectControl(weft.url, options);
    connections.push(conn);
    FakeNode.#count += 1;
    return new FakeNode(weft, conn, hostname, FakeNode.#count);
  }

  /** Connects and registers with a fresh single-use key (or the one given); asserts success. */
  static async join(weft: Weft, hostname: string, key?: string): Promise<FakeNode> {
    const node = await FakeNode.connect(weft, hostname);
    const response = await node.register({ Auth: { AuthKey: key ?? (await authKey(weft)) } });
    assertLoggedIn(response, `${hostname} joins`);
    return node;
  }

  get machineKey(): MachinePublic {
    return this.conn.machineKey.publicKey;
  }

  /** The node in the server's model (throws if the server has no node with this node key). */
  get model(): TailnetNode {
    const node = this.weft.running.tailnet.nodeByKey(this.nodeKey.publicKey);
    assert.ok(node, `weft has no node with key ${this.nodeKey.publicKey}`);
    return node;
  }

  get id(): number {
    return this.model.id;
  }

  /** POST /machine/register; the response must be HTTP 200 (errors travel in `Error`). */
  async register(fields: Json = {}): Promise<Json> {
    const response = await this.conn.request('POST', '/machine/register', {
      Version: CAP,
      NodeKey: this.nodeKey.publicKey,
      Hostinfo: this.hostinfo,
      ...fields,
    });
    assert.equal(response.status, 200, `register: ${response.body.toString()}`);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    return response.json();
  }

  mapBody(fields: Json = {}): Json {
    return {
      Version: CAP,
      NodeKey: this.nodeKey.publicKey,
      DiscoKey: this.discoKey.publicKey,
      Endpoints: this.endpoints,
      Hostinfo: this.hostinfo,
      Compress: 'zstd',
      KeepAlive: true,
      Stream: true,
      ...fields,
    };
  }

  /** Opens a streaming map request and returns it once its first (full) message arrived. */
  async stream(fields: Json = {}): Promise<{ stream: MapStream; first: MapMessage }> {
    const stream = await this.conn.openMapStream(this.mapBody(fields));
    this.streams.push(stream);
    assert.equal(stream.status, 200);
    const first = await stream.next(WAIT_MS);
    return { stream, first };
  }

  /** A lite update (Stream false, OmitPeers true): what tailscaled sends when endpoints change. */
  async lite(fields: Json): Promise<ControlResponse> {
    const body: Json = { Version: CAP, NodeKey: this.nodeKey.publicKey, Stream: false, OmitPeers: true };
    return this.conn.request('POST', '/machine/map', { ...body, ...fields });
  }

  closeStreams(): void {
    for (const stream of this.streams) stream.close();
  }
}

function assertLoggedIn(response: Json, what: string): void {
  assert.equal(response.Error, undefined, `${what}: ${response.Error}`);
  assert.equal(response.MachineAuthorized, true, what);
  assert.notEqual(response.NodeKeyExpired, true, what);
}

/** Waits until the stream ended (the server finished the response); fails if it is still open. */
async function assertEnds(stream: MapStream, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    assert.ok(left > 0, 'the map stream is still open');
    try {
      await stream.next(left);
    } catch (err) {
      assert.match((err as Error).message, /map stream ended/);
      return;
    }
  }
}

function decodeFrame(frame: Buffer): Json {
  return JSON.parse(decodeMapBody(frame.subarray(4)).toString('utf8'));
}

const peerIn = (list: Json[] | undefined, id: number): Json | undefined => list?.find((p) => p.ID === id);
const patchIn = (message: Json, id: number): Json | undefined =>
  (message.PeersChangedPatch as Json[] | undefined)?.find((p) => p.NodeID === id);

/** Whether `message` tells that node `id` is online: a patch, or the whole node (when it joined in the same batch). */
const onlineIn = (message: Json, id: number): boolean =>
  patchIn(message, id)?.Online === true || peerIn(message.PeersChanged, id)?.Online === true;

function fqdn(givenName: string): string {
  return `${givenName}.${BASE_DOMAIN}.`;
}

// ---- tests ----

describe('discovery: GET /key', () => {
  let weft: Weft;
  before(async () => {
    weft = await startWeft();
  });

  test('answers the Noise public key, which survives a restart on the same data_dir', async () => {
    const response = await fetch(`${weft.url}/key?v=${CAP}`);
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get('content-type')), /^application\/json/);
    const body = (await response.json()) as Json;
    assert.deepEqual(Object.keys(body).sort(), ['legacyPublicKey', 'publicKey']);
    assert.equal(body.legacyPublicKey, `mkey:${'0'.repeat(64)}`);
    assert.match(body.publicKey, /^mkey:[0-9a-f]{64}$/);
    assert.notEqual(body.publicKey, body.legacyPublicKey);

    const keyFile = await stat(join(weft.dataDir, 'noise_private.key'));
    assert.equal(keyFile.mode & 0o777, 0o600);

    await weft.close();
    weft = await startWeft({ dataDir: weft.dataDir });
    const again = (await (await fetch(`${weft.url}/key?v=${CAP}`)).json()) as Json;
    assert.equal(again.publicKey, body.publicKey);
  });

  test('without a numeric v it is a 400', async () => {
    for (const query of ['', '?v=', '?v=abc', '?x=1']) {
      const response = await fetch(`${weft.url}/key${query}`);
      assert.equal(response.status, 400, `/key${query}`);
      assert.match(await response.text(), /capability version/);
    }
  });
});

describe('registration', () => {
  let weft: Weft;
  before(async () => {
    weft = await startWeft();
  });

  test('a single-use key registers over the HTTP upgrade and over WebSocket; addresses count up', async () => {
    const viaHttp = await FakeNode.connect(weft, 'first');
    assert.match(String(viaHttp.conn.earlyPayload?.nodeKeyChallenge), /^chalpub:[0-9a-f]{64}$/);
    const response = await viaHttp.register({ Auth: { AuthKey: await authKey(weft) } });
    assertLoggedIn(response, 'register over HTTP');
    assert.equal(response.NodeKeyExpired, false);
    assert.equal(response.User.ID, weft.alice.id);
    assert.equal(response.User.DisplayName, 'alice');
    assert.equal(response.Login.ID, weft.alice.id);
    assert.equal(response.Login.LoginName, 'alice@');
    assert.equal(response.Login.DisplayName, 'alice');
    const first = viaHttp.model;
    assert.equal(first.ipv4, '100.64.0.1');
    assert.equal(first.ipv6, 'fd7a:115c:a1e0::1');
    assert.equal(first.machineKey, viaHttp.machineKey);
    assert.equal(first.givenName, 'first');
    assert.equal(first.userId, weft.alice.id);

    const viaWebSocket = await FakeNode.connect(weft, 'second', { transport: 'websocket' });
    assertLoggedIn(
      await viaWebSocket.register({ Auth: { AuthKey: await authKey(weft) } }),
      'register over WebSocket',
    );
    const second = viaWebSocket.model;
    assert.equal(second.ipv4, '100.64.0.2');
    assert.equal(second.ipv6, 'fd7a:115c:a1e0::2');
    assert.notEqual(second.id, first.id);

    // The WebSocket connection carries map streams too.
    const { first: map } = await viaWebSocket.stream();
    assert.equal(map.message.Node.ID, second.id);
    assert.ok(peerIn(map.message.Peers, first.id));
  });

  test('an unknown key, an expired key and a used single-use key are refused with their Error', async () => {
    const sizeBefore = weft.running.tailnet.size;
    const node = await FakeNode.connect(weft, 'refused');

    const unknown = await node.register({
      Auth: { AuthKey: `weft-auth-${'0'.repeat(12)}-${'a'.repeat(48)}` },
    });
    assert.deepEqual(unknown, { Error: AUTH_KEY_ERRORS.invalid });
    const garbage = await node.register({ Auth: { AuthKey: 'not-a-key' } });
    assert.deepEqual(garbage, { Error: AUTH_KEY_ERRORS.invalid });

    const expired = await authKey(weft, { expiration: new Date(Date.now() - 1000) });
    assert.deepEqual(await node.register({ Auth: { AuthKey: expired } }), { Error: AUTH_KEY_ERRORS.expired });

    const single = await authKey(weft);
    await FakeNode.join(weft, 'uses-the-key', single);
    const sizeAfter = weft.running.tailnet.size;
    assert.equal(sizeAfter, sizeBefore + 1);
    assert.deepEqual(await node.register({ Auth: { AuthKey: single } }), { Error: AUTH_KEY_ERRORS.used });
    assert.equal(weft.running.tailnet.size, sizeAfter, 'a refused registration created a node');
    assert.equal(weft.running.tailnet.nodeByKey(node.nodeKey.publicKey), undefined);
  });

  test('a reusable key registers two machines as two nodes', async () => {
    const key = await authKey(weft, { reusable: true });
    const one = await FakeNode.join(weft, 'reuse-one', key);
    const two = await FakeNode.join(weft, 'reuse-two', key);
    assert.notEqual(one.id, two.id);
    assert.notEqual(one.model.ipv4, two.model.ipv4);
    assert.equal(one.model.authKeyId, two.model.authKeyId);
  });

  test('the same machine re-running register with its single-use key keeps its node', async () => {
    const key = await authKey(weft);
    const node = await FakeNode.join(weft, 'rerun', key);
    const { id, ipv4, ipv6, givenName } = node.model;
    const size = weft.running.tailnet.size;

    const oldKey = node.nodeKey.publicKey;
    node.nodeKey = PrivateKey.generate(NodePublic);
    assertLoggedIn(await node.register({ Auth: { AuthKey: key } }), 're-register');
    const again = node.model;
    assert.deepEqual(
      { id: again.id, ipv4: again.ipv4, ipv6: again.ipv6, givenName: again.givenName },
      { id, ipv4, ipv6, givenName },
    );
    assert.equal(again.nodeKey, node.nodeKey.publicKey);
    assert.equal(weft.running.tailnet.nodeByKey(oldKey), undefined);
    assert.equal(weft.running.tailnet.size, size);
  });

  test('an ephemeral key makes an ephemeral node', async () => {
    const node = await FakeNode.join(weft, 'ephemeral', await authKey(weft, { ephemeral: true }));
    assert.equal(node.model.ephemeral, true);
  });

  test('a tagged key makes a node owned by its tags', async () => {
    // Tailscale only applies tags the policy defines.
    await weft.running.policy.set('{"tagOwners": {"tag:server": []}}', 'test');
    const node = await FakeNode.connect(weft, 'tagged');
    const response = await node.register({
      Auth: { AuthKey: await authKey(weft, { tags: ['tag:server'] }) },
    });
    assertLoggedIn(response, 'tagged register');
    assert.equal(response.User.ID, TAGGED_DEVICES_USER_ID);
    assert.equal(response.User.DisplayName, 'Tagged Devices');
    assert.equal(response.Login.LoginName, 'tagged-devices');
    assert.equal(node.model.userId, null);
    assert.deepEqual(node.model.tags, ['tag:server']);
    const { first } = await node.stream();
    const self = first.message.Node;
    assert.equal(self.User, TAGGED_DEVICES_USER_ID);
    assert.equal(self.User, 2147455555);
    assert.deepEqual(self.Tags, ['tag:server']);
    const profile = (first.message.UserProfiles as Json[]).find((p) => p.ID === TAGGED_DEVICES_USER_ID);
    assert.deepEqual(profile, {
      ID: TAGGED_DEVICES_USER_ID,
      LoginName: 'tagged-devices',
      DisplayName: 'Tagged Devices',
    });
    node.closeStreams();
  });

  test('an unknown node without a key gets an AuthURL; a too-old client gets the minimum version', async () => {
    const size = weft.running.tailnet.size;
    const node = await FakeNode.connect(weft, 'keyless');
    const loginUrl = /^http:\/\/127\.0\.0\.1:8080\/register\/weft-login-[0-9a-f]{24}$/;
    assert.deepEqual(Object.keys(await node.register()), ['AuthURL']);
    assert.match((await node.register({ Auth: { AuthKey: '' } })).AuthURL, loginUrl);

    const old = await node.register({ Version: 100, Auth: { AuthKey: await authKey(weft) } });
    assert.deepEqual(old, { Error: unsupportedVersionMessage(100) });
    assert.match(old.Error, new RegExp(`capability version ${MIN_SUPPORTED_CAPABILITY_VERSION}\\)`));
    assert.equal(weft.running.tailnet.size, size);
  });

  test('a known node refreshes without a key', async () => {
    const node = await FakeNode.join(weft, 'refresh');
    const version = node.model.version;
    const response = await node.register();
    assertLoggedIn(response, 'refresh');
    assert.equal(response.NodeKeyExpired, false);
    assert.equal(response.User.ID, weft.alice.id);
    assert.equal(node.model.version, version, 'a refresh changed the node');
  });

  test('node-key rotation keeps the node; only the new key maps', async () => {
    const key = await authKey(weft);
    const node = await FakeNode.join(weft, 'rotate', key);
    const { id, ipv4, ipv6 } = node.model;
    const oldKey = node.nodeKey.publicKey;
    node.nodeKey = PrivateKey.generate(NodePublic);
    assertLoggedIn(await node.register({ OldNodeKey: oldKey, Auth: { AuthKey: key } }), 'rotation');
    assert.deepEqual([node.id, node.model.ipv4, node.model.ipv6], [id, ipv4, ipv6]);

    const oneShot = { Stream: false, OmitPeers: false };
    const stale = await node.conn.request(
      'POST',
      '/machine/map',
      node.mapBody({ ...oneShot, NodeKey: oldKey }),
    );
    assert.equal(stale.status, 404);
    assert.match(stale.body.toString(), /node not found/);
    const fresh = await node.conn.request('POST', '/machine/map', node.mapBody(oneShot));
    assert.equal(fresh.status, 200);
    assert.equal(decodeFrame(fresh.body).Node.ID, id);
  });

  test('logout expires the node key now', async () => {
    const node = await FakeNode.join(weft, 'logout');
    const response = await node.register({ Expiry: '1970-01-01T00:02:03Z' });
    assert.equal(response.Error, undefined);
    assert.equal(response.NodeKeyExpired, true);
    assert.equal(response.MachineAuthorized, false);
    const expiry = node.model.expiry;
    assert.ok(expiry !== null && expiry.getTime() <= Date.now(), `expiry is ${expiry?.toISOString()}`);
    // Until it logs in again with a key, the node stays expired.
    assert.equal((await node.register()).NodeKeyExpired, true);
  });

  test("another machine cannot register or map with a node's key", async () => {
    const owner = await FakeNode.join(weft, 'owned');
    const snapshot = JSON.stringify(owner.model);
    const thief = await FakeNode.connect(weft, 'thief');
    thief.nodeKey = owner.nodeKey;

    const stolen = await thief.register({ Auth: { AuthKey: await authKey(weft) } });
    assert.deepEqual(stolen, { Error: WRONG_MACHINE_ERROR });
    assert.deepEqual(await thief.register(), { Error: WRONG_MACHINE_ERROR });
    assert.deepEqual(await thief.register({ Expiry: '1970-01-01T00:02:03Z' }), {
      Error: WRONG_MACHINE_ERROR,
    });
    assert.equal(JSON.stringify(owner.model), snapshot, 'the node changed');

    const map = await thief.conn.request('POST', '/machine/map', thief.mapBody({ Stream: false }));
    assert.equal(map.status, 403);
    assert.match(map.body.toString(), /different machine/);
    assert.equal(JSON.stringify(owner.model), snapshot, 'the node changed');
  });
});

describe('map responses', () => {
  const tuning: ServerTuning = {
    broadcaster: { batchDelayMs: 100 },
    tailnet: { offlineGraceMs: 150, writeBehindMs: 50 },
  };
  let weft: Weft;
  /** The node whose long poll watches every change below. */
  let watcher: FakeNode;
  let watch: MapStream;
  let peerB: FakeNode;
  let peerC: FakeNode;
  before(async () => {
    weft = await startWeft({ tuning });
  });

  test('the first message of a long poll is a full map, framed as [u32 LE length][zstd]', async () => {
    peerB = await FakeNode.join(weft, 'peer-b');
    peerC = await FakeNode.join(weft, 'peer-c');
    await peerB.stream();
    await peerC.stream();
    await eventually('b and c online', () => (peerB.model.online && peerC.model.online) || undefined, POLL);

    watcher = await FakeNode.join(weft, 'watcher');
    const opened = await watcher.stream();
    watch = opened.stream;
    const { frame, message } = opened.first;

    assert.equal(frame.readUInt32LE(0), frame.length - 4);
    assert.deepEqual(frame.subarray(4, 8), ZSTD_MAGIC);
    assert.deepEqual(decodeFrame(frame), message);

    const self = watcher.model;
    assert.equal(message.Node.ID, self.id);
    assert.equal(message.Node.Name, fqdn('watcher'));
    assert.deepEqual(message.Node.Addresses, [`${self.ipv4}/32`, `${self.ipv6}/128`]);
    assert.equal(message.Node.MachineAuthorized, true);
    assert.equal(message.Node.Key, watcher.nodeKey.publicKey);
    assert.equal(message.Node.Machine, watcher.machineKey);
    assert.equal(message.Node.DiscoKey, watcher.discoKey.publicKey);
    assert.equal(message.Node.User, weft.alice.id);
    assert.equal(message.Node.Hostinfo.Hostname, 'watcher');

    assert.deepEqual(message.DERPMap.Regions['900'].Nodes[0].HostName, '127.0.0.1');
    assert.equal(message.DERPMap.Regions['900'].RegionCode, 'test');
    assert.deepEqual(message.DNSConfig, { Proxied: true, Domains: [BASE_DOMAIN] });
    // The default policy (every device to every device), as Tailscale's control plane encodes `*`.
    assert.deepEqual(message.PacketFilter, [
      {
        SrcIPs: ['100.64.0.0-100.115.91.255', '100.115.94.0-100.127.255.255', 'fd7a:115c:a1e0::/48'],
        DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }],
      },
    ]);
    assert.deepEqual(message.UserProfiles, [
      { ID: weft.alice.id, LoginName: 'alice@', DisplayName: 'alice' },
    ]);
    assert.equal(message.Domain, '127.0.0.1');
    assert.equal(message.CollectServices, false);
    assert.ok(Math.abs(Date.parse(message.ControlTime) - Date.now()) < 60_000, message.ControlTime);
    assert.deepEqual(message.Debug, { DisableLogTail: true });

    const ids = (message.Peers as Json[]).map((p) => p.ID);
    assert.deepEqual(ids, [peerB.id, peerC.id]);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
    );
    const b = peerIn(message.Peers, peerB.id);
    assert.equal(b.Name, fqdn('peer-b'));
    assert.equal(b.Key, peerB.nodeKey.publicKey);
    assert.equal(b.DiscoKey, peerB.discoKey.publicKey);
    assert.deepEqual(b.Endpoints, peerB.endpoints);
    assert.equal(b.Online, true);
    assert.equal(b.LastSeen, undefined);
    assert.deepEqual(b.Addresses, [`${peerB.model.ipv4}/32`, `${peerB.model.ipv6}/128`]);
    assert.equal(b.Hostinfo.OS, 'linux');
  });

  test('a node joining reaches the watcher as PeersChanged with its user profile', async () => {
    const bob = await weft.running.store.users.create({ name: 'bob', displayName: 'Bob' });
    const started = Date.now();
    const joined = await FakeNode.join(weft, 'bobs-box', await authKey(weft, { userId: bob.id }));
    const { message } = await watch.nextMatching((m) => peerIn(m.PeersChanged, joined.id), PROPAGATION_MS);
    assert.ok(Date.now() - started < PROPAGATION_MS);
    const peer = peerIn(message.PeersChanged, joined.id);
    assert.equal(peer.Name, fqdn('bobs-box'));
    assert.equal(peer.User, bob.id);
    assert.deepEqual(peer.Addresses, [`${joined.model.ipv4}/32`, `${joined.model.ipv6}/128`]);
    assert.deepEqual(
      (message.UserProfiles as Json[]).find((p) => p.ID === bob.id),
      { ID: bob.id, LoginName: 'bob@', DisplayName: 'Bob' },
    );
    assert.equal(message.Node, undefined, 'a peer joining must not resend the watcher itself');
  });

  test('a lite update with new endpoints: empty 200, peers get an endpoints patch, its stream stays', async () => {
    const endpoints = ['198.51.100.7:41641'];
    const response = await peerB.lite({ Endpoints: endpoints });
    assert.equal(response.status, 200);
    assert.equal(response.body.length, 0);
    const { message } = await watch.nextMatching(
      (m) => patchIn(m, peerB.id)?.Endpoints?.[0] === endpoints[0],
      PROPAGATION_MS,
    );
    assert.deepEqual(patchIn(message, peerB.id), { NodeID: peerB.id, Endpoints: endpoints });
    const [stream] = peerB.streams;
    assert.ok(stream && !stream.stream.closed && !stream.done, "the lite update ended the node's long poll");
    assert.equal(peerB.model.sessions, 1);
    peerB.endpoints = endpoints;
  });

  test('a disco key change is a DiscoKey patch', async () => {
    peerB.discoKey = PrivateKey.generate(DiscoPublic);
    assert.equal((await peerB.lite({ DiscoKey: peerB.discoKey.publicKey })).status, 200);
    const disco = peerB.discoKey.publicKey;
    const { message } = await watch.nextMatching(
      (m) => patchIn(m, peerB.id)?.DiscoKey === disco,
      PROPAGATION_MS,
    );
    assert.deepEqual(patchIn(message, peerB.id), { NodeID: peerB.id, DiscoKey: disco });
  });

  test('a hostinfo change sends the whole node; a new hostname renames it unless an admin did', async () => {
    const [own] = peerB.streams as [MapStream];
    peerB.hostinfo = { ...peerB.hostinfo, OS: 'freebsd' };
    assert.equal((await peerB.lite({ Hostinfo: peerB.hostinfo })).status, 200);
    const changed = (check: (peer: Json) => boolean) => (m: Json) => {
      const peer = peerIn(m.PeersChanged, peerB.id);
      return peer !== undefined && check(peer);
    };
    let { message } = await watch.nextMatching(
      changed((p) => p.Hostinfo.OS === 'freebsd'),
      PROPAGATION_MS,
    );
    let peer = peerIn(message.PeersChanged, peerB.id);
    assert.equal(peer.Hostinfo.OS, 'freebsd');
    assert.equal(peer.Name, fqdn('peer-b'));
    assert.equal(peer.DiscoKey, peerB.discoKey.publicKey);
    assert.deepEqual(peer.Endpoints, peerB.endpoints);
    // The node's own long poll (still the one from before the lite updates) gets its new self.
    const self = await own.nextMatching((m) => m.Node?.Hostinfo?.OS === 'freebsd', PROPAGATION_MS);
    assert.equal(self.message.Node.Hostinfo.OS, 'freebsd');

    peerB.hostinfo = { ...peerB.hostinfo, Hostname: "Bee's Laptop" };
    assert.equal((await peerB.lite({ Hostinfo: peerB.hostinfo })).status, 200);
    ({ message } = await watch.nextMatching(
      changed((p) => p.Hostinfo.Hostname !== 'peer-b'),
      PROPAGATION_MS,
    ));
    peer = peerIn(message.PeersChanged, peerB.id);
    assert.equal(peer.Name, fqdn('bees-laptop'));
    assert.equal(peer.Hostinfo.Hostname, "Bee's Laptop");
    assert.equal(peerB.model.givenName, 'bees-laptop');

    await weft.running.tailnet.rename(peerB.id, 'chosen-by-admin');
    ({ message } = await watch.nextMatching(
      changed((p) => p.Name !== fqdn('bees-laptop')),
      PROPAGATION_MS,
    ));
    assert.equal(peerIn(message.PeersChanged, peerB.id).Name, fqdn('chosen-by-admin'));

    peerB.hostinfo = { ...peerB.hostinfo, Hostname: 'another-name' };
    assert.equal((await peerB.lite({ Hostinfo: peerB.hostinfo })).status, 200);
    ({ message } = await watch.nextMatching(
      changed((p) => p.Hostinfo.Hostname === 'another-name'),
      PROPAGATION_MS,
    ));
    peer = peerIn(message.PeersChanged, peerB.id);
    assert.equal(peer.Hostinfo.Hostname, 'another-name');
    assert.equal(peer.Name, fqdn('chosen-by-admin'), "the admin's name must stick");
  });

  test('a deleted node: peers get PeersRemoved, its own long poll ends', async () => {
    const doomed = await FakeNode.join(weft, 'doomed');
    const { stream } = await doomed.stream();
    const id = doomed.id;
    await watch.nextMatching((m) => onlineIn(m, id), PROPAGATION_MS);
    await weft.running.tailnet.deleteNode(id);
    const { message } = await watch.nextMatching((m) => m.PeersRemoved?.includes(id), PROPAGATION_MS);
    assert.deepEqual(message.PeersRemoved, [id]);
    await assertEnds(stream);
    const gone = await doomed.conn.request('POST', '/machine/map', doomed.mapBody({ Stream: false }));
    assert.equal(gone.status, 404);
  });

  test('an expired key: the node gets its KeyExpiry, peers get it with Expired', async () => {
    const expiring = await FakeNode.join(weft, 'expiring');
    const { stream } = await expiring.stream();
    const past = new Date(Date.now() - 60_000);
    await weft.running.tailnet.setExpiry(expiring.id, past);

    const own = await stream.nextMatching((m) => m.Node?.KeyExpiry !== undefined, PROPAGATION_MS);
    assert.equal(own.message.Node.KeyExpiry, past.toISOString());
    assert.equal(own.message.Node.Expired, true);
    const { message } = await watch.nextMatching(
      (m) => peerIn(m.PeersChanged, expiring.id)?.Expired,
      PROPAGATION_MS,
    );
    const peer = peerIn(message.PeersChanged, expiring.id);
    assert.equal(peer.KeyExpiry, past.toISOString());
    assert.equal(peer.Expired, true);
    stream.close();
  });

  test('a node whose long poll ends goes offline for peers after the grace period', async () => {
    const leaving = await FakeNode.join(weft, 'leaving');
    const { stream } = await leaving.stream();
    const id = leaving.id;
    await watch.nextMatching((m) => onlineIn(m, id), PROPAGATION_MS);
    const closedAt = Date.now();
    stream.close();
    const grace = tuning.tailnet?.offlineGraceMs ?? 0;
    const { message } = await watch.nextMatching((m) => patchIn(m, id)?.Online === false, grace + WAIT_MS);
    assert.ok(Date.now() - closedAt >= grace - 5, `offline after ${Date.now() - closedAt} ms`);
    const patch = patchIn(message, id);
    assert.deepEqual(Object.keys(patch).sort(), ['LastSeen', 'NodeID', 'Online']);
    assert.ok(Math.abs(Date.parse(patch.LastSeen) - Date.now()) < 10_000, patch.LastSeen);
    assert.equal(leaving.model.online, false);
  });

  test('two endpoint updates in one batch window arrive as one patch with the last endpoints', async () => {
    const first = ['203.0.113.1:1'];
    const last = ['203.0.113.2:2', '203.0.113.3:3'];
    assert.equal((await peerC.lite({ Endpoints: first })).status, 200);
    assert.equal((await peerC.lite({ Endpoints: last })).status, 200);
    // Either list alone would match; only the coalesced patch (the last list, once) passes.
    const { message } = await watch.nextMatching(
      (m) => patchIn(m, peerC.id)?.Endpoints?.some((e: string) => e.startsWith('203.0.113.')),
      PROPAGATION_MS,
    );
    assert.deepEqual(patchIn(message, peerC.id), { NodeID: peerC.id, Endpoints: last });
    // Nothing more about it follows in the next windows.
    const batch = tuning.broadcaster?.batchDelayMs ?? 0;
    await assert.rejects(
      watch.nextMatching((m) => patchIn(m, peerC.id) ?? peerIn(m.PeersChanged, peerC.id), batch * 3),
      /no matching map message/,
    );
  });

  test('observers not involved in a change receive byte-identical frames', async () => {
    const changer = await FakeNode.join(weft, 'changer');
    const observers = [
      await FakeNode.join(weft, 'observer-1'),
      await FakeNode.join(weft, 'observer-2'),
      await FakeNode.join(weft, 'observer-3'),
    ];
    await changer.stream();
    const streams: MapStream[] = [];
    for (const observer of observers) streams.push((await observer.stream()).stream);
    // Let every session settle: the first two observers see the last one come online.
    const last = observers[2]?.id ?? 0;
    for (const stream of streams.slice(0, 2)) {
      await stream.nextMatching((m) => onlineIn(m, last), PROPAGATION_MS);
    }

    const endpoints = ['192.0.2.200:12345'];
    assert.equal((await changer.lite({ Endpoints: endpoints })).status, 200);
    const frames: Buffer[] = [];
    for (const stream of streams) {
      const { frame, message } = await stream.nextMatching(
        (m) => patchIn(m, changer.id)?.Endpoints?.[0] === endpoints[0],
        PROPAGATION_MS,
      );
      assert.deepEqual(patchIn(message, changer.id), { NodeID: changer.id, Endpoints: endpoints });
      frames.push(frame);
    }
    assert.deepEqual(frames[1], frames[0]);
    assert.deepEqual(frames[2], frames[0]);
    for (const observer of [changer, ...observers]) observer.closeStreams();
  });

  test('a one-shot map is exactly one full frame; a second long poll supersedes the first', async () => {
    const node = await FakeNode.join(weft, 'one-shot');
    const response = await node.conn.request(
      'POST',
      '/machine/map',
      node.mapBody({ Stream: false, OmitPeers: false }),
    );
    assert.equal(response.status, 200);
    const length = response.body.readUInt32LE(0);
    assert.equal(response.body.length, 4 + length, 'the body must be exactly one frame');
    const map = decodeFrame(response.body);
    assert.equal(map.Node.ID, node.id);
    assert.ok(peerIn(map.Peers, watcher.id));
    assert.ok(map.DERPMap && map.DNSConfig && map.PacketFilter);
    assert.equal(node.model.sessions, 0, 'a one-shot map is not a session');

    const { stream: firstPoll } = await node.stream();
    const { stream: secondPoll, first } = await node.stream();
    assert.equal(first.message.Node.ID, node.id);
    await assertEnds(firstPoll);
    assert.ok(!secondPoll.stream.closed && !secondPoll.done);
    await eventually('one session left', () => (node.model.sessions === 1 ? true : undefined), POLL);
    assert.equal(node.model.online, true);
    node.closeStreams();
  });

  test('given names: duplicates get a suffix, host names are sanitised', async () => {
    const one = await FakeNode.join(weft, 'twin');
    const two = await FakeNode.join(weft, 'twin');
    assert.equal(one.model.givenName, 'twin');
    assert.equal(two.model.givenName, 'twin-1');
    const { first } = await two.stream();
    assert.equal(first.message.Node.Name, fqdn('twin-1'));
    assert.equal(peerIn(first.message.Peers, one.id).Name, fqdn('twin'));
    two.closeStreams();

    const joe = await FakeNode.join(weft, "Joe's Mac mini");
    assert.equal(joe.model.givenName, 'joes-mac-mini');
    assert.equal(joe.model.hostname, "Joe's Mac mini");
  });
});

describe('keep-alives', () => {
  test('an idle long poll gets byte-identical {"KeepAlive":true} frames', async () => {
    const weft = await startWeft({ tuning: { broadcaster: { keepAliveMs: 300, keepAliveJitterMs: 0 } } });
    const node = await FakeNode.join(weft, 'idle');
    const { stream, first } = await node.stream();
    assert.ok(first.message.Node);
    const openedAt = Date.now();
    const one = await stream.next(WAIT_MS);
    const two = await stream.next(WAIT_MS);
    const elapsed = Date.now() - openedAt;
    assert.deepEqual(one.message, { KeepAlive: true });
    assert.deepEqual(two.message, { KeepAlive: true });
    assert.deepEqual(one.frame.subarray(4, 8), ZSTD_MAGIC);
    assert.deepEqual(two.frame, one.frame);
    assert.ok(elapsed >= 550, `two keep-alives after ${elapsed} ms; the interval is 300 ms`);
    node.closeStreams();
    await node.conn.close();
    await weft.close();
  });
});

describe('restart', () => {
  test('nodes survive a restart, and a known node logs in again without a key', async () => {
    let weft = await startWeft();
    const node = await FakeNode.join(weft, 'survivor');
    const { id, ipv4, ipv6, givenName } = node.model;
    await node.conn.close();
    await weft.close();

    weft = await startWeft({ dataDir: weft.dataDir });
    const restored = weft.running.tailnet.nodeByKey(node.nodeKey.publicKey);
    assert.ok(restored, 'the node is gone after a restart');
    assert.deepEqual(
      { id: restored.id, ipv4: restored.ipv4, ipv6: restored.ipv6, givenName: restored.givenName },
      { id, ipv4, ipv6, givenName },
    );

    const again = await FakeNode.connect(weft, 'survivor', { machineKey: node.conn.machineKey });
    again.nodeKey = node.nodeKey;
    const response = await again.register();
    assertLoggedIn(response, 're-login after restart');
    const { first } = await again.stream();
    assert.equal(first.message.Node.ID, id);
    assert.deepEqual(first.message.Node.Addresses, [`${ipv4}/32`, `${ipv6}/128`]);
    again.closeStreams();
    await again.conn.close();
    await weft.close();
  });
});

describe('shutdown', () => {
  test('stopping weft with clients on long polls ends their connections and finishes promptly', async () => {
    const weft = await startWeft();
    const nodes = await Promise.all(['stay-1', 'stay-2', 'stay-3'].map((name) => FakeNode.join(weft, name)));
    const streams = await Promise.all(nodes.map((node) => node.stream()));
    const started = Date.now();
    await weft.close();
    const took = Date.now() - started;
    // Well under the 10 s stop deadline: the control connections are closed, not waited for.
    assert.ok(took < 3_000, `stop took ${took} ms with three long polls open`);
    for (const { stream } of streams) await assertEnds(stream);
    for (const node of nodes) assert.ok(await node.conn.closed.then(() => true));
  });
});

describe('the policy at registration and on change: tags, autoApprovers, packet filters', () => {
  let weft: Weft;
  const POLICY = {
    groups: { 'group:admins': ['alice@'] },
    tagOwners: { 'tag:server': ['group:admins'], 'tag:ci': [], 'tag:router': ['tag:ci'] },
    autoApprovers: { routes: { '10.1.0.0/16': ['tag:router'] }, exitNode: ['alice@'] },
    acls: [{ action: 'accept', src: ['alice@'], dst: ['tag:server:22'] }],
  };
  const setPolicy = (policy: Json) => weft.running.policy.set(JSON.stringify(policy), 'test');

  before(async () => {
    weft = await startWeft();
    await setPolicy(POLICY);
  });

  test("--advertise-tags: owned tags make a tagged node, anything else is refused in Tailscale's words", async () => {
    const owned = await FakeNode.connect(weft, 'owned');
    owned.hostinfo = { ...owned.hostinfo, RequestTags: ['tag:server'] };
    assertLoggedIn(await owned.register({ Auth: { AuthKey: await authKey(weft) } }), 'owned tag');
    assert.deepEqual(owned.model.tags, ['tag:server']);
    assert.equal(owned.model.userId, null);

    const size = weft.running.tailnet.size;
    for (const tags of [['tag:ci'], ['tag:undefined'], ['tag:server', 'tag:nope']]) {
      const refused = await FakeNode.connect(weft, 'refused');
      refused.hostinfo = { ...refused.hostinfo, RequestTags: tags };
      const response = await refused.register({ Auth: { AuthKey: await authKey(weft) } });
      const denied = tags.filter((t) => t !== 'tag:server');
      assert.equal(response.Error, `requested tags [${denied.join(' ')}] are invalid or not permitted`);
    }
    assert.equal(weft.running.tailnet.size, size, 'a refused registration adds no node');
  });

  test("pre-auth key tags must be defined; the key's tags may add the tags they own", async () => {
    const undefinedTag = await FakeNode.connect(weft, 'undefined-tag');
    const response = await undefinedTag.register({
      Auth: { AuthKey: await authKey(weft, { tags: ['tag:ghost'] }) },
    });
    assert.equal(response.Error, 'requested tags [tag:ghost] are invalid or not permitted');

    const router = await FakeNode.connect(weft, 'router');
    router.hostinfo = { ...router.hostinfo, RequestTags: ['tag:router'] };
    assertLoggedIn(
      await router.register({ Auth: { AuthKey: await authKey(weft, { tags: ['tag:ci'] }) } }),
      'tag:ci adds tag:router',
    );
    assert.deepEqual(router.model.tags, ['tag:ci', 'tag:router']);
  });

  test('autoApprovers approve advertised routes at registration, and after a policy change', async () => {
    const router = await FakeNode.connect(weft, 'subnet-router');
    router.hostinfo = {
      ...router.hostinfo,
      RequestTags: ['tag:router'],
      RoutableIPs: ['10.1.2.0/24', '10.9.0.0/16', '0.0.0.0/0', '::/0'],
    };
    assertLoggedIn(
      await router.register({ Auth: { AuthKey: await authKey(weft, { tags: ['tag:ci'] }) } }),
      'router joins',
    );
    assert.deepEqual(router.model.approvedRoutes, ['10.1.2.0/24'], 'only what an autoApprover covers');

    const exit = await FakeNode.connect(weft, 'alice-exit');
    exit.hostinfo = { ...exit.hostinfo, RoutableIPs: ['0.0.0.0/0', '::/0'] };
    assertLoggedIn(await exit.register({ Auth: { AuthKey: await authKey(weft) } }), 'exit node joins');
    assert.deepEqual([...exit.model.approvedRoutes].sort(), ['0.0.0.0/0', '::/0']);

    await setPolicy({
      ...POLICY,
      autoApprovers: { ...POLICY.autoApprovers, routes: { '10.0.0.0/8': ['tag:router'] } },
    });
    await eventually(
      'the wider autoApprover approves 10.9.0.0/16',
      () => (router.model.approvedRoutes.includes('10.9.0.0/16') ? true : undefined),
      POLL,
    );
    assert.deepEqual([...router.model.approvedRoutes].sort(), ['10.1.2.0/24', '10.9.0.0/16']);
    const stored = await weft.running.store.nodes.getById(router.id);
    assert.deepEqual([...stored.approvedRoutes].sort(), ['10.1.2.0/24', '10.9.0.0/16']);
  });

  test('a connected node gets the new packet filter as a delta, and only what concerns it', async () => {
    const server = await FakeNode.connect(weft, 'ssh-server');
    server.hostinfo = { ...server.hostinfo, RequestTags: ['tag:server'] };
    assertLoggedIn(await server.register({ Auth: { AuthKey: await authKey(weft) } }), 'server joins');
    const { stream, first } = await server.stream();
    const filter = first.message.PacketFilter as Json[];
    assert.ok(
      filter.some((rule) => rule.DstPorts.some((d: Json) => d.Ports.First === 22)),
      JSON.stringify(filter),
    );

    await setPolicy({ ...POLICY, acls: [{ action: 'accept', src: ['alice@'], dst: ['tag:server:2222'] }] });
    const changedAt = Date.now();
    for (;;) {
      const next = await stream.next(WAIT_MS);
      const rules = next.message.PacketFilter as Json[] | undefined;
      if (rules === undefined) continue;
      assert.ok(Date.now() - changedAt < PROPAGATION_MS * 2, 'the new filter arrived late');
      const ports = rules.flatMap((rule) => rule.DstPorts.map((d: Json) => d.Ports.First));
      assert.ok(ports.length > 0 && ports.every((p) => p === 2222), JSON.stringify(rules));
      assert.equal(next.message.Peers, undefined, 'a delta, not a full map');
      break;
    }
    server.closeStreams();
  });

  test('SSH check mode: the holdAndDelegate URL answers a rejection, not a 404', async () => {
    const node = await FakeNode.join(weft, 'ssh-checker');
    const response = await node.conn.request('GET', `/machine/ssh/action/from/1/to/${node.id}?ssh_user=root`);
    assert.equal(response.status, 200);
    const action = response.json() as Json;
    assert.equal(action.reject, true);
    assert.match(action.message, /check-mode/);
  });
});
