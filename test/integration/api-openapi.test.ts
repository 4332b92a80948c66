/**
 * The REST API against its OpenAPI document, on a real server (in-process, SQLite file, a node joined
 * by the fake control client): the document is valid OpenAPI 3.1, it lists exactly the routes the
 * server serves under /api/v1, and every route's real answer matches the document's response schema.
 * Also: pagination, HTTP Basic with the key as user name, and the 429 rate limits.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { V1_ROUTES } from '../../src/api/openapi.ts';
import type { RunningServer } from '../../src/server/server.ts';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { type ControlConnection, connectControl, DEFAULT_CAP_VERSION } from '../harness/control-client.ts';
import { type InProcessWeft, startInProcessWeft } from '../harness/in-process.ts';

let weft: InProcessWeft;
let running: RunningServer;
let url: string;
let apiKey: string;
let control: ControlConnection | undefined;

before(async () => {
  weft = await startInProcessWeft();
  ({ running, url } = weft);
  apiKey = (await running.store.apiKeys.create(new Date(Date.now() + 3_600_000))).text;
});

after(async () => {
  await control?.close();
  await weft?.close();
});

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

async function call(method: Method, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text === '' ? undefined : JSON.parse(text) };
}

/** Calls a documented route and checks the answer against the document's schema for it. */
async function documented(route: string, path: string, body?: unknown) {
  const doc = V1_ROUTES[route];
  assert.ok(doc, `${route} is not in V1_ROUTES`);
  const [method] = route.split(' ') as [Method];
  const res = await call(method, path, body);
  assert.equal(res.status, 200, `${route}: ${JSON.stringify(res.json)}`);
  const checked = doc.response.safeParse(res.json);
  assert.ok(checked.success, `${route} answered outside its schema: ${checked.error?.message}`);
  covered.add(route);
  return res.json;
}

const covered = new Set<string>();

