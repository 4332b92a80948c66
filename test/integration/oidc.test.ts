/**
 * OIDC login end to end: a real weft (`bin/weft serve`), a real OpenID provider (oidc-provider on
 * loopback, PKCE required) and the fake control client as the device. The browser is a cookie-jar fetch
 * that signs in on the provider's pages and submits weft's confirmation form.
 *
 *   login       AuthURL → provider → confirmation page → POST → the device's follow-up register
 *               returns MachineAuthorized; the user is `<issuer>/<sub>`, matched again by sub when the
 *               e-mail changes; a preferred_username another user holds is not taken over
 *   refusals    allowed_groups / allowed_domains / allowed_users / unverified e-mail
 *   tampering   unknown and replayed state, missing binding cookie (which leaves the state to the
 *               rightful browser), wrong or missing CSRF token, a confirmation posted for another
 *               login: refused, and no user or node appears
 *   PKCE        without it the provider refuses the login (so the passing logins did send it)
 *   start-up    an unavailable provider stops start-up, or (only_start_if_oidc_is_available: false)
 *               leaves CLI registration working
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { freeLoopbackPort } from '../harness/child.ts';
import { type ControlConnection, connectControl, DEFAULT_CAP_VERSION } from '../harness/control-client.ts';
import {
  type BrowserPage,
  CookieBrowser,
  callbackUrlFromProvider,
  type OidcAccountClaims,
  signInThroughProvider,
  startOidcProvider,
  submitConfirmation,
  type TestOidcProvider,
} from '../harness/oidc.ts';
import { listNodes, loopbackServerEnv, runWeft, startWeft, type WeftServer } from '../harness/weft.ts';

// biome-ignore lint/suspicious/noExplicitAny: protocol JSON is read field by field
type Json = any;

const FOLLOW_UP_TIMEOUT_MS = 60_000;

interface UserListing {
  id: string;
  name: string;
  email: string;
  provider: string;
  providerId: string;
  displayName: string;
}

interface OidcSetup {
  weft: WeftServer;
  provider: TestOidcProvider;
  accounts: Map<string, OidcAccountClaims>;
  close(): Promise<void>;
}

const connections: ControlConnection[] = [];
const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-oidc-test-'));
  tempDirs.push(dir);
  return dir;
}

/** A provider with `accounts` and a weft whose `oidc` section points at it, plus `oidc` overrides. */
async function startSetup(
  accounts: Record<string, OidcAccountClaims>,
  oidc: Record<string, unknown> = {},
): Promise<OidcSetup> {
  const port = await freeLoopbackPort();
  const accountMap = new Map(Object.entries(accounts));
  const provider = await startOidcProvider({
    redirectUri: `http://127.0.0.1:${port}/oidc/callback`,
    accounts: accountMap,
  });
  const configPath = join(await tempDir(), 'weft.yaml');
  const config = {
    oidc: {
      issuer: provider.issuer,
      client_id: provider.clientId,
      client_secret_path: provider.clientSecretPath,
      scope: ['openid', 'profile', 'email', 'groups'],
      ...oidc,
    },
  };
  await writeFile(configPath, JSON.stringify(config));
  const weft = await startWeft({ env: loopbackServerEnv(port), args: ['--config', configPath] });
  return {
    weft,
    provider,
    accounts: accountMap,
    close: async () => {
      await weft.stop();
      await provider.close();
    },
  };
}

interface PendingDevice {
  conn: ControlConnection;
  authUrl: string;
  /** The device's follow-up register: settles when the login completes (or the test ends). */
  followUp: Promise<Json>;
}

/** A device that registers without a key: it gets an AuthURL and waits on it. */
async function pendingDevice(weft: WeftServer, hostname: string): Promise<PendingDevice> {
  const conn = await connectControl(weft.url);
  connections.push(conn);
  const body = {
    Version: DEFAULT_CAP_VERSION,
    NodeKey: PrivateKey.generate(NodePublic).publicKey,
    Hostinfo: { Hostname: hostname, OS: 'linux', IPNVersion: '1.96.0' },
  };
  const first = (await conn.request('POST', '/machine/register', body)).json();
  assert.match(String(first.AuthURL), /\/register\/weft-login-[0-9a-f]{24}$/, JSON.stringify(first));
  const followUp = conn
    .request(
      'POST',
      '/machine/register',
      { ...body, Followup: first.AuthURL },
      { timeoutMs: FOLLOW_UP_TIMEOUT_MS },
    )
    .then((response) => response.json());
  // A test that fails before awaiting it must not leave an unhandled rejection behind.
  followUp.catch(() => {});
  return { conn, authUrl: first.AuthURL, followUp };
}

