/**
 * Bad input on the control plane gets a clear error and changes nothing: every layer of the ts2021
 * stack is fed something broken — raw bytes instead of HTTP, a bad upgrade, a bad Noise initiation,
 * bad transport records, bad HTTP/2, bad request bodies, a client that is too old — and after each
 * case the server is still up: a fresh client registers and /health answers 200. Refusals at the
 * upgrade are logged as `control connection refused` with the reason.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';
import WebSocket from 'ws';
import { parseConfig } from '../../src/config/index.ts';
import { MAX_CONTROL_BODY_BYTES } from '../../src/control/body.ts';
import { UPGRADE_PROTOCOL } from '../../src/control/plane.ts';
import type { User } from '../../src/db/records.ts';
import { initiate, RecordSealer } from '../../src/noise/index.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { type RunningServer, startServer } from '../../src/server/server.ts';
import { MIN_SUPPORTED_CAPABILITY_VERSION, unsupportedVersionMessage } from '../../src/tailcfg/index.ts';
import { MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import {
  type ControlConnection,
  connectControl,
  DEFAULT_CAP_VERSION,
  fetchServerKey,
} from '../harness/control-client.ts';

const CAP = DEFAULT_CAP_VERSION;
const HOUR = 3_600_000;
const WAIT_MS = 3_000;
const BAD_HANDSHAKE_REASON = 'X-Tailscale-Handshake must be the base64 of a 101-byte Noise initiation';
/** The HTTP/2 client preface, the first thing a real client sends inside Noise. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

type LogEntry = Record<string, unknown> & { level: number; msg: string };

let dataDir: string;
let running: RunningServer;
let alice: User;
let reusableKey: string;
const logs: LogEntry[] = [];
const connections: ControlConnection[] = [];
let host: string;
let port: number;
let url: string;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'weft-malformed-'));
  const capture = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line));
      done();
    },
  });
  const config = parseConfig({
    listen_addr: '127.0.0.1:0',
    metrics_listen_addr: '',
    data_dir: dataDir,
    derp: { server: { stun_listen_addr: '127.0.0.1:0' } },
    log: { level: 'debug' },
  });
  running = await startServer(config, createLogger({ level: 'debug', format: 'json', destination: capture }));
  url = `http://${running.httpAddress}`;
  const address = new URL(url);
  host = address.hostname;
  port = Number(address.port);
  alice = await running.store.users.create({ name: 'alice' });
  reusableKey = (
    await running.store.preAuthKeys.create({
      userId: alice.id,
      reusable: true,
      ephemeral: false,
      tags: [],
      expiration: new Date(Date.now() + HOUR),
    })
  ).text;
});

after(async () => {
  await Promise.allSettled(connections.map((c) => c.close()));
  await running?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** Log lines written since the current test started. */
let logMark = 0;
beforeEach(() => {
  logMark = logs.length;
});

async function connect(options: Parameters<typeof connectControl>[1] = {}): Promise<ControlConnection> {
  const conn = await connectControl(url, options);
  connections.push(conn);
  return conn;
}

async function singleUseKey(): Promise<string> {
  const { text } = await running.store.preAuthKeys.create({
    userId: alice.id,
    reusable: false,
    ephemeral: false,
    tags: [],
    expiration: new Date(Date.now() + HOUR),
  });
  return text;
}

function registerBody(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Version: CAP,
    NodeKey: PrivateKey.generate(NodePublic).publicKey,
    Hostinfo: { Hostname: 'fresh', OS: 'linux' },
    Auth: { AuthKey: reusableKey },
    ...fields,
  };
}

/** The server still works: a brand-new machine registers and /health passes. */
async function assertServerHealthy(): Promise<void> {
  const conn = await connect();
  const response = await conn.request('POST', '/machine/register', registerBody());
  assert.equal(response.status, 200);
  const body = response.json();
  assert.equal(body.Error, undefined, body.Error);
  assert.equal(body.MachineAuthorized, true);
  await conn.close();
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'pass');
}

/** Runs `bad`, asserts it created no node, then that the server is still healthy. */
async function changesNothing(bad: () => Promise<void>): Promise<void> {
  const size = running.tailnet.size;
  await bad();
  assert.equal(running.tailnet.size, size, 'bad input created a node');
  await assertServerHealthy();
}