describe('OpenAPI document', () => {
  test('is served without a key and is valid OpenAPI 3.1', async () => {
    const res = await fetch(`${url}/api/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as { openapi: string };
    assert.equal(doc.openapi, '3.1.0');
    const result = await new Validator().validate(doc);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    covered.add('GET /api/v1/openapi.json');
  });

  test('lists exactly the routes the server serves under /api/v1', () => {
    const served = new Set(running.routes.filter((route) => route.split(' ')[1]?.startsWith('/api/v1/')));
    const documentedRoutes = new Set(Object.keys(V1_ROUTES));
    assert.deepEqual(
      [...served].filter((r) => !documentedRoutes.has(r)),
      [],
      'served but not documented',
    );
    assert.deepEqual(
      [...documentedRoutes].filter((r) => !served.has(r)),
      [],
      'documented but not served',
    );
  });

  test('every route answers within its documented schema', async () => {
    const user = (await documented('POST /api/v1/user', '/api/v1/user', { name: 'openapi', email: '' })).user;
    await documented('GET /api/v1/user', '/api/v1/user');
    const renamed = `/api/v1/user/${user.id}/rename/openapi2`;
    await documented('POST /api/v1/user/:id/rename/:newName', renamed);
    const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
    const created = await documented('POST /api/v1/preauthkey', '/api/v1/preauthkey', {
      user: user.id,
      reusable: true,
      expiration: inAnHour,
    });
    await documented('GET /api/v1/preauthkey', '/api/v1/preauthkey');

    control = await connectControl(url);
    const registered = await control.request('POST', '/machine/register', {
      Version: DEFAULT_CAP_VERSION,
      NodeKey: PrivateKey.generate(NodePublic).publicKey,
      Hostinfo: { Hostname: 'documented', OS: 'linux' },
      Auth: { AuthKey: created.preAuthKey.key },
    });
    assert.equal(registered.json().MachineAuthorized, true, registered.body.toString());
    const node = (await documented('GET /api/v1/node', '/api/v1/node')).nodes[0];
    assert.ok(node);
    await documented('GET /api/v1/node/:id', `/api/v1/node/${node.id}`);
    await documented('POST /api/v1/node/:id/rename/:newName', `/api/v1/node/${node.id}/rename/renamed`);
    await documented('POST /api/v1/node/:id/tags', `/api/v1/node/${node.id}/tags`, { tags: [] });
    await documented('POST /api/v1/node/:id/approve_routes', `/api/v1/node/${node.id}/approve_routes`, {
      routes: [],
    });
    await documented('POST /api/v1/node/:id/expire', `/api/v1/node/${node.id}/expire`, { expiry: null });
    await documented('POST /api/v1/node/:id/approve', `/api/v1/node/${node.id}/approve`);
    await documented('DELETE /api/v1/node/:id', `/api/v1/node/${node.id}`);
    await documented('POST /api/v1/preauthkey/expire', '/api/v1/preauthkey/expire', {
      prefix: created.preAuthKey.prefix,
    });
    await documented('DELETE /api/v1/user/:id', `/api/v1/user/${user.id}`);

    // Interactive logins: three devices wait; one is completed each way, one rejected.
    const waiting: string[] = [];
    for (let i = 0; i < 3; i++) {
      const answer = await control.request('POST', '/machine/register', {
        Version: DEFAULT_CAP_VERSION,
        NodeKey: PrivateKey.generate(NodePublic).publicKey,
        Hostinfo: { Hostname: `waiting-${i}`, OS: 'linux' },
      });
      // One pending login per machine: each device needs its own connection (machine key).
      waiting.push(new URL(String(answer.json().AuthURL)).pathname.split('/').pop() ?? '');
      await control.close();
      control = await connectControl(url);
    }
    const pending = await documented('GET /api/v1/auth/pending', '/api/v1/auth/pending');
    assert.deepEqual(pending.logins.map((l: { id: string }) => l.id).sort(), [...waiting].sort());
    await documented('POST /api/v1/user', '/api/v1/user', { name: 'loginuser' });
    await documented('POST /api/v1/auth/register', '/api/v1/auth/register', {
      authId: waiting[0],
      user: 'loginuser',
    });
    await documented('POST /api/v1/node/register', `/api/v1/node/register?user=loginuser&key=${waiting[1]}`);
    await documented('POST /api/v1/auth/reject', '/api/v1/auth/reject', { authId: waiting[2] });

    const client = await documented('POST /api/v1/oauthclient', '/api/v1/oauthclient', {
      scopes: ['devices:core:read'],
    });
    await documented('GET /api/v1/oauthclient', '/api/v1/oauthclient');
    await documented('DELETE /api/v1/oauthclient/:id', `/api/v1/oauthclient/${client.oauthClient.id}`);

    const key = await documented('POST /api/v1/apikey', '/api/v1/apikey', { expiration: inAnHour });
    await documented('GET /api/v1/apikey', '/api/v1/apikey');
    await documented('POST /api/v1/apikey/expire', '/api/v1/apikey/expire', { prefix: key.apiKey });

    const policy = await documented('GET /api/v1/policy', '/api/v1/policy');
    await documented('POST /api/v1/policy/check', '/api/v1/policy/check', { policy: policy.policy });
    await documented('PUT /api/v1/policy', '/api/v1/policy', { policy: policy.policy });
    const dns = await documented('GET /api/v1/dns', '/api/v1/dns');
    const { magicDns: _m, baseDomain: _b, ...settings } = dns;
    await documented('PUT /api/v1/dns', '/api/v1/dns', settings);
  });

  test('the routes above cover the whole document', () => {
    const missing = Object.keys(V1_ROUTES).filter((route) => !covered.has(route));
    assert.deepEqual(missing, [], 'add these routes to the schema test');
  });

  test('errors are problem documents whose code is in the document', async () => {
    const res = await call('GET', '/api/v1/node/999999');
    assert.equal(res.status, 404);
    assert.equal(res.headers.get('content-type')?.split(';')[0], 'application/problem+json');
    const doc = (await (await fetch(`${url}/api/v1/openapi.json`)).json()) as {
      components: { schemas: { Problem: { properties: { code: { enum: string[] } } } } };
    };
    assert.ok(doc.components.schemas.Problem.properties.code.enum.includes(res.json.code));
  });
});

describe('pagination', () => {
  test('pageSize pages in id order; following nextPageToken returns every item once', async () => {
    for (let i = 0; i < 7; i++) await call('POST', '/api/v1/user', { name: `page${i}` });
    const all = (await call('GET', '/api/v1/user')).json.users;
    assert.equal(
      (await call('GET', '/api/v1/user')).json.nextPageToken,
      undefined,
      'no pageSize: whole list',
    );
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const query = `pageSize=3${token === undefined ? '' : `&pageToken=${encodeURIComponent(token)}`}`;
      const page = await call('GET', `/api/v1/user?${query}`);
      assert.equal(page.status, 200);
      assert.ok(page.json.users.length <= 3);
      seen.push(...page.json.users.map((u: { id: string }) => u.id));
      token = page.json.nextPageToken;
      pages += 1;
    } while (token !== undefined && pages < 10);
    assert.deepEqual(
      seen,
      all.map((u: { id: string }) => u.id),
    );
    assert.equal(pages, Math.ceil(all.length / 3));
  });

  test('a page boundary does not move when an earlier item is deleted', async () => {
    const first = await call('GET', '/api/v1/user?pageSize=2');
    const [gone, last] = first.json.users as { id: string }[];
    assert.ok(gone && last);
    await call('DELETE', `/api/v1/user/${gone.id}`);
    const next = await call('GET', `/api/v1/user?pageSize=2&pageToken=${first.json.nextPageToken}`);
    const rest = (await call('GET', '/api/v1/user')).json.users
      .map((u: { id: string }) => Number(u.id))
      .filter((id: number) => id > Number(last.id));
    assert.deepEqual(
      next.json.users.map((u: { id: string }) => Number(u.id)),
      rest.slice(0, 2),
    );
  });

  test('bad paging parameters are refused with the parameter named', async () => {
    for (const query of [
      'pageSize=0',
      'pageSize=1001',
      'pageSize=two',
      'pageToken=bm9wZQ',
      'pageSize=1&x=1',
    ]) {
      const res = await call('GET', `/api/v1/node?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.json.code, 'BAD_REQUEST');
      assert.match(res.json.detail, /^invalid request query/, query);
    }
  });
});

