/**
 * Tailscale's API v2 subset in-process (Fastify inject, real SQLite file, real policy and DNS stores):
 * credentials (API key as Bearer or Basic user, OAuth access tokens, wrong and expired ones), scope
 * checks, Tailscale's error body, every route's answers, ETag/If-Match on the policy (ts-default, *),
 * the OAuth token endpoint, and that refused requests change nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createApiApp } from '../../src/api/app.ts';
import { parseConfig } from '../../src/config/load.ts';
import { openStore, type Store } from '../../src/db/store.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { DnsSettingsStore } from '../../src/state/dns.ts';
import { PolicyStore, policyTailnet, tailnetPolicy } from '../../src/state/policy.ts';
import { Tailnet } from '../../src/state/tailnet.ts';
import { seedNode } from '../harness/seed.ts';

const silent = createLogger({ level: 'silent', format: 'json' });
const HOUR = 3_600_000;

const POLICY = `// weft's API v2 test policy
{
  "tagOwners": { "tag:ci": [], "tag:web": ["tag:ci"], "tag:other": [] },
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }], // allow all
}
`;

let dir: string;
let store: Store;
let tailnet: Tailnet;
let policy: PolicyStore;
let dns: DnsSettingsStore;
let app: FastifyInstance;
let clock = Date.now();
let apiKey: string;
const ids = { alice: 0, laptop: 0, server: 0 };

interface Call {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  auth?: string | null;
  body?: unknown;
  headers?: Record<string, string>;
}

const bearer = (credential: string) => `Bearer ${credential}`;
const basic = (user: string, password = '') =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function call(url: string, { method = 'GET', auth, body, headers = {} }: Call = {}) {
  const authorization = auth === undefined ? basic(apiKey) : auth;
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return app.inject({
    method,
    url: `/api/v2${url}`,
    headers: {
      ...(authorization === null ? {} : { authorization }),
      ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(payload === undefined ? {} : { payload }),
  });
}

function json<T = Record<string, unknown>>(res: LightMyRequestResponse, status = 200): T {
  assert.equal(res.statusCode, status, res.body);
  return res.json() as T;
}

/** Tailscale's error body: {message, status} with the HTTP status, as the Go client decodes it. */
function assertV2Error(res: LightMyRequestResponse, status: number, message?: RegExp): void {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = res.json() as { message: string; status: number };
  assert.equal(body.status, status);
  assert.equal(typeof body.message, 'string');
  if (message) assert.match(body.message, message);
}

/** POST /tailnet/-/acl with a HuJSON body and, optionally, If-Match. */
function postAcl(body: string, ifMatch?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/hujson' };
  if (ifMatch !== undefined) headers['if-match'] = ifMatch;
  return call('/tailnet/-/acl', { method: 'POST', body, headers });
}

async function token(form: Record<string, string>, auth?: string) {
  return app.inject({
    method: 'POST',
    url: '/api/v2/oauth/token',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(auth === undefined ? {} : { authorization: auth }),
    },
    payload: new URLSearchParams(form).toString(),
  });
}

async function createClient(scopes: string[], tags: string[] = []) {
  const res = await call('/tailnet/-/keys', { method: 'POST', body: { keyType: 'client', scopes, tags } });
  return json<{ id: string; key: string; scopes: string[]; tags: string[] }>(res);
}

async function accessToken(scopes: string[], tags: string[] = []): Promise<string> {
  const client = await createClient(scopes, tags);
  const res = await token({
    grant_type: 'client_credentials',
    client_id: client.id,
    client_secret: client.key,
  });
  return json<{ access_token: string }>(res).access_token;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-api-v2-'));
  store = (await openStore({ type: 'sqlite', path: join(dir, 'weft.db') })).store;
  const alice = await store.users.create({ name: 'alice', email: 'alice@example.com', displayName: 'Alice' });
  ids.alice = alice.id;
  ids.laptop = await seedNode(store, 1, 'laptop', alice.id, {
    hostinfo: { Hostname: 'laptop', OS: 'linux', IPNVersion: '1.80.3', RoutableIPs: ['10.20.0.0/16'] },
  });
  ids.server = await seedNode(store, 2, 'server', null, { tags: ['tag:ci'] });
  const now = () => new Date(clock);
  tailnet = await Tailnet.load({
    store,
    log: silent,
    prefixes: { v4: '100.64.0.0/10', v6: 'fd7a:115c:a1e0::/48', allocation: 'sequential' },
    ephemeralInactivityMs: 60_000,
    now,
  });
  const config = parseConfig({});
  policy = await PolicyStore.open({
    config: { mode: 'database' },
    repository: store.policies,
    tailnet: () => policyTailnet(tailnet),
    serverUrl: 'http://127.0.0.1:8080',
    log: silent,
    now,
  });
  tailnet.usePolicy(tailnetPolicy(tailnet, () => policy.current.policy));
  // Writes take a few milliseconds, as over the network to PostgreSQL: concurrent requests overlap.
  const settings = store.settings;
  const storage = {
    get: (key: string) => settings.get(key),
    put: async (key: string, value: unknown, at?: Date) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      await settings.put(key, value, at);
    },
  };
  dns = await DnsSettingsStore.open({ config: config.dns, storage, log: silent, now });
  app = createApiApp({
    store,
    tailnet,
    policy,
    dns,
    logger: silent,
    health: async () => ({ status: 'pass', checks: {} }),
    isLocalAdmin: () => false,
    baseDomain: 'tail.example',
    now,
  });
  await app.ready();
  apiKey = (await store.apiKeys.create(new Date(clock + 24 * HOUR), now())).text;
});

