/**
 * DerpServer driven in process: each client is one end of a `duplexPair()` whose other end goes to
 * `server.accept`, speaking raw frames (so the tests can also send what a well-behaved client never
 * would). The last block runs over real loopback HTTP with DerpUpgradeHandler, DerpClient and MeshLink.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { type Duplex, duplexPair } from 'node:stream';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodePublic, PrivateKey } from '../types/keys.ts';
import { DerpClient } from './client.ts';
import type { ConnTimings } from './conn.ts';
import { clientInfoFrame, openServerInfo, parseServerKey } from './handshake.ts';
import { DerpUpgradeHandler } from './http.ts';
import { MeshLink } from './mesh.ts';
import { FrameReader } from './reader.ts';
import { type AdmitClient, DerpServer, type MeshForwarder } from './server.ts';
import {
  DISCO_MAGIC,
  encodeFrame,
  FrameType,
  ip16,
  MAGIC,
  MAX_FRAME_LENGTH,
  MAX_PACKET_SIZE,
  PeerGoneReason,
  PeerPresentFlag,
} from './wire.ts';

/** Longest a test waits for something that should happen (it normally takes a millisecond). */
const WAIT_MS = 2_000;

type Key = PrivateKey<'nodekey'>;
const newKey = (): Key => PrivateKey.generate(NodePublic);
const rawOf = (key: Key): Buffer => NodePublic.toRaw(key.publicKey);

interface Frame {
  type: number;
  payload: Buffer;
}

/** Polls `check` (and wakes early on `wake`) until it returns a value; rejects after `ms`. */
async function until<T>(
  what: string,
  check: () => T | undefined,
  ms = WAIT_MS,
  wake?: (resolve: () => void) => void,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.min(left, 20));
      wake?.(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** A DERP client as raw frames over an in-process stream pair. */
class Peer {
  readonly key: Key;
  readonly raw: Buffer;
  /** The client's end. */
  readonly side: Duplex;
  /** The end given to the server. */
  readonly serverSide: Duplex;
  /** Frames not yet taken by `next`. */
  readonly frames: Frame[] = [];
  /** Types of every frame received, in order. */
  readonly log: number[] = [];
  serverClosed = false;
  #wakers: Array<() => void> = [];

  constructor(server: DerpServer, key: Key, remoteAddress: string, remotePort: number) {
    this.key = key;
    this.raw = rawOf(key);
    [this.side, this.serverSide] = duplexPair();
    const reader = new FrameReader(
      () => MAX_FRAME_LENGTH,
      (type, frame) => {
        this.frames.push({ type, payload: Buffer.from(frame.subarray(5)) });
        this.log.push(type);
        this.#wake();
      },
    );
    this.side.on('data', (chunk: Buffer) => reader.push(chunk));
    this.serverSide.on('close', () => {
      this.serverClosed = true;
      this.#wake();
    });
    server.accept(this.serverSide, { remoteAddress, remotePort });
  }

  #wake(): void {
    const wakers = this.#wakers;
    this.#wakers = [];
    for (const wake of wakers) wake();
  }

  #until<T>(what: string, check: () => T | undefined, ms: number): Promise<T> {
    return until(what, check, ms, (resolve) => this.#wakers.push(resolve));
  }

  /** Takes the first received frame of `type` (matching `match`), waiting for it if needed. */
  next(type: number, match: (payload: Buffer) => boolean = () => true, ms = WAIT_MS): Promise<Buffer> {
    return this.#until(
      `frame 0x${type.toString(16)} (have ${this.frames.map((f) => f.type.toString(16)).join(',') || 'none'})`,
      () => {
        const at = this.frames.findIndex((f) => f.type === type && match(f.payload));
        if (at === -1) return undefined;
        return (this.frames.splice(at, 1)[0] as Frame).payload;
      },
      ms,
    );
  }

  count(type: number): number {
    return this.frames.filter((f) => f.type === type).length;
  }

  /** Resolves once the server has closed its end. */
  closed(ms = WAIT_MS): Promise<true> {
    return this.#until('server closes the connection', () => (this.serverClosed ? true : undefined), ms);
  }

  write(frame: Uint8Array): void {
    // Always a fresh buffer: the server may rewrite a frame in place when it relays it.
    this.side.write(Buffer.from(frame));
  }

  send(dst: Buffer, data: Uint8Array): void {
    this.write(encodeFrame(FrameType.SendPacket, dst, data));
  }

  /** A ping round trip: everything this client wrote before has been handled by the server. */
  async sync(): Promise<void> {
    const data = randomBytes(8);
    this.write(encodeFrame(FrameType.Ping, data));
    await this.next(FrameType.Pong, (p) => p.equals(data));
  }

  close(): void {
    this.side.destroy();
    this.serverSide.destroy();
  }
}

interface ConnectOptions {
  key?: Key;
  meshKey?: string;
  isProber?: boolean;
  remoteAddress?: string;
  remotePort?: number;
}

class Lab {
  readonly serverKey = newKey();
  readonly server: DerpServer;
  readonly meshKey = randomBytes(32);
  readonly peers: Peer[] = [];
  #port = 40_000;

  constructor(
    t: TestContext,
    options: { admit?: AdmitClient; timings?: Partial<ConnTimings>; handshakeTimeoutMs?: number } = {},
  ) {
    this.server = new DerpServer({ privateKey: this.serverKey, meshKey: this.meshKey, ...options });
    t.after(() => {
      for (const peer of this.peers) peer.close();
      this.server.close();
    });
  }

  get meshKeyHex(): string {
    return this.meshKey.toString('hex');
  }

  /** A connection that has received ServerKey and sent nothing. */
  async open(options: ConnectOptions = {}): Promise<Peer> {
    this.#port += 1;
    const peer = new Peer(
      this.server,
      options.key ?? newKey(),
      options.remoteAddress ?? '127.0.0.1',
      options.remotePort ?? this.#port,
    );
    this.peers.push(peer);
    const serverKey = parseServerKey(await peer.next(FrameType.ServerKey));
    assert.deepEqual(serverKey, rawOf(this.serverKey));
    return peer;
  }

  clientInfo(peer: Peer, options: ConnectOptions = {}): Buffer {
    return clientInfoFrame(rawOf(this.serverKey), peer.key, {
      ...(options.meshKey !== undefined ? { meshKey: options.meshKey } : {}),
      ...(options.isProber === true ? { isProber: true } : {}),
    });
  }