/** The first log entry since the test started that matches, waiting briefly for it. */
async function logged(match: (entry: LogEntry) => boolean, what: string): Promise<LogEntry> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const entry = logs.slice(logMark).find(match);
    if (entry !== undefined) return entry;
    assert.ok(
      Date.now() < deadline,
      `no log line for ${what}; got:\n${logs
        .slice(logMark)
        .map((l) => JSON.stringify(l))
        .join('\n')}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function refusalLogged(reason: string | RegExp): Promise<LogEntry> {
  return logged(
    (e) =>
      e.msg === 'control connection refused' &&
      e.level === 40 &&
      (typeof reason === 'string' ? e.reason === reason : reason.test(String(e.reason))),
    `the refusal "${reason}"`,
  );
}

// ---- raw sockets ----

/** A plain TCP connection that records everything it receives and when it closes. */
class RawSocket {
  readonly socket: net.Socket;
  data = Buffer.alloc(0);
  closed = false;
  error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor() {
    this.socket = net.connect({ host, port });
    this.socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.#wake?.();
    });
    this.socket.on('error', (err) => {
      this.error = err;
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake?.();
    });
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  /** Waits until `ready()` holds; fails after `timeoutMs`. */
  async until(ready: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      assert.ok(left > 0, `${what}: not within ${timeoutMs} ms (received ${this.data.length} bytes)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** The server must close the connection. */
  async closedByServer(what: string): Promise<void> {
    await this.until(() => this.closed, `the server closes the connection after ${what}`);
  }

  /** Sends `request`, waits for the server to answer and close, and parses the HTTP response. */
  async exchange(request: string | Buffer): Promise<{ status: number; head: string; body: string }> {
    this.write(request);
    await this.closedByServer('its answer');
    const text = this.data.toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    assert.ok(end > 0, `not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1]);
    return { status, head: text.slice(0, end), body: text.slice(end + 4) };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function upgradeRequest(headers: Record<string, string>): string {
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return `POST /ts2021 HTTP/1.1\r\nHost: ${host}:${port}\r\n${lines.join('')}Content-Length: 0\r\n\r\n`;
}

function controlUpgrade(handshake?: string): string {
  const headers: Record<string, string> = { Upgrade: UPGRADE_PROTOCOL, Connection: 'upgrade' };
  if (handshake !== undefined) headers['X-Tailscale-Handshake'] = handshake;
  return upgradeRequest(headers);
}

function initiation(serverKey: MachinePublic, version = CAP) {
  return initiate({
    version,
    clientStaticPrivate: PrivateKey.generate(MachinePublic).raw(),
    serverStaticPublic: MachinePublic.toRaw(serverKey),
  });
}

/** A socket past a good upgrade and Noise handshake, with the client's sending keys. */
async function handshaken(): Promise<{ raw: RawSocket; sealer: RecordSealer }> {
  const init = initiation(await fetchServerKey(url));
  const raw = new RawSocket();
  raw.write(controlUpgrade(init.message.toString('base64')));
  const headEnd = () => raw.data.indexOf('\r\n\r\n');
  await raw.until(
    () => headEnd() >= 0 && raw.data.length >= headEnd() + 4 + 51,
    'the 101 and handshake reply',
  );
  const head = raw.data.subarray(0, headEnd()).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 101 /);
  const reply = raw.data.subarray(headEnd() + 4, headEnd() + 4 + 51);
  const { keys } = init.finish(reply);
  return { raw, sealer: new RecordSealer(keys.send) };
}

/** The server logged (as a warning) why it dropped a connection after the handshake. */
function closeLogged(msg: string, reason: RegExp): Promise<LogEntry> {
  return logged(
    (e) => e.level === 40 && e.msg === msg && reason.test(String(e.reason)),
    `"${msg}" with a reason matching ${reason}`,
  );
}

const BAD_RECORD = 'control connection closed: bad Noise record';

/** Exactly one warning since the test started: a bad record is reported once, not again by HTTP/2. */
function assertOneWarning(): void {
  const warnings = logs.slice(logMark).filter((e) => e.level >= 40);
  assert.deepEqual(
    warnings.map((e) => e.msg),
    [BAD_RECORD],
    JSON.stringify(warnings),
  );
}

describe('the HTTP upgrade', () => {
  test('garbage instead of HTTP is a 400', async () => {
    await changesNothing(async () => {
      const raw = new RawSocket();
      const response = await raw.exchange(
        Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n', 'latin1'),
      );
      assert.equal(response.status, 400);
    });
  });

  test('POST /ts2021 without Upgrade is refused with a clear error', async () => {
    await changesNothing(async () => {
      const raw = new RawSocket();
      raw.write(upgradeRequest({ Connection: 'close' }));
      await raw.closedByServer('a plain POST /ts2021');
      const text = raw.data.toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1]);
      assert.equal(status, 400, text);
      assert.match(text, /missing Upgrade header/);
    });
  });

  for (const [what, header] of [
    ['no X-Tailscale-Handshake', undefined],
    ['a non-base64 X-Tailscale-Handshake', `${'!'.repeat(135)}=`],
    ['an X-Tailscale-Handshake of the wrong length', Buffer.alloc(100, 1).toString('base64')],
    ['an empty X-Tailscale-Handshake', ''],
  ] as const) {
    test(`the control protocol with ${what} is a 400 with the reason`, async () => {
      await changesNothing(async () => {
        const response = await new RawSocket().exchange(controlUpgrade(header));
        assert.equal(response.status, 400);
        assert.equal(response.body, `${BAD_HANDSHAKE_REASON}\n`);
        await refusalLogged(BAD_HANDSHAKE_REASON);
      });
    });
  }

  test('an initiation encrypted to the wrong server key is refused', async () => {
    await changesNothing(async () => {
      const wrongKey = PrivateKey.generate(MachinePublic).publicKey;
      const init = initiation(wrongKey);
      const response = await new RawSocket().exchange(controlUpgrade(init.message.toString('base64')));
      assert.equal(response.status, 400);
      assert.match(response.body, /^Noise handshake failed: /);
      await refusalLogged(/^Noise handshake failed: /);
    });
  });

  test('an unknown Upgrade protocol is a 400 naming it', async () => {
    await changesNothing(async () => {
      const response = await new RawSocket().exchange(
        upgradeRequest({ Upgrade: 'h2c', Connection: 'upgrade', 'X-Tailscale-Handshake': 'x' }),
      );
      assert.equal(response.status, 400);
      assert.equal(response.body, 'unknown protocol "h2c"\n');
      await refusalLogged('unknown protocol "h2c"');
    });
  });

  test('a WebSocket with a bad handshake or the wrong subprotocol is closed', async () => {
    await changesNothing(async () => {
      const bad = new WebSocket(`ws://${host}:${port}/ts2021?X-Tailscale-Handshake=abc`, UPGRADE_PROTOCOL);
      bad.on('error', () => undefined);
      await new Promise((resolve) => bad.once('close', resolve));
      await refusalLogged(BAD_HANDSHAKE_REASON);

      const wrong = new WebSocket(`ws://${host}:${port}/ts2021?X-Tailscale-Handshake=abc`, 'chat');
      wrong.on('error', () => undefined);
      const [code, reason] = (await new Promise((resolve) =>
        wrong.once('close', (...args) => resolve(args)),
      )) as [number, Buffer];
      assert.equal(code, 1008);
      assert.equal(reason.toString(), `subprotocol must be ${UPGRADE_PROTOCOL}`);
    });
  });

  test('a client below the minimum version gets a handshake error naming the minimum', async () => {
    await changesNothing(async () => {
      await assert.rejects(
        connectControl(url, { capVersion: 100 }),
        (err: Error) => err.message === `server error: ${JSON.stringify(unsupportedVersionMessage(100))}`,
      );
      assert.match(
        unsupportedVersionMessage(100),
        new RegExp(`capability version ${MIN_SUPPORTED_CAPABILITY_VERSION}\\)`),
      );
      const entry = await logged(
        (e) => e.level === 40 && e.msg === 'control connection refused: client too old',
        'the too-old refusal',
      );
      assert.equal(entry.cap, 100);
    });
  });
});

