/**
 * Interactive login judged by official clients (the oldest and the newest pinned release):
 * `tailscale up --login-server URL` without a key prints weft's AuthURL and waits; an admin runs
 * `weft nodes register` (the real CLI against the running server); `tailscale up` then finishes, the
 * node runs as that user, and the two nodes reach each other. `tailscale up --force-reauth` on a
 * joined node goes through the same login and keeps the node.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { freeLoopbackPort, freeLoopbackUdpPort } from '../harness/child.ts';
import { pingPeer } from '../harness/ping.ts';
import {
  startTailscaled,
  type TailscaledProcess,
  type TailscaleStatus,
  tailscaleBinaries,
} from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { listNodes, loopbackServerEnv, startWeft, type WeftServer } from '../harness/weft.ts';

const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
const LOGIN_SEEN_MS = 30_000;
const UP_TIMEOUT_MS = 90_000;

interface PendingLogin {
  id: string;
  hostname: string;
}

/** Runs the weft CLI against `weft`; its output, or a failed assertion when it does not exit 0. */
async function cli(weft: WeftServer, args: string[]): Promise<string> {
  const result = await weft.cli(args);
  assert.equal(result.code, 0, `weft ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** The login weft holds for `hostname`, as `weft auth list` shows it (polled: the client is starting). */
function pendingLoginOf(weft: WeftServer, hostname: string): Promise<PendingLogin> {
  return eventually(
    `weft has a pending login from ${hostname}`,
    async () => {
      const logins = JSON.parse(await cli(weft, ['auth', 'list', '-o', 'json'])) as PendingLogin[];
      return logins.find((login) => login.hostname === hostname);
    },
    { timeoutMs: LOGIN_SEEN_MS, intervalMs: 250 },
  );
}

/** Both pinned clients built, and a weft on loopback (with its own STUN port) holding the user alice. */
async function startLoginWeft(env: Record<string, string> = {}): Promise<WeftServer> {
  await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
  const port = await freeLoopbackPort();
  const stunPort = await freeLoopbackUdpPort();
  const weft = await startWeft({
    env: { ...loopbackServerEnv(port), WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${stunPort}`, ...env },
  });
  await cli(weft, ['users', 'create', 'alice', '--email', 'alice@example.com']);
  return weft;
}