  /** A connection through the whole handshake. */
  async connect(options: ConnectOptions = {}): Promise<Peer> {
    const peer = await this.open(options);
    peer.write(this.clientInfo(peer, options));
    const info = await peer.next(FrameType.ServerInfo);
    assert.deepEqual(openServerInfo(info, rawOf(this.serverKey), peer.key), { version: 2 });
    return peer;
  }

  connectMesh(options: ConnectOptions = {}): Promise<Peer> {
    return this.connect({ ...options, meshKey: this.meshKeyHex });
  }
}

/** `length` bytes that look like a disco message (magic first). */
function disco(length = 62): Buffer {
  const data = randomBytes(length);
  DISCO_MAGIC.copy(data);
  return data;
}

const recvFrom = (src: Buffer, data: Uint8Array) => (p: Buffer) =>
  p.subarray(0, 32).equals(src) && p.subarray(32).equals(data);
const gone = (key: Buffer, reason: number) => (p: Buffer) =>
  p.length === 33 && p.subarray(0, 32).equals(key) && p[32] === reason;
const presentOf = (key: Buffer) => (p: Buffer) => p.subarray(0, 32).equals(key);

/**
 * Sends 200 packets of 8 KiB from `sender` to `dst` in rounds of 10, one round per event-loop turn, so
 * the server flushes between rounds (far more than the 64 KiB stream buffers hold); returns the bytes sent.
 */
