/**
 * Interactive login end to end, in process: a real weft (startServer on a temp SQLite data dir), the
 * fake ts2021 client for the device side, and the admin side through the REST API (over the admin
 * socket) and the real CLI (bin/weft).
 *
 *   register without a key  → {AuthURL: <server_url>/register/<id>} and a page there naming the command
 *   follow-up (Followup = AuthURL) long-polls until the login is completed / rejected / expired, and
 *   ends, leaving nothing behind, when the client goes away; when the server stops it gets no answer
 *   re-authentication of a known node (expired key, --force-reauth) keeps the node's identity
 *   admin mistakes (bad bodies, unknown user, unknown id) are catalogued errors and change nothing
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ApiClient, ApiError } from '../../src/api/client.ts';
import { parseConfig } from '../../src/config/index.ts';
import { SUPERSEDED_LOGIN_ERROR } from '../../src/control/register.ts';
import type { User } from '../../src/db/records.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { type RunningServer, type ServerTuning, startServer } from '../../src/server/server.ts';
import { DiscoPublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import type { CommandResult } from '../harness/child.ts';
import {
  type ControlConnection,
  connectControl,
  DEFAULT_CAP_VERSION,
  type MapStream,
} from '../harness/control-client.ts';
import { eventually } from '../harness/wait.ts';
import { runWeft } from '../harness/weft.ts';

// biome-ignore lint/suspicious/noExplicitAny: protocol JSON is read field by field
type Json = any;

const LOGIN_URL = /^http:\/\/127\.0\.0\.1:8080\/register\/(weft-login-[0-9a-f]{24})$/;
const WAIT = { timeoutMs: 5_000, intervalMs: 10 };
/** Long enough that a follow-up that answers early would be caught answering. */
const HOLD_MS = 400;

interface Weft {
  running: RunningServer;
  url: string;
  dataDir: string;
  api: ApiClient;
  alice: User;
  bob: User;
}

const servers: Weft[] = [];
const connections: ControlConnection[] = [];

async function startWeft(
  tuning: ServerTuning = {},
  policy?: string,
  node: Record<string, unknown> = {},
): Promise<Weft> {
  const dataDir = await mkdtemp(join(tmpdir(), 'weft-login-'));
  const config = parseConfig({
    listen_addr: '127.0.0.1:0',
    metrics_listen_addr: '',
    data_dir: dataDir,
    derp: { server: { enabled: false } },
    node,
  });
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  const log = createLogger({ level: 'warn', format: 'json', destination: discard });
  const running = await startServer(config, log, tuning);
  const alice = await running.store.users.create({ name: 'alice', email: 'alice@example.com' });
  const bob = await running.store.users.create({ name: 'bob' });
  if (policy !== undefined) await running.policy.set(policy, 'test');
  const weft: Weft = {
    running,
    url: `http://${running.httpAddress}`,
    dataDir,
    api: new ApiClient({ socketPath: running.socketPath }),
    alice,
    bob,
  };
  servers.push(weft);
  return weft;
}

after(async () => {
  await Promise.allSettled(connections.map((c) => c.close()));
  for (const weft of servers) {
    await weft.running.close();
    await rm(weft.dataDir, { recursive: true, force: true });
  }
});

/** A device: one Noise connection and a node key, registering like tailscaled does. */
class Device {
  readonly conn: ControlConnection;
  nodeKey = PrivateKey.generate(NodePublic);
  readonly discoKey = PrivateKey.generate(DiscoPublic);
  oldNodeKey: NodePublic | undefined;
  hostinfo: Json;

  private constructor(conn: ControlConnection, hostname: string) {
    this.conn = conn;
    this.hostinfo = { Hostname: hostname, OS: 'linux', IPNVersion: '1.96.0', BackendLogID: 'x' };
  }

  static async connect(weft: Weft, hostname: string): Promise<Device> {
    const conn = await connectControl(weft.url);
    connections.push(conn);
    return new Device(conn, hostname);
  }

