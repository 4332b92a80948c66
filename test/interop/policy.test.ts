/**
 * The policy judged by official clients (both pinned releases, each playing both sides): under a
 * policy that lets alice's node reach bob's on one TCP port only, that port carries data, another port
 * and the reverse direction do not, and carol's node — with no relation to anyone — is not even a
 * peer. A new policy set through the CLI flips all of it within 2 s, with nothing restarted.
 *
 * TCP goes through each daemon's SOCKS5 proxy; the receiving daemon (userspace networking) hands an
 * accepted connection to the echo service on the host's loopback, and drops what its filter refuses.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freeLoopbackPort } from '../harness/child.ts';
import { echoThroughSocks5, socks5Connect } from '../harness/socks5.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { loopbackServerEnv, startWeft, type WeftServer } from '../harness/weft.ts';

const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
/** How fast a policy change must reach the clients (the promise). */
const PROPAGATION_MS = 2_000;
/** A refused connection never completes; give up on it after this long. */
const REFUSED_AFTER_MS = 1_500;

type Release = 'oldest' | 'newest';

/** alice → bob on `port` only. */
function onePortPolicy(port: number): string {
  return `{
  "acls": [
    // alice's devices may reach bob's on one port; nothing else is allowed
    { "action": "accept", "src": ["alice@example.com"], "dst": ["bob@example.com:${port}"] },
  ],
  "tests": [
    { "src": "alice@example.com", "accept": ["bob@example.com:${port}"], "deny": ["bob@example.com:1"] },
  ],
}`;
}

/** alice → bob on `port`, and now carol → bob on `carolPort`. */
function widerPolicy(port: number, carolPort: number): string {
  return `{
  "acls": [
    { "action": "accept", "src": ["alice@example.com"], "dst": ["bob@example.com:${port}"] },
    { "action": "accept", "src": ["carol@example.com"], "dst": ["bob@example.com:${carolPort}"] },
  ],
}`;
}