describe('authentication', () => {
  test('HTTP Basic with the key as user name works like Bearer', async () => {
    const basic = `Basic ${Buffer.from(`${apiKey}:`).toString('base64')}`;
    const res = await call('GET', '/api/v1/user', undefined, { authorization: basic });
    assert.equal(res.status, 200);
  });
});

// Last: these use up the limits of 127.0.0.1 for a few seconds.
describe('rate limits', () => {
  test('creating keys with an API key is limited per key, with Retry-After', async () => {
    const soon = new Date(Date.now() + 3_600_000).toISOString();
    // A key of its own, so keys created by the tests above do not count.
    const fresh = (await running.store.apiKeys.create(new Date(Date.now() + 3_600_000))).text;
    const asFresh = { authorization: `Bearer ${fresh}` };
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 40 && limited === undefined; i++) {
      const res = await call('POST', '/api/v1/apikey', { expiration: soon }, asFresh);
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    assert.ok(limited, 'never limited');
    assert.equal(statuses.filter((s) => s === 200).length, 30, 'the burst is 30');
    assert.equal(limited.json.code, 'RATE_LIMITED');
    assert.match(limited.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    const keys = (await call('GET', '/api/v1/apikey')).json.apiKeys.length;
    assert.equal((await call('POST', '/api/v1/apikey', { expiration: soon }, asFresh)).status, 429);
    assert.equal(
      (await call('GET', '/api/v1/apikey')).json.apiKeys.length,
      keys,
      'a refused create creates nothing',
    );
  });

  test('failed authentications from one address are limited; a good key still works', async () => {
    let limited: Awaited<ReturnType<typeof call>> | undefined;
    let failures = 0;
    for (let i = 0; i < 20 && limited === undefined; i++) {
      const res = await call('GET', '/api/v1/user', undefined, { authorization: 'Bearer weft-api-wrong' });
      if (res.status === 401) failures += 1;
      if (res.status === 429) limited = res;
    }
    assert.ok(limited, 'never limited');
    assert.equal(failures, 10, 'ten failures are allowed at once');
    assert.equal(limited.json.code, 'RATE_LIMITED');
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 30, `Retry-After ${retryAfter}`);
    // Secrets are 256 random bits: a good key is never refused, or a stranger sharing the address
    // (a NAT, a proxy) could lock every admin out.
    assert.equal((await call('GET', '/api/v1/user')).status, 200);
    // Parallel failures cannot slip past: each one is charged as it happens.
    const burst = await Promise.all(
      Array.from({ length: 20 }, () =>
        call('GET', '/api/v1/user', undefined, { authorization: 'Bearer weft-api-wrong' }),
      ),
    );
    assert.deepEqual(new Set(burst.map((res) => res.status)), new Set([429]));
  });
});