describe('Noise transport records after a good handshake', () => {
  test('a record announcing more than 4096 bytes closes the connection', async () => {
    await changesNothing(async () => {
      const { raw } = await handshaken();
      raw.write(Buffer.from([0x04, 0x10, 0x00]));
      await raw.closedByServer('an oversize record header');
      await closeLogged(BAD_RECORD, /^transport record announces 4099 bytes, limit is 4096$/);
    });
    assertOneWarning();
  });

  test('a record of another type closes the connection', async () => {
    await changesNothing(async () => {
      const { raw, sealer } = await handshaken();
      const record = sealer.seal(H2_PREFACE);
      record[0] = 0x05;
      raw.write(record);
      await raw.closedByServer('a type-5 record');
      await closeLogged(BAD_RECORD, /^transport message has type 5, want 4$/);
    });
    assertOneWarning();
  });

  test('a record that fails authentication closes the connection', async () => {
    await changesNothing(async () => {
      const { raw, sealer } = await handshaken();
      const record = sealer.seal(H2_PREFACE);
      record[10] = (record[10] ?? 0) ^ 0x01;
      raw.write(record);
      await raw.closedByServer('a tampered record');
      await closeLogged(BAD_RECORD, /^transport record 0 failed authentication$/);
    });
    assertOneWarning();
  });

  test('garbage instead of the HTTP/2 preface closes the connection', async () => {
    await changesNothing(async () => {
      const { raw, sealer } = await handshaken();
      raw.write(sealer.seal(Buffer.from('GET / HTTP/1.1\r\nHost: weft\r\n\r\n')));
      await raw.closedByServer('an HTTP/1.1 request inside Noise');
      await closeLogged('control connection closed: HTTP/2 error', /bad client magic/);
    });
  });
});

