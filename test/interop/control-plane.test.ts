/**
 * The control plane judged by official clients: a tailnet of unmodified tailscaled daemons (the oldest
 * and the newest pinned release side by side) joins weft with pre-auth keys, sees each other, pings,
 * carries TCP, and follows every change weft makes — a node joining, a node deleted, a key expired, a
 * logout — plus restarts of weft and of a daemon. DERP and STUN are weft's own embedded relay (plain
 * HTTP on weft's port, so the clients run with TS_DEBUG_USE_DERP_HTTP=1).
 *
 * The steps share one tailnet and run in order; each asserts what an admin would check by hand. The
 * scenario runs twice with the releases swapped, so each release plays every role (the node that is
 * expired, the one restarted and logged out, the ephemeral one).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { freeLoopbackPort, freeLoopbackUdpPort } from '../harness/child.ts';
import { pingPeer } from '../harness/ping.ts';
import { echoThroughSocks5 } from '../harness/socks5.ts';
import {
  startTailscaled,
  type TailscaledProcess,
  type TailscaleStatus,
  tailscaleBinaries,
} from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import {
  listNodes,
  loopbackServerEnv,
  type NodeListing,
  startWeft,
  type WeftServer,
} from '../harness/weft.ts';

const BASE_DOMAIN = 'tailnet.test';
/** weft's embedded relay speaks plain HTTP on loopback; official clients need this to use it. */
const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
/** How fast peers must learn about a change (the promise). */
const PROPAGATION_MS = 2_000;

interface PeerStatus {
  HostName?: string;
  DNSName?: string;
  TailscaleIPs?: string[];
  Online?: boolean;
  [key: string]: unknown;
}

function peers(status: TailscaleStatus): PeerStatus[] {
  return Object.values(status.Peer ?? {}) as PeerStatus[];
}

function peerNamed(status: TailscaleStatus, hostname: string): PeerStatus | undefined {
  return peers(status).find((p) => p.HostName === hostname);
}

async function nodeJson(weft: WeftServer, name: string): Promise<NodeListing> {
  const nodes = await listNodes(weft);
  const node = nodes.find((n) => n.givenName === name);
  assert.ok(node, `weft has no node called ${name}: ${JSON.stringify(nodes)}`);
  return node;
}

async function createKey(weft: WeftServer, ...flags: string[]): Promise<string> {
  const key = await weft.cli(['preauthkeys', 'create', '--user', 'alice', '--expiration', '1h', ...flags]);
  assert.equal(key.code, 0, key.stderr);
  return key.stdout.trim();
}

type Release = 'oldest' | 'newest';

