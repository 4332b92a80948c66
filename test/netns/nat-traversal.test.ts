/**
 * NAT traversal with official clients on a weft tailnet, in the network-namespace lab of
 * derp-stun-nat.md §7 (see lab.ts): node a (newest release) behind NAT router nata, node b (oldest
 * release) behind natb, weft with DERP and STUN on the "internet" between them.
 *
 *   A  two cone NATs: the peers find the direct path through both NATs;
 *   B  UDP between the NATs blocked: traffic is relayed through DERP, and goes direct once unblocked;
 *   C  natb symmetric: no direct path is possible, traffic still flows through DERP;
 *   D  with a direct path, the whole weft process stops: the path keeps carrying traffic, and after a
 *      restart on the same data dir the clients reconnect.
 *
 * One lab serves all scenarios; each starts from two plain cone NATs. Skipped without root or the
 * networking tools.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../harness/wait.ts';
import { listNodes } from '../harness/weft.ts';
import {
  activePeerView,
  CONE_NAT,
  directAddress,
  discoPing,
  type LabClient,
  labUnavailableReason,
  NAT_A_PUBLIC_IP,
  NAT_B_PUBLIC_IP,
  type NatLab,
  type PeerView,
  type PingOutcome,
  startNatLab,
  tsmpPing,
} from './lab.ts';

/** Finding the first direct path includes both clients' start-up netcheck and a few disco rounds. */
const DIRECT_TIMEOUT_MS = 60_000;
/** An old direct path is given up ~6.5 s after its last pong (trustUDPAddrDuration). */
const LAPSE_TIMEOUT_MS = 30_000;
/** After unblocking, with traffic flowing: a heartbeat, the 5 s ping spacing, a round trip (§5.5). */
const UPGRADE_TIMEOUT_MS = 30_000;
/** How long the direct path must keep working with weft gone. */
const OUTAGE_MS = 12_000;
/** Clients redial control and DERP with a growing backoff; it is still a few seconds after a short outage. */
const RECONNECT_TIMEOUT_MS = 60_000;

const unavailable = labUnavailableReason();

async function waitForPeerView(
  what: string,
  from: LabClient,
  to: LabClient,
  accept: (view: PeerView) => boolean,
  timeoutMs: number,
): Promise<PeerView> {
  return eventually(
    what,
    async () => {
      const view = await activePeerView(from, to);
      if (accept(view)) return view;
      throw new Error(
        `status shows CurAddr ${JSON.stringify(view.CurAddr)}, Relay ${JSON.stringify(view.Relay)}`,
      );
    },
    { timeoutMs, intervalMs: 1_000 },
  );
}

function waitForDirectPing(from: LabClient, to: LabClient): Promise<PingOutcome> {
  return eventually(
    `${from.hostname} pings ${to.hostname} via ${directAddress(to)}`,
    async () => {
      const ping = await discoPing(from, to, { count: 10 });
      if (ping.paths.includes(directAddress(to))) return ping;
      throw new Error(
        `pongs via [${ping.paths.join(', ')}], exit ${ping.result.code}: ${ping.result.stderr.trim()}`,
      );
    },
    { timeoutMs: DIRECT_TIMEOUT_MS, intervalMs: 500 },
  );
}

/** Disco pings that must all come back through DERP, ending in "direct connection not established". */
function assertRelayedOnly(ping: PingOutcome, derpCode: string): void {
  const output = `${ping.result.stdout}${ping.result.stderr}`;
  assert.ok(ping.paths.length > 0, `no pong at all:\n${output}`);
  assert.deepEqual(new Set(ping.paths), new Set([`DERP(${derpCode})`]), output);
  assert.notEqual(ping.result.code, 0, output);
  assert.match(output, /direct connection not established/);
}

async function nodesOnlineAtWeft(lab: NatLab): Promise<Record<string, boolean>> {
  const nodes = await listNodes(lab.weft);
  return Object.fromEntries(nodes.map((node) => [node.givenName, node.online]));
}