async function flood(sender: Peer, dst: Buffer): Promise<number> {
  const packet = randomBytes(8 * 1024);
  let sent = 0;
  for (let round = 0; round < 20; round += 1) {
    for (let i = 0; i < 10; i += 1) {
      sender.send(dst, packet);
      sent += packet.length;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return sent;
}

/** Gives in-flight frames time to arrive, for "nothing happened" checks (after a sync). */
const settle = () => sleep(30);

describe('DerpServer handshake', { timeout: 20_000 }, () => {
  test('ServerKey comes first, then ServerInfo first after it', async (t) => {
    const lab = new Lab(t);
    const peer = await lab.open();
    assert.deepEqual(peer.log, [FrameType.ServerKey]);
    peer.write(lab.clientInfo(peer));
    await peer.next(FrameType.ServerInfo);
    assert.deepEqual(peer.log, [FrameType.ServerKey, FrameType.ServerInfo]);
    assert.equal(lab.server.isConnected(peer.key.publicKey), true);
    assert.equal(lab.server.stats.accepted, 1);
    assert.equal(lab.server.stats.connections, 1);
    assert.equal(lab.server.stats.keys, 1);
    await peer.sync();
  });

  test('frames sent in the same write as ClientInfo are handled after admission', async (t) => {
    const lab = new Lab(t, {
      admit: async () => {
        await sleep(30);
        return true;
      },
    });
    const peer = await lab.open();
    const ping = Buffer.from('pingpong');
    peer.write(
      Buffer.concat([
        lab.clientInfo(peer),
        encodeFrame(FrameType.NotePreferred, Buffer.from([1])),
        encodeFrame(FrameType.Ping, ping),
      ]),
    );
    assert.deepEqual(await peer.next(FrameType.Pong), ping);
    assert.deepEqual(peer.log, [FrameType.ServerKey, FrameType.ServerInfo, FrameType.Pong]);
  });

  test('any frame before ClientInfo closes the connection', async (t) => {
    const lab = new Lab(t);
    const target = newKey();
    for (const first of [
      encodeFrame(FrameType.SendPacket, rawOf(target), Buffer.from('early')),
      encodeFrame(FrameType.Ping, Buffer.alloc(8)),
      encodeFrame(FrameType.KeepAlive),
      encodeFrame(FrameType.WatchConns),
    ]) {
      const peer = await lab.open();
      peer.write(first);
      await peer.closed();
      assert.deepEqual(peer.log, [FrameType.ServerKey]);
    }
    assert.equal(lab.server.stats.accepted, 0);
  });

  test('a ClientInfo announcing more than 256 KiB closes on its header', async (t) => {
    const lab = new Lab(t);
    const peer = await lab.open();
    const header = Buffer.from([FrameType.ClientInfo, 0, 0, 0, 0]);
    header.writeUInt32BE(256 * 1024 + 1, 1);
    peer.write(header);
    await peer.closed();
  });

  test('a ClientInfo that does not open closes without ServerInfo', async (t) => {
    const lab = new Lab(t);
    // Sealed by one key, claiming another.
    const forged = await lab.open();
    const real = clientInfoFrame(rawOf(lab.serverKey), newKey());
    rawOf(forged.key).copy(real, 5);
    forged.write(real);
    // A low-order key.
    const lowOrder = await lab.open();
    lowOrder.write(encodeFrame(FrameType.ClientInfo, Buffer.alloc(32), randomBytes(24 + 40)));
    // Garbage.
    const garbage = await lab.open();
    garbage.write(encodeFrame(FrameType.ClientInfo, randomBytes(100)));
    // Too short.
    const short = await lab.open();
    short.write(encodeFrame(FrameType.ClientInfo, randomBytes(40)));
    for (const peer of [forged, lowOrder, garbage, short]) {
      await peer.closed();
      assert.deepEqual(peer.log, [FrameType.ServerKey]);
    }
    assert.equal(lab.server.stats.connections, 0);
  });

  test('no ClientInfo within the handshake timeout closes the connection', async (t) => {
    const lab = new Lab(t, { handshakeTimeoutMs: 50 });
    const peer = await lab.open();
    const started = Date.now();
    await peer.closed();
    assert.ok(Date.now() - started >= 40);
    assert.deepEqual(peer.log, [FrameType.ServerKey]);
  });

  test('admission refusal (false, rejection or throw) closes without ServerInfo', async (t) => {
    const refused = new Set<string>();
    const seen: string[] = [];
    const lab = new Lab(t, {
      admit: async (key, remoteAddress) => {
        seen.push(remoteAddress);
        if (!refused.has(key)) return true;
        if (key.endsWith('0') || key.endsWith('1')) throw new Error('admission backend down');
        return false;
      },
    });
    const peers: Peer[] = [];
    for (let i = 0; i < 4; i += 1) {
      const key = newKey();
      refused.add(key.publicKey);
      const peer = await lab.open({ key, remoteAddress: '198.51.100.7' });
      peer.write(lab.clientInfo(peer));
      peers.push(peer);
    }
    for (const peer of peers) {
      await peer.closed();
      assert.deepEqual(peer.log, [FrameType.ServerKey]);
      assert.equal(lab.server.isConnected(peer.key.publicKey), false);
    }
    assert.equal(lab.server.stats.refused, 4);
    assert.ok(seen.every((address) => address === '198.51.100.7'));
    // A synchronous refusal too.
    const sync = new Lab(t, { admit: () => false });
    const peer = await sync.open();
    peer.write(sync.clientInfo(peer));
    await peer.closed();
    assert.deepEqual(peer.log, [FrameType.ServerKey]);
    // Admitted clients are unaffected.
    const ok = await lab.connect();
    await ok.sync();
  });

  test('the mesh key skips admission; a wrong or malformed mesh key is refused', async (t) => {
    const lab = new Lab(t, { admit: () => false });
    const mesh = await lab.connectMesh();
    await mesh.sync();
    mesh.write(encodeFrame(FrameType.WatchConns));
    await mesh.next(FrameType.PeerPresent, presentOf(mesh.raw));
    for (const meshKey of [
      randomBytes(32).toString('hex'),
      'xyz',
      lab.meshKeyHex.slice(2),
      `${lab.meshKeyHex}00`,
    ]) {
      const peer = await lab.open();
      peer.write(lab.clientInfo(peer, { meshKey }));
      await peer.closed();
      assert.deepEqual(peer.log, [FrameType.ServerKey]);
    }
    // A server without a mesh key refuses every mesh key.
    const plain = new DerpServer({ privateKey: newKey() });
    t.after(() => plain.close());
    const peer = new Peer(plain, newKey(), '127.0.0.1', 1);
    const serverKey = parseServerKey(await peer.next(FrameType.ServerKey));
    peer.write(clientInfoFrame(serverKey, peer.key, { meshKey: randomBytes(32).toString('hex') }));
    await peer.closed();
  });

  test('a client gone before its admission completes is never registered', async (t) => {
    let release: ((allowed: boolean) => void) | undefined;
    const lab = new Lab(t, {
      admit: () =>
        new Promise<boolean>((resolve) => {
          release = resolve;
        }),
    });
    const peer = await lab.open();
    peer.write(lab.clientInfo(peer));
    const admit = await until('admission starts', () => release);
    peer.close();
    await sleep(10);
    admit(true);
    await sleep(20);
    assert.equal(lab.server.isConnected(peer.key.publicKey), false);
    assert.equal(lab.server.stats.connections, 0);
  });
});

describe('DerpServer relay', { timeout: 20_000 }, () => {
  test("A → B arrives as RecvPacket with A's key as the source", async (t) => {
    const lab = new Lab(t);
    const a = await lab.connect();
    const b = await lab.connect();
    const small = Buffer.from('hello over DERP');
    const largest = randomBytes(MAX_PACKET_SIZE);
    a.send(b.raw, small);
    a.send(b.raw, largest);
    a.send(b.raw, Buffer.alloc(0));
    a.send(b.raw, disco(100));
    assert.deepEqual(
      await b.next(FrameType.RecvPacket, recvFrom(a.raw, small)),
      Buffer.concat([a.raw, small]),
    );
    await b.next(FrameType.RecvPacket, recvFrom(a.raw, largest));
    await b.next(FrameType.RecvPacket, recvFrom(a.raw, Buffer.alloc(0)));
    await b.next(FrameType.RecvPacket, (p) => p.subarray(0, 32).equals(a.raw) && p.length === 132);
    // And back.
    b.send(a.raw, Buffer.from('reply'));
    await a.next(FrameType.RecvPacket, recvFrom(b.raw, Buffer.from('reply')));
    const stats = lab.server.stats;
    assert.equal(stats.packetsRelayed, 5);
    assert.equal(stats.bytesRelayed, small.length + largest.length + 100 + 5);
    assert.equal(stats.dropUnknownDestination, 0);
  });

  test('unknown destination: disco gets PeerGone(NotHere), at most 3 in a burst; other data gets nothing', async (t) => {
    const lab = new Lab(t);
    const unknown = rawOf(newKey());
    const chatty = await lab.connect();
    // Ten disco packets in one write, so they are handled within one millisecond or so.
    chatty.write(
      Buffer.concat(Array.from({ length: 10 }, () => encodeFrame(FrameType.SendPacket, unknown, disco()))),
    );
    await chatty.sync();
    await settle();
    assert.equal(chatty.count(FrameType.PeerGone), 3);
    for (let i = 0; i < 3; i += 1)
      await chatty.next(FrameType.PeerGone, gone(unknown, PeerGoneReason.NotHere));

    const quiet = await lab.connect();
    for (const data of [
      disco(61),
      Buffer.concat([Buffer.alloc(1), disco(80)]),
      randomBytes(200),
      Buffer.alloc(0),
    ]) {
      quiet.send(unknown, data);
    }
    await quiet.sync();
    await settle();
    assert.equal(quiet.count(FrameType.PeerGone), 0);
    assert.equal(lab.server.stats.dropUnknownDestination, 14);
  });

  test('duplicates: the newest is active, the last writer becomes active, the rest takes over', async (t) => {
    const lab = new Lab(t);
    const key = newKey();
    const first = await lab.connect({ key });
    const second = await lab.connect({ key });
    const sender = await lab.connect();
    assert.equal(lab.server.stats.keys, 2);
    assert.equal(lab.server.stats.connections, 3);

    sender.send(first.raw, Buffer.from('1'));
    await second.next(FrameType.RecvPacket, recvFrom(sender.raw, Buffer.from('1')));

    await first.sync(); // any frame makes `first` the active one
    sender.send(first.raw, Buffer.from('2'));
    await first.next(FrameType.RecvPacket, recvFrom(sender.raw, Buffer.from('2')));

    second.write(encodeFrame(FrameType.NotePreferred, Buffer.from([1])));
    await second.sync();
    sender.send(first.raw, Buffer.from('3'));
    await second.next(FrameType.RecvPacket, recvFrom(sender.raw, Buffer.from('3')));

    second.close();
    await until('second unregistered', () => (lab.server.stats.connections === 2 ? true : undefined));
    sender.send(first.raw, Buffer.from('4'));
    await first.next(FrameType.RecvPacket, recvFrom(sender.raw, Buffer.from('4')));
    await sender.sync();
    await settle();
    assert.equal(first.count(FrameType.RecvPacket), 0);
    assert.equal(lab.server.stats.dropDuplicateClient, 0);
    assert.equal(sender.count(FrameType.PeerGone), 0, 'no PeerGone while the key is still here');
  });

  test('duplicates: when the active one leaves and none of the others has sent, the newest takes over', async (t) => {
    const lab = new Lab(t);
    const key = newKey();
    const one = await lab.connect({ key });
    const two = await lab.connect({ key });
    const three = await lab.connect({ key });
    const sender = await lab.connect();
    three.close();
    await until('third unregistered', () => (lab.server.stats.connections === 3 ? true : undefined));
    sender.send(one.raw, Buffer.from('still delivered'));
    await two.next(FrameType.RecvPacket, recvFrom(sender.raw, Buffer.from('still delivered')));
    await one.sync();
    assert.equal(one.count(FrameType.RecvPacket), 0);
    assert.equal(lab.server.stats.dropDuplicateClient, 0);
  });

  test("PeerGone(Disconnected) reaches the sender's receivers when its last connection goes", async (t) => {
    const lab = new Lab(t);
    const key = newKey();
    const a1 = await lab.connect({ key });
    const a2 = await lab.connect({ key });
    const receiver = await lab.connect();
    const bystander = await lab.connect();
    a2.send(receiver.raw, Buffer.from('x'));
    await receiver.next(FrameType.RecvPacket);
    bystander.send(a2.raw, Buffer.from('to a')); // bystander sent to A, never received from A
    await a2.next(FrameType.RecvPacket);

    a1.close();
    await until('a1 unregistered', () => (lab.server.stats.connections === 3 ? true : undefined));
    await receiver.sync();
    await settle();
    assert.equal(receiver.count(FrameType.PeerGone), 0, 'A still has a connection');

    a2.close();
    await receiver.next(FrameType.PeerGone, gone(a2.raw, PeerGoneReason.Disconnected));
    await bystander.sync();
    await settle();
    assert.equal(bystander.count(FrameType.PeerGone), 0);
    assert.equal(lab.server.isConnected(key.publicKey), false);
  });

  test('strict lengths: a frame that breaks its layout closes the connection', async (t) => {
    const lab = new Lab(t);
    const dst = await lab.connect();
    const cases: Array<[string, Buffer]> = [
      ['NotePreferred of 0 bytes', encodeFrame(FrameType.NotePreferred)],
      ['NotePreferred of 2 bytes', encodeFrame(FrameType.NotePreferred, Buffer.from([1, 1]))],
      ['Ping of 7 bytes', encodeFrame(FrameType.Ping, Buffer.alloc(7))],
      ['Ping of 1001 bytes', encodeFrame(FrameType.Ping, Buffer.alloc(1001))],
      ['SendPacket of 31 bytes', encodeFrame(FrameType.SendPacket, Buffer.alloc(31))],
      ['SendPacket of 0 bytes', encodeFrame(FrameType.SendPacket)],
      [
        'SendPacket of 64 KiB + 33',
        encodeFrame(FrameType.SendPacket, dst.raw, Buffer.alloc(MAX_PACKET_SIZE + 1)),
      ],
    ];
    for (const [name, frame] of cases) {
      const peer = await lab.connect();
      peer.write(frame);
      await peer.closed().catch(() => assert.fail(`${name} did not close the connection`));
    }
    assert.equal(lab.server.stats.closedForError, cases.length);
    await dst.sync();
    assert.equal(dst.count(FrameType.RecvPacket), 0);

    // The limits themselves are fine.
    const peer = await lab.connect();
    peer.write(encodeFrame(FrameType.NotePreferred, Buffer.from([0])));
    peer.write(encodeFrame(FrameType.NotePreferred, Buffer.from([1])));
    const longPing = randomBytes(1000);
    peer.write(encodeFrame(FrameType.Ping, longPing));
    assert.deepEqual(await peer.next(FrameType.Pong), longPing.subarray(0, 8));
    peer.write(encodeFrame(FrameType.Pong, Buffer.alloc(8)));
    peer.send(dst.raw, Buffer.alloc(MAX_PACKET_SIZE, 7));
    await dst.next(FrameType.RecvPacket, recvFrom(peer.raw, Buffer.alloc(MAX_PACKET_SIZE, 7)));
    await peer.sync();
    assert.equal(peer.serverClosed, false);
  });

  test('mesh-only frames (WatchConns, ClosePeer, ForwardPacket) from a client without the mesh key close it', async (t) => {
    const lab = new Lab(t);
    const victim = await lab.connect();
    const frames = [
      encodeFrame(FrameType.WatchConns),
      encodeFrame(FrameType.ClosePeer, victim.raw),
      encodeFrame(FrameType.ForwardPacket, rawOf(newKey()), victim.raw, Buffer.from('forged')),
    ];
    for (const frame of frames) {
      const peer = await lab.connect();
      peer.write(frame);
      await peer.closed();
      assert.equal(peer.count(FrameType.PeerPresent), 0);
    }
    await victim.sync();
    assert.equal(victim.serverClosed, false);
    assert.equal(victim.count(FrameType.RecvPacket), 0);
    assert.equal(lab.server.stats.closedForError, 3);
  });

  test('unknown frame types (and server-to-client types) are skipped; the connection keeps working', async (t) => {
    const lab = new Lab(t);
    const peer = await lab.connect();
    const other = await lab.connect();
    const skipped = [
      encodeFrame(0x0b as FrameType, randomBytes(10)),
      encodeFrame(0x0f as FrameType),
      encodeFrame(0x16 as FrameType, randomBytes(3)),
      encodeFrame(0xff as FrameType, randomBytes(2 * 1024 * 1024)), // larger than any limit
      encodeFrame(FrameType.ServerKey, MAGIC, randomBytes(32)),
      lab.clientInfo(peer),
      encodeFrame(FrameType.ServerInfo, randomBytes(40)),
      encodeFrame(FrameType.RecvPacket, other.raw, Buffer.from('spoof')),
      encodeFrame(FrameType.KeepAlive),
      encodeFrame(FrameType.PeerGone, other.raw, Buffer.from([0])),
      encodeFrame(FrameType.PeerPresent, randomBytes(51)),
      encodeFrame(FrameType.Health, Buffer.from('bad')),
      encodeFrame(FrameType.Restarting, Buffer.alloc(8)),
    ];
    for (const frame of skipped) peer.write(frame);
    await peer.sync();
    peer.send(other.raw, Buffer.from('still here'));
    await other.next(FrameType.RecvPacket, recvFrom(peer.raw, Buffer.from('still here')));
    assert.equal(other.count(FrameType.RecvPacket), 0, 'the spoofed RecvPacket went nowhere');
    assert.equal(other.count(FrameType.PeerGone), 0);
    assert.equal(peer.serverClosed, false);
    assert.equal(lab.server.stats.closedForError, 0);
  });

  test('ping → pong with the same 8 bytes; a flood of pings yields a bounded number of pongs', async (t) => {
    const lab = new Lab(t);
    const peer = await lab.connect();
    for (let i = 0; i < 3; i += 1) {
      const data = randomBytes(8);
      peer.write(encodeFrame(FrameType.Ping, data));
      assert.deepEqual(await peer.next(FrameType.Pong), data);
    }
    const first = randomBytes(8);
    const pings = [encodeFrame(FrameType.Ping, first)];
    for (let i = 1; i < 1000; i += 1) pings.push(encodeFrame(FrameType.Ping, randomBytes(8)));
    peer.write(Buffer.concat(pings)); // one chunk: all handled before the first pong is written
    assert.deepEqual(await peer.next(FrameType.Pong), first);
    await settle();
    assert.equal(peer.count(FrameType.Pong), 0, 'one pending pong at a time; the rest are dropped');
    await peer.sync();
  });

  test('a receiver that never reads: the sender is not blocked, its queue stays bounded, it is closed after the write timeout', async (t) => {
    const writeTimeoutMs = 500;
    const lab = new Lab(t, { timings: { queueDepth: 4, writeTimeoutMs } });
    const sender = await lab.connect();
    const stuck = await lab.connect();
    stuck.side.pause(); // stops reading: the stream's buffers fill and writes report back-pressure
    const sent = await flood(sender, stuck.raw);
    // The sender still gets answers while the receiver is stuck.
    await sender.sync();
    assert.equal(stuck.serverClosed, false, 'not closed before the write timeout');
    const dropped = lab.server.stats.dropQueueFull;
    assert.ok(dropped > 50, `${dropped} packets dropped for a full queue`);
    // At most the two 64 KiB stream buffers and one batch (control frames and 2 × 4 packets) beyond them.
    const buffered = stuck.serverSide.writableLength + stuck.side.readableLength;
    assert.ok(buffered < 256 * 1024, `${buffered} of ${sent} bytes buffered for the stuck receiver`);
    const blockedAt = Date.now();
    await stuck.closed(writeTimeoutMs + WAIT_MS);
    assert.ok(Date.now() - blockedAt <= writeTimeoutMs + 500);
    await until('stuck receiver unregistered', () => (lab.server.stats.connections === 1 ? true : undefined));
    await sender.sync();
  });

  test('a write timeout counts in stats.closedForError', async (t) => {
    const lab = new Lab(t, { timings: { queueDepth: 4, writeTimeoutMs: 100 } });
    const sender = await lab.connect();
    const stuck = await lab.connect();
    stuck.side.pause();
    await flood(sender, stuck.raw);
    await stuck.closed();
    assert.equal(lab.server.stats.closedForError, 1);
  });

  test('keep-alives arrive every keepAliveMs', async (t) => {
    const lab = new Lab(t, { timings: { keepAliveMs: 20, keepAliveJitterMs: 0 } });
    const peer = await lab.connect();
    for (let i = 0; i < 3; i += 1) assert.deepEqual(await peer.next(FrameType.KeepAlive), Buffer.alloc(0));
  });

  test('closeClient closes every connection of a key; close() closes everything', async (t) => {
    const lab = new Lab(t);
    const key = newKey();
    const a1 = await lab.connect({ key });
    const a2 = await lab.connect({ key });
    const b = await lab.connect();
    const handshaking = await lab.open();
    lab.server.closeClient(key.publicKey, 'node deleted');
    await a1.closed();
    await a2.closed();
    await b.sync();
    lab.server.close();
    await b.closed();
    await handshaking.closed();
    const late = new Peer(lab.server, newKey(), '127.0.0.1', 1);
    await late.closed();
    assert.equal(late.log.length, 0);
    assert.equal(lab.server.stats.connections, 0);
  });
});

describe('DerpServer mesh frames', { timeout: 20_000 }, () => {
  test('WatchConns: PeerPresent for everyone connected, then for each new connection; PeerGone when the last goes', async (t) => {
    const lab = new Lab(t);
    const a = await lab.connect({ remoteAddress: '192.0.2.1', remotePort: 1234 });
    const watcher = await lab.connectMesh({ remoteAddress: '127.0.0.1', remotePort: 5555 });
    watcher.write(encodeFrame(FrameType.WatchConns));
    const presentA = await watcher.next(FrameType.PeerPresent, presentOf(a.raw));
    assert.equal(presentA.length, 51);
    assert.deepEqual(presentA.subarray(32, 48), ip16('192.0.2.1'));
    assert.equal(presentA.readUInt16BE(48), 1234);
    assert.equal(presentA[50], PeerPresentFlag.Regular);
    const self = await watcher.next(FrameType.PeerPresent, presentOf(watcher.raw));
    assert.equal(self[50], PeerPresentFlag.MeshPeer);

    const key = newKey();
    const b1 = await lab.connect({ key, remoteAddress: '2001:db8::5', remotePort: 4242 });
    const presentB = await watcher.next(FrameType.PeerPresent, presentOf(b1.raw));
    assert.deepEqual(presentB.subarray(32, 48), Buffer.from('20010db8000000000000000000000005', 'hex'));
    assert.equal(presentB.readUInt16BE(48), 4242);
    const prober = await lab.connect({ isProber: true });
    const presentProber = await watcher.next(FrameType.PeerPresent, presentOf(prober.raw));
    assert.equal(presentProber[50], PeerPresentFlag.Prober);

    const b2 = await lab.connect({ key });
    await watcher.next(FrameType.PeerPresent, presentOf(b2.raw)); // every new connection, duplicates too
    b1.close();
    await until('b1 unregistered', () => (lab.server.stats.connections === 4 ? true : undefined));
    await watcher.sync();
    await settle();
    assert.equal(watcher.count(FrameType.PeerGone), 0, 'B still has a connection');
    b2.close();
    await watcher.next(FrameType.PeerGone, gone(b2.raw, PeerGoneReason.Disconnected));
    a.close();
    await watcher.next(FrameType.PeerGone, gone(a.raw, PeerGoneReason.Disconnected));
  });

  test('ClosePeer closes every connection of the target; an unknown key is harmless', async (t) => {
    const lab = new Lab(t);
    const key = newKey();
    const t1 = await lab.connect({ key });
    const t2 = await lab.connect({ key });
    const other = await lab.connect();
    const mesh = await lab.connectMesh();
    mesh.write(encodeFrame(FrameType.ClosePeer, rawOf(newKey())));
    mesh.write(encodeFrame(FrameType.ClosePeer, t1.raw));
    await t1.closed();
    await t2.closed();
    await mesh.sync();
    await other.sync();
    assert.equal(lab.server.isConnected(key.publicKey), false);
  });

  test('mesh frames with the wrong length close even a mesh client', async (t) => {
    const lab = new Lab(t);
    for (const frame of [
      encodeFrame(FrameType.WatchConns, Buffer.from([0])),
      encodeFrame(FrameType.ClosePeer, Buffer.alloc(31)),
      encodeFrame(FrameType.ClosePeer, Buffer.alloc(33)),
      encodeFrame(FrameType.ForwardPacket, Buffer.alloc(63)),
      encodeFrame(FrameType.ForwardPacket, Buffer.alloc(64 + MAX_PACKET_SIZE + 1)),
    ]) {
      const mesh = await lab.connectMesh();
      mesh.write(frame);
      await mesh.closed();
    }
  });

  test('ForwardPacket is delivered locally with the original source and never forwarded again', async (t) => {
    const lab = new Lab(t);
    const local = await lab.connect();
    const mesh = await lab.connectMesh();
    const remoteSrc = rawOf(newKey());
    const data = randomBytes(1000);
    mesh.write(encodeFrame(FrameType.ForwardPacket, remoteSrc, local.raw, data));
    mesh.write(encodeFrame(FrameType.ForwardPacket, remoteSrc, local.raw, Buffer.alloc(0)));
    mesh.write(encodeFrame(FrameType.ForwardPacket, remoteSrc, local.raw, Buffer.alloc(MAX_PACKET_SIZE, 3)));
    assert.deepEqual(await local.next(FrameType.RecvPacket), Buffer.concat([remoteSrc, data]));
    assert.deepEqual(await local.next(FrameType.RecvPacket), remoteSrc);
    await local.next(FrameType.RecvPacket, recvFrom(remoteSrc, Buffer.alloc(MAX_PACKET_SIZE, 3)));

    // A destination known only through another mesh peer is not forwarded again.
    const elsewhere = rawOf(newKey());
    const forwarded: Buffer[] = [];
    lab.server.addForwarder(elsewhere, { name: 'fake', forward: (_s, _d, d) => forwarded.push(d) > 0 });
    mesh.write(encodeFrame(FrameType.ForwardPacket, remoteSrc, elsewhere, disco()));
    await mesh.sync();
    await settle();
    assert.deepEqual(forwarded, []);
    assert.equal(lab.server.stats.dropUnknownDestination, 1);
  });

  test('SendPacket for a key reported by mesh peers goes to the earliest of them; a local connection wins', async (t) => {
    const lab = new Lab(t);
    const sender = await lab.connect();
    const target = newKey();
    const calls: Array<[string, Buffer, Buffer, Buffer]> = [];
    const forwarder = (name: string): MeshForwarder => ({
      name,
      forward: (src, dst, data) =>
        calls.push([name, Buffer.from(src), Buffer.from(dst), Buffer.from(data)]) > 0,
    });
    const first = forwarder('first');
    const second = forwarder('second');
    lab.server.addForwarder(rawOf(target), first);
    lab.server.addForwarder(rawOf(target), second);
    lab.server.addForwarder(rawOf(target), first);
    sender.send(rawOf(target), Buffer.from('via mesh'));
    await sender.sync();
    assert.deepEqual(calls, [['first', sender.raw, rawOf(target), Buffer.from('via mesh')]]);
    lab.server.removeForwarder(rawOf(target), first);
    sender.send(rawOf(target), Buffer.from('via second'));
    await sender.sync();
    assert.equal(calls.at(-1)?.[0], 'second');
    assert.equal(lab.server.stats.packetsForwarded, 2);

    const local = await lab.connect({ key: target });
    sender.send(rawOf(target), Buffer.from('local'));
    await local.next(FrameType.RecvPacket, recvFrom(sender.raw, Buffer.from('local')));
    assert.equal(calls.length, 2);
  });

  test('receivers of a forwarded sender get PeerGone(Disconnected) when its last forwarder goes', async (t) => {
    const lab = new Lab(t);
    const receiver = await lab.connect();
    const mesh = await lab.connectMesh();
    const remote = rawOf(newKey());
    const link: MeshForwarder = { name: 'link', forward: () => true };
    lab.server.addForwarder(remote, link);
    mesh.write(encodeFrame(FrameType.ForwardPacket, remote, receiver.raw, Buffer.from('hi')));
    await receiver.next(FrameType.RecvPacket, recvFrom(remote, Buffer.from('hi')));
    lab.server.removeForwarderEverywhere(link);
    await receiver.next(FrameType.PeerGone, gone(remote, PeerGoneReason.Disconnected));
  });

  test('a key that leaves locally while still connected elsewhere in the region: its local receivers learn when it leaves the region', async (t) => {
    const lab = new Lab(t);
    const roaming = newKey();
    const receiver = await lab.connect();
    const link: MeshForwarder = { name: 'link', forward: () => true };
    lab.server.addForwarder(rawOf(roaming), link); // also connected to another server of the region
    const here = await lab.connect({ key: roaming });
    here.send(receiver.raw, Buffer.from('from here'));
    await receiver.next(FrameType.RecvPacket);
    here.close();
    await until('unregistered', () => (lab.server.isConnected(roaming.publicKey) ? undefined : true));
    await receiver.sync();
    await settle();
    assert.equal(receiver.count(FrameType.PeerGone), 0, 'still in the region');
    lab.server.removeForwarder(rawOf(roaming), link);
    await receiver.next(FrameType.PeerGone, gone(rawOf(roaming), PeerGoneReason.Disconnected));
  });

  test('a key that stops being reported elsewhere while still connected here: its mesh receivers learn when it leaves', async (t) => {
    const lab = new Lab(t);
    const roaming = newKey();
    const receiver = await lab.connect();
    const mesh = await lab.connectMesh();
    const link: MeshForwarder = { name: 'link', forward: () => true };
    lab.server.addForwarder(rawOf(roaming), link);
    mesh.write(encodeFrame(FrameType.ForwardPacket, rawOf(roaming), receiver.raw, Buffer.from('via mesh')));
    await receiver.next(FrameType.RecvPacket);
    const here = await lab.connect({ key: roaming });
    lab.server.removeForwarder(rawOf(roaming), link);
    await receiver.sync();
    await settle();
    assert.equal(receiver.count(FrameType.PeerGone), 0, 'still connected here');
    here.close();
    await receiver.next(FrameType.PeerGone, gone(rawOf(roaming), PeerGoneReason.Disconnected));
  });
});

// Over real loopback HTTP: DerpUpgradeHandler, DerpClient, MeshLink.

async function serve(t: TestContext, server: DerpServer): Promise<string> {
  const handler = new DerpUpgradeHandler(server);
  const http: Server = createServer((_req, res) => {
    res.statusCode = 404;
    res.end();
  });
  http.on('upgrade', (req, socket, head) => {
    if (!handler.handleUpgrade(req, socket, head)) socket.destroy();
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    handler.close();
    server.close();
    http.closeAllConnections();
    http.close();
  });
  const address = http.address();
  assert.ok(address !== null && typeof address === 'object');
  return `http://127.0.0.1:${address.port}/derp`;
}

interface Captured {
  packets: Array<{ src: Buffer; data: Buffer }>;
  gone: Array<{ key: Buffer; reason: number }>;
}

async function dial(
  t: TestContext,
  url: string,
  key = newKey(),
  websocket = false,
): Promise<[DerpClient, Captured]> {
  const client = await DerpClient.connect(url, key, { timeoutMs: WAIT_MS, websocket });
  t.after(() => client.close());
  const got: Captured = { packets: [], gone: [] };
  client.events = {
    packet: (src, data) => got.packets.push({ src: Buffer.from(src), data: Buffer.from(data) }),
    peerGone: (k, reason) => got.gone.push({ key: Buffer.from(k), reason }),
  };
  return [client, got];
}

/** Writes `request` on a fresh TCP connection and collects what comes back for `ms`. */
async function rawExchange(url: string, request: Buffer, ms = 200): Promise<Buffer> {
  const { port } = new URL(url);
  const socket = tcpConnect(Number(port), '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.write(request);
  await sleep(ms);
  socket.destroy();
  return Buffer.concat(chunks);
}

describe('DERP over loopback HTTP', { timeout: 30_000 }, () => {
  test('DerpClient through DerpUpgradeHandler: relay both ways, ping, PeerGone', async (t) => {
    const server = new DerpServer({ privateKey: newKey() });
    const url = await serve(t, server);
    const keyA = newKey();
    const keyB = newKey();
    const [a, gotA] = await dial(t, url, keyA);
    const [b, gotB] = await dial(t, url, keyB);
    assert.deepEqual(a.serverKey, NodePublic.toRaw(server.publicKey));
    a.send(keyB.publicKey, Buffer.from('over tcp'));
    await until('B receives', () => gotB.packets[0]);
    assert.deepEqual(gotB.packets[0], { src: rawOf(keyA), data: Buffer.from('over tcp') });
    b.send(rawOf(keyA), Buffer.alloc(MAX_PACKET_SIZE, 1));
    await until('A receives', () => gotA.packets[0]);
    assert.deepEqual(gotA.packets[0]?.data, Buffer.alloc(MAX_PACKET_SIZE, 1));
    assert.ok((await a.ping(WAIT_MS)) >= 0);
    a.close();
    await until('B hears A is gone', () => gotB.gone[0]);
    assert.deepEqual(gotB.gone[0], { key: rawOf(keyA), reason: PeerGoneReason.Disconnected });
    assert.equal(b.closed, false);
  });

  test('the upgrade answers 101 with the Derp headers, then ServerKey at once', async (t) => {
    const server = new DerpServer({ privateKey: newKey() });
    const url = await serve(t, server);
    const reply = await rawExchange(
      url,
      Buffer.from('GET /derp HTTP/1.1\r\nHost: derp.example\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n'),
    );
    const end = reply.indexOf('\r\n\r\n');
    assert.ok(end > 0);
    const head = reply.toString('latin1', 0, end);
    assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(head, /\r\nUpgrade: DERP\r\n/i);
    assert.match(head, /\r\nDerp-Version: 2\r\n/i);
    assert.ok(head.includes(`Derp-Public-Key: ${server.publicKey.slice('nodekey:'.length)}`));
    const frames = reply.subarray(end + 4);
    assert.equal(frames.length, 45);
    assert.deepEqual(frames.subarray(0, 13), Buffer.concat([Buffer.from([1, 0, 0, 0, 40]), MAGIC]));
    assert.deepEqual(frames.subarray(13), NodePublic.toRaw(server.publicKey));
  });

  test('fast start: no HTTP response at all, and a ClientInfo in the upgrade head is used', async (t) => {
    const serverKey = newKey();
    const server = new DerpServer({ privateKey: serverKey });
    const url = await serve(t, server);
    const client = newKey();
    const reply = await rawExchange(
      url,
      Buffer.concat([
        Buffer.from(
          'GET /derp HTTP/1.1\r\nHost: derp.example\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Fast-Start: 1\r\n\r\n',
        ),
        clientInfoFrame(rawOf(serverKey), client),
        encodeFrame(FrameType.Ping, Buffer.from('fastfast')),
      ]),
    );
    const frames: Frame[] = [];
    new FrameReader(
      () => MAX_FRAME_LENGTH,
      (type, f) => frames.push({ type, payload: Buffer.from(f.subarray(5)) }),
    ).push(reply);
    assert.equal(reply[0], FrameType.ServerKey, 'the first byte is a frame, not "HTTP/1.1"');
    assert.deepEqual(
      frames.map((f) => f.type),
      [FrameType.ServerKey, FrameType.ServerInfo, FrameType.Pong],
    );
    assert.deepEqual(openServerInfo(frames[1]?.payload ?? Buffer.alloc(0), rawOf(serverKey), client), {
      version: 2,
    });
    assert.deepEqual(frames[2]?.payload, Buffer.from('fastfast'));
  });

  test('an Upgrade other than DERP or websocket gets 426; other paths are left alone', async (t) => {
    const server = new DerpServer({ privateKey: newKey() });
    const url = await serve(t, server);
    const refused = await rawExchange(
      url,
      Buffer.from('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n'),
    );
    assert.match(refused.toString('latin1'), /^HTTP\/1\.1 426 /);
    assert.equal(server.stats.accepted, 0);
    const other = await rawExchange(
      url,
      Buffer.from('GET /derpx HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n'),
    );
    assert.equal(other.length, 0, 'not ours: the socket is just closed');
    // The lower-case form a client may send.
    const lower = await rawExchange(
      url,
      Buffer.from('GET /derp?x=1 HTTP/1.1\r\nHost: x\r\nupgrade: derp\r\nconnection: upgrade\r\n\r\n'),
    );
    assert.match(lower.toString('latin1'), /^HTTP\/1\.1 101 /);
  });

  test('WebSocket carrier with subprotocol "derp" relays to a raw-upgrade client', async (t) => {
    const server = new DerpServer({ privateKey: newKey() });
    const url = await serve(t, server);
    const keyWs = newKey();
    const keyRaw = newKey();
    const [ws, gotWs] = await dial(t, url, keyWs, true);
    const [raw, gotRaw] = await dial(t, url, keyRaw);
    ws.send(keyRaw.publicKey, Buffer.alloc(20_000, 5));
    await until('raw client receives', () => gotRaw.packets[0]);
    assert.deepEqual(gotRaw.packets[0], { src: rawOf(keyWs), data: Buffer.alloc(20_000, 5) });
    raw.send(keyWs.publicKey, Buffer.from('back'));
    await until('ws client receives', () => gotWs.packets[0]);
    assert.deepEqual(gotWs.packets[0]?.data, Buffer.from('back'));
    assert.ok((await ws.ping(WAIT_MS)) >= 0);
  });

  test('a refused client: DerpClient.connect rejects', async (t) => {
    const server = new DerpServer({ privateKey: newKey(), admit: () => false });
    const url = await serve(t, server);
    await assert.rejects(DerpClient.connect(url, newKey(), { timeoutMs: WAIT_MS }), /closed the connection/);
    assert.equal(server.stats.refused, 1);
  });

  test('two servers meshed with MeshLink forward packets both ways, and PeerGone crosses the mesh', async (t) => {
    const meshKeyHex = randomBytes(32).toString('hex');
    const meshKey = Buffer.from(meshKeyHex, 'hex');
    const key1 = newKey();
    const key2 = newKey();
    const s1 = new DerpServer({ privateKey: key1, meshKey, admit: () => true });
    const s2 = new DerpServer({ privateKey: key2, meshKey, admit: () => true });
    const url1 = await serve(t, s1);
    const url2 = await serve(t, s2);
    const keyA = newKey();
    const keyB = newKey();
    const [a, gotA] = await dial(t, url1, keyA);
    const [b, gotB] = await dial(t, url2, keyB);
    const link1 = new MeshLink({ url: url2, privateKey: key1, meshKeyHex, server: s1, retryMs: 50 });
    const link2 = new MeshLink({ url: url1, privateKey: key2, meshKeyHex, server: s2, retryMs: 50 });
    t.after(() => {
      link1.close();
      link2.close();
    });
    link1.start();
    link2.start();
    await until('both links up', () => (link1.connected && link2.connected ? true : undefined));

    // Until s1 has learned where B is, packets for B are dropped: keep sending until one arrives.
    await until('A → B across the mesh', () => {
      if (gotB.packets.length > 0) return true;
      a.send(keyB.publicKey, Buffer.from('a to b'));
      return undefined;
    });
    assert.deepEqual(gotB.packets[0], { src: rawOf(keyA), data: Buffer.from('a to b') });
    assert.ok(s1.stats.packetsForwarded >= 1);
    await until('B → A across the mesh', () => {
      if (gotA.packets.length > 0) return true;
      b.send(keyA.publicKey, Buffer.from('b to a'));
      return undefined;
    });
    assert.deepEqual(gotA.packets[0], { src: rawOf(keyB), data: Buffer.from('b to a') });

    // A leaves the region: s1's watcher (link2) tells s2, which tells B, who received from A.
    a.close();
    await until('B hears A is gone', () => gotB.gone.find((g) => g.key.equals(rawOf(keyA))));
    assert.equal(gotB.gone.find((g) => g.key.equals(rawOf(keyA)))?.reason, PeerGoneReason.Disconnected);
  });

  test('a MeshLink whose URL is its own server gives up without retrying', async (t) => {
    const meshKeyHex = randomBytes(32).toString('hex');
    const key = newKey();
    const server = new DerpServer({ privateKey: key, meshKey: Buffer.from(meshKeyHex, 'hex') });
    const url = await serve(t, server);
    const link = new MeshLink({ url, privateKey: key, meshKeyHex, server, retryMs: 20 });
    t.after(() => link.close());
    link.start();
    await until('self-connect seen and dropped', () =>
      server.stats.accepted === 1 && server.stats.connections === 0 ? true : undefined,
    );
    await sleep(100);
    assert.equal(server.stats.accepted, 1, 'no retry');
    assert.equal(link.connected, false);
  });

  test('a MeshLink reconnects after the peer drops it and forwarding resumes', async (t) => {
    const meshKeyHex = randomBytes(32).toString('hex');
    const meshKey = Buffer.from(meshKeyHex, 'hex');
    const key1 = newKey();
    const s1 = new DerpServer({ privateKey: key1, meshKey });
    const s2 = new DerpServer({ privateKey: newKey(), meshKey });
    const url1 = await serve(t, s1);
    const url2 = await serve(t, s2);
    const keyA = newKey();
    const keyB = newKey();
    const [a] = await dial(t, url1, keyA);
    const [, gotB] = await dial(t, url2, keyB);
    const link = new MeshLink({ url: url2, privateKey: key1, meshKeyHex, server: s1, retryMs: 50 });
    t.after(() => link.close());
    link.start();
    await until('A → B', () => {
      if (gotB.packets.length > 0) return true;
      a.send(keyB.publicKey, Buffer.from('1'));
      return undefined;
    });
    s2.closeClient(key1.publicKey, 'test drops the mesh link');
    await until('link down', () => (link.connected ? undefined : true));
    await until('link back', () => (link.connected ? true : undefined));
    const before = gotB.packets.length;
    await until('A → B again', () => {
      if (gotB.packets.length > before) return true;
      a.send(keyB.publicKey, Buffer.from('2'));
      return undefined;
    });
    assert.equal(s2.stats.accepted, 3, 'B, the link, the link again');
  });
});