after(async () => {
  await app?.close();
  await tailnet?.close();
  policy?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('API v2 credentials', () => {
  test('an API key works as Bearer and as the Basic user name (any password)', async () => {
    json(await call('/tailnet/-/devices', { auth: bearer(apiKey) }));
    json(await call('/tailnet/-/devices', { auth: basic(apiKey) }));
    json(await call('/tailnet/-/devices', { auth: basic(apiKey, 'ignored') }));
  });

  test("no, wrong, malformed or expired credentials are 401 in Tailscale's error shape", async () => {
    assertV2Error(await call('/tailnet/-/devices', { auth: null }), 401, /needs credentials/);
    const wrong = `${apiKey.slice(0, -4)}0000`;
    assertV2Error(
      await call('/tailnet/-/devices', { auth: basic(wrong) }),
      401,
      /unknown, malformed or expired/,
    );
    assertV2Error(await call('/tailnet/-/devices', { auth: 'Digest abc' }), 401);
    assertV2Error(await call('/tailnet/-/devices', { auth: bearer('weft-oauth-000000000000-00') }), 401);
    const short = (await store.apiKeys.create(new Date(clock + 1000), new Date(clock))).text;
    json(await call('/tailnet/-/devices', { auth: bearer(short) }));
    clock += 2000;
    assertV2Error(await call('/tailnet/-/devices', { auth: bearer(short) }), 401);
  });

  test('a tailnet other than "-" and an unknown endpoint are 404s', async () => {
    assertV2Error(await call('/tailnet/example.com/devices'), 404, /weft serves one, named "-"/);
    assertV2Error(await call('/tailnet/-/nothing'), 404, /no endpoint GET/);
  });
});

describe('API v2 policy file', () => {
  const BAD_LINE_3 =
    '{\n  "acls": [\n    { "action": "accept", "src": ["group:nobody"], "dst": ["*:*"] },\n  ],\n}\n';

  test('GET: HuJSON verbatim on request, JSON otherwise, both with the ETag', async () => {
    const raw = await call('/tailnet/-/acl', { headers: { accept: 'application/hujson' } });
    assert.equal(raw.statusCode, 200);
    assert.match(String(raw.headers['content-type']), /application\/hujson/);
    assert.equal(raw.body, policy.current.text);
    assert.equal(raw.headers.etag, policy.current.etag);
    const asJson = json(await call('/tailnet/-/acl'));
    assert.ok(Array.isArray(asJson.acls));
  });

  test('POST with If-Match "ts-default" works only while the default is in force; 412 in Tailscale\'s words', async () => {
    const set = await postAcl(POLICY, '"ts-default"');
    assert.equal(set.statusCode, 200, set.body);
    assert.equal(policy.current.text, POLICY);
    assert.equal(set.headers.etag, policy.current.etag);
    const again = await postAcl(POLICY, '"ts-default"');
    assert.equal(again.statusCode, 412);
    assert.deepEqual(again.json(), { message: 'precondition failed, invalid old hash', status: 412 });
  });

  test('POST with a stale ETag is 412; with the current one or * it applies; the text round-trips', async () => {
    const version = policy.current.version;
    const stale = await postAcl(POLICY.replace('allow all', 'changed'), '"0123"');
    assert.equal(stale.statusCode, 412);
    assert.equal(policy.current.version, version);
    const next = POLICY.replace('allow all', 'still allow all');
    const ok = await postAcl(next, policy.current.etag);
    assert.equal(ok.statusCode, 200, ok.body);
    const raw = await call('/tailnet/-/acl', { headers: { accept: 'application/hujson' } });
    assert.equal(raw.body, next);
    const star = await postAcl(POLICY, '*');
    assert.equal(star.statusCode, 200);
    assert.equal(policy.current.text, POLICY);
  });

  test('a JSON policy is accepted; an invalid one is 400 with line and column and changes nothing', async () => {
    const version = policy.current.version;
    const bad = await postAcl(BAD_LINE_3);
    assertV2Error(bad, 400, /group:nobody.*line 3, column/s);
    assert.equal(policy.current.version, version);
    const asJson = JSON.stringify({
      tagOwners: { 'tag:ci': [], 'tag:web': ['tag:ci'], 'tag:other': [] },
      acls: [{ action: 'accept', src: ['*'], dst: ['*:*'] }],
    });
    json(await call('/tailnet/-/acl', { method: 'POST', body: asJson }));
    assert.equal(policy.current.text, asJson);
    json(await postAcl(POLICY));
  });

  test('validate: 200 {} when valid, 200 with message (and data for tests) when not', async () => {
    assert.deepEqual(
      json(
        await call('/tailnet/-/acl/validate', {
          method: 'POST',
          body: POLICY,
          headers: { 'content-type': 'application/hujson' },
        }),
      ),
      {},
    );
    const invalid = json<{ message: string }>(
      await call('/tailnet/-/acl/validate', {
        method: 'POST',
        body: BAD_LINE_3,
        headers: { 'content-type': 'application/hujson' },
      }),
    );
    assert.match(invalid.message, /line 3/);
    const failing =
      '{"acls": [{"action": "accept", "src": ["100.64.0.1"], "dst": ["*:*"]}], "tests": [{"src": "100.64.0.9", "accept": ["100.64.0.2:80"]}]}';
    const tests = json<{ message: string; data: { errors: string[] }[] }>(
      await call('/tailnet/-/acl/validate', { method: 'POST', body: failing }),
    );
    assert.ok(tests.data[0]?.errors.length);
    assert.equal(policy.current.text, POLICY);
  });

  test('an empty body puts the default policy back; too large a body is 413 before it is read', async () => {
    json(await postAcl(''));
    assert.match(policy.current.text, /"acls": \[\{ "action": "accept", "src": \["\*"\]/);
    // Reset to the default, it counts as the default again: Terraform's create after a destroy.
    const recreate = await postAcl(POLICY, '"ts-default"');
    assert.equal(recreate.statusCode, 200, recreate.body);
    assert.equal(policy.current.text, POLICY);
    const huge = `{"acls": [], "hosts": {"a": "${'1'.repeat(1024 * 1024)}"}}`;
    assertV2Error(await call('/tailnet/-/acl', { method: 'POST', body: huge }), 413);
    json(await postAcl(POLICY));
  });
});

describe('API v2 devices', () => {
  test("list: Tailscale's Device shape, routes only with fields=all, filters by any field", async () => {
    const { devices } = json<{ devices: Record<string, unknown>[] }>(await call('/tailnet/-/devices'));
    assert.equal(devices.length, 2);
    const laptop = devices.find((d) => d.id === String(ids.laptop));
    assert.ok(laptop);
    assert.equal(laptop.nodeId, String(ids.laptop));
    assert.equal(laptop.name, 'laptop.tail.example');
    assert.equal(laptop.hostname, 'laptop');
    assert.deepEqual(laptop.addresses, ['100.64.0.1', 'fd7a:115c:a1e0::1']);
    assert.equal(laptop.user, 'alice@example.com');
    assert.equal(laptop.authorized, true);
    assert.equal(laptop.os, 'linux');
    assert.equal(laptop.clientVersion, '1.80.3');
    assert.equal(laptop.keyExpiryDisabled, true);
    assert.equal(laptop.expires, '');
    assert.equal('advertisedRoutes' in laptop, false);
    const server = devices.find((d) => d.id === String(ids.server));
    assert.equal(server?.user, 'tagged-devices');
    assert.deepEqual(server?.tags, ['tag:ci']);

    const all = json<{ devices: Record<string, unknown>[] }>(await call('/tailnet/-/devices?fields=all'));
    const withRoutes = all.devices.find((d) => d.id === String(ids.laptop));
    assert.deepEqual(withRoutes?.advertisedRoutes, ['10.20.0.0/16']);
    assert.deepEqual(withRoutes?.enabledRoutes, []);

    const byName = json<{ devices: { id: string }[] }>(
      await call('/tailnet/-/devices?name=laptop.tail.example'),
    );
    assert.deepEqual(
      byName.devices.map((d) => d.id),
      [String(ids.laptop)],
    );
    const byTag = json<{ devices: { id: string; advertisedRoutes?: unknown }[] }>(
      await call('/tailnet/-/devices?tags=tag:ci&tags=tag:web'),
    );
    assert.deepEqual(
      byTag.devices.map((d) => d.id),
      [String(ids.server)],
    );
    assert.equal(byTag.devices[0]?.advertisedRoutes, undefined);
    assertV2Error(await call('/tailnet/-/devices?colour=blue'), 400, /query\.colour/);
    assertV2Error(await call('/tailnet/-/devices?fields=some'), 400, /query\.fields/);
  });

  test('get by id (= nodeId); unknown ids are 404 (IsNotFound)', async () => {
    const laptop = json(await call(`/device/${ids.laptop}?fields=all`));
    assert.equal(laptop.hostname, 'laptop');
    assert.deepEqual(laptop.advertisedRoutes, ['10.20.0.0/16']);
    assertV2Error(await call('/device/9999'), 404, /no device with id 9999/);
    assertV2Error(await call('/device/nABC'), 404);
  });

  test('routes: GET shows advertised and enabled; POST replaces the enabled set; bad routes change nothing', async () => {
    assert.deepEqual(json(await call(`/device/${ids.laptop}/routes`)), {
      advertisedRoutes: ['10.20.0.0/16'],
      enabledRoutes: [],
    });
    assertV2Error(
      await call(`/device/${ids.laptop}/routes`, { method: 'POST', body: { routes: ['10.99.0.0/16'] } }),
      400,
      /does not advertise 10\.99\.0\.0\/16/,
    );
    assertV2Error(
      await call(`/device/${ids.laptop}/routes`, { method: 'POST', body: { routes: ['10.20.0.1/16'] } }),
      400,
      /host bits/,
    );
    assertV2Error(
      await call(`/device/${ids.laptop}/routes`, { method: 'POST', body: '{"routes": [' }),
      400,
      /not valid JSON/,
    );
    assert.deepEqual(tailnet.node(ids.laptop)?.approvedRoutes, []);
    const set = json(
      await call(`/device/${ids.laptop}/routes`, { method: 'POST', body: { routes: ['10.20.0.0/16'] } }),
    );
    assert.deepEqual(set, { advertisedRoutes: ['10.20.0.0/16'], enabledRoutes: ['10.20.0.0/16'] });
    assert.deepEqual(tailnet.node(ids.laptop)?.approvedRoutes, ['10.20.0.0/16']);
  });

  test('key expiry: disabling clears it, enabling gives the default lifetime; bodies are checked', async () => {
    json(await call(`/device/${ids.laptop}/key`, { method: 'POST', body: { keyExpiryDisabled: false } }));
    const expiry = tailnet.node(ids.laptop)?.expiry;
    assert.ok(expiry && expiry.getTime() > clock + 179 * 24 * HOUR);
    assert.equal(json(await call(`/device/${ids.laptop}`)).keyExpiryDisabled, false);
    assertV2Error(
      await call(`/device/${ids.laptop}/key`, { method: 'POST', body: { keyExpiryDisabled: 'yes' } }),
      400,
      /body\.keyExpiryDisabled/,
    );
    json(await call(`/device/${ids.laptop}/key`, { method: 'POST', body: { keyExpiryDisabled: true } }));
    assert.equal(tailnet.node(ids.laptop)?.expiry, null);
  });

  test('tags, name and authorization', async () => {
    assertV2Error(
      await call(`/device/${ids.server}/tags`, { method: 'POST', body: { tags: ['web'] } }),
      400,
      /body\.tags/,
    );
    assertV2Error(
      await call(`/device/${ids.server}/tags`, { method: 'POST', body: { tags: ['tag:nope'] } }),
      400,
      /invalid or not permitted/,
    );
    assert.deepEqual(tailnet.node(ids.server)?.tags, ['tag:ci']);
    json(await call(`/device/${ids.server}/tags`, { method: 'POST', body: { tags: ['tag:web', 'tag:ci'] } }));
    assert.deepEqual(tailnet.node(ids.server)?.tags, ['tag:ci', 'tag:web']);

    json(await call(`/device/${ids.server}/name`, { method: 'POST', body: { name: 'web1.tail.example' } }));
    assert.equal(tailnet.node(ids.server)?.givenName, 'web1');
    assertV2Error(
      await call(`/device/${ids.server}/name`, { method: 'POST', body: { name: 'laptop' } }),
      409,
      /already called "laptop"/,
    );

    json(await call(`/device/${ids.server}/authorized`, { method: 'POST', body: { authorized: false } }));
    assert.equal(tailnet.node(ids.server)?.authorized, false);
    assert.equal(json(await call(`/device/${ids.server}`)).authorized, false);
    json(await call(`/device/${ids.server}/authorized`, { method: 'POST', body: { authorized: true } }));
    assert.equal(tailnet.node(ids.server)?.authorized, true);
    assertV2Error(
      await call(`/device/${ids.server}/authorized`, { method: 'POST', body: {} }),
      400,
      /body\.authorized/,
    );
  });
});

describe('API v2 keys', () => {
  let keyId: string;

  test("create a tagged auth key: the secret once, Tailscale's Key shape, seconds for expiry", async () => {
    const created = json<
      Record<string, unknown> & { capabilities: { devices: { create: Record<string, unknown> } } }
    >(
      await call('/tailnet/-/keys', {
        method: 'POST',
        body: {
          capabilities: {
            devices: { create: { reusable: true, ephemeral: false, preauthorized: true, tags: ['tag:ci'] } },
          },
          expirySeconds: 3600,
          description: 'ci runners',
        },
      }),
    );
    keyId = String(created.id);
    assert.match(String(created.key), /^weft-auth-[0-9a-f]{12}-[0-9a-f]{64}$/);
    assert.equal(created.keyType, 'auth');
    assert.equal(created.expirySeconds, 3600);
    assert.equal(created.description, 'ci runners');
    assert.equal(created.invalid, false);
    assert.deepEqual(created.capabilities.devices.create.tags, ['tag:ci']);
    assert.equal(created.capabilities.devices.create.reusable, true);
    assert.equal(created.capabilities.devices.create.preauthorized, true);
    assert.equal(
      new Date(String(created.expires)).getTime() - new Date(String(created.created)).getTime(),
      3600_000,
    );

    const got = json(await call(`/tailnet/-/keys/${keyId}`));
    assert.equal(got.key, undefined);
    assert.equal(got.description, 'ci runners');
    assert.equal(
      (got.capabilities as { devices: { create: { preauthorized: boolean } } }).devices.create.preauthorized,
      true,
    );
    const { keys } = json<{ keys: { id: string; key?: string }[] }>(await call('/tailnet/-/keys'));
    assert.ok(keys.some((k) => k.id === keyId && k.key === undefined));
    const check = await store.preAuthKeys.check(String(created.key), new Date(clock));
    assert.equal(check.ok, true);
  });

  test('defaults: expirySeconds 0 means 90 days; tags null means none (then a userId is needed)', async () => {
    const body = { capabilities: { devices: { create: { tags: null } } }, expirySeconds: 0 };
    assertV2Error(
      await call('/tailnet/-/keys', { method: 'POST', body }),
      400,
      /this API key belongs to no user: create the API key with `weft apikeys create --user NAME`/,
    );
    const created = json(
      await call('/tailnet/-/keys', { method: 'POST', body: { ...body, userId: String(ids.alice) } }),
    );
    assert.equal(created.expirySeconds, 90 * 24 * 3600);
    assert.equal(created.userId, String(ids.alice));
    assertV2Error(await call('/tailnet/-/keys', { method: 'POST', body: { ...body, userId: '999' } }), 404);
  });

  test("an API key with a user mints that user's untagged keys, as Tailscale's user-owned API keys do", async () => {
    const owned = (await store.apiKeys.create(new Date(clock + HOUR), new Date(clock), ids.alice)).text;
    const body = { capabilities: { devices: { create: { reusable: true } } } };
    const created = json(await call('/tailnet/-/keys', { method: 'POST', body, auth: `Bearer ${owned}` }));
    assert.equal(created.userId, String(ids.alice));
    const key = await store.preAuthKeys.check(String(created.key), new Date(clock));
    assert.ok(key.ok && key.key.userId === ids.alice && key.key.tags.length === 0);
    // Tagged keys stay the tags' even from an owned API key.
    const tagged = json(
      await call('/tailnet/-/keys', {
        method: 'POST',
        body: { capabilities: { devices: { create: { tags: ['tag:ci'] } } } },
        auth: `Bearer ${owned}`,
      }),
    );
    assert.equal(tagged.userId, undefined);
  });

  test('bad keys are refused and create nothing', async () => {
    const count = (await store.preAuthKeys.list()).length;
    const tagged = (tags: unknown) => ({ capabilities: { devices: { create: { tags } } } });
    assertV2Error(
      await call('/tailnet/-/keys', { method: 'POST', body: tagged(['tag:undefined']) }),
      400,
      /not defined in the policy's tagOwners/,
    );
    assertV2Error(await call('/tailnet/-/keys', { method: 'POST', body: tagged(['ci']) }), 400, /tags/);
    assertV2Error(
      await call('/tailnet/-/keys', { method: 'POST', body: { ...tagged(['tag:ci']), expirySeconds: -1 } }),
      400,
      /expirySeconds/,
    );
    assertV2Error(await call('/tailnet/-/keys', { method: 'POST', body: '[]' }), 400);
    assert.equal((await store.preAuthKeys.list()).length, count);
  });

  test('delete removes the key (then 404); unknown ids are 404', async () => {
    json(await call(`/tailnet/-/keys/${keyId}`, { method: 'DELETE' }));
    assertV2Error(await call(`/tailnet/-/keys/${keyId}`), 404);
    assertV2Error(await call(`/tailnet/-/keys/${keyId}`, { method: 'DELETE' }), 404);
    assertV2Error(await call('/tailnet/-/keys/kNOPE'), 404);
  });

  test('a used single-use key and an expired key are invalid', async () => {
    const created = json(
      await call('/tailnet/-/keys', {
        method: 'POST',
        body: { capabilities: { devices: { create: { tags: ['tag:ci'] } } }, expirySeconds: 60 },
      }),
    );
    const record = await store.preAuthKeys.findById(Number(created.id));
    assert.ok(record);
    await store.preAuthKeys.consume(record.id);
    assert.equal(json(await call(`/tailnet/-/keys/${created.id}`)).invalid, true);
    const later = json(
      await call('/tailnet/-/keys', {
        method: 'POST',
        body: {
          capabilities: { devices: { create: { reusable: true, tags: ['tag:ci'] } } },
          expirySeconds: 1,
        },
      }),
    );
    clock += 2000;
    assert.equal(json(await call(`/tailnet/-/keys/${later.id}`)).invalid, true);
  });
});

describe('API v2 OAuth clients and tokens', () => {
  test('token minting is limited per client (429 slow_down with Retry-After); other clients are not', async () => {
    const client = await createClient(['users:read']);
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof token>> | undefined;
    for (let i = 0; i < 40 && limited === undefined; i++) {
      const res = await token({ grant_type: 'client_credentials', client_secret: client.key });
      statuses.push(res.statusCode);
      if (res.statusCode === 429) limited = res;
    }
    assert.ok(limited, 'never limited');
    assert.equal(statuses.filter((s) => s === 200).length, 30);
    assert.equal(limited.json().error, 'slow_down');
    assert.match(String(limited.headers['retry-after']), /^[1-9][0-9]*$/);
    const other = await createClient(['users:read']);
    const fresh = await token({ grant_type: 'client_credentials', client_secret: other.key });
    assert.equal(fresh.statusCode, 200);
  });

  test('clients: scopes checked, tags required for auth_keys and devices:core, secret shown once', async () => {
    assertV2Error(
      await call('/tailnet/-/keys', { method: 'POST', body: { keyType: 'client', scopes: [] } }),
      400,
      /at least one scope/,
    );
    assertV2Error(
      await call('/tailnet/-/keys', {
        method: 'POST',
        body: { keyType: 'client', scopes: ['devices:everything'] },
      }),
      400,
      /unknown scopes devices:everything/,
    );
    assertV2Error(
      await call('/tailnet/-/keys', { method: 'POST', body: { keyType: 'client', scopes: ['auth_keys'] } }),
      400,
      /needs tags/,
    );
    assertV2Error(
      await call('/tailnet/-/keys', {
        method: 'POST',
        body: { keyType: 'client', scopes: ['auth_keys'], tags: ['tag:nope'] },
      }),
      400,
      /not defined/,
    );
    const client = await createClient(['auth_keys', 'devices:core:read'], ['tag:ci']);
    assert.match(client.key, new RegExp(`^weft-client-${client.id}-[0-9a-f]{64}$`));
    assert.deepEqual(client.scopes, ['auth_keys', 'devices:core:read']);
    const got = json(await call(`/tailnet/-/keys/${client.id}`));
    assert.equal(got.keyType, 'client');
    assert.equal(got.key, undefined);
    const { keys } = json<{ keys: { id: string; keyType: string }[] }>(await call('/tailnet/-/keys'));
    assert.ok(keys.some((k) => k.id === client.id && k.keyType === 'client'));
  });

  test('token endpoint: form or Basic credentials, 1 h Bearer tokens, RFC 6749 errors', async () => {
    const client = await createClient(['devices:core:read', 'dns'], []);
    const viaForm = json<Record<string, unknown>>(
      await token({ grant_type: 'client_credentials', client_id: client.id, client_secret: client.key }),
    );
    assert.equal(viaForm.token_type, 'Bearer');
    assert.equal(viaForm.expires_in, 3600);
    assert.equal(viaForm.scope, 'devices:core:read dns');
    assert.match(String(viaForm.access_token), /^weft-oauth-/);
    const viaBasic = json<Record<string, unknown>>(
      await token({ grant_type: 'client_credentials' }, basic(client.id, client.key)),
    );
    assert.match(String(viaBasic.access_token), /^weft-oauth-/);
    const narrowed = json<Record<string, unknown>>(
      await token({ client_secret: client.key, scope: 'dns:read' }),
    );
    assert.equal(narrowed.scope, 'dns:read');

    const wrong = await token({ client_id: client.id, client_secret: `${client.key.slice(0, -4)}0000` });
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().error, 'invalid_client');
    const otherId = await token({ client_id: '000000000000', client_secret: client.key });
    assert.equal(otherId.statusCode, 401);
    const badScope = await token({ client_secret: client.key, scope: 'policy_file' });
    assert.equal(badScope.statusCode, 400);
    assert.equal(badScope.json().error, 'invalid_scope');
    const badGrant = await token({ grant_type: 'password', client_secret: client.key });
    assert.equal(badGrant.json().error, 'unsupported_grant_type');
    const asJson = await app.inject({
      method: 'POST',
      url: '/api/v2/oauth/token',
      headers: { 'content-type': 'application/json' },
      payload: '{}',
    });
    assert.equal(asJson.statusCode, 400);
    assert.equal(asJson.json().error, 'invalid_request');
  });

  test('a token may do what its scopes allow and nothing else (403); it expires after an hour', async () => {
    const reader = await accessToken(['devices:core:read']);
    json(await call('/tailnet/-/devices', { auth: bearer(reader) }));
    json(await call(`/device/${ids.laptop}`, { auth: bearer(reader) }));
    assertV2Error(
      await call(`/device/${ids.laptop}`, { auth: bearer(reader), method: 'DELETE' }),
      403,
      /lacks the scope devices:core/,
    );
    assertV2Error(
      await call(`/device/${ids.laptop}/routes`, { auth: bearer(reader) }),
      403,
      /devices:routes:read/,
    );
    assertV2Error(await call('/tailnet/-/acl', { auth: bearer(reader) }), 403, /policy_file:read/);
    assertV2Error(await call('/tailnet/-/keys', { auth: bearer(reader) }), 403, /auth_keys:read/);
    assert.ok(tailnet.node(ids.laptop));

    const allRead = await accessToken(['all:read']);
    json(await call('/tailnet/-/acl', { auth: bearer(allRead) }));
    assertV2Error(
      await call('/tailnet/-/dns/nameservers', { auth: bearer(allRead), method: 'POST', body: { dns: [] } }),
      403,
    );

    clock += HOUR + 1000;
    assertV2Error(await call('/tailnet/-/devices', { auth: bearer(reader) }), 401);
  });

  test('keys minted with a token must carry tags the token may give', async () => {
    const minter = await accessToken(['auth_keys'], ['tag:ci']);
    const make = (tags: string[] | null) =>
      call('/tailnet/-/keys', {
        auth: bearer(minter),
        method: 'POST',
        body: { capabilities: { devices: { create: { tags } } } },
      });
    assertV2Error(await make(null), 400, /must have tags/);
    assertV2Error(await make(['tag:other']), 403, /may not give the tags tag:other/);
    const own = json(await make(['tag:ci']));
    assert.match(String(own.key), /^weft-auth-/);
    const owned = json(await make(['tag:web']));
    assert.deepEqual(
      (owned.capabilities as { devices: { create: { tags: string[] } } }).devices.create.tags,
      ['tag:web'],
    );
    assertV2Error(
      await call('/tailnet/-/keys', {
        auth: bearer(minter),
        method: 'POST',
        body: { keyType: 'client', scopes: ['all'] },
      }),
      403,
      /oauth_keys/,
    );
  });

  test('deleting a client ends its tokens', async () => {
    const client = await createClient(['users:read']);
    const access = json<{ access_token: string }>(await token({ client_secret: client.key })).access_token;
    json(await call('/tailnet/-/users', { auth: bearer(access) }));
    json(await call(`/tailnet/-/keys/${client.id}`, { method: 'DELETE' }));
    assertV2Error(await call('/tailnet/-/users', { auth: bearer(access) }), 401);
    assertV2Error(await call(`/tailnet/-/keys/${client.id}`), 404);
  });
});

describe('API v2 DNS', () => {
  test('nameservers: set, read back, and refused values change nothing', async () => {
    assert.deepEqual(json(await call('/tailnet/-/dns/nameservers')), { dns: [] });
    assert.deepEqual(
      json(
        await call('/tailnet/-/dns/nameservers', { method: 'POST', body: { dns: ['1.1.1.1', '8.8.8.8'] } }),
      ),
      {
        dns: ['1.1.1.1', '8.8.8.8'],
        magicDNS: true,
      },
    );
    assertV2Error(
      await call('/tailnet/-/dns/nameservers', { method: 'POST', body: { dns: ['not an ip'] } }),
      400,
      /nameservers/,
    );
    assert.deepEqual(dns.current.nameservers.global, ['1.1.1.1', '8.8.8.8']);
    assert.deepEqual(json(await call('/tailnet/-/dns/nameservers')), { dns: ['1.1.1.1', '8.8.8.8'] });
  });

  test('preferences: MagicDNS is config-only', async () => {
    assert.deepEqual(json(await call('/tailnet/-/dns/preferences')), { magicDNS: true });
    json(await call('/tailnet/-/dns/preferences', { method: 'POST', body: { magicDNS: true } }));
    assertV2Error(
      await call('/tailnet/-/dns/preferences', { method: 'POST', body: { magicDNS: false } }),
      400,
      /dns\.magic_dns/,
    );
  });

  test('search paths, split DNS (PATCH merges, null removes; PUT replaces) and the whole configuration', async () => {
    assert.deepEqual(
      json(
        await call('/tailnet/-/dns/searchpaths', { method: 'POST', body: { searchPaths: ['corp.example'] } }),
      ),
      { searchPaths: ['corp.example'] },
    );
    assert.deepEqual(json(await call('/tailnet/-/dns/searchpaths')), { searchPaths: ['corp.example'] });
    json(await call('/tailnet/-/dns/split-dns', { method: 'PATCH', body: { 'a.example': ['10.0.0.53'] } }));
    assert.deepEqual(
      json(await call('/tailnet/-/dns/split-dns', { method: 'PATCH', body: { 'b.example': ['10.0.0.54'] } })),
      {
        'a.example': ['10.0.0.53'],
        'b.example': ['10.0.0.54'],
      },
    );
    assert.deepEqual(
      json(await call('/tailnet/-/dns/split-dns', { method: 'PATCH', body: { 'a.example': null } })),
      { 'b.example': ['10.0.0.54'] },
    );
    assert.deepEqual(
      json(await call('/tailnet/-/dns/split-dns', { method: 'PUT', body: { 'c.example': ['10.0.0.55'] } })),
      { 'c.example': ['10.0.0.55'] },
    );
    assertV2Error(
      await call('/tailnet/-/dns/split-dns', { method: 'PUT', body: { 'c.example': ['nope'] } }),
      400,
    );
    assert.deepEqual(dns.current.nameservers.split, { 'c.example': ['10.0.0.55'] });
    const configuration = json(await call('/tailnet/-/dns/configuration'));
    assert.deepEqual(configuration, {
      nameservers: [{ address: '1.1.1.1' }, { address: '8.8.8.8' }],
      splitDNS: { 'c.example': [{ address: '10.0.0.55' }] },
      searchPaths: ['corp.example'],
      preferences: { overrideLocalDNS: true, magicDNS: true },
    });
    json(
      await call('/tailnet/-/dns/configuration', {
        method: 'POST',
        body: { nameservers: [{ address: '9.9.9.9' }], searchPaths: [] },
      }),
    );
    assert.deepEqual(dns.current.nameservers, { global: ['9.9.9.9'], split: {} });
  });

  test('concurrent writes all land: each applies its change to the settings the one before left', async () => {
    // Terraform applies tailscale_dns_split_nameservers, _nameservers and _search_paths in parallel.
    json(await call('/tailnet/-/dns/split-dns', { method: 'PUT', body: {} }));
    const domains = ['a', 'b', 'c', 'd', 'e'].map((label) => `${label}.parallel.example`);
    const answers = await Promise.all([
      ...domains.map((domain, i) =>
        call('/tailnet/-/dns/split-dns', { method: 'PATCH', body: { [domain]: [`10.0.1.${i + 1}`] } }),
      ),
      call('/tailnet/-/dns/nameservers', { method: 'POST', body: { dns: ['1.0.0.1'] } }),
      call('/tailnet/-/dns/searchpaths', { method: 'POST', body: { searchPaths: ['parallel.example'] } }),
    ]);
    for (const answer of answers) json(answer);
    const expected = Object.fromEntries(domains.map((domain, i) => [domain, [`10.0.1.${i + 1}`]]));
    assert.deepEqual(dns.current.nameservers.split, expected);
    assert.deepEqual(json(await call('/tailnet/-/dns/split-dns')), expected);
    assert.deepEqual(dns.current.nameservers.global, ['1.0.0.1']);
    assert.deepEqual(dns.current.searchDomains, ['parallel.example']);
    // What is stored (and survives a restart) is the same.
    const restarted = await DnsSettingsStore.open({
      config: parseConfig({}).dns,
      storage: store.settings,
      log: silent,
    });
    assert.deepEqual(restarted.current, dns.current);
  });
});

describe('API v2 users', () => {
  test("list and get in Tailscale's User shape; filters; 404", async () => {
    const { users } = json<{ users: Record<string, unknown>[] }>(await call('/tailnet/-/users'));
    const alice = users.find((u) => u.id === String(ids.alice));
    assert.equal(alice?.loginName, 'alice@example.com');
    assert.equal(alice?.displayName, 'Alice');
    assert.equal(alice?.deviceCount, 1);
    assert.equal(alice?.role, 'member');
    assert.deepEqual(json(await call(`/users/${ids.alice}`)).loginName, 'alice@example.com');
    assert.deepEqual(json(await call('/tailnet/-/users?role=admin')), { users: [] });
    assertV2Error(await call('/tailnet/-/users?type=robot'), 400, /query\.type/);
    assertV2Error(await call('/users/424242'), 404);
  });

  test('deleting a device through v2 reaches the tailnet', async () => {
    const before = tailnet.size;
    json(await call(`/device/${ids.server}`, { method: 'DELETE' }));
    assert.equal(tailnet.size, before - 1);
    assertV2Error(await call(`/device/${ids.server}`), 404);
  });
});

describe('/api/v1/oauthclient (weft oauthclients)', () => {
  const v1 = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) =>
    app.inject({
      method,
      url: `/api/v1${url}`,
      headers: { authorization: bearer(apiKey) },
      ...(payload === undefined ? {} : { payload: payload as object }),
    });

  test('create shows the secret once; list and delete; the same rules as API v2', async () => {
    const created = await v1('POST', '/oauthclient', { scopes: ['dns:read'], description: 'dns reader' });
    assert.equal(created.statusCode, 200, created.body);
    const { oauthClient, secret } = created.json() as {
      oauthClient: { id: string; createdBy: string };
      secret: string;
    };
    assert.match(secret, new RegExp(`^weft-client-${oauthClient.id}-`));
    assert.match(oauthClient.createdBy, /^apikey:/);
    const listed = (await v1('GET', '/oauthclient')).json() as {
      oauthClients: { id: string; description: string }[];
    };
    assert.equal(listed.oauthClients.find((c) => c.id === oauthClient.id)?.description, 'dns reader');
    assert.equal(JSON.stringify(listed).includes(secret), false);

    const refused = await v1('POST', '/oauthclient', { scopes: ['devices:core'] });
    assert.equal(refused.statusCode, 400);
    assert.match(refused.json().detail, /needs tags/);
    assert.equal((await v1('POST', '/oauthclient', { scopes: [] })).statusCode, 400);

    assert.equal((await v1('DELETE', `/oauthclient/${oauthClient.id}`)).statusCode, 200);
    const again = await v1('DELETE', `/oauthclient/${oauthClient.id}`);
    assert.equal(again.statusCode, 404);
    assert.equal(again.json().code, 'OAUTH_CLIENT_NOT_FOUND');
    assert.equal((await v1('DELETE', '/oauthclient/xyz')).statusCode, 400);
    const token = await app.inject({
      method: 'POST',
      url: '/api/v2/oauth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `client_secret=${secret}`,
    });
    assert.equal(token.statusCode, 401);
  });
});
