/**
 * Subnet routers, HA failover and exit nodes with official clients, in network namespaces of their
 * own (root only; skipped otherwise):
 *
 *     srv 10.88.0.10 (weft) ─┐
 *     r1  10.88.0.21 ────────┼─ br0 "lan" 10.88.0.0/24 ─┬─ c 10.88.0.30 (client, --accept-routes)
 *     r2  10.88.0.22 ────────┘                           │
 *     r1  10.99.0.21 ─┐                                  (c has no route to 10.99.0.0/24 or 10.98.0.1)
 *     r2  10.99.0.22 ─┼─ br1 "private" 10.99.0.0/24
 *     svc 10.99.0.10 ─┘   who-am-i service on :7777
 *     r2  10.98.0.2 ── web 10.98.0.1, who-am-i service on 203.0.113.10:7778 (routed via web): the
 *                      exit node's "internet", wired to r2 alone
 *
 * r1 (newest release) and r2 (oldest) advertise 10.99.0.0/24, r2 also offers itself as an exit node;
 * c (newest) dials through its SOCKS5 proxy. The services answer with the address the connection came
 * from, so the test sees which router carried it. The lan is RFC 1918 space on purpose: official
 * clients then keep using weft's plain HTTP port after an outage (see TLS_FRONT_SCRIPT in lab.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCommand } from '../harness/child.ts';
import { onProcessExit } from '../harness/exit-cleanup.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { listNodes, startWeft, type WeftServer } from '../harness/weft.ts';
import {
  createNamespace,
  deleteNamespacesSync,
  inNamespace,
  ip,
  labUnavailableReason,
  type NamespaceProcess,
  removeLeftoverLabs,
  startInNamespace,
} from './lab.ts';

const unavailable = labUnavailableReason();

const WEFT_IP = '10.88.0.10';
const CONTROL_URL = `http://${WEFT_IP}:8080`;
const PREFIX = '10.99.0.0/24';
const SERVICE = { host: '10.99.0.10', port: 7777 };
/** "The internet" behind the exit node: web's own address, one hop beyond r2 (see before()). */
const OUTSIDE = { host: '203.0.113.10', port: 7778 };
const ROUTER_ADDRESS = { r1: '10.99.0.21', r2: '10.99.0.22' };
const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
/** The promise for failover after the primary stops. */
const FAILOVER_MS = 15_000;
/** A route change reaches clients in well under a second; the client then rebuilds its routes. */
const ROUTE_CHANGE_MS = 10_000;

const WHO_AM_I_SCRIPT = `
const [host, port] = process.argv.slice(1);
require('node:net')
  .createServer((socket) => {
    socket.on('error', () => {});
    socket.end('hello ' + socket.remoteAddress.replace(/^::ffff:/, '') + '\\n');
  })
  .listen(Number(port), host, () => console.log('who-am-i listening'));
`;

const SOCKS5_MODULE = new URL('../harness/socks5.ts', import.meta.url).href;
/** Runs in the client's namespace (its SOCKS5 proxy listens on that loopback): what the service says. */
const ASK_SCRIPT = `
import { socks5Connect } from ${JSON.stringify(SOCKS5_MODULE)};
const [proxy, host, port, timeout] = process.argv.slice(1);
setTimeout(() => process.exit(3), Number(timeout));
const socket = await socks5Connect(proxy, host, Number(port), Number(timeout));
let text = '';
socket.setEncoding('utf8');
socket.on('data', (chunk) => { text += chunk; });
socket.on('end', () => { process.stdout.write(text); process.exit(0); });
socket.resume();
`;

type Role = 'hub' | 'srv' | 'r1' | 'r2' | 'c' | 'svc' | 'web';

