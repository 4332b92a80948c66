/**
 * OIDC login judged by official clients (the oldest and the newest pinned release): `tailscale up
 * --login-server URL` without a key waits on weft's AuthURL, which the test reads from the client
 * itself (`tailscale status --json`); a cookie-jar browser follows it through the OpenID provider
 * (oidc-provider on loopback) and weft's confirmation page. `tailscale up` must then exit 0 and the
 * client run as the OIDC user.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freeLoopbackPort, freeLoopbackUdpPort } from '../harness/child.ts';
import {
  CookieBrowser,
  signInThroughProvider,
  startOidcProvider,
  submitConfirmation,
  type TestOidcProvider,
} from '../harness/oidc.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { listNodes, loopbackServerEnv, startWeft, type WeftServer } from '../harness/weft.ts';

const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
const AUTH_URL_SEEN_MS = 30_000;
const UP_TIMEOUT_MS = 90_000;

describe('OIDC login with official clients', () => {
  let weft: WeftServer;
  let provider: TestOidcProvider;
  let dir: string;
  const daemons: TailscaledProcess[] = [];

  before(async () => {
    await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
    const port = await freeLoopbackPort();
    const stunPort = await freeLoopbackUdpPort();
    provider = await startOidcProvider({
      redirectUri: `http://127.0.0.1:${port}/oidc/callback`,
      accounts: new Map([
        [
          'alice-sub',
          { email: 'alice@example.com', email_verified: true, preferred_username: 'alice', name: 'Alice' },
        ],
        [
          'bob-sub',
          { email: 'bob@example.com', email_verified: true, preferred_username: 'bob', name: 'Bob' },
        ],
      ]),
    });
    dir = await mkdtemp(join(tmpdir(), 'weft-oidc-interop-'));
    const config = join(dir, 'weft.yaml');
    await writeFile(
      config,
      JSON.stringify({
        oidc: {
          issuer: provider.issuer,
          client_id: provider.clientId,
          client_secret_path: provider.clientSecretPath,
          allowed_domains: ['example.com'],
        },
      }),
    );
    weft = await startWeft({
      env: { ...loopbackServerEnv(port), WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${stunPort}` },
      args: ['--config', config],
    });
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await weft?.stop();
    await provider?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** `tailscale up` without a key, finished in the browser as `sub`; returns up's output. */
  async function upThroughOidc(daemon: TailscaledProcess, sub: string): Promise<string> {
    const up = daemon.up({ loginServer: weft.url, hostname: daemon.name, timeoutMs: UP_TIMEOUT_MS });
    // The client's own view of the login it waits for.
    const authUrl = await eventually(
      `${daemon.name} shows an AuthURL`,
      async () => {
        const url = (await daemon.status()).AuthURL;
        return typeof url === 'string' && url !== '' ? url : undefined;
      },
      { timeoutMs: AUTH_URL_SEEN_MS, intervalMs: 250 },
    );
    assert.match(authUrl, new RegExp(`^${weft.url}/register/weft-login-[0-9a-f]{24}$`));

    const browser = new CookieBrowser();
    const confirmation = await signInThroughProvider(browser, authUrl, sub, provider.issuer);
    assert.equal(confirmation.status, 200, confirmation.html);
    assert.ok(confirmation.html.includes(daemon.name), 'the confirmation page names the device');
    const done = await submitConfirmation(browser, confirmation);
    assert.equal(done.status, 200, done.html);

    const result = await up;
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.code, 0, `tailscale up (${daemon.name}): ${output}`);
    assert.ok(output.includes(authUrl), `up printed the AuthURL: ${output}`);
    return output;
  }

  async function assertRunningAs(daemon: TailscaledProcess, loginName: string): Promise<void> {
    const status = await daemon.status();
    assert.equal(status.BackendState, 'Running');
    const users = status.User as Record<string, { LoginName?: string }> | undefined;
    const self = status.Self as { UserID?: number } | undefined;
    assert.equal(users?.[String(self?.UserID)]?.LoginName, loginName, JSON.stringify(status.User));
  }

  for (const [version, name, sub, email] of [
    ['oldest', 'oidc-old', 'alice-sub', 'alice@example.com'],
    ['newest', 'oidc-new', 'bob-sub', 'bob@example.com'],
  ] as const) {
    test(`${version} client: tailscale up completes through the provider and runs as the OIDC user`, async () => {
      const daemon = await startTailscaled({ version, name, env: DERP_HTTP });
      daemons.push(daemon);
      const output = await upThroughOidc(daemon, sub);
      assert.match(output, /To authenticate, visit:/);
      await assertRunningAs(daemon, email);
      const node = (await listNodes(weft)).find((n) => n.givenName === name);
      assert.equal(node?.registerMethod, 'oidc');
      assert.equal((node?.user as { providerId?: string } | null)?.providerId, `${provider.issuer}/${sub}`);
    });
  }
});