async function listUsers(weft: WeftServer): Promise<UserListing[]> {
  const result = await weft.cli(['users', 'list', '-o', 'json']);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as UserListing[];
}

async function counts(weft: WeftServer): Promise<{ users: number; nodes: number }> {
  return { users: (await listUsers(weft)).length, nodes: (await listNodes(weft)).length };
}

/** A policy whose own test needs alice in `group:eng`, which only the provider says she is. */
const GROUP_POLICY = JSON.stringify({
  groups: { 'group:eng': [] },
  acls: [{ action: 'accept', src: ['group:eng'], dst: ['group:eng:22'] }],
  tests: [{ src: 'alice@example.com', accept: ['alice@example.com:22'] }],
});

async function setPolicy(weft: WeftServer, text: string): Promise<{ code: number | null; stderr: string }> {
  const file = join(await tempDir(), 'policy.hujson');
  await writeFile(file, text);
  return weft.cli(['policy', 'set', file]);
}

/**
 * A device `hostname` waiting for its login, and a new browser that opened its AuthURL and signed in on
 * the provider as `sub`; `page` is what weft answered (the confirmation, or why it refuses).
 */
async function signIn(
  setup: OidcSetup,
  sub: string,
  hostname: string,
): Promise<{ device: PendingDevice; browser: CookieBrowser; page: BrowserPage }> {
  const device = await pendingDevice(setup.weft, hostname);
  const browser = new CookieBrowser();
  const page = await signInThroughProvider(browser, device.authUrl, sub, setup.provider.issuer);
  return { device, browser, page };
}

/** Signs in as `sub` and confirms; returns the follow-up's answer and the pages seen. */
async function logIn(
  setup: OidcSetup,
  sub: string,
  hostname: string,
): Promise<{ registered: Json; confirmation: BrowserPage; done: BrowserPage; browser: CookieBrowser }> {
  const { device, browser, page: confirmation } = await signIn(setup, sub, hostname);
  assert.equal(confirmation.status, 200, confirmation.html);
  const done = await submitConfirmation(browser, confirmation);
  assert.equal(done.status, 200, done.html);
  return { registered: await device.followUp, confirmation, done, browser };
}