describe('subnet routes, HA failover and exit nodes (official clients in network namespaces)', {
  skip: unavailable,
}, () => {
  const prefix = `wl${process.pid}-r`;
  const ns = (role: Role) => `${prefix}-${role}`;
  const roles: Role[] = ['hub', 'srv', 'r1', 'r2', 'c', 'svc', 'web'];
  let dir: string;
  let weft: WeftServer;
  let unregister: () => void = () => {};
  const services: NamespaceProcess[] = [];
  const daemons = new Map<string, TailscaledProcess>();
  const daemon = (name: string) => daemons.get(name) as TailscaledProcess;

  /** A veth from `role` (as `ifname`, with `cidr`) to `bridge` in the hub. */
  async function attach(role: Role, ifname: string, bridge: string, cidr: string): Promise<void> {
    const port = `p-${role}-${ifname}`;
    await ip(`-n ${ns(role)} link add ${ifname} type veth peer name ${port} netns ${ns('hub')}`);
    await ip(`-n ${ns('hub')} link set ${port} master ${bridge} up`);
    await ip(`-n ${ns(role)} addr add ${cidr} dev ${ifname}`);
    await ip(`-n ${ns(role)} link set ${ifname} up`);
  }

  function whoAmI(role: Role, host: string, port: number): Promise<NamespaceProcess> {
    return startInNamespace(ns(role), process.execPath, ['-e', WHO_AM_I_SCRIPT, host, String(port)], {
      describe: `who-am-i service in ${role}`,
      ready: /who-am-i listening/,
    });
  }

  /** What the service at host:port answers to c through c's SOCKS5 proxy, or undefined when unreachable. */
  async function ask(target: { host: string; port: number }, timeoutMs = 3_000): Promise<string | undefined> {
    const proxy = daemon('c').socks5Address ?? '';
    const args = ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', ASK_SCRIPT];
    const result = await runCommand(
      ...inNamespace(ns('c'), process.execPath, [
        ...args,
        proxy,
        target.host,
        String(target.port),
        String(timeoutMs),
      ]),
      { timeoutMs: timeoutMs + 5_000 },
    );
    return result.code === 0 && result.stdout.startsWith('hello ')
      ? result.stdout.trim().slice(6)
      : undefined;
  }

  async function joinTailnet(
    name: 'r1' | 'r2' | 'c',
    release: 'oldest' | 'newest',
    extraArgs: string[],
  ): Promise<void> {
    const key = await weft.cli(['preauthkeys', 'create', '--user', 'ops', '--expiration', '1h']);
    assert.equal(key.code, 0, key.stderr);
    const node = await startTailscaled({
      version: release,
      name,
      netns: ns(name),
      socks5: name === 'c',
      env: DERP_HTTP,
    });
    daemons.set(name, node);
    const up = await node.up({
      loginServer: CONTROL_URL,
      authKey: key.stdout.trim(),
      hostname: name,
      extraArgs,
    });
    assert.equal(up.code, 0, `tailscale up (${name}): ${up.stderr}\n${node.log().slice(-2000)}`);
  }

  async function nodeId(name: string): Promise<string> {
    const node = (await listNodes(weft)).find((n) => n.givenName === name);
    assert.ok(node, `weft has no node ${name}`);
    return String(node.id);
  }

  /** c's view of a peer: its PrimaryRoutes (subnets it carries for c). */
  async function primaryRoutesSeenByC(peer: string): Promise<string[]> {
    const status = await daemon('c').status();
    const view = Object.values(status.Peer ?? {}).find((p) => p.HostName === peer);
    return (view?.PrimaryRoutes as string[] | undefined) ?? [];
  }

  async function setPolicy(policy: unknown): Promise<void> {
    const file = join(dir, `policy-${Date.now()}.json`);
    await writeFile(file, JSON.stringify(policy));
    const result = await weft.cli(['policy', 'set', file]);
    assert.equal(result.code, 0, result.stderr);
  }

  before(async () => {
    await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
    removeLeftoverLabs();
    dir = await mkdtemp(join(tmpdir(), `weft-netns-${process.pid}-`));
    unregister = onProcessExit(() => deleteNamespacesSync(roles.map(ns)));
    for (const role of roles) await createNamespace(ns(role));
    for (const bridge of ['br0', 'br1']) {
      await ip(`-n ${ns('hub')} link add ${bridge} type bridge`);
      await ip(`-n ${ns('hub')} link set ${bridge} up`);
    }
    await attach('srv', 'eth0', 'br0', `${WEFT_IP}/24`);
    await attach('r1', 'eth0', 'br0', '10.88.0.21/24');
    await attach('r2', 'eth0', 'br0', '10.88.0.22/24');
    await attach('c', 'eth0', 'br0', '10.88.0.30/24');
    await attach('r1', 'eth1', 'br1', `${ROUTER_ADDRESS.r1}/24`);
    await attach('r2', 'eth1', 'br1', `${ROUTER_ADDRESS.r2}/24`);
    await attach('svc', 'eth0', 'br1', `${SERVICE.host}/24`);
    // "The internet" behind the exit node: a namespace wired to r2 alone, its service address one
    // routed hop away. An exit node refuses to carry traffic to its directly connected networks
    // (Tailscale's "guest wifi" rule: LANs must be advertised as subnets), so the service must not
    // sit on the link itself.
    await ip(`-n ${ns('r2')} link add eth2 type veth peer name eth0 netns ${ns('web')}`);
    await ip(`-n ${ns('r2')} addr add 10.98.0.2/30 dev eth2`);
    await ip(`-n ${ns('r2')} link set eth2 up`);
    await ip(`-n ${ns('r2')} route add ${OUTSIDE.host}/32 via 10.98.0.1`);
    await ip(`-n ${ns('web')} addr add 10.98.0.1/30 dev eth0`);
    await ip(`-n ${ns('web')} addr add ${OUTSIDE.host}/32 dev lo`);
    await ip(`-n ${ns('web')} link set eth0 up`);
    services.push(await whoAmI('svc', SERVICE.host, SERVICE.port));
    services.push(await whoAmI('web', OUTSIDE.host, OUTSIDE.port));
    weft = await startWeft({
      netns: ns('srv'),
      env: {
        WEFT_LISTEN_ADDR: `${WEFT_IP}:8080`,
        WEFT_SERVER_URL: CONTROL_URL,
        WEFT_STUN_LISTEN_ADDR: `${WEFT_IP}:3478`,
        WEFT_METRICS_LISTEN_ADDR: '',
      },
    });
    const user = await weft.cli(['users', 'create', 'ops']);
    assert.equal(user.code, 0, user.stderr);
  });

  after(async () => {
    await Promise.all([...daemons.values()].map((d) => d.stop()));
    await weft?.stop();
    await Promise.all(services.map((s) => s.stop()));
    deleteNamespacesSync(roles.map(ns));
    unregister();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('an advertised route is pending until approved; then a peer with --accept-routes reaches the subnet', async () => {
    await joinTailnet('r1', 'newest', [`--advertise-routes=${PREFIX}`]);
    await joinTailnet('c', 'newest', ['--accept-routes']);
    const r1 = await nodeId('r1');
    const listed = JSON.parse((await weft.cli(['routes', 'list', '-o', 'json'])).stdout);
    assert.deepEqual(listed, [
      { id: r1, name: 'r1', availableRoutes: [PREFIX], approvedRoutes: [], subnetRoutes: [] },
    ]);
    assert.equal(await ask(SERVICE), undefined, 'not reachable before approval');

    const approved = await weft.cli(['routes', 'approve', r1, PREFIX]);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(
      approved.stdout,
      new RegExp(`approved ${PREFIX.replace('.', '\\.')}; serving ${PREFIX.replace('.', '\\.')}`),
    );
    const via = await eventually('c reaches the service through r1', () => ask(SERVICE), {
      timeoutMs: ROUTE_CHANGE_MS,
    });
    assert.equal(via, ROUTER_ADDRESS.r1);
    assert.deepEqual(await primaryRoutesSeenByC('r1'), [PREFIX]);

    const unapproved = await weft.cli(['routes', 'unapprove', r1, PREFIX]);
    assert.equal(unapproved.code, 0, unapproved.stderr);
    await eventually(
      'the subnet is unreachable again',
      async () => ((await ask(SERVICE, 1_500)) === undefined ? true : undefined),
      {
        timeoutMs: ROUTE_CHANGE_MS,
      },
    );
  });

  test('bad input is refused with a clear error and changes nothing', async () => {
    const r1 = await nodeId('r1');
    const cases: Array<[string[], RegExp]> = [
      [['routes', 'approve', r1, '10.99.0.0/33'], /"10\.99\.0\.0\/33" is not a route/],
      [['routes', 'approve', r1, '10.99.0.1/24'], /host bits set; the route is 10\.99\.0\.0\/24/],
      [
        ['routes', 'approve', r1, '10.50.0.0/16'],
        /does not advertise 10\.50\.0\.0\/16; it advertises 10\.99\.0\.0\/24/,
      ],
      [['routes', 'approve', '9999', PREFIX], /no node with id 9999/],
      [['routes', 'unapprove', r1, PREFIX], /has no approved route 10\.99\.0\.0\/24/],
    ];
    for (const [args, message] of cases) {
      const result = await weft.cli(args);
      assert.equal(result.code, 1, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, message);
    }
    const node = (await listNodes(weft)).find((n) => n.givenName === 'r1');
    assert.deepEqual(node?.approvedRoutes, []);
  });

  test('an autoApprover approves the route on a policy change, and a new router at registration', async () => {
    await setPolicy({
      acls: [{ action: 'accept', src: ['*'], dst: ['*:*'] }],
      autoApprovers: { routes: { '10.99.0.0/16': ['ops@'] }, exitNode: ['ops@'] },
    });
    const via = await eventually('c reaches the service through r1 again', () => ask(SERVICE), {
      timeoutMs: ROUTE_CHANGE_MS,
    });
    assert.equal(via, ROUTER_ADDRESS.r1);

    await joinTailnet('r2', 'oldest', [`--advertise-routes=${PREFIX}`, '--advertise-exit-node']);
    const r2 = (await listNodes(weft)).find((n) => n.givenName === 'r2');
    assert.deepEqual(
      [...((r2?.approvedRoutes as string[]) ?? [])].sort(),
      ['0.0.0.0/0', PREFIX, '::/0'].sort(),
    );
    assert.equal(await ask(SERVICE), ROUTER_ADDRESS.r1, 'the first router stays primary');
  });

  test('stopping the primary router moves the subnet to the other one within 15 s', async (t) => {
    await daemon('r1').stop();
    const stoppedAt = Date.now();
    const via = await eventually(
      'c reaches the service through r2',
      async () => ((await ask(SERVICE, 1_500)) === ROUTER_ADDRESS.r2 ? ROUTER_ADDRESS.r2 : undefined),
      { timeoutMs: FAILOVER_MS, intervalMs: 200 },
    );
    t.diagnostic(`failover took ${Date.now() - stoppedAt} ms`);
    assert.equal(via, ROUTER_ADDRESS.r2);
    assert.deepEqual(await primaryRoutesSeenByC('r2'), [PREFIX], 'peers see the new primary');
  });

  test("an exit node carries a peer's traffic to an address outside the tailnet", async () => {
    assert.equal(await ask(OUTSIDE, 1_500), undefined, 'no path without the exit node');
    const r2Ip = (await daemon('r2').status()).Self?.TailscaleIPs?.find((a) => a.includes('.')) ?? '';
    const set = await daemon('c').cli(['set', `--exit-node=${r2Ip}`]);
    assert.equal(set.code, 0, set.stderr);
    const via = await eventually('c reaches the outside service through r2', () => ask(OUTSIDE), {
      timeoutMs: ROUTE_CHANGE_MS,
    });
    // web sees the connection come from r2's side of their link: the exit node carried it.
    assert.equal(via, '10.98.0.2');
  });
});
