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
  // Failures (bad keys) and new interactive logins each cost one token.
  const statuses: number[] = [];
  for (let i = 0; i < DEFAULT_REGISTER_LIMIT.burst; i++) {
    const res = await register(i % 2 === 0 ? { Auth: { AuthKey: `weft-auth-bad-${i}` } } : {});
    statuses.push(res.status);
    assert.ok(i % 2 === 0 ? res.json().Error : res.json().AuthURL, `attempt ${i}`);
  }
  assert.deepEqual(new Set(statuses), new Set([200]));
  const limited = await register({ Auth: { AuthKey: 'weft-auth-bad-again' } });
  assert.equal(limited.status, 429);
  const retryAfter = Number(limited.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 5, `Retry-After ${retryAfter}`);
  assert.match(limited.body.toString(), /too many failed or new logins/);
  const loginsBefore = running.logins.list().length;
  assert.equal((await register({})).status, 429, 'no new login either');
  assert.equal(running.logins.list().length, loginsBefore, 'a refused login is not created');
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