for (const [first, second] of [
  ['oldest', 'newest'],
  ['newest', 'oldest'],
] as Array<[Release, Release]>)
  describe(`official clients on a weft tailnet (alpha ${first}, beta ${second})`, () => {
    let weft: WeftServer;
    let port: number;
    let stunPort: number;
    let echo: Server;
    let echoPort: number;
    const daemons: TailscaledProcess[] = [];
    let alpha: TailscaledProcess;
    let beta: TailscaledProcess;

    const weftEnv = () => ({
      ...loopbackServerEnv(port),
      // A fixed port, so the DERP map stays the same across the restart below.
      WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${stunPort}`,
      WEFT_DNS_BASE_DOMAIN: BASE_DOMAIN,
    });

    async function joinTailnet(name: string, version: Release, authKey: string): Promise<TailscaledProcess> {
      const daemon = await startTailscaled({ version, name, socks5: true, env: DERP_HTTP });
      daemons.push(daemon);
      const up = await daemon.up({ loginServer: weft.url, authKey, hostname: name, timeoutMs: 45_000 });
      assert.equal(up.code, 0, `tailscale up (${name}) failed: ${up.stderr}\n${daemon.log().slice(-3000)}`);
      return daemon;
    }

    before(async () => {
      await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
      port = await freeLoopbackPort();
      stunPort = await freeLoopbackUdpPort();
      weft = await startWeft({ env: weftEnv() });
      const user = await weft.cli(['users', 'create', 'alice', '--email', 'alice@example.com']);
      assert.equal(user.code, 0, user.stderr);
      echo = createServer((socket) => socket.pipe(socket));
      await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
      echoPort = (echo.address() as { port: number }).port;
    });

    after(async () => {
      await Promise.all(daemons.map((d) => d.stop()));
      await weft?.stop();
      echo?.close();
    });

    test('two clients of different releases join with a pre-auth key and see each other', async () => {
      const key = await createKey(weft, '--reusable');
      alpha = await joinTailnet('alpha', first, key);
      beta = await joinTailnet('beta', second, key);

      const [a, b] = await eventually(
        'both see each other',
        async () => {
          const [a, b] = await Promise.all([alpha.status(), beta.status()]);
          return peerNamed(a, 'beta') && peerNamed(b, 'alpha') ? [a, b] : undefined;
        },
        { timeoutMs: 10_000 },
      );
      assert.equal(a.BackendState, 'Running');
      assert.equal(b.BackendState, 'Running');
      const alphaIps = a.Self?.TailscaleIPs ?? [];
      const betaIps = b.Self?.TailscaleIPs ?? [];
      assert.deepEqual(alphaIps, ['100.64.0.1', 'fd7a:115c:a1e0::1']);
      assert.deepEqual(betaIps, ['100.64.0.2', 'fd7a:115c:a1e0::2']);
      assert.deepEqual(peerNamed(a, 'beta')?.TailscaleIPs, betaIps);
      assert.deepEqual(peerNamed(b, 'alpha')?.TailscaleIPs, alphaIps);
      assert.equal(peerNamed(a, 'beta')?.DNSName, `beta.${BASE_DOMAIN}.`);
      assert.equal(peerNamed(b, 'alpha')?.DNSName, `alpha.${BASE_DOMAIN}.`);
      assert.equal(a.Self?.DNSName, `alpha.${BASE_DOMAIN}.`);
    });

    test('tailscale ping reaches the peer in both directions', async () => {
      for (const [from, to] of [
        [alpha, '100.64.0.2'],
        [beta, '100.64.0.1'],
      ] as const) {
        const ping = await pingPeer(from, to);
        assert.match(ping, /pong from/);
      }
    });

    test('a TCP connection through the tailnet carries data both ways', async () => {
      assert.ok(beta.socks5Address);
      // beta's SOCKS5 proxy dials alpha's tailnet address; alpha's userspace stack hands the connection
      // to the echo service on its host's loopback.
      const payload = `hello through weft ${Date.now()}`;
      assert.equal(await echoThroughSocks5(beta.socks5Address, '100.64.0.1', echoPort, payload), payload);
    });

    test('a third node (ephemeral key) appears at both peers within 2 s; deleting it removes it within 2 s', async () => {
      const key = await createKey(weft, '--ephemeral');
      const gamma = await joinTailnet('gamma', second, key);
      const joinedAt = Date.now();
      for (const daemon of [alpha, beta]) {
        await eventually(
          `${daemon.name} lists gamma`,
          async () => (peerNamed(await daemon.status(), 'gamma') ? true : undefined),
          { timeoutMs: PROPAGATION_MS },
        );
      }
      assert.ok(Date.now() - joinedAt < PROPAGATION_MS + 1_000);
      const node = await nodeJson(weft, 'gamma');
      assert.equal(node.ephemeral, true, 'an ephemeral key gives an ephemeral node');

      const deleted = await weft.cli(['nodes', 'delete', String(node.id)]);
      assert.equal(deleted.code, 0, deleted.stderr);
      for (const daemon of [alpha, beta]) {
        await eventually(
          `${daemon.name} drops gamma`,
          async () => (peerNamed(await daemon.status(), 'gamma') ? undefined : true),
          { timeoutMs: PROPAGATION_MS },
        );
      }
      await gamma.stop();
    });

    test('after weft restarts, clients reconnect by themselves and keep their addresses', async () => {
      const stopped = await weft.stop({ keepDataDir: true });
      assert.equal(
        stopped.code,
        0,
        `weft stops cleanly with clients connected:\n${weft.output().slice(-4000)}`,
      );
      const lingered = weft.logEntries().some((e) => /still open after the stop/.test(String(e.msg)));
      assert.ok(!lingered, `weft had to force its exit after the stop:\n${weft.output().slice(-2000)}`);
      weft = await startWeft({ env: weftEnv(), dataDir: weft.dataDir });
      await eventually(
        'both clients online again at weft',
        async () => {
          const [a, b] = await Promise.all([nodeJson(weft, 'alpha'), nodeJson(weft, 'beta')]);
          return a.online === true && b.online === true ? true : undefined;
        },
        { timeoutMs: 60_000 },
      );
      const [a, b] = await Promise.all([alpha.status(), beta.status()]);
      assert.deepEqual(a.Self?.TailscaleIPs, ['100.64.0.1', 'fd7a:115c:a1e0::1']);
      assert.deepEqual(b.Self?.TailscaleIPs, ['100.64.0.2', 'fd7a:115c:a1e0::2']);
      assert.match(await pingPeer(alpha, '100.64.0.2'), /pong from/);
    });

    test('a restarted tailscaled re-registers without a key and keeps its node', async () => {
      const before = await nodeJson(weft, 'beta');
      await beta.restart();
      const value = await eventually(
        'beta running again',
        async () => {
          const status = await beta.status();
          return status.BackendState === 'Running' ? status : undefined;
        },
        { timeoutMs: 30_000 },
      );
      assert.deepEqual(value.Self?.TailscaleIPs, ['100.64.0.2', 'fd7a:115c:a1e0::2']);
      const afterRestart = await nodeJson(weft, 'beta');
      assert.equal(afterRestart.id, before.id);
    });

    test('tailscale logout logs the node out at weft', async () => {
      const logout = await beta.cli(['logout'], { timeoutMs: 30_000 });
      assert.equal(logout.code, 0, logout.stderr);
      const node = await nodeJson(weft, 'beta');
      assert.equal(node.expired, true, `after logout the node's key is expired: ${JSON.stringify(node)}`);
      assert.equal((await beta.status()).BackendState, 'NeedsLogin');
    });

    test('weft nodes expire: the client reports its key expired', async () => {
      const node = await nodeJson(weft, 'alpha');
      const expired = await weft.cli(['nodes', 'expire', String(node.id)]);
      assert.equal(expired.code, 0, expired.stderr);
      await eventually(
        'alpha notices its expired key',
        async () => {
          const status = await alpha.status();
          return status.BackendState === 'NeedsLogin' ? true : undefined;
        },
        { timeoutMs: 10_000 },
      );
    });
  });