after(async () => {
  await Promise.all(connections.map((conn) => conn.close()));
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('OIDC login', () => {
  let setup: OidcSetup;

  before(async () => {
    setup = await startSetup({
      alice: {
        email: 'alice@example.com',
        email_verified: true,
        preferred_username: 'alice',
        name: 'Alice Example',
        groups: ['eng'],
      },
      'bob-sub': { email: 'bob@example.com', email_verified: 'true', preferred_username: 'bob', name: 'Bob' },
      mallory: { email: 'mallory@example.com', email_verified: true, preferred_username: 'mallory' },
      // No verified e-mail: weft must not record one.
      unverified: { email: 'ceo@example.com', email_verified: false, preferred_username: 'unverified' },
    });
  });

  after(() => setup.close());

  test('a full login registers the device for the OIDC user after the confirmation', async () => {
    const device = await pendingDevice(setup.weft, 'laptop-1');
    const browser = new CookieBrowser();

    // The AuthURL sends the browser to the provider with PKCE (S256), state and nonce, and sets the
    // browser-binding cookie, scoped to the callback.
    const start = await browser.request(device.authUrl);
    assert.equal(start.status, 302);
    const location = new URL(String(start.headers.get('location')));
    assert.equal(location.origin, setup.provider.issuer);
    assert.equal(location.searchParams.get('code_challenge_method'), 'S256');
    assert.match(location.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.ok(location.searchParams.get('state'));
    assert.ok(location.searchParams.get('nonce'));
    assert.equal(location.searchParams.get('scope'), 'openid profile email groups');
    const [binding] = start.headers.getSetCookie();
    assert.match(
      binding ?? '',
      /^weft_oidc_[A-Za-z0-9_-]+=[A-Za-z0-9_-]{43}; Path=\/oidc\/callback; Max-Age=600; HttpOnly; SameSite=Lax$/,
    );

    const confirmation = await signInThroughProvider(browser, location.href, 'alice', setup.provider.issuer);
    assert.equal(confirmation.status, 200, confirmation.html);
    assert.match(confirmation.html, /laptop-1/);
    assert.match(confirmation.html, /alice@example\.com/);
    assert.match(confirmation.html, /a new user <code>alice<\/code>/);
    // Nothing is written before the confirmation.
    assert.deepEqual(
      (await listUsers(setup.weft)).map((u) => u.name),
      [],
    );

    const done = await submitConfirmation(browser, confirmation);
    assert.equal(done.status, 200, done.html);
    assert.match(done.html, /laptop-1<\/strong> is now logged in as <code>alice<\/code>/);

    const registered = await device.followUp;
    assert.equal(registered.MachineAuthorized, true, JSON.stringify(registered));
    assert.equal(registered.Login.LoginName, 'alice@example.com');
    assert.equal(registered.Login.Provider, 'oidc');

    const [alice] = (await listUsers(setup.weft)).filter((u) => u.name === 'alice');
    assert.ok(alice);
    assert.equal(alice.providerId, `${setup.provider.issuer}/alice`);
    assert.equal(alice.provider, 'oidc');
    assert.equal(alice.email, 'alice@example.com');
    assert.equal(alice.displayName, 'Alice Example');
    const node = (await listNodes(setup.weft)).find((n) => n.givenName === 'laptop-1');
    assert.ok(node);
    assert.equal((node.user as { name?: string } | undefined)?.name, 'alice');
    assert.equal(node.registerMethod, 'oidc');

    // The callback's authorization code never reaches the log, not even from a HEAD or POST of the
    // callback URL (which are refused without using up anything).
    const callbackUrl = browser.visited.find((url) => url.includes('/oidc/callback?')) ?? 'http://x/';
    const code = new URL(callbackUrl).searchParams.get('code');
    assert.ok(code);
    assert.equal((await fetch(callbackUrl, { method: 'HEAD' })).status, 405);
    assert.equal((await fetch(callbackUrl, { method: 'POST' })).status, 405);
    await setup.weft.waitForLog((e) => e.msg === 'request' && e.method === 'POST' && e.status === 405, 5_000);
    assert.equal(setup.weft.output().includes(code), false, 'the authorization code was logged');
    assert.ok(setup.weft.output().includes('"url":"/oidc/callback"'), 'the callback is logged by its path');
    // Nor do the client secret, the state, or any cookie weft set (binding, CSRF).
    const output = setup.weft.output();
    const state = new URL(callbackUrl).searchParams.get('state');
    assert.ok(state);
    const weftCookies = [...browser.cookies(new URL(setup.weft.url).hostname).values()];
    const secrets = [setup.provider.clientSecret, state, ...weftCookies.map((c) => c.value)];
    const leaked = secrets.filter((value) => value.length >= 16 && output.includes(value));
    assert.deepEqual(leaked, [], 'login secrets were logged');
  });

  test('the same subject with a changed e-mail logs in as the same user', async () => {
    const before = (await listUsers(setup.weft)).find((u) => u.name === 'alice');
    assert.ok(before, 'the first test logs alice in');
    setup.accounts.set('alice', {
      ...setup.accounts.get('alice'),
      email: 'alice@new.example.com',
      name: 'Alice N.',
    });
    const { registered } = await logIn(setup, 'alice', 'laptop-2');
    assert.equal(registered.MachineAuthorized, true);
    assert.equal(registered.Login.ID, Number(before.id));

    const users = await listUsers(setup.weft);
    assert.equal(users.filter((u) => u.providerId === `${setup.provider.issuer}/alice`).length, 1);
    const after = users.find((u) => u.id === before.id);
    assert.equal(after?.email, 'alice@new.example.com');
    assert.equal(after?.displayName, 'Alice N.');
    const owners = (await listNodes(setup.weft))
      .filter((n) => ['laptop-1', 'laptop-2'].includes(n.givenName))
      .map((n) => (n.user as { id?: string }).id);
    assert.deepEqual(owners, [before.id, before.id]);
  });

  test('a preferred_username that another user holds is not taken over', async () => {
    const created = await setup.weft.cli(['users', 'create', 'bob', '--email', 'bob@cli.example.com']);
    assert.equal(created.code, 0, created.stderr);
    const { registered } = await logIn(setup, 'bob-sub', 'bobs-pc');
    assert.equal(registered.MachineAuthorized, true);

    const users = await listUsers(setup.weft);
    const cliBob = users.find((u) => u.name === 'bob');
    assert.equal(cliBob?.providerId, '');
    assert.equal(cliBob?.email, 'bob@cli.example.com');
    const oidcBob = users.find((u) => u.providerId === `${setup.provider.issuer}/bob-sub`);
    assert.match(oidcBob?.name ?? '', /^bob-[0-9a-f]{6}$/);
    assert.equal(registered.Login.ID, Number(oidcBob?.id));
    const node = (await listNodes(setup.weft)).find((n) => n.givenName === 'bobs-pc');
    assert.equal((node?.user as { name?: string } | null)?.name, oidcBob?.name);
  });

  test('an unverified e-mail is not recorded on the user', async () => {
    await logIn(setup, 'unverified', 'kiosk');
    const user = (await listUsers(setup.weft)).find((u) => u.providerId.endsWith('/unverified'));
    assert.equal(user?.name, 'unverified');
    assert.equal(user?.email, '');
  });

  test('without policy_groups the groups claim gives no group membership', async () => {
    // alice (groups claim: eng) has logged in above; group:eng stays empty, so the policy's test fails.
    const refused = await setPolicy(setup.weft, GROUP_POLICY);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /alice@example\.com cannot reach alice@example\.com:22/);
  });

  describe('tampering is refused and changes nothing', () => {
    test('an unknown state, a replayed callback and a callback without the binding cookie', async () => {
      const before = await counts(setup.weft);
      const device = await pendingDevice(setup.weft, 'tampered');

      // Unknown state: the callback URL with another state.
      const browser = new CookieBrowser();
      const callback = await callbackUrlFromProvider(
        browser,
        device.authUrl,
        'mallory',
        setup.provider.issuer,
      );
      const forged = new URL(callback);
      forged.searchParams.set('state', 'x'.repeat(43));
      const unknown = await browser.request(forged.href);
      assert.equal(unknown.status, 400);
      assert.match(await unknown.text(), /unknown, was already used, or has expired/);

      // The real callback works once; the same URL again is refused.
      const first = await browser.request(callback);
      assert.equal(first.status, 200);
      await first.text();
      const replay = await browser.request(callback);
      assert.equal(replay.status, 400);
      assert.match(await replay.text(), /already used/);

      // Another browser (no binding cookie) cannot finish a login started elsewhere.
      const starter = new CookieBrowser();
      const stolen = await callbackUrlFromProvider(starter, device.authUrl, 'mallory', setup.provider.issuer);
      const other = new CookieBrowser();
      const refused = await other.request(stolen);
      assert.equal(refused.status, 400);
      assert.match(await refused.text(), /started in another browser/);
      // ... and does not use up the state: the browser that started the login still can, once.
      const rightful = await starter.request(stolen);
      assert.equal(rightful.status, 200);
      assert.match(await rightful.text(), /tampered/);
      const again = await starter.request(stolen);
      assert.equal(again.status, 400);
      assert.match(await again.text(), /already used/);

      assert.deepEqual(await counts(setup.weft), before);
    });

    test('a wrong or missing CSRF token, or a confirmation for another login', async () => {
      const before = await counts(setup.weft);
      const { browser, page: confirmation } = await signIn(setup, 'mallory', 'csrf-target');
      assert.equal(confirmation.status, 200, confirmation.html);

      const wrong = await submitConfirmation(browser, confirmation, { csrf: 'A'.repeat(43) });
      assert.equal(wrong.status, 403);
      assert.match(wrong.html, /confirmation form is invalid/);

      // The form without the cookie (a cross-site POST carries no SameSite=Lax cookie).
      const noCookie = new CookieBrowser();
      const crossSite = await submitConfirmation(noCookie, confirmation);
      assert.equal(crossSite.status, 403);

      // The token of this confirmation posted to another pending login.
      const otherDevice = await pendingDevice(setup.weft, 'other-target');
      const otherId = otherDevice.authUrl.slice(otherDevice.authUrl.lastIndexOf('/') + 1);
      const elsewhere = await submitConfirmation(browser, {
        ...confirmation,
        html: confirmation.html.replace(/\/register\/confirm\/[^"]+/, `/register/confirm/${otherId}`),
      });
      assert.equal(elsewhere.status, 403);
      assert.deepEqual(await counts(setup.weft), before);
    });

    test('a confirmation is single-use', async () => {
      const { device, browser, page: confirmation } = await signIn(setup, 'mallory', 'once');
      const cookies = new Map(browser.cookies('127.0.0.1'));
      const done = await submitConfirmation(browser, confirmation);
      assert.equal(done.status, 200, done.html);
      assert.equal((await device.followUp).MachineAuthorized, true);
      const nodes = (await listNodes(setup.weft)).length;
      // weft cleared the cookie; put it back, as a replaying attacker holding both would.
      for (const [name, cookie] of cookies) browser.cookies('127.0.0.1').set(name, cookie);
      const again = await submitConfirmation(browser, confirmation);
      assert.equal(again.status, 403);
      assert.equal((await listNodes(setup.weft)).length, nodes);
    });
  });
});

describe('OIDC allow-lists', () => {
  let setup: OidcSetup;

  before(async () => {
    setup = await startSetup(
      {
        alice: { email: 'alice@example.com', email_verified: true, groups: ['vpn', 'eng'] },
        bob: { email: 'bob@other.org', email_verified: true, groups: 'vpn' },
        carol: { email: 'carol@example.com', email_verified: true, groups: ['eng'] },
        dave: { email: 'dave@example.com', email_verified: false, groups: ['vpn'] },
        erin: { email: 'erin@example.com', email_verified: true, groups: ['vpn'] },
      },
      {
        allowed_groups: ['vpn'],
        allowed_domains: ['example.com'],
        allowed_users: ['alice@example.com', 'dave@example.com'],
      },
    );
  });

  after(() => setup.close());

  const refusals: Array<[sub: string, why: string, message: RegExp]> = [
    ['bob', 'another domain', /domain other\.org may not log in/],
    ['carol', 'not in an allowed group', /not in any of the groups allowed/],
    ['dave', 'unverified e-mail', /is not verified/],
    ['erin', 'not an allowed user', /account erin@example\.com may not log in/],
  ];
  for (const [sub, why, message] of refusals) {
    test(`${sub} is refused (${why}) and nothing is created`, async () => {
      const before = await counts(setup.weft);
      const { page } = await signIn(setup, sub, `${sub}-pc`);
      assert.equal(page.status, 403, page.html);
      assert.match(page.html, message);
      assert.doesNotMatch(page.html, /<form/);
      assert.deepEqual(await counts(setup.weft), before);
    });
  }

  test('alice passes every list', async () => {
    const { registered } = await logIn(setup, 'alice', 'alice-pc');
    assert.equal(registered.MachineAuthorized, true);
  });
});

describe('OIDC groups in the policy (policy_groups: true)', () => {
  let setup: OidcSetup;

  before(async () => {
    setup = await startSetup(
      { alice: { email: 'alice@example.com', email_verified: true, groups: ['eng', 'vpn'] } },
      { policy_groups: true },
    );
  });

  after(() => setup.close());

  test("the groups claim makes alice a member of the policy's group:eng", async () => {
    // Before alice logs in the group is empty (her stand-in device has no groups): refused.
    assert.notEqual((await setPolicy(setup.weft, GROUP_POLICY)).code, 0);
    await logIn(setup, 'alice', 'alice-laptop');
    const accepted = await setPolicy(setup.weft, GROUP_POLICY);
    assert.equal(accepted.code, 0, accepted.stderr);

    // A later login without the group takes the membership away: the policy in force now fails its
    // own test against the tailnet, so setting it again is refused.
    setup.accounts.set('alice', { ...setup.accounts.get('alice'), groups: ['vpn'] });
    await logIn(setup, 'alice', 'alice-desktop');
    const refused = await setPolicy(setup.weft, `${GROUP_POLICY}\n`);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /alice@example\.com cannot reach alice@example\.com:22/);
  });
});

describe('OIDC PKCE', () => {
  test('without PKCE the provider (which requires it) refuses the login', async () => {
    const setup = await startSetup(
      { alice: { email: 'alice@example.com', email_verified: true } },
      { pkce: { enabled: false } },
    );
    try {
      const device = await pendingDevice(setup.weft, 'no-pkce');
      const browser = new CookieBrowser();
      const start = await browser.request(device.authUrl);
      assert.equal(new URL(String(start.headers.get('location'))).searchParams.get('code_challenge'), null);
      const page = await signInThroughProvider(browser, device.authUrl, 'alice', setup.provider.issuer);
      assert.equal(page.status, 400, page.html);
      assert.match(page.html, /refused the login \(invalid_request/);
      assert.match(page.html, /PKCE/);
      assert.deepEqual(await counts(setup.weft), { users: 0, nodes: 0 });
    } finally {
      await setup.close();
    }
  });
});

describe('OIDC provider unavailable at start', () => {
  async function deadIssuerConfig(extra: Record<string, unknown>): Promise<string> {
    const dir = await tempDir();
    const secret = join(dir, 'secret');
    await writeFile(secret, 'not-used\n');
    const path = join(dir, 'weft.yaml');
    const issuer = `http://127.0.0.1:${await freeLoopbackPort()}`;
    await writeFile(
      path,
      JSON.stringify({ oidc: { issuer, client_id: 'weft', client_secret_path: secret, ...extra } }),
    );
    return path;
  }

  test('start-up stops with a clear message by default', async () => {
    const config = await deadIssuerConfig({});
    const dataDir = await tempDir();
    const result = await runWeft(['serve', '--config', config], {
      WEFT_DATA_DIR: dataDir,
      WEFT_LISTEN_ADDR: '127.0.0.1:0',
      WEFT_METRICS_LISTEN_ADDR: '',
      WEFT_STUN_LISTEN_ADDR: '127.0.0.1:0',
      WEFT_LOG_FORMAT: 'json',
    });
    assert.notEqual(result.code, 0);
    assert.match(result.stdout + result.stderr, /the OIDC provider http:\/\/127\.0\.0\.1:\d+ cannot be used/);
    assert.match(result.stdout + result.stderr, /only_start_if_oidc_is_available/);
  });

  test('with only_start_if_oidc_is_available: false weft starts, and the login page names the CLI fallback', async () => {
    const config = await deadIssuerConfig({ only_start_if_oidc_is_available: false });
    const weft = await startWeft({ args: ['--config', config] });
    try {
      await weft.waitForLog((e) => e.msg?.startsWith('OIDC provider unavailable') === true, 5_000);
      const device = await pendingDevice(weft, 'fallback');
      const page = await fetch(device.authUrl.replace('http://127.0.0.1:8080', weft.url));
      assert.equal(page.status, 503);
      const id = device.authUrl.slice(device.authUrl.lastIndexOf('/') + 1);
      assert.match(await page.text(), new RegExp(`weft nodes register --user &lt;USER&gt; --key ${id}`));

      const user = await weft.cli(['users', 'create', 'ops']);
      assert.equal(user.code, 0, user.stderr);
      const registered = await weft.cli(['nodes', 'register', '--user', 'ops', '--key', id]);
      assert.equal(registered.code, 0, registered.stderr);
      assert.equal((await device.followUp).MachineAuthorized, true);
    } finally {
      await weft.stop();
    }
  });
});