  /** POST /machine/register; always HTTP 200, errors travel in `Error`. */
  async register(fields: Json = {}, timeoutMs?: number): Promise<Json> {
    const response = await this.conn.request(
      'POST',
      '/machine/register',
      {
        Version: DEFAULT_CAP_VERSION,
        NodeKey: this.nodeKey.publicKey,
        ...(this.oldNodeKey === undefined ? {} : { OldNodeKey: this.oldNodeKey }),
        Hostinfo: this.hostinfo,
        Followup: '',
        ...fields,
      },
      timeoutMs === undefined ? {} : { timeoutMs },
    );
    assert.equal(response.status, 200, `register: ${response.body.toString()}`);
    return response.json();
  }

  /** Starts a login and returns the AuthURL and its id. */
  async startLogin(): Promise<{ url: string; id: string }> {
    const response = await this.register();
    assert.deepEqual(Object.keys(response), ['AuthURL'], JSON.stringify(response));
    const match = LOGIN_URL.exec(response.AuthURL);
    assert.ok(match?.[1], `AuthURL ${response.AuthURL}`);
    return { url: response.AuthURL, id: match[1] };
  }

  /** The follow-up long poll, with a flag that says whether it has answered yet. */
  followUp(url: string): { answer: Promise<Json>; answered: () => boolean } {
    let done = false;
    const answer = this.register({ Followup: url }, 60_000).finally(() => {
      done = true;
    });
    answer.catch(() => {});
    return { answer, answered: () => done };
  }

  /** A streaming map request with its first (full) message. */
  async openMap(): Promise<{ stream: MapStream; first: Json }> {
    const stream = await this.conn.openMapStream({
      Version: DEFAULT_CAP_VERSION,
      NodeKey: this.nodeKey.publicKey,
      DiscoKey: this.discoKey.publicKey,
      Endpoints: ['192.0.2.1:41641'],
      Hostinfo: this.hostinfo,
      Compress: 'zstd',
      KeepAlive: true,
      Stream: true,
    });
    assert.equal(stream.status, 200);
    return { stream, first: (await stream.next(WAIT.timeoutMs)).message };
  }

  /** `tailscale up --force-reauth` / an expired key: a brand-new node key, the current one as OldNodeKey. */
  rotateKey(): void {
    this.oldNodeKey = this.nodeKey.publicKey;
    this.nodeKey = PrivateKey.generate(NodePublic);
  }
}

/** The page at the AuthURL, fetched from where the server really listens. */
async function loginPage(weft: Weft, id: string): Promise<Response> {
  return fetch(`${weft.url}/register/${id}`);
}

async function apiError(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  assert.fail('the call succeeded');
}

function cli(weft: Weft, args: string[]): Promise<CommandResult> {
  return runWeft(args, { WEFT_DATA_DIR: weft.dataDir });
}

function ok(result: CommandResult): string {
  assert.equal(result.code, 0, `exit ${result.code}; stderr: ${result.stderr}`);
  return result.stdout;
}

function refused(result: CommandResult, message: RegExp): void {
  assert.equal(result.code, 1, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
  assert.equal(result.stdout, '');
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0] ?? '', message);
}

