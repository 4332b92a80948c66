/**
 * MagicDNS and the run-time DNS settings judged by official clients: two tailscaled daemons (the oldest
 * and the newest pinned release) resolve each other's names through their own resolver (quad-100,
 * asked with `tailscale dns query`), resolve an extra record an admin adds while they stay connected,
 * and follow a node rename — each within 2 s, on the existing map stream (no reconnect).
 *
 * Both releases print a query's answers as a table, one row per record:
 *   `peer.tailnet.test.  600  ClassINET  TypeA  100.64.0.2`
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { freeLoopbackPort } from '../harness/child.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { listNodes, loopbackServerEnv, startWeft, type WeftServer } from '../harness/weft.ts';

const BASE_DOMAIN = 'tailnet.test';
const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
/** How fast a DNS change must reach the clients (the promise). */
const PROPAGATION_MS = 2_000;

type RecordType = 'A' | 'AAAA';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A name quad-100 knows is answered in milliseconds; one it does not know yet goes to the global
 * resolver, which (nothing listens there) only times out after seconds. So a query that takes longer
 * than this means "not yet" and is abandoned, and polling goes on.
 */
const LOCAL_ANSWER_MS = 500;

/** The addresses `daemon`'s own resolver answers for `name`; empty when it has none (NXDOMAIN etc.). */
async function resolve(daemon: TailscaledProcess, name: string, type: RecordType = 'A'): Promise<string[]> {
  const result = await daemon.cli(['dns', 'query', name, type], { timeoutMs: LOCAL_ANSWER_MS });
  if (result.code === null) throw new Error(`tailscale dns query ${name} ${type} was not answered locally`);
  if (result.code !== 0) throw new Error(`tailscale dns query ${name} ${type} failed: ${result.stderr}`);
  const row = new RegExp(
    `^${escapeRegExp(name)}\\.\\s+\\d+\\s+ClassINET\\s+Type${type}\\s+(\\S+)\\s*$`,
    'gm',
  );
  return [...result.stdout.matchAll(row)].map((match) => match[1] ?? '');
}

/** Waits until `daemon` answers exactly `want` for `name`. */
async function expectAnswer(
  daemon: TailscaledProcess,
  name: string,
  want: string[],
  timeoutMs: number,
  type: RecordType = 'A',
): Promise<void> {
  await eventually(
    `${daemon.name} (${daemon.binaries.version}) resolves ${name} ${type} to ${want.join(', ')}`,
    async () =>
      JSON.stringify(await resolve(daemon, name, type)) === JSON.stringify(want) ? true : undefined,
    { timeoutMs, intervalMs: 20 },
  );
}