function listen(): Promise<Server> {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function portOf(server: Server): number {
  return (server.address() as { port: number }).port;
}

/**
 * True when a TCP connection from `from` to host:port carries an echo; false when it does not open
 * within `refusedAfterMs` (a filtered SYN is dropped, so a refused connection simply never completes).
 */
async function tcpWorks(
  from: TailscaledProcess,
  host: string,
  port: number,
  refusedAfterMs = REFUSED_AFTER_MS,
): Promise<boolean> {
  const proxy = from.socks5Address ?? '';
  let socket: Socket | undefined;
  try {
    socket = await socks5Connect(proxy, host, port, refusedAfterMs);
  } catch {
    return false;
  } finally {
    socket?.destroy();
  }
  const payload = `policy probe ${Date.now()}`;
  return (
    (await echoThroughSocks5(proxy, host, port, payload, refusedAfterMs * 2).catch(() => '')) === payload
  );
}

async function peerNames(daemon: TailscaledProcess): Promise<string[]> {
  const status = await daemon.status();
  return Object.values(status.Peer ?? {})
    .map((p) => String(p.HostName))
    .sort();
}

for (const [aliceRelease, bobRelease] of [
  ['oldest', 'newest'],
  ['newest', 'oldest'],
] as Array<[Release, Release]>)
  describe(`the policy enforced by official clients (alice ${aliceRelease}, bob ${bobRelease})`, () => {
    let weft: WeftServer;
    let dir: string;
    let allowed: Server;
    let other: Server;
    const daemons: TailscaledProcess[] = [];
    const byName = new Map<string, TailscaledProcess>();
    const ips = new Map<string, string>();
    const daemon = (name: string) => byName.get(name) as TailscaledProcess;
    const ip = (name: string) => ips.get(name) as string;

    /** Waits until each user's daemon lists exactly these peers (by host name). */
    async function expectPeers(
      what: string,
      want: Record<string, string[]>,
      timeoutMs: number,
    ): Promise<void> {
      const users = Object.keys(want);
      await eventually(
        what,
        async () => {
          const got = await Promise.all(users.map((u) => peerNames(daemon(u))));
          return users.every((u, i) => JSON.stringify(got[i]) === JSON.stringify(want[u])) ? true : undefined;
        },
        { timeoutMs },
      );
    }

    async function setPolicy(text: string): Promise<void> {
      const file = join(dir, `policy-${Date.now()}.hujson`);
      await writeFile(file, text);
      const result = await weft.cli(['policy', 'set', file]);
      assert.equal(result.code, 0, result.stderr);
    }

    async function joinTailnet(user: string, release: Release): Promise<void> {
      const key = await weft.cli(['preauthkeys', 'create', '--user', user, '--expiration', '1h']);
      assert.equal(key.code, 0, key.stderr);
      const name = `${user}-node`;
      const node = await startTailscaled({ version: release, name, socks5: true, env: DERP_HTTP });
      daemons.push(node);
      const up = await node.up({ loginServer: weft.url, authKey: key.stdout.trim(), hostname: name });
      assert.equal(up.code, 0, `tailscale up (${name}) failed: ${up.stderr}\n${node.log().slice(-3000)}`);
      byName.set(user, node);
      ips.set(user, (await node.status()).Self?.TailscaleIPs?.find((a) => a.includes('.')) ?? '');
    }

    before(async () => {
      await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
      dir = await mkdtemp(join(tmpdir(), 'weft-policy-interop-'));
      const port = await freeLoopbackPort();
      weft = await startWeft({
        env: loopbackServerEnv(port),
      });
      for (const user of ['alice', 'bob', 'carol']) {
        const created = await weft.cli(['users', 'create', user, '--email', `${user}@example.com`]);
        assert.equal(created.code, 0, created.stderr);
      }
      [allowed, other] = await Promise.all([listen(), listen()]);
    });

    after(async () => {
      await Promise.all(daemons.map((d) => d.stop()));
      await weft?.stop();
      allowed?.close();
      other?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test('under "alice may reach bob on one port", only bob and alice know each other', async () => {
      await setPolicy(onePortPolicy(portOf(allowed)));
      await joinTailnet('alice', aliceRelease);
      await joinTailnet('bob', bobRelease);
      await joinTailnet('carol', bobRelease);
      await expectPeers(
        'alice and bob list each other, carol lists nobody',
        { alice: ['bob-node'], bob: ['alice-node'], carol: [] },
        15_000,
      );
    });

    test('alice → bob on the allowed port works; another port and bob → alice do not', async () => {
      await eventually(
        'alice reaches bob on the allowed port',
        async () => ((await tcpWorks(daemon('alice'), ip('bob'), portOf(allowed))) ? true : undefined),
        { timeoutMs: 15_000 },
      );
      assert.equal(
        await tcpWorks(daemon('alice'), ip('bob'), portOf(other)),
        false,
        'another port is refused',
      );
      assert.equal(
        await tcpWorks(daemon('bob'), ip('alice'), portOf(allowed)),
        false,
        'the reverse is refused',
      );
      assert.equal(
        await tcpWorks(daemon('carol'), ip('bob'), portOf(allowed)),
        false,
        'carol cannot reach bob',
      );
    });

    test('a new policy flips the results within 2 s, nothing restarted', async () => {
      await setPolicy(widerPolicy(portOf(other), portOf(allowed)));
      const setAt = Date.now();
      await eventually(
        'alice reaches bob on the newly allowed port',
        async () => ((await tcpWorks(daemon('alice'), ip('bob'), portOf(other), 300)) ? true : undefined),
        { timeoutMs: PROPAGATION_MS, intervalMs: 20 },
      );
      await expectPeers(
        'carol and bob list each other; alice still does not list carol',
        { alice: ['bob-node'], bob: ['alice-node', 'carol-node'], carol: ['bob-node'] },
        Math.max(PROPAGATION_MS - (Date.now() - setAt), 200),
      );
      assert.equal(
        await tcpWorks(daemon('alice'), ip('bob'), portOf(allowed)),
        false,
        'the old port is refused now',
      );
      assert.equal(await tcpWorks(daemon('carol'), ip('bob'), portOf(allowed)), true, 'carol reaches bob');
      assert.equal(
        await tcpWorks(daemon('carol'), ip('alice'), portOf(allowed)),
        false,
        'carol cannot reach alice',
      );
    });

    test('a refused policy changes nothing at the clients', async () => {
      const file = join(dir, 'bad.hujson');
      await writeFile(file, '{"acls": [{"action": "accept", "src": ["group:ghosts"], "dst": ["*:*"]}]}');
      const result = await weft.cli(['policy', 'set', file]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /group:ghosts/);
      assert.equal(await tcpWorks(daemon('alice'), ip('bob'), portOf(other)), true);
      assert.deepEqual(await peerNames(daemon('carol')), ['bob-node']);
    });

    test("--advertise-tags with a tag the policy does not define is refused in Tailscale's words", async () => {
      const key = await weft.cli(['preauthkeys', 'create', '--user', 'carol', '--expiration', '1h']);
      assert.equal(key.code, 0, key.stderr);
      const node = await startTailscaled({ version: aliceRelease, name: 'tagged', env: DERP_HTTP });
      daemons.push(node);
      const up = await node.up({
        loginServer: weft.url,
        authKey: key.stdout.trim(),
        hostname: 'tagged',
        extraArgs: ['--advertise-tags=tag:ghost'],
        timeoutMs: 30_000,
      });
      assert.notEqual(up.code, 0);
      assert.match(up.stderr, /requested tags \[tag:ghost\] are invalid or not permitted/);
    });
  });