describe('interactive login with official clients', () => {
  let weft: WeftServer;
  const daemons: TailscaledProcess[] = [];

  /**
   * `tailscale up` without a key, completed by `weft nodes register` while it waits; returns the
   * finished `up` (its output holds the AuthURL it printed) and the login id.
   */
  async function upInteractively(
    daemon: TailscaledProcess,
    user: string,
    extraArgs: string[] = [],
  ): Promise<{ output: string; id: string }> {
    const up = daemon.up({
      loginServer: weft.url,
      hostname: daemon.name,
      extraArgs,
      timeoutMs: UP_TIMEOUT_MS,
    });
    const login = await pendingLoginOf(weft, daemon.name);
    const page = await fetch(`${weft.url}/register/${login.id}`);
    assert.equal(page.status, 200);
    assert.ok((await page.text()).includes(`weft nodes register --user &lt;USER&gt; --key ${login.id}`));
    assert.match(
      await cli(weft, ['nodes', 'register', '--user', user, '--key', login.id]),
      new RegExp(`registered for ${user}`),
    );
    const result = await up;
    const output = `${result.stdout}${result.stderr}`;
    assert.equal(result.code, 0, `tailscale up (${daemon.name}): ${output}`);
    return { output, id: login.id };
  }

  function assertRunningAs(status: TailscaleStatus, loginName: string): void {
    assert.equal(status.BackendState, 'Running');
    const users = status.User as Record<string, { LoginName?: string }> | undefined;
    const self = status.Self as { UserID?: number } | undefined;
    assert.equal(users?.[String(self?.UserID)]?.LoginName, loginName, JSON.stringify(status.User));
  }

  before(async () => {
    weft = await startLoginWeft();
    await cli(weft, ['users', 'create', 'bob', '--email', 'bob@example.com']);
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await weft?.stop();
  });

  test('tailscale up prints the AuthURL, weft nodes register completes it, and the nodes reach each other', async () => {
    const alpha = await startTailscaled({ version: 'oldest', name: 'alpha', env: DERP_HTTP });
    daemons.push(alpha);
    const beta = await startTailscaled({ version: 'newest', name: 'beta', env: DERP_HTTP });
    daemons.push(beta);

    const a = await upInteractively(alpha, 'alice');
    assert.match(a.output, /To authenticate, visit:/);
    assert.ok(a.output.includes(`${weft.url}/register/${a.id}`), a.output);
    const b = await upInteractively(beta, 'bob');
    assert.ok(b.output.includes(`${weft.url}/register/${b.id}`), b.output);

    assertRunningAs(await alpha.status(), 'alice@example.com');
    assertRunningAs(await beta.status(), 'bob@example.com');
    const nodes = await listNodes(weft);
    const alphaNode = nodes.find((n) => n.givenName === 'alpha');
    assert.equal((alphaNode?.user as { name?: string } | null)?.name, 'alice');
    assert.equal(alphaNode?.registerMethod, 'cli');

    const betaIp = (await beta.status()).Self?.TailscaleIPs?.[0];
    assert.ok(betaIp);
    assert.match(await pingPeer(alpha, betaIp, { acceptRelayOnly: true }), /pong from/);
  });

  test('tailscale up --force-reauth logs the node in again through a new login and keeps it', async () => {
    const beta = daemons.find((d) => d.name === 'beta');
    assert.ok(beta);
    const before = (await listNodes(weft)).find((n) => n.givenName === 'beta');
    assert.ok(before);
    const again = await upInteractively(beta, 'bob', ['--force-reauth']);
    assert.match(again.output, /To authenticate, visit:/);
    const after = (await listNodes(weft)).find((n) => n.givenName === 'beta');
    assert.equal(after?.id, before.id, 'the same node');
    assert.deepEqual(after?.ipAddresses, before.ipAddresses);
    assert.notEqual(after?.nodeKey, before.nodeKey, 'with its new node key');
    assertRunningAs(await beta.status(), 'bob@example.com');
  });
});

describe('device approval with official clients (node.device_approval: true)', () => {
  let weft: WeftServer;
  const daemons: TailscaledProcess[] = [];

  before(async () => {
    weft = await startLoginWeft({ WEFT_NODE_DEVICE_APPROVAL: 'true' });
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await weft?.stop();
  });

  for (const version of ['oldest', 'newest'] as const) {
    test(`${version}: the client sits in NeedsMachineAuth until weft nodes approve, then runs`, async () => {
      const name = `approve-${version}`;
      const daemon = await startTailscaled({ version, name, env: DERP_HTTP });
      daemons.push(daemon);
      const up = daemon.up({ loginServer: weft.url, hostname: name, timeoutMs: UP_TIMEOUT_MS });
      let upDone = false;
      void up.finally(() => {
        upDone = true;
      });
      const login = await pendingLoginOf(weft, name);
      await cli(weft, ['nodes', 'register', '--user', 'alice', '--key', login.id]);
      await eventually(
        `${name} waits for approval`,
        async () => ((await daemon.status()).BackendState === 'NeedsMachineAuth' ? true : undefined),
        { timeoutMs: 20_000, intervalMs: 250 },
      );
      // It stays there: no approval, no tailnet.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      assert.equal((await daemon.status()).BackendState, 'NeedsMachineAuth');
      assert.equal(upDone, false, 'tailscale up is still waiting');

      const node = (await listNodes(weft)).find((n) => n.givenName === name);
      assert.ok(node);
      assert.equal(node.authorized, false);
      assert.match(await cli(weft, ['nodes', 'approve', String(node.id)]), /approved/);
      const result = await up;
      assert.equal(result.code, 0, `tailscale up: ${result.stdout}${result.stderr}`);
      assert.equal((await daemon.status()).BackendState, 'Running');
    });
  }

  test('an approved node reaches another approved node', async () => {
    const [first, second] = daemons;
    assert.ok(first && second);
    const ip = (await second.status()).Self?.TailscaleIPs?.[0];
    assert.ok(ip);
    assert.match(await pingPeer(first, ip, { acceptRelayOnly: true }), /pong from/);
  });
});
