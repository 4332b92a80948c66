// OidcLogin against the test provider (test/harness/oidc.ts) with a fake Logins and a SQLite store:
// what reaches Logins.complete (user, method, the token's expiry), the groups hook, and bad ids.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { OidcLogin, type OidcLoginOptions } from '../../src/auth/oidc.ts';
import { parseConfig } from '../../src/config/index.ts';
import { openStore, type Store } from '../../src/db/store.ts';
import { createLogger } from '../../src/observe/logger.ts';
import type { LoginCompletion, Logins, PendingLogin } from '../../src/state/logins.ts';
import type { TailnetNode } from '../../src/state/model.ts';
import { WeftError } from '../../src/types/errors.ts';
import { MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import {
  CookieBrowser,
  callbackUrlFromProvider,
  startOidcProvider,
  type TestOidcProvider,
} from '../harness/oidc.ts';

const SERVER_URL = 'http://127.0.0.1:9';

/** A started relying party for `provider`: weft's config is its issuer and client id plus `oidc`. */
async function relyingParty(
  provider: TestOidcProvider,
  dir: string,
  oidc: Record<string, unknown>,
  options: Omit<OidcLoginOptions, 'config' | 'serverUrl' | 'clientSecret'>,
): Promise<OidcLogin> {
  const config = parseConfig(
    {
      server_url: SERVER_URL,
      oidc: { issuer: provider.issuer, client_id: provider.clientId, ...oidc },
    },
    { cwd: dir },
  );
  assert.ok(config.oidc);
  const login = new OidcLogin({
    ...options,
    config: config.oidc,
    serverUrl: SERVER_URL,
    clientSecret: provider.clientSecret,
  });
  await login.start();
  return login;
}

/** Logins that records completions instead of registering nodes. */
class FakeLogins implements Logins {
  readonly pending = new Map<string, PendingLogin>();
  readonly completed: Array<{ id: string; completion: LoginCompletion }> = [];

  add(id: string): void {
    const now = new Date();
    this.pending.set(id, {
      id,
      machineKey: PrivateKey.generate(MachinePublic).publicKey,
      nodeKey: PrivateKey.generate(NodePublic).publicKey,
      hostinfo: { Hostname: `host-${id}` },
      createdAt: now,
      expiresAt: new Date(now.getTime() + 60_000),
    });
  }

  get(id: string): PendingLogin | undefined {
    return this.pending.get(id);
  }

  async complete(id: string, completion: LoginCompletion): Promise<TailnetNode> {
    if (!this.pending.delete(id)) throw new WeftError('LOGIN_NOT_FOUND', `no login ${id}`);
    this.completed.push({ id, completion });
    return {} as TailnetNode;
  }

  reject(id: string): boolean {
    return this.pending.delete(id);
  }
}

describe('OidcLogin', () => {
  let provider: TestOidcProvider;
  let store: Store;
  let dir: string;
  const logins = new FakeLogins();
  const groupsSeen: Array<[number, readonly string[]]> = [];
  const usersChanged: number[] = [];
  let oidc: OidcLogin;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-oidc-unit-'));
    ({ store } = await openStore({ type: 'sqlite', path: join(dir, 'weft.db') }));
    provider = await startOidcProvider({
      redirectUri: `${SERVER_URL}/oidc/callback`,
      accounts: new Map([
        ['ann', { email: 'ann@example.com', email_verified: true, groups: ['ops', 'eng'] }],
      ]),
      // Every claim in the ID token too: the identity must come out the same.
      conformIdTokenClaims: false,
    });
    oidc = await relyingParty(
      provider,
      dir,
      { use_expiry_from_token: true, policy_groups: true, scope: ['openid', 'email', 'groups'] },
      {
        logins,
        users: store.users,
        userChanged: async (id) => {
          usersChanged.push(id);
        },
        groupsChanged: async (id, groups) => {
          groupsSeen.push([id, groups]);
        },
        log: createLogger({ level: 'silent' }),
      },
    );
  });

  after(async () => {
    await provider.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** begin → provider → callback → confirm, as the routes do it. */
  async function logIn(id: string): Promise<void> {
    logins.add(id);
    const { location, setCookie } = await oidc.begin(id);
    const browser = new CookieBrowser();
    const [binding] = setCookie.split(';');
    const callback = new URL(await callbackUrlFromProvider(browser, location, 'ann', provider.issuer));
    const view = await oidc.callback(callback.search.slice(1), binding);
    const confirmCookie = view.setCookies.find((c) => c.startsWith('weft_confirm='))?.split(';')[0];
    await oidc.confirm(id, confirmCookie, view.csrfToken);
  }

  test('completes the login with the user, method oidc and the ID token expiry', async () => {
    const startedAt = Date.now();
    await logIn('login-1');
    const [done] = logins.completed;
    assert.ok(done);
    assert.equal(done.id, 'login-1');
    assert.equal(done.completion.method, 'oidc');
    const user = await store.users.findByProviderId(`${provider.issuer}/ann`);
    assert.equal(done.completion.userId, user?.id);
    assert.equal(user?.email, 'ann@example.com');
    // The test provider's ID tokens live 600 s.
    const expiry = done.completion.expiry?.getTime() ?? 0;
    assert.ok(expiry > startedAt + 590_000 && expiry < Date.now() + 610_000, `expiry ${expiry}`);
    assert.deepEqual(usersChanged, [user?.id]);
    assert.deepEqual(groupsSeen, [[user?.id, ['ops', 'eng']]]);
  });

  test('unknown or malformed login ids are refused before the provider is involved', async () => {
    for (const id of ['nope', 'bad id', '../x', '']) {
      await assert.rejects(oidc.begin(id), (err: WeftError) => err.code === 'LOGIN_NOT_FOUND');
    }
  });

  test('a callback without state, and a confirmation without a cookie, are refused', async () => {
    await assert.rejects(
      oidc.callback('code=abc', undefined),
      (err: WeftError) => err.code === 'OIDC_STATE_INVALID',
    );
    logins.add('login-2');
    await assert.rejects(
      oidc.confirm('login-2', undefined, 'token'),
      (err: WeftError) => err.code === 'CSRF_INVALID',
    );
    assert.equal(logins.completed.length, 1);
  });

  test('a callback opened in another browser leaves the state to the rightful one; a replay still fails', async () => {
    logins.add('login-3');
    const { location, setCookie } = await oidc.begin('login-3');
    const [binding] = setCookie.split(';');
    assert.ok(binding);
    const callback = new URL(
      await callbackUrlFromProvider(new CookieBrowser(), location, 'ann', provider.issuer),
    );
    const query = callback.search.slice(1);
    const forged = `${binding.slice(0, binding.indexOf('='))}=${'A'.repeat(43)}`;
    for (const cookies of [undefined, '', forged, 'weft_oidc_other=x']) {
      await assert.rejects(
        oidc.callback(query, cookies),
        (err: WeftError) => err.code === 'OIDC_STATE_INVALID' && /another browser/.test(err.message),
      );
    }
    // The browser that started the login still finishes it, once.
    const view = await oidc.callback(query, binding);
    assert.equal(view.loginId, 'login-3');
    await assert.rejects(
      oidc.callback(query, binding),
      (err: WeftError) => err.code === 'OIDC_STATE_INVALID' && /already used/.test(err.message),
    );
    assert.equal(logins.completed.length, 1);
  });
});

describe('OidcLogin with use_expiry_from_token: an ID token about to expire', () => {
  const logged: string[] = [];
  const logSink = new Writable({
    write: (chunk, _encoding, done) => {
      logged.push(String(chunk));
      done();
    },
  });
  /** The provider's ID tokens live two minutes; the confirmation may wait up to five. */
  const TOKEN_TTL_MS = 120_000;
  let provider: TestOidcProvider;
  let store: Store;
  let dir: string;
  const logins = new FakeLogins();
  const usersChanged: number[] = [];
  /** How far weft's clock runs ahead of the real one. */
  let skewMs = 0;
  let oidc: OidcLogin;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-oidc-expiry-'));
    ({ store } = await openStore({ type: 'sqlite', path: join(dir, 'weft.db') }));
    provider = await startOidcProvider({
      redirectUri: `${SERVER_URL}/oidc/callback`,
      accounts: new Map([['ann', { email: 'ann@example.com', email_verified: true }]]),
      idTokenTtlSeconds: TOKEN_TTL_MS / 1000,
    });
    oidc = await relyingParty(
      provider,
      dir,
      { use_expiry_from_token: true },
      {
        logins,
        users: store.users,
        userChanged: async (id) => {
          usersChanged.push(id);
        },
        log: createLogger({ level: 'info', format: 'json', destination: logSink }),
        now: () => Date.now() + skewMs,
      },
    );
  });

  after(async () => {
    await provider.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** begin → provider → callback (on time); then the person waits `waitMs` before confirming. */
  async function confirmAfter(id: string, waitMs: number): Promise<void> {
    skewMs = 0;
    logins.add(id);
    const { location, setCookie } = await oidc.begin(id);
    const [binding] = setCookie.split(';');
    const callback = new URL(
      await callbackUrlFromProvider(new CookieBrowser(), location, 'ann', provider.issuer),
    );
    const view = await oidc.callback(callback.search.slice(1), binding);
    const confirmCookie = view.setCookies.find((c) => c.startsWith('weft_confirm='))?.split(';')[0];
    skewMs = waitMs;
    await oidc.confirm(id, confirmCookie, view.csrfToken);
  }

  for (const [what, waitMs] of [
    ['seconds from its expiry', TOKEN_TTL_MS - 20_000],
    ['already past its expiry', TOKEN_TTL_MS + 60_000],
  ] as const) {
    test(`a token ${what} is refused at confirmation, and nothing changes`, async () => {
      const id = `late-${waitMs}`;
      await assert.rejects(
        confirmAfter(id, waitMs),
        (err: WeftError) =>
          err.code === 'OIDC_LOGIN_EXPIRED' &&
          err.status === 400 &&
          /identity provider's login has expired; start again/.test(err.message),
      );
      assert.deepEqual(logins.completed, []);
      assert.ok(logins.get(id), 'the login is still pending: its link can be opened again');
      assert.equal(await store.users.findByProviderId(`${provider.issuer}/ann`), undefined);
      assert.deepEqual(usersChanged, []);
      const log = logged.join('');
      assert.match(log, /the ID token expires within a minute/, 'the refusal is logged');
      assert.equal(log.includes(id), false, 'but not the login id, a capability while the login waits');
    });
  }

  test('a token with more than a minute left completes the login with that expiry', async () => {
    await confirmAfter('in-time', TOKEN_TTL_MS - 90_000);
    const done = logins.completed.find((completed) => completed.id === 'in-time');
    assert.ok(done);
    const expiry = done.completion.expiry?.getTime() ?? 0;
    assert.ok(expiry - (Date.now() + skewMs) >= 60_000, `expiry ${new Date(expiry).toISOString()}`);
  });
});