describe('interactive login', () => {
  let weft: Weft;
  before(async () => {
    // Every test here starts logins from 127.0.0.1; the per-address limit is tested in rate-limits.test.ts.
    weft = await startWeft({ registerLimit: { burst: 1000, perSecond: 100 } });
  });

  test('no key: an AuthURL, a page that names the device and the command, and a pending listing', async () => {
    const device = await Device.connect(weft, 'laptop<script>alert(1)</script>');
    const { id } = await device.startLogin();

    const page = await loginPage(weft, id);
    assert.equal(page.status, 200);
    assert.match(String(page.headers.get('content-type')), /^text\/html; charset=utf-8/);
    assert.equal(page.headers.get('cache-control'), 'no-store');
    const html = await page.text();
    assert.ok(html.includes(`weft nodes register --user &lt;USER&gt; --key ${id}`), html);
    assert.ok(html.includes('laptop&lt;script&gt;alert(1)&lt;/script&gt;'), html);
    assert.ok(!html.includes('<script>'), 'the hostname is escaped');
    assert.ok(html.includes(device.conn.machineKey.publicKey.slice(0, 13)), 'short machine key shown');

    const pending = await weft.api.listPendingLogins();
    const mine = pending.find((login) => login.id === id);
    assert.ok(mine);
    assert.deepEqual(Object.keys(mine).sort(), [
      'createdAt',
      'expiresAt',
      'hostname',
      'id',
      'machineKey',
      'nodeKey',
      'os',
    ]);
    assert.equal(mine.hostname, 'laptop<script>alert(1)</script>');
    assert.equal(mine.machineKey, device.conn.machineKey.publicKey);
    assert.equal(mine.nodeKey, device.nodeKey.publicKey);
    assert.equal(Date.parse(mine.expiresAt) - Date.parse(mine.createdAt), 15 * 60_000);

    const unknown = await loginPage(weft, `weft-login-${'0'.repeat(24)}`);
    assert.equal(unknown.status, 404);
    assert.match(await unknown.text(), /not valid/);
    assert.equal((await loginPage(weft, '..%2Fapi')).status, 404);
  });

  test('the follow-up waits until the API completes the login, then the node is the user’s', async () => {
    const device = await Device.connect(weft, 'desk');
    const { url, id } = await device.startLogin();
    const followUp = device.followUp(url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount > 0 ? true : undefined),
      WAIT,
    );
    await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
    assert.equal(followUp.answered(), false, 'the follow-up answered before the login was completed');

    const size = weft.running.tailnet.size;
    const node = await weft.api.completeLogin(id, 'alice');
    assert.equal(node.user?.name, 'alice');
    assert.equal(node.registerMethod, 'cli');
    assert.equal(node.hostname, 'desk');
    assert.equal(node.nodeKey, device.nodeKey.publicKey);

    const answer = await followUp.answer;
    assert.equal(answer.Error, undefined, answer.Error);
    assert.equal(answer.MachineAuthorized, true);
    assert.equal(answer.NodeKeyExpired, false);
    assert.equal(answer.AuthURL, undefined);
    assert.equal(answer.User.ID, weft.alice.id);
    assert.equal(answer.Login.LoginName, 'alice@example.com');
    assert.equal(weft.running.tailnet.size, size + 1);
    assert.equal(weft.running.logins.get(id), undefined, 'a completed login is gone');
    assert.equal(weft.running.logins.waiterCount, 0);

    // The device is a node now: its next register is a plain refresh, and the page is gone.
    const refresh = await device.register();
    assert.equal(refresh.MachineAuthorized, true);
    assert.equal((await loginPage(weft, id)).status, 404);
    await assert.rejects(weft.api.completeLogin(id, 'alice'), /no pending login/);
  });

  test('a follow-up on an id that is not pending gets a fresh AuthURL at once', async () => {
    const device = await Device.connect(weft, 'fresh');
    const { url } = await device.startLogin();
    const elsewhere = await Device.connect(weft, 'thief');
    // Another machine cannot wait on (or be told about) this device's login.
    const stranger = await elsewhere.register({ Followup: url });
    assert.match(stranger.AuthURL, LOGIN_URL);
    assert.notEqual(stranger.AuthURL, url);
    for (const bogus of [
      `http://127.0.0.1:8080/register/weft-login-${'0'.repeat(24)}`,
      'http://elsewhere.example/register/weft-login-000000000000000000000000',
      'not a url',
    ]) {
      const answer = await device.register({ Followup: bogus });
      assert.match(answer.AuthURL, LOGIN_URL, bogus);
    }
  });

  test('a rejected login tells the waiting client; a device’s newer login replaces its older one', async () => {
    const device = await Device.connect(weft, 'rejected');
    const first = await device.startLogin();
    const second = await device.startLogin();
    assert.notEqual(first.id, second.id);
    assert.equal(weft.running.logins.get(first.id), undefined, 'the older login was replaced');
    assert.match((await device.register({ Followup: first.url })).AuthURL, LOGIN_URL);

    const third = await device.startLogin();
    const waiting = device.followUp(third.url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount > 0 ? true : undefined),
      WAIT,
    );
    const replacing = await device.startLogin();
    assert.deepEqual(await waiting.answer, { Error: SUPERSEDED_LOGIN_ERROR });

    const followUp = device.followUp(replacing.url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount > 0 ? true : undefined),
      WAIT,
    );
    await weft.api.rejectLogin(replacing.id);
    assert.deepEqual(await followUp.answer, { Error: 'an administrator rejected this login' });
    assert.equal(weft.running.tailnet.nodeByKey(device.nodeKey.publicKey), undefined);
  });

  test('a client that goes away mid-wait leaves no waiter behind; the login stays pending', async () => {
    const device = await Device.connect(weft, 'leaver');
    const { url, id } = await device.startLogin();
    // The stream is cancelled (RST_STREAM CANCEL) when the request times out on the client.
    await assert.rejects(device.register({ Followup: url }, 300), /no complete response/);
    await eventually(
      'the waiter is gone',
      () => (weft.running.logins.waiterCount === 0 ? true : undefined),
      WAIT,
    );

    const followUp = device.followUp(url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount === 1 ? true : undefined),
      WAIT,
    );
    await device.conn.close();
    await eventually(
      'the waiter is gone',
      () => (weft.running.logins.waiterCount === 0 ? true : undefined),
      WAIT,
    );
    await assert.rejects(followUp.answer);
    assert.ok(weft.running.logins.get(id), 'the login itself is still pending');
  });

  test('a known node whose key expired, or that forces re-auth, logs in again and keeps its identity', async () => {
    const device = await Device.connect(weft, 'returning');
    const login = await device.startLogin();
    const node = await weft.api.completeLogin(login.id, 'alice');
    const model = weft.running.tailnet.node(Number(node.id));
    assert.ok(model);
    await weft.running.tailnet.setExpiry(model.id, new Date(Date.now() - 1000));

    // The client learns its key is dead, makes a new one and names the old one.
    const dead = await device.register();
    assert.equal(dead.NodeKeyExpired, true);
    device.rotateKey();
    const again = await device.startLogin();
    const followUp = device.followUp(again.url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount > 0 ? true : undefined),
      WAIT,
    );
    const renewed = await weft.api.completeLogin(again.id, 'alice');
    const answer = await followUp.answer;
    assert.equal(answer.MachineAuthorized, true);
    assert.equal(answer.NodeKeyExpired, false);
    assert.equal(renewed.id, node.id);
    assert.deepEqual(renewed.ipAddresses, node.ipAddresses);
    assert.equal(renewed.givenName, node.givenName);
    assert.equal(renewed.nodeKey, device.nodeKey.publicKey);
    assert.equal(renewed.expired, false);
    assert.equal(renewed.expiry, null);

    // --force-reauth as another user: that user gets a node of its own (identity = machine + user).
    device.rotateKey();
    const other = await device.startLogin();
    const bobs = await weft.api.completeLogin(other.id, 'bob');
    assert.notEqual(bobs.id, node.id);
    assert.equal(bobs.user?.name, 'bob');
  });

  test('admin mistakes are catalogued errors and change nothing', async () => {
    const device = await Device.connect(weft, 'patient');
    const { id } = await device.startLogin();
    const size = weft.running.tailnet.size;
    const call = (method: string, path: string, body?: unknown) =>
      fetch(`${weft.url}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    // Over TCP without an API key: 401 before anything is looked at.
    const anonymous = await call('POST', '/api/v1/auth/register', { authId: id, user: 'alice' });
    assert.equal(anonymous.status, 401);

    const cases: Array<[Promise<unknown>, string, number]> = [
      [weft.api.completeLogin(id, 'nobody'), 'USER_NOT_FOUND', 404],
      [weft.api.completeLogin(`weft-login-${'1'.repeat(24)}`, 'alice'), 'LOGIN_NOT_FOUND', 404],
      [weft.api.completeLogin('', 'alice'), 'BAD_REQUEST', 400],
      [weft.api.rejectLogin(`weft-login-${'2'.repeat(24)}`), 'LOGIN_NOT_FOUND', 404],
    ];
    for (const [promise, code, status] of cases) {
      const err = await apiError(promise);
      assert.equal(err.code, code, err.message);
      assert.equal(err.status, status);
    }
    // Bodies the schema refuses: missing fields, extra fields, wrong types.
    for (const body of [
      {},
      { authId: id },
      { authId: id, user: 'alice', extra: 1 },
      { authId: 5, user: 'alice' },
    ]) {
      const err = await apiError(rawPost(weft, '/api/v1/auth/register', body));
      assert.equal(err.code, 'BAD_REQUEST', JSON.stringify(body));
    }
    const legacyMissingKey = await apiError(rawPost(weft, '/api/v1/node/register?user=alice', undefined));
    assert.equal(legacyMissingKey.code, 'BAD_REQUEST');
    assert.equal(weft.running.tailnet.size, size);
    assert.ok(weft.running.logins.get(id), 'the login is still pending');

    // Headscale's older path completes it.
    const node = await rawPost(weft, `/api/v1/node/register?user=bob&key=${id}`, undefined);
    assert.equal((node as Json).node.user.name, 'bob');
  });

  test('tags the user may not apply end the login with Tailscale’s words', async () => {
    const tagged = await startWeft(
      {},
      JSON.stringify({
        tagOwners: { 'tag:web': ['alice@example.com'] },
        acls: [{ action: 'accept', src: ['*'], dst: ['*:*'] }],
      }),
    );
    const device = await Device.connect(tagged, 'web');
    device.hostinfo.RequestTags = ['tag:web'];
    const refusedLogin = await device.startLogin();
    const followUp = device.followUp(refusedLogin.url);
    await eventually(
      'the follow-up waits',
      () => (tagged.running.logins.waiterCount > 0 ? true : undefined),
      WAIT,
    );
    const err = await apiError(tagged.api.completeLogin(refusedLogin.id, 'bob'));
    assert.equal(err.code, 'BAD_REQUEST');
    assert.equal(err.message, 'requested tags [tag:web] are invalid or not permitted');
    assert.deepEqual(await followUp.answer, {
      Error: 'requested tags [tag:web] are invalid or not permitted',
    });
    assert.equal(tagged.running.tailnet.size, 0);

    const allowed = await device.startLogin();
    const node = await tagged.api.completeLogin(allowed.id, 'alice');
    assert.deepEqual(node.tags, ['tag:web']);
    assert.equal(node.user, null, 'a tagged node belongs to its tags');
  });
});

/** POST through the admin socket with any body, for inputs the typed client would never send. */
function rawPost(weft: Weft, path: string, body: unknown): Promise<unknown> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: weft.running.socketPath,
        path,
        method: 'POST',
        headers:
          payload === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          if ((res.statusCode ?? 500) < 300) resolve(json);
          else reject(new ApiError(json.detail, json.code, res.statusCode));
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('pending logins expire and are bounded', () => {
  let weft: Weft;
  before(async () => {
    weft = await startWeft({ logins: { ttlMs: 800, maxEntries: 2 } });
  });

  test('an expired login wakes its follow-up with a fresh AuthURL; its page is a 404', async () => {
    const device = await Device.connect(weft, 'slow');
    const { url, id } = await device.startLogin();
    const started = Date.now();
    const answer = await device.register({ Followup: url }, 10_000);
    assert.ok(Date.now() - started >= 500, 'the follow-up waited for the expiry');
    assert.match(answer.AuthURL, LOGIN_URL);
    assert.notEqual(answer.AuthURL, url);
    assert.equal((await loginPage(weft, id)).status, 404);
    const late = await apiError(weft.api.completeLogin(id, 'alice'));
    assert.equal(late.code, 'LOGIN_NOT_FOUND');
  });

  test('when the bound is reached a new device is refused with a clear Error, not an eviction', async () => {
    await eventually(
      'earlier logins expired',
      () => (weft.running.logins.size === 0 ? true : undefined),
      WAIT,
    );
    const first = await Device.connect(weft, 'one');
    const second = await Device.connect(weft, 'two');
    const third = await Device.connect(weft, 'three');
    const a = await first.startLogin();
    const b = await second.startLogin();
    const full = await third.register();
    assert.match(full.Error, /2 logins are already waiting to be completed/);
    assert.ok(weft.running.logins.get(a.id) && weft.running.logins.get(b.id), 'nothing was evicted');
  });
});

describe('a follow-up when the server stops', () => {
  test('gets no answer at all (no Error to show); after the restart the client gets a fresh AuthURL', async () => {
    const weft = await startWeft();
    const device = await Device.connect(weft, 'restarting');
    const { url } = await device.startLogin();
    const followUp = device.followUp(url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount === 1 ? true : undefined),
      WAIT,
    );
    // The stop ends the pending logins; even while the stream is still open, nothing is written to it.
    weft.running.logins.close();
    await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
    assert.equal(followUp.answered(), false, 'the follow-up answered when the server stopped');
    await weft.running.close();
    // The stream ends without a response (a JSON answer would resolve, even one carrying an Error).
    await assert.rejects(followUp.answer);

    // tailscaled redials and follows up with the same URL: the new server does not know the login.
    const restarted = await startWeft();
    const again = await Device.connect(restarted, 'restarting');
    again.nodeKey = device.nodeKey;
    const answer = await again.register({ Followup: url });
    assert.deepEqual(Object.keys(answer), ['AuthURL'], JSON.stringify(answer));
    assert.match(answer.AuthURL, LOGIN_URL);
    assert.notEqual(answer.AuthURL, url);
  });
});

describe('weft auth / weft nodes register (the real CLI)', () => {
  let weft: Weft;
  before(async () => {
    weft = await startWeft();
  });

  test('list, register by id or URL, reject, and one-sentence refusals', async () => {
    const laptop = await Device.connect(weft, 'cli-laptop');
    const phone = await Device.connect(weft, 'cli-phone');
    const tablet = await Device.connect(weft, 'cli-tablet');
    const l = await laptop.startLogin();
    const p = await phone.startLogin();
    const t = await tablet.startLogin();

    const listed = JSON.parse(ok(await cli(weft, ['auth', 'list', '-o', 'json'])));
    assert.deepEqual(listed.map((x: Json) => x.id).sort(), [l.id, p.id, t.id].sort());
    const table = ok(await cli(weft, ['auth', 'list']));
    assert.match(table, /^ID\s+HOSTNAME\s+OS\s+MACHINE KEY\s+WAITING SINCE\s+EXPIRES\n/);
    assert.match(table, new RegExp(`${l.id}\\s+cli-laptop\\s+linux`));

    const followUp = laptop.followUp(l.url);
    assert.match(
      ok(await cli(weft, ['nodes', 'register', '--user', 'alice', '--key', l.id])),
      /^Node \d+ \(cli-laptop\) registered for alice\n$/,
    );
    assert.equal((await followUp.answer).MachineAuthorized, true);

    // The whole AuthURL works as the id too.
    const node = JSON.parse(
      ok(await cli(weft, ['auth', 'register', '--auth-id', p.url, '--user', 'bob', '-o', 'json'])),
    );
    assert.equal(node.hostname, 'cli-phone');
    assert.equal(node.user.name, 'bob');

    assert.equal(ok(await cli(weft, ['auth', 'reject', '--auth-id', t.id])), `Login ${t.id} rejected\n`);
    refused(await cli(weft, ['auth', 'reject', '--auth-id', t.id]), /^error: there is no pending login/);
    refused(
      await cli(weft, ['nodes', 'register', '--user', 'alice', '--key', l.id]),
      /^error: there is no pending login/,
    );
    laptop.rotateKey(); // `tailscale login` on the registered laptop: a new key, a new login
    const again = await laptop.startLogin();
    refused(
      await cli(weft, ['nodes', 'register', '--user', 'nobody', '--key', again.id]),
      /^error: there is no user named "nobody"/,
    );
    const usage = await cli(weft, ['nodes', 'register', '--user', 'alice']);
    assert.equal(usage.code, 2, usage.stderr);
    const badId = await cli(weft, ['auth', 'register', '--auth-id', 'a b', '--user', 'alice']);
    assert.equal(badId.code, 2, badId.stderr);
    assert.ok(weft.running.logins.get(again.id), 'refused commands changed nothing');
  });
});

describe('device approval (node.device_approval: true)', () => {
  let weft: Weft;
  before(async () => {
    weft = await startWeft({ broadcaster: { batchDelayMs: 20 } }, undefined, { device_approval: true });
  });

  async function keyFor(user: User, preauthorized: boolean): Promise<string> {
    const { text } = await weft.running.store.preAuthKeys.create({
      userId: user.id,
      reusable: false,
      ephemeral: false,
      tags: [],
      expiration: new Date(Date.now() + 3_600_000),
      preauthorized,
    });
    return text;
  }

  test('a new node waits unseen and sees no one until approved; then both sides get each other', async () => {
    // A pre-authorized key skips approval: this node is in at once.
    const insider = await Device.connect(weft, 'insider');
    const joined = await insider.register({ Auth: { AuthKey: await keyFor(weft.alice, true) } });
    assert.equal(joined.MachineAuthorized, true);
    const insiderMap = await insider.openMap();
    assert.equal(insiderMap.first.Node.MachineAuthorized, true);

    // An interactive login is completed, but the device still waits for approval.
    const newcomer = await Device.connect(weft, 'newcomer');
    const { url, id } = await newcomer.startLogin();
    const followUp = newcomer.followUp(url);
    await eventually(
      'the follow-up waits',
      () => (weft.running.logins.waiterCount > 0 ? true : undefined),
      WAIT,
    );
    const registered = await weft.api.completeLogin(id, 'alice');
    assert.equal(registered.authorized, false);
    const answer = await followUp.answer;
    assert.equal(answer.Error, undefined);
    assert.equal(answer.MachineAuthorized, false);

    const newcomerMap = await newcomer.openMap();
    assert.equal(newcomerMap.first.Node.MachineAuthorized, false);
    assert.equal(newcomerMap.first.Peers, undefined, 'an unapproved node gets no peers');
    assert.deepEqual(newcomerMap.first.PacketFilter, [], 'and may receive nothing');
    // The insider is not told about it (a few batch windows pass).
    await new Promise((resolve) => setTimeout(resolve, HOLD_MS));
    const seen = insiderMap.stream.messages.some((m) =>
      (m.message.PeersChanged ?? []).some((p: Json) => p.ID === Number(registered.id)),
    );
    assert.equal(seen, false, 'peers must not see an unapproved node');

    // A node key alone (no preauthorized capability) also waits.
    const keyed = await Device.connect(weft, 'keyed');
    const byKey = await keyed.register({ Auth: { AuthKey: await keyFor(weft.alice, false) } });
    assert.equal(byKey.MachineAuthorized, false);

    // Nor may it use the relay (derper --verify-client-url, and the embedded relay's own admission).
    const verify = async () => {
      const res = await fetch(`${weft.url}/verify`, {
        method: 'POST',
        body: JSON.stringify({ NodePublic: newcomer.nodeKey.publicKey, Source: '127.0.0.1' }),
      });
      return ((await res.json()) as { Allow: boolean }).Allow;
    };
    assert.equal(await verify(), false, 'an unapproved node may not use DERP');

    const approved = await weft.api.approveNode(registered.id);
    assert.equal(approved.authorized, true);
    assert.equal(await verify(), true, 'an approved node may');
    const selfUpdate = await newcomerMap.stream.next(WAIT.timeoutMs);
    const delta = selfUpdate.message;
    const insiderNode = weft.running.tailnet.nodeByKey(insider.nodeKey.publicKey);
    assert.ok(insiderNode);
    await eventually(
      'the approved node learns its peers and that it is authorized',
      () => {
        const all = [delta, ...newcomerMap.stream.messages.map((m) => m.message)];
        const authorized = all.some((m) => m.Node?.MachineAuthorized === true);
        const peer = all.some((m) =>
          (m.PeersChanged ?? m.Peers ?? []).some((p: Json) => p.ID === insiderNode.id),
        );
        return authorized && peer ? true : undefined;
      },
      WAIT,
    );
    await eventually(
      'the insider learns of the approved node',
      () =>
        insiderMap.stream.messages.some((m) =>
          (m.message.PeersChanged ?? []).some((p: Json) => p.ID === Number(registered.id)),
        )
          ? true
          : undefined,
      WAIT,
    );
    // Approval is remembered: logging in again keeps it.
    assert.equal((await newcomer.register()).MachineAuthorized, true);
    const err = await apiError(weft.api.approveNode('999999'));
    assert.equal(err.code, 'NODE_NOT_FOUND');
  });
});
