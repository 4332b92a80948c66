/**
 * The node lifecycle judged by official clients (alpha on the oldest pinned release, beta on the
 * newest): the configured default key expiry and per-node changes to it, an expired node shown expired
 * to its peers and locked out until it logs in again, server-set tags replacing the owner, ephemeral
 * nodes removed after the inactivity timeout, and last-seen/online kept right across a weft restart.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
import {
  listNodes,
  loopbackServerEnv,
  type NodeListing,
  startWeft,
  type WeftServer,
} from '../harness/weft.ts';

const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
const PROPAGATION_MS = 2_000;
const HOUR = 3_600_000;
/** weft marks a node offline 10 s after its last stream ends; then the ephemeral timeout runs. */
const EPHEMERAL_TIMEOUT = '2s';
const EPHEMERAL_GONE_MS = 10_000 + 2_000 + 5_000;

type PeerStatus = NonNullable<TailscaleStatus['Peer']>[string];

function peerNamed(status: TailscaleStatus, hostname: string): PeerStatus | undefined {
  return Object.values(status.Peer ?? {}).find((p) => p.HostName === hostname);
}

describe('node lifecycle with official clients', () => {
  let weft: WeftServer;
  let dir: string;
  let port: number;
  let stunPort: number;
  const daemons: TailscaledProcess[] = [];
  let alpha: TailscaledProcess;
  let beta: TailscaledProcess;

  const weftEnv = () => ({
    ...loopbackServerEnv(port),
    WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${stunPort}`,
    WEFT_NODE_EXPIRY: '1h',
    WEFT_EPHEMERAL_NODE_INACTIVITY_TIMEOUT: EPHEMERAL_TIMEOUT,
  });

  async function node(name: string): Promise<NodeListing> {
    const found = (await listNodes(weft)).find((n) => n.givenName === name);
    assert.ok(found, `weft has no node ${name}`);
    return found;
  }

  async function cli(args: string[]): Promise<string> {
    const result = await weft.cli(args);
    assert.equal(result.code, 0, `weft ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  }

  async function key(...flags: string[]): Promise<string> {
    return (await cli(['preauthkeys', 'create', '--user', 'alice', '--expiration', '1h', ...flags])).trim();
  }

  async function joinTailnet(
    name: string,
    version: 'oldest' | 'newest',
    authKey: string,
  ): Promise<TailscaledProcess> {
    const daemon = await startTailscaled({ version, name, env: DERP_HTTP });
    daemons.push(daemon);
    const up = await daemon.up({ loginServer: weft.url, authKey, hostname: name });
    assert.equal(up.code, 0, `tailscale up (${name}): ${up.stderr}`);
    return daemon;
  }

  /** Waits until `viewer` sees the peer `name` in the state `accept` wants. */
  function peerBecomes(
    viewer: TailscaledProcess,
    name: string,
    what: string,
    accept: (peer: PeerStatus | undefined) => boolean,
    timeoutMs = PROPAGATION_MS,
  ): Promise<true> {
    return eventually(
      `${viewer.name} sees ${name} ${what}`,
      async () => (accept(peerNamed(await viewer.status(), name)) ? true : undefined),
      { timeoutMs },
    );
  }

  before(async () => {
    await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
    dir = await mkdtemp(join(tmpdir(), 'weft-lifecycle-'));
    port = await freeLoopbackPort();
    stunPort = await freeLoopbackUdpPort();
    weft = await startWeft({ env: weftEnv() });
    await cli(['users', 'create', 'alice', '--email', 'alice@example.com']);
    const reusable = await key('--reusable');
    alpha = await joinTailnet('alpha', 'oldest', reusable);
    beta = await joinTailnet('beta', 'newest', reusable);
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await weft?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('keys get the configured expiry; --never and --in change it, and peers learn of it', async () => {
    const a = await node('alpha');
    const expiresIn = Date.parse(String(a.expiry)) - Date.now();
    assert.ok(expiresIn > HOUR - 60_000 && expiresIn <= HOUR, `alpha expires in ${expiresIn} ms`);
    await peerBecomes(beta, 'alpha', 'with a key expiry', (p) => typeof p?.KeyExpiry === 'string');

    await cli(['nodes', 'expire', String(a.id), '--never']);
    assert.equal((await node('alpha')).expiry, null);
    await peerBecomes(
      beta,
      'alpha',
      'without a key expiry',
      (p) => p !== undefined && p.KeyExpiry === undefined,
    );

    await cli(['nodes', 'expire', String(a.id), '--in', '2h']);
    const extended = Date.parse(String((await node('alpha')).expiry)) - Date.now();
    assert.ok(extended > 2 * HOUR - 60_000 && extended <= 2 * HOUR, `alpha expires in ${extended} ms`);
  });

  test('an expired node is shown expired to its peers and is locked out until it logs in again', async () => {
    const b = await node('beta');
    await cli(['nodes', 'expire', String(b.id)]);
    await peerBecomes(alpha, 'beta', 'expired', (p) => p?.Expired === true);
    await eventually(
      'beta notices its key expired',
      async () => ((await beta.status()).BackendState === 'NeedsLogin' ? true : undefined),
      { timeoutMs: 10_000 },
    );
    const betaIp = b.ipAddresses as unknown as string[];
    await assert.rejects(
      pingPeer(alpha, betaIp[0] ?? '', { timeoutMs: 5_000 }),
      'no traffic to an expired peer',
    );

    const again = await beta.up({
      loginServer: weft.url,
      authKey: await key(),
      hostname: 'beta',
      extraArgs: ['--force-reauth'],
    });
    assert.equal(again.code, 0, again.stderr);
    const renewed = await node('beta');
    assert.equal(renewed.id, b.id, 'the same node logs in again');
    assert.equal(renewed.expired, false);
    await peerBecomes(alpha, 'beta', 'valid again', (p) => p !== undefined && p.Expired !== true);
    assert.match(await pingPeer(alpha, betaIp[0] ?? ''), /pong from/);
  });

  test('server-set tags replace the owner, and peers see them', async () => {
    const file = join(dir, 'policy.hujson');
    await writeFile(
      file,
      '{"tagOwners": {"tag:server": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}',
    );
    await cli(['policy', 'set', file]);
    const a = await node('alpha');
    const refused = await weft.cli(['nodes', 'tag', String(a.id), '--tags', 'tag:ghost']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /requested tags \[tag:ghost\] are invalid or not permitted/);

    await cli(['nodes', 'tag', String(a.id), '--tags', 'tag:server']);
    const tagged = await node('alpha');
    assert.equal(tagged.user, null);
    assert.deepEqual(tagged.tags, ['tag:server']);
    await peerBecomes(beta, 'alpha', 'tagged', (p) => JSON.stringify(p?.Tags) === '["tag:server"]');
    await eventually(
      'alpha sees its own tag',
      async () => (JSON.stringify((await alpha.status()).Self?.Tags) === '["tag:server"]' ? true : undefined),
      { timeoutMs: PROPAGATION_MS },
    );
  });

  test('an ephemeral node disappears after the inactivity timeout', async () => {
    const gamma = await joinTailnet('gamma', 'newest', await key('--ephemeral'));
    await peerBecomes(alpha, 'gamma', 'listed', (p) => p !== undefined);
    await gamma.stop();
    const stoppedAt = Date.now();
    await eventually(
      'weft removes gamma',
      async () => ((await listNodes(weft)).some((n) => n.givenName === 'gamma') ? undefined : true),
      { timeoutMs: EPHEMERAL_GONE_MS, intervalMs: 250 },
    );
    assert.ok(Date.now() - stoppedAt >= 2_000, 'not before the timeout');
    await peerBecomes(alpha, 'gamma', 'gone', (p) => p === undefined);
  });

  test('last seen and online stay right across a weft restart', async () => {
    await beta.stop();
    const offline = await eventually(
      'weft marks beta offline',
      async () => {
        const b = await node('beta');
        return b.online === false && typeof b.lastSeen === 'string' ? b : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    await weft.stop({ keepDataDir: true });
    weft = await startWeft({ env: weftEnv(), dataDir: weft.dataDir });
    const b = await node('beta');
    assert.equal(b.online, false);
    assert.equal(b.lastSeen, offline.lastSeen, 'last seen survives the restart');
    await eventually(
      'alpha is online again at weft',
      async () => ((await node('alpha')).online ? true : undefined),
      { timeoutMs: 60_000 },
    );
  });
});