describe('connections that vanish', () => {
  test('dropping a connection with requests in flight does not crash the server', async () => {
    // Node's HTTP/2-over-JS-stream asserts (an uncaught ERR_INTERNAL_ASSERTION) when open streams are
    // reset into a write still in flight; a client dropping its connection must never trigger that.
    const crashes: Error[] = [];
    const monitor = (err: Error) => crashes.push(err);
    process.on('uncaughtExceptionMonitor', monitor);
    try {
      for (let i = 0; i < 30; i++) {
        const conn = await connect();
        const open = conn.session.request({ ':method': 'POST', ':path': '/machine/register' });
        open.on('error', () => undefined);
        open.write('{');
        conn.request('POST', '/machine/nope', {}).catch(() => undefined);
        await new Promise((resolve) => setImmediate(resolve));
        await conn.close();
      }
      // The same with a registered node's long poll open.
      const conn = await connect();
      const nodeKey = PrivateKey.generate(NodePublic).publicKey;
      await conn.request('POST', '/machine/register', registerBody({ NodeKey: nodeKey }));
      const poll = await conn.openMapStream({ Version: CAP, NodeKey: nodeKey, Stream: true });
      await poll.next(WAIT_MS);
      conn.request('POST', '/machine/map', { Version: CAP, NodeKey: nodeKey }).catch(() => undefined);
      await conn.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      await assertServerHealthy();
    } finally {
      process.off('uncaughtExceptionMonitor', monitor);
    }
    assert.deepEqual(crashes, []);
  });
});

describe('requests over HTTP/2', () => {
  let conn: ControlConnection;
  let pollStillOpen: () => boolean;

  before(async () => {
    // One connection carries a registered node's long poll through every bad request below.
    conn = await connect();
    const nodeKey = PrivateKey.generate(NodePublic).publicKey;
    const registered = await conn.request('POST', '/machine/register', registerBody({ NodeKey: nodeKey }));
    assert.equal(registered.json().MachineAuthorized, true);
    const poll = await conn.openMapStream({ Version: CAP, NodeKey: nodeKey, Stream: true, Compress: 'zstd' });
    await poll.next(WAIT_MS);
    pollStillOpen = () => !poll.stream.closed && !poll.done;
  });

  /** Another request on the same connection still works, and the long poll is still open. */
  async function connectionStillServes(): Promise<void> {
    const response = await conn.request('POST', '/machine/register', registerBody());
    assert.equal(response.status, 200);
    assert.equal(response.json().MachineAuthorized, true);
    assert.ok(pollStillOpen(), 'the long poll on the same connection ended');
  }

  test('a body over 1 MiB is a 413 and registers nothing', async () => {
    await changesNothing(async () => {
      const key = await singleUseKey();
      const padding = 'x'.repeat(MAX_CONTROL_BODY_BYTES);
      const body = registerBody({ Auth: { AuthKey: key }, Hostinfo: { Hostname: 'big', Padding: padding } });
      const response = await conn.request('POST', '/machine/register', Buffer.from(JSON.stringify(body)));
      assert.equal(response.status, 413);
      assert.match(response.body.toString(), /over the 1048576-byte limit/);
      await connectionStillServes();
      // The key was not used up by the refused request.
      const retry = await conn.request('POST', '/machine/register', registerBody({ Auth: { AuthKey: key } }));
      assert.equal(retry.json().MachineAuthorized, true);
    });
  });

  test('a body over 1 MiB without a content-length is a 413 as well', async () => {
    await changesNothing(async () => {
      const stream = conn.session.request({ ':method': 'POST', ':path': '/machine/register' });
      const status = new Promise<number>((resolve, reject) => {
        stream.once('response', (headers) => resolve(Number(headers[':status'])));
        stream.once('error', reject);
      });
      stream.on('error', () => undefined);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let sent = 0; sent <= MAX_CONTROL_BODY_BYTES; sent += chunk.length) stream.write(chunk);
      assert.equal(await status, 413);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await connectionStillServes();
    });
  });

  test('invalid JSON is a 400', async () => {
    await changesNothing(async () => {
      const response = await conn.request('POST', '/machine/register', Buffer.from('{"Version": 142,'));
      assert.equal(response.status, 400);
      assert.match(response.body.toString(), /^request body is not valid JSON: /);
      await connectionStillServes();
    });
  });

  test('wrong field types are a 400 naming the field', async () => {
    await changesNothing(async () => {
      const nodeKey = await conn.request('POST', '/machine/register', registerBody({ NodeKey: 5 }));
      assert.equal(nodeKey.status, 400);
      assert.equal(nodeKey.body.toString(), 'NodeKey: expected a string, got the number 5\n');

      const hostname = await conn.request(
        'POST',
        '/machine/register',
        registerBody({ Hostinfo: { Hostname: 7 } }),
      );
      assert.equal(hostname.status, 400);
      assert.equal(hostname.body.toString(), 'Hostinfo.Hostname: expected a string, got the number 7\n');

      const map = await conn.request('POST', '/machine/map', { Version: CAP, Stream: 'yes' });
      assert.equal(map.status, 400);
      assert.match(map.body.toString(), /^Stream: /);
      await connectionStillServes();
    });
  });

  test('an unknown path is a 404', async () => {
    await changesNothing(async () => {
      const unknown = await conn.request('POST', '/machine/nope', {});
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.toString(), 'POST /machine/nope is not served by weft\n');
      const wrongMethod = await conn.request('GET', '/machine/register');
      assert.equal(wrongMethod.status, 404);
      await connectionStillServes();
    });
  });
});

