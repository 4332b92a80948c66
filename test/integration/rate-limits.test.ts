/**
 * Rate limits on the login paths (in-process server, fake control client): failed auth keys and new
 * interactive logins per address get HTTP 429 with Retry-After on /machine/register (what clients with
 * capability version 137 and newer wait for), successful registrations never count, and the login pages
 * are limited per address. The API's limits are in api-openapi.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DEFAULT_REGISTER_LIMIT } from '../../src/control/plane.ts';
import type { RunningServer } from '../../src/server/server.ts';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { type ControlConnection, connectControl, DEFAULT_CAP_VERSION } from '../harness/control-client.ts';
import { type InProcessWeft, startInProcessWeft } from '../harness/in-process.ts';

let weft: InProcessWeft;
let running: RunningServer;
let url: string;
const connections: ControlConnection[] = [];

before(async () => {
  weft = await startInProcessWeft();
  ({ running, url } = weft);
});

after(async () => {
  await Promise.allSettled(connections.map((c) => c.close()));
  await weft?.close();
});

async function register(fields: Record<string, unknown>) {
  const conn = await connectControl(url);
  connections.push(conn);
  return conn.request('POST', '/machine/register', {
    Version: DEFAULT_CAP_VERSION,
    NodeKey: PrivateKey.generate(NodePublic).publicKey,
    Hostinfo: { Hostname: 'limited', OS: 'linux' },
    ...fields,
  });
}

test('/machine/register: successes are free; failed keys and new logins get 429 + Retry-After past the burst', async () => {
  const alice = await running.store.users.create({ name: 'alice' });
  const { text: good } = await running.store.preAuthKeys.create({
    userId: alice.id,
    reusable: true,
    ephemeral: false,
    tags: [],
    expiration: new Date(Date.now() + 3_600_000),
  });
  // Many successful joins from one address cost nothing.
  for (let i = 0; i < DEFAULT_REGISTER_LIMIT.burst + 5; i++) {
    const res = await register({ Auth: { AuthKey: good } });
    assert.equal(res.status, 200);
    assert.equal(res.json().MachineAuthorized, true);
  }
  // A device starts its login (one token) and will follow it up later, after the address is limited.
  const waiter = await connectControl(url);
  connections.push(waiter);
  const waiterKey = PrivateKey.generate(NodePublic).publicKey;
  const asWaiter = (fields: Record<string, unknown>) =>
    waiter.request('POST', '/machine/register', {
      Version: DEFAULT_CAP_VERSION,
      NodeKey: waiterKey,
      Hostinfo: { Hostname: 'waiter', OS: 'linux' },
      ...fields,
    });
  const authUrl = String((await asWaiter({})).json().AuthURL);
  assert.match(authUrl, /\/register\//);

  // Failures (bad keys) and new interactive logins each cost one token.
  for (let i = 1; i < DEFAULT_REGISTER_LIMIT.burst; i++) {
    const res = await register(i % 2 === 0 ? { Auth: { AuthKey: `weft-auth-bad-${i}` } } : {});
    assert.equal(res.status, 200, `attempt ${i}`);
    assert.ok(i % 2 === 0 ? res.json().Error : res.json().AuthURL, `attempt ${i}`);
  }
  const limited = await register({ Auth: { AuthKey: 'weft-auth-bad-again' } });
  assert.equal(limited.status, 429);
  const retryAfter = Number(limited.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 15, `Retry-After ${retryAfter}`);
  assert.match(limited.body.toString(), /too many failed or new logins/);
  const loginsBefore = running.logins.list().length;
  assert.equal((await register({})).status, 429, 'no new login either');
  assert.equal(running.logins.list().length, loginsBefore, 'a refused login is not created');

  // What the limit must not stop: a good key, and the follow-up of a login already under way.
  const joined = await register({ Auth: { AuthKey: good } });
  assert.equal(joined.status, 200);
  assert.equal(joined.json().MachineAuthorized, true, 'a valid key always works');
  const followUp = asWaiter({ Followup: authUrl });
  const id = authUrl.slice(authUrl.lastIndexOf('/') + 1);
  for (let i = 0; i < 100 && running.logins.waiterCount === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await running.logins.complete(id, { userId: alice.id, method: 'cli' });
  const answer = await followUp;
  assert.equal(answer.status, 200, answer.body.toString());
  assert.equal(answer.json().MachineAuthorized, true, 'the waiting device finishes its login');
});

test('login pages are limited per address', async () => {
  let limited: Response | undefined;
  let served = 0;
  for (let i = 0; i < 40 && limited === undefined; i++) {
    const res = await fetch(`${url}/register/weft-login-${'0'.repeat(24)}`);
    await res.arrayBuffer();
    if (res.status === 429) limited = res;
    else served += 1;
  }
  assert.ok(limited, 'never limited');
  assert.equal(served, 30);
  assert.match(limited.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
});

test('behind a trusted proxy, limits are per client (X-Forwarded-For), not per proxy', async () => {
  const proxied = await startInProcessWeft({}, { trusted_proxies: ['127.0.0.1'] });
  try {
    const attempt = (client: string) =>
      fetch(`${proxied.url}/api/v1/user`, {
        headers: { authorization: 'Bearer weft-api-wrong', 'x-forwarded-for': client },
      });
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await attempt('203.0.113.1')).status);
    assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
    assert.equal(statuses[10], 429, 'the eleventh failure of one client is limited');
    assert.equal((await attempt('203.0.113.2')).status, 401, 'another client behind the same proxy is not');
    // A client cannot escape its bucket by writing its own X-Forwarded-For: the proxy appends the real one.
    assert.equal((await attempt('198.51.100.9, 203.0.113.1')).status, 429);
  } finally {
    await proxied.close();
  }
});