describe('NAT traversal through weft (network-namespace lab)', {
  skip: unavailable === undefined ? false : `needs root and iproute2/iptables: ${unavailable}`,
}, () => {
  let lab: NatLab;

  before(async () => {
    lab = await startNatLab({ releases: { a: 'newest', b: 'oldest' } });
  });

  after(async () => {
    await lab?.close();
  });

  beforeEach(async () => {
    await lab.resetNetwork();
  });

  test('A: through two cone NATs the peers go direct (ping via the public address, status CurAddr)', async () => {
    const { a, b } = lab;
    // STUN through the NAT: a learns the public address nata gives it.
    const netcheck = await a.daemon.cli(['netcheck'], { timeoutMs: 30_000 });
    assert.equal(netcheck.code, 0, netcheck.stderr);
    assert.match(netcheck.stdout, /UDP: true/);
    assert.match(netcheck.stdout, /IPv4: yes, 198\.18\.0\.11:\d+/);

    const ab = await waitForDirectPing(a, b);
    assert.equal(ab.result.code, 0, ab.result.stderr);
    assert.equal(ab.paths.at(-1), directAddress(b));
    const ba = await waitForDirectPing(b, a);
    assert.equal(ba.paths.at(-1), directAddress(a));

    const view = await waitForPeerView(
      'a shows b on a direct path',
      a,
      b,
      (v) => v.CurAddr === directAddress(b),
      15_000,
    );
    assert.equal(view.Relay, lab.derpRegion.code, 'the peer keeps its home DERP region');
    await lab.exchangeData(a, b);
  });

  test('B: with UDP between the NATs blocked, traffic goes through DERP; unblocked, it upgrades to direct', async (t) => {
    const { a, b } = lab;
    const derpCode = lab.derpRegion.code;
    await lab.setNat('nata', { mapping: 'cone', dropUdpTo: NAT_B_PUBLIC_IP });
    await lab.setNat('natb', { mapping: 'cone', dropUdpTo: NAT_A_PUBLIC_IP });

    const relayed = await waitForPeerView(
      'a relays to b through DERP',
      a,
      b,
      (v) => !v.CurAddr,
      LAPSE_TIMEOUT_MS,
    );
    assert.equal(relayed.Relay, derpCode);
    assertRelayedOnly(await discoPing(a, b, { count: 4 }), derpCode);
    await lab.exchangeData(a, b);
    await lab.exchangeData(b, a);

    const unblockedAt = Date.now();
    await lab.setNat('nata', CONE_NAT);
    await lab.setNat('natb', CONE_NAT);
    // waitForPeerView sends a TSMP ping each round: the traffic that drives the upgrade.
    await waitForPeerView(
      'a upgrades to a direct path to b',
      a,
      b,
      (v) => v.CurAddr === directAddress(b),
      UPGRADE_TIMEOUT_MS,
    );
    t.diagnostic(`direct ${((Date.now() - unblockedAt) / 1000).toFixed(1)} s after unblocking`);
    const ping = await discoPing(a, b, { count: 3 });
    assert.equal(ping.paths.at(-1), directAddress(b), ping.result.stdout);
  });

  test('C: behind a symmetric NAT the pair still carries traffic, through DERP', async () => {
    const { a, b } = lab;
    const derpCode = lab.derpRegion.code;
    await lab.setNat('natb', { mapping: 'symmetric' });
    await b.daemon.cli(['debug', 'restun']);

    // STUN still works through the symmetric NAT; the mapped port is now a random one.
    const netcheck = await b.daemon.cli(['netcheck'], { timeoutMs: 30_000 });
    assert.equal(netcheck.code, 0, netcheck.stderr);
    assert.match(netcheck.stdout, /UDP: true/);
    assert.match(netcheck.stdout, /IPv4: yes, 198\.18\.0\.12:\d+/);

    // The old direct path dies with natb's flushed mappings; nothing direct can replace it.
    await waitForPeerView('a relays to b through DERP', a, b, (v) => !v.CurAddr, LAPSE_TIMEOUT_MS);
    await waitForPeerView('b relays to a through DERP', b, a, (v) => !v.CurAddr, LAPSE_TIMEOUT_MS);
    await lab.exchangeData(a, b);
    await lab.exchangeData(b, a);
    const connected = await discoPing(a, b, { count: 2, untilDirect: false });
    assert.equal(connected.result.code, 0, connected.result.stderr);
    assertRelayedOnly(await discoPing(a, b, { count: 4 }), derpCode);
    assertRelayedOnly(await discoPing(b, a, { count: 4 }), derpCode);
  });

  test('D: a direct connection survives a weft outage; after a restart the clients reconnect', async (t) => {
    const { a, b } = lab;
    // Both ways: a side without a direct path of its own would answer through DERP, which goes down too.
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      await waitForDirectPing(from, to);
      await waitForPeerView(
        `${from.hostname} shows ${to.hostname} direct`,
        from,
        to,
        (v) => v.CurAddr === directAddress(to),
        15_000,
      );
    }

    await lab.stopServer();
    // Proof that the outage is real for the clients: they leave the map poll.
    await eventually(
      'a notices that weft is gone',
      async () => ((await a.daemon.status()).Self?.Online === false ? true : undefined),
      { timeoutMs: 10_000, intervalMs: 500 },
    );
    const outageEnd = Date.now() + OUTAGE_MS;
    // One ping a second. A single lost ping is ordinary on a live path (a path re-validation can eat a
    // packet, and TCP would simply retransmit), so allow one; a dead path loses them all.
    let pongs = 0;
    let lost = 0;
    while (Date.now() < outageEnd) {
      if (await tsmpPing(a, b)) pongs += 1;
      else lost += 1;
      assert.ok(lost <= 1, `TSMP pings a -> b lost ${lost} times (${pongs} pongs) during the outage`);
      await sleep(1_000);
    }
    await lab.exchangeData(a, b);
    await lab.exchangeData(b, a);
    const during = await activePeerView(a, b);
    assert.equal(during.CurAddr, directAddress(b), 'still direct while weft is down');
    t.diagnostic(`${pongs} TSMP pongs, ${lost} lost, over ${OUTAGE_MS / 1000} s without weft`);

    const restartedAt = Date.now();
    await lab.startServer();
    await eventually(
      'both clients running and online at weft again',
      async () => {
        for (const client of [a, b]) {
          const status = await client.daemon.status();
          if (status.BackendState !== 'Running' || status.Self?.Online !== true)
            throw new Error(`${client.hostname}: ${status.BackendState}, online ${status.Self?.Online}`);
        }
        const online = await nodesOnlineAtWeft(lab);
        if (online[a.hostname] && online[b.hostname]) return true;
        throw new Error(`weft reports ${JSON.stringify(online)}`);
      },
      { timeoutMs: RECONNECT_TIMEOUT_MS, intervalMs: 1_000 },
    );
    t.diagnostic(`reconnected ${((Date.now() - restartedAt) / 1000).toFixed(1)} s after the restart`);
    await lab.exchangeData(b, a);
  });
});