describe('inputs that used to be able to stop the process', () => {
  /** Runs `attempt`, failing if anything reached the process as an uncaught exception meanwhile. */
  async function noCrash(attempt: () => Promise<void>): Promise<void> {
    const crashes: Error[] = [];
    const monitor = (err: Error) => crashes.push(err);
    process.on('uncaughtExceptionMonitor', monitor);
    try {
      await attempt();
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('uncaughtExceptionMonitor', monitor);
    }
    assert.deepEqual(crashes, []);
    await assertServerHealthy();
  }

  test('an upgrade request whose target is not a URL is answered, not thrown', async () => {
    await noCrash(async () => {
      const raw = new RawSocket();
      const response = await raw.exchange(
        `GET // HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n`,
      );
      assert.equal(response.status, 404);
    });
  });

  test('refused upgrades whose clients reset the connection at once', async () => {
    await noCrash(async () => {
      for (let i = 0; i < 50; i++) {
        const raw = new RawSocket();
        raw.write(controlUpgrade('not-base64'));
        raw.socket.resetAndDestroy();
      }
    });
  });

  test('a protocol error on a WebSocket with the wrong subprotocol', async () => {
    await noCrash(async () => {
      const ws = new WebSocket(`ws://${host}:${port}/ts2021?X-Tailscale-Handshake=abc`, 'chat');
      ws.on('error', () => undefined);
      await new Promise((resolve) => ws.once('open', resolve));
      // An unmasked client frame is a protocol violation the server's ws must survive.
      (ws as unknown as { _socket: net.Socket })._socket.write(Buffer.from([0x82, 0x01, 0x00]));
      await new Promise((resolve) => ws.once('close', resolve));
    });
  });

  test('bodies trickled over many streams stop at the per-connection budget', async () => {
    await changesNothing(async () => {
      const conn = await connect();
      const chunk = Buffer.alloc(512 * 1024, 0x20);
      const statuses: Array<Promise<number>> = [];
      // 12 streams × 512 KiB = 6 MiB of unfinished bodies, more than one connection may hold.
      for (let i = 0; i < 12; i++) {
        const stream = conn.session.request({ ':method': 'POST', ':path': '/machine/register' });
        stream.on('error', () => undefined);
        statuses.push(
          new Promise((resolve) => {
            stream.once('response', (headers) => resolve(Number(headers[':status'])));
            stream.once('close', () => resolve(0));
          }),
        );
        stream.write(chunk);
      }
      const refused = await Promise.race([
        Promise.any(statuses.map((s) => s.then((code) => (code === 503 ? code : Promise.reject())))),
        new Promise((resolve) => setTimeout(() => resolve('none'), WAIT_MS)),
      ]);
      assert.equal(refused, 503, 'a stream past the budget is refused');
      await conn.close();
    });
  });

  test('a logout from a node weft no longer knows registers nothing, even with an auth key', async () => {
    await changesNothing(async () => {
      const conn = await connect();
      const response = await conn.request(
        'POST',
        '/machine/register',
        registerBody({ Expiry: '1970-01-01T00:02:03Z', Auth: { AuthKey: await singleUseKey() } }),
      );
      assert.equal(response.status, 200);
      assert.equal(response.json().NodeKeyExpired, true);
      await conn.close();
    });
  });
});