describe('MagicDNS and DNS settings at official clients (oldest and newest)', () => {
  let weft: WeftServer;
  const daemons: TailscaledProcess[] = [];
  /** Per daemon: its IPv4 address and its name in the tailnet (as weft calls it now). */
  const ipv4 = new Map<TailscaledProcess, string>();
  const names = new Map<TailscaledProcess, string>();
  const other = (daemon: TailscaledProcess) => daemons.find((d) => d !== daemon) as TailscaledProcess;

  async function weftCli(args: string[]): Promise<string> {
    const result = await weft.cli(args);
    assert.equal(result.code, 0, `weft ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  }

  /** How many map streams weft has opened so far (its debug log says so for each). */
  const streamsOpened = () => weft.logEntries().filter((e) => e.msg === 'map stream opened').length;

  before(async () => {
    await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
    const port = await freeLoopbackPort();
    weft = await startWeft({
      env: {
        ...loopbackServerEnv(port),
        WEFT_DNS_BASE_DOMAIN: BASE_DOMAIN,
      },
    });
    await weftCli(['users', 'create', 'alice']);
    // A global resolver, because the oldest release in userspace networking (no OS DNS configurator)
    // cannot read the host's DNS settings and then applies no DNS configuration at all unless quad-100
    // handles every query. Loopback keeps any query it forwards on this machine.
    await weftCli(['dns', 'nameservers', 'set', '127.0.0.1']);
    const key = (
      await weftCli(['preauthkeys', 'create', '--user', 'alice', '--reusable', '--expiration', '1h'])
    ).trim();
    for (const [release, name] of [
      ['oldest', 'old-node'],
      ['newest', 'new-node'],
    ] as const) {
      const daemon = await startTailscaled({ version: release, name, env: DERP_HTTP });
      daemons.push(daemon);
      const up = await daemon.up({ loginServer: weft.url, authKey: key, hostname: name });
      assert.equal(up.code, 0, `tailscale up (${name}) failed: ${up.stderr}\n${daemon.log().slice(-3000)}`);
      const self = (await daemon.status()).Self;
      ipv4.set(daemon, self?.TailscaleIPs?.find((ip) => ip.includes('.')) ?? '');
      names.set(daemon, name);
    }
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await weft?.stop();
  });

  test("each client resolves its peer's MagicDNS name to the peer's address", async () => {
    for (const daemon of daemons) {
      const peer = other(daemon);
      await expectAnswer(daemon, `${names.get(peer)}.${BASE_DOMAIN}`, [ipv4.get(peer) ?? ''], 15_000);
    }
  });

  test('an extra record added while the clients stay connected is answered within 2 s', async () => {
    const streams = streamsOpened();
    assert.ok(streams >= daemons.length, 'weft logs each map stream it opens');
    const name = `grafana.${BASE_DOMAIN}`;
    await weftCli(['dns', 'records', 'add', name, 'A', '100.64.0.99']);
    await weftCli(['dns', 'records', 'add', name, 'AAAA', 'fd7a:115c:a1e0::99']);
    const addedAt = Date.now();
    for (const daemon of daemons) {
      const left = Math.max(PROPAGATION_MS - (Date.now() - addedAt), 200);
      await expectAnswer(daemon, name, ['100.64.0.99'], left);
      await expectAnswer(daemon, name, ['fd7a:115c:a1e0::99'], left, 'AAAA');
    }
    // A record outside the MagicDNS domain is answered by quad-100 too.
    await weftCli(['dns', 'records', 'add', 'db.corp.test', 'A', '192.0.2.7']);
    const outsideAt = Date.now();
    for (const daemon of daemons) {
      const left = Math.max(PROPAGATION_MS - (Date.now() - outsideAt), 200);
      await expectAnswer(daemon, 'db.corp.test', ['192.0.2.7'], left);
    }
    assert.equal(streamsOpened(), streams, 'no client reconnected');

    await weftCli(['dns', 'records', 'remove', name]);
    const removedAt = Date.now();
    for (const daemon of daemons) {
      await expectAnswer(daemon, name, [], Math.max(PROPAGATION_MS - (Date.now() - removedAt), 200));
    }
  });

  test('a renamed node resolves by its new name at its peer within 2 s, and status shows the new DNSName', async () => {
    const nodes = await listNodes(weft);
    for (const daemon of daemons) {
      const peer = other(daemon);
      const node = nodes.find((n) => n.givenName === names.get(peer));
      assert.ok(node, `weft has no node ${names.get(peer)}`);
      const renamed = `renamed-${names.get(peer)}`;
      await weftCli(['nodes', 'rename', String(node.id), renamed]);
      const renamedAt = Date.now();
      names.set(peer, renamed);
      const fqdn = `${renamed}.${BASE_DOMAIN}`;
      await expectAnswer(daemon, fqdn, [ipv4.get(peer) ?? ''], PROPAGATION_MS);
      await eventually(
        `${daemon.name} lists its peer as ${fqdn}.`,
        async () => {
          const peers = Object.values((await daemon.status()).Peer ?? {});
          return peers.some((p) => p.DNSName === `${fqdn}.`) ? true : undefined;
        },
        { timeoutMs: Math.max(PROPAGATION_MS - (Date.now() - renamedAt), 200) },
      );
    }
  });
});
