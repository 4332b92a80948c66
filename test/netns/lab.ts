/**
 * The NAT lab of docs (derp-stun-nat.md §7) as a test fixture: network namespaces on one host, wired as
 *
 *     srv 198.18.0.10 ─┐
 *     nata 198.18.0.11 ┼─ br0 in "inet" (the internet, 198.18.0.0/24)
 *     natb 198.18.0.12 ┘
 *     a 10.10.1.2 ── nata (10.10.1.1, MASQUERADE)      b 10.10.2.2 ── natb (10.10.2.1, MASQUERADE)
 *
 * weft runs in srv (control plane, and DERP + STUN: its embedded relay or the official derper beside it,
 * see DERP_SOURCE; plus a TLS front on :443, see TLS_FRONT_SCRIPT for why), one official tailscaled per
 * client namespace (userspace networking, UDP port 41641). Everything is
 * private to the namespaces: no interface, route or rule is added to the host's own network, and no
 * address of Tailscale's 100.64.0.0/10 is used for the lab itself.
 *
 * Namespace names carry a per-run prefix (wl<pid>-), so concurrent runs never collide and leftovers of a
 * killed run are recognisable (and removed by the next run). Interfaces are created directly inside
 * their namespaces with short fixed names (wan, lan, eth0, p-<ns>), well under Linux's 15-character limit.
 *
 * Needs root, iproute2, iptables, conntrack and openssl; `labUnavailableReason()` says what is missing.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CommandResult,
  OutputLog,
  removeTestDir,
  runCommand,
  terminate,
  unrefChild,
  waitForLine,
} from '../harness/child.ts';
import { killQuietly, onProcessExit } from '../harness/exit-cleanup.ts';
import {
  startTailscaled,
  type TailscaledProcess,
  type TailscaleStatus,
  tailscaleBinaries,
} from '../harness/tailscale.ts';
import { startWeft, type WeftServer } from '../harness/weft.ts';

// ---------------------------------------------------------------------------------------------------
// Address plan (§7) and the DERP source switch

export const SERVER_IP = '198.18.0.10';
export const NAT_A_PUBLIC_IP = '198.18.0.11';
export const NAT_B_PUBLIC_IP = '198.18.0.12';
export const CONTROL_PORT = 8080;
export const CONTROL_URL = `http://${SERVER_IP}:${CONTROL_PORT}`;
export const STUN_PORT = 3478;
/** tailscaled's standard UDP port; each client is alone in its namespace, so it gets it. */
export const CLIENT_UDP_PORT = 41641;
/** The echo service each client namespace runs on its loopback (reached through the peer's tailnet IP). */
export const ECHO_PORT = 7777;
const DERPER_PORT = 3340;

/**
 * Where DERP and STUN come from: weft's embedded relay (/derp on the main listener, STUN on 3478, region
 * 999 "weft" added to the DERP map automatically), or the official derper in srv with a DERP map file
 * given to weft (region 900 "lab"). One switch for the whole suite.
 */
export type DerpSource = 'embedded' | 'derper';
export const DERP_SOURCE: DerpSource = 'embedded';

export interface DerpRegion {
  id: number;
  code: string;
}

const DERP_REGIONS: Record<DerpSource, DerpRegion> = {
  embedded: { id: 999, code: 'weft' },
  derper: { id: 900, code: 'lab' },
};

export type Release = 'oldest' | 'newest';
export type NatName = 'nata' | 'natb';

/**
 * How a NAT router behaves. `cone`: Linux MASQUERADE, which keeps the inside port when it can
 * (endpoint-independent mapping). `symmetric`: MASQUERADE --random-fully, a fresh random port per
 * destination (endpoint-dependent mapping, a "hard" NAT).
 */
export interface NatPolicy {
  mapping: 'cone' | 'symmetric';
  /** Drop UDP forwarded out of the WAN towards this address (the other NAT), leaving STUN to srv open. */
  dropUdpTo?: string;
}

export const CONE_NAT: NatPolicy = { mapping: 'cone' };

// ---------------------------------------------------------------------------------------------------
// Preconditions

const REQUIRED_TOOLS: Array<[tool: string, versionFlag: string]> = [
  ['ip', '-V'],
  ['iptables', '-V'],
  ['iptables-restore', '-V'],
  ['conntrack', '-V'],
  ['sysctl', '-V'],
  ['openssl', 'version'],
];

/** Why the lab cannot run here (not root, a tool missing), or undefined when it can. */
export function labUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  for (const [tool, versionFlag] of REQUIRED_TOOLS) {
    const probe = spawnSync(tool, [versionFlag], { stdio: 'ignore' });
    if (probe.error !== undefined || probe.status !== 0) return `\`${tool}\` is not available`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Commands

const COMMAND_TIMEOUT_MS = 15_000;

/** Runs a setup command; a failure is a broken lab, so it throws with the command's own words. */
export async function mustRun(
  command: string,
  args: string[],
  timeoutMs = COMMAND_TIMEOUT_MS,
): Promise<string> {
  const result = await runCommand(command, args, { timeoutMs });
  if (result.code !== 0) {
    const outcome = result.code === null ? `timed out after ${timeoutMs} ms` : `exit ${result.code}`;
    throw new Error(`${command} ${args.join(' ')}: ${outcome}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** `ip netns exec <ns> command args`; ip execs the command, so a child's pid is the command's own. */
export function inNamespace(ns: string, command: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', ns, command, ...args]];
}

export function mustRunIn(ns: string, command: string, args: string[]): Promise<string> {
  return mustRun(...inNamespace(ns, command, args));
}

// ---------------------------------------------------------------------------------------------------
// Topology

export interface Namespaces {
  inet: string;
  srv: string;
  nata: string;
  natb: string;
  a: string;
  b: string;
}

/** Namespaces are wl<pid>-<role>, the temp folder weft-netns-<pid>-<random>: the pid tells whose they are. */
const LAB_NAMESPACE_PATTERN = /^wl(\d+)-/;
const LAB_DIR_PATTERN = /^weft-netns-(\d+)-/;

function namespacesFor(prefix: string): Namespaces {
  return {
    inet: `${prefix}-inet`,
    srv: `${prefix}-srv`,
    nata: `${prefix}-nata`,
    natb: `${prefix}-natb`,
    a: `${prefix}-a`,
    b: `${prefix}-b`,
  };
}

function listNamespaces(): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (list.stdout ?? '').split('\n').flatMap((line) => {
    const name = line.split(' ')[0];
    return name ? [name] : [];
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes lab namespaces, first killing whatever still runs inside (only ever processes a lab started):
 * a namespace outlives its name as long as a process holds it, and so would the process.
 */
export function deleteNamespacesSync(names: string[]): void {
  for (const name of names) {
    const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).stdout ?? '';
    for (const pid of pids.split('\n').filter((line) => /^\d+$/.test(line)))
      killQuietly(Number(pid), 'SIGKILL');
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
}

/** True for a name of `pattern` whose run (the pid it carries) is gone. */
function isLeftover(name: string, pattern: RegExp): boolean {
  const pid = pattern.exec(name)?.[1];
  return pid !== undefined && Number(pid) !== process.pid && !isAlive(Number(pid));
}

/** Removes what earlier runs left behind when they were killed before they could clean up. */
export function removeLeftoverLabs(): void {
  deleteNamespacesSync(listNamespaces().filter((name) => isLeftover(name, LAB_NAMESPACE_PATTERN)));
  if (process.env.KEEP_TEST_DIRS) return; // kept on purpose, for a look after the run
  for (const entry of readdirSync(tmpdir()).filter((name) => isLeftover(name, LAB_DIR_PATTERN)))
    rmSync(join(tmpdir(), entry), { recursive: true, force: true });
}

/** `ip <command line>`; lab names and addresses never contain spaces, so one string reads like the shell recipe. */
export function ip(commandLine: string): Promise<string> {
  return mustRun('ip', commandLine.split(' '));
}

/** A veth from `ns` (as `wan`) to the internet bridge (as p-<role>), with the public address. */
async function connectToInternet(names: Namespaces, role: 'srv' | NatName, cidr: string): Promise<void> {
  const ns = names[role];
  const bridgePort = `p-${role}`;
  await ip(`-n ${ns} link add wan type veth peer name ${bridgePort} netns ${names.inet}`);
  await ip(`-n ${names.inet} link set ${bridgePort} master br0 up`);
  await ip(`-n ${ns} addr add ${cidr} dev wan`);
  await ip(`-n ${ns} link set wan up`);
}

/** A veth between a NAT router (`lan`) and its one client (`eth0`), the router being the default route. */
async function connectLan(natNs: string, hostNs: string, subnet: string): Promise<void> {
  const gateway = `${subnet}.1`;
  await ip(`-n ${natNs} link add lan type veth peer name eth0 netns ${hostNs}`);
  await ip(`-n ${natNs} addr add ${gateway}/24 dev lan`);
  await ip(`-n ${natNs} link set lan up`);
  await ip(`-n ${hostNs} addr add ${subnet}.2/24 dev eth0`);
  await ip(`-n ${hostNs} link set eth0 up`);
  await ip(`-n ${hostNs} route add default via ${gateway}`);
}

export async function createNamespace(ns: string): Promise<void> {
  await ip(`netns add ${ns}`);
  await ip(`-n ${ns} link set lo up`);
  // An IPv4-only lab: no link-local IPv6 addresses for tailscaled to advertise or probe.
  await mustRunIn(ns, 'sysctl', [
    '-qw',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  ]);
}

async function buildTopology(names: Namespaces): Promise<void> {
  for (const ns of Object.values(names)) await createNamespace(ns);
  await ip(`-n ${names.inet} link add br0 type bridge`);
  await ip(`-n ${names.inet} link set br0 up`);
  await connectToInternet(names, 'srv', `${SERVER_IP}/24`);
  await connectToInternet(names, 'nata', `${NAT_A_PUBLIC_IP}/24`);
  await connectToInternet(names, 'natb', `${NAT_B_PUBLIC_IP}/24`);
  await connectLan(names.nata, names.a, '10.10.1');
  await connectLan(names.natb, names.b, '10.10.2');
  for (const nat of [names.nata, names.natb])
    await mustRunIn(nat, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
}

// ---------------------------------------------------------------------------------------------------
// NAT rules

/**
 * The complete filter and nat tables of a NAT router (iptables-restore replaces both at once, so every
 * policy change starts from a known state).
 *
 * Unsolicited inbound traffic on the WAN is dropped, in INPUT as well as FORWARD, like a home router.
 * Besides realism this matters for hole punching (§7.1): a peer's probe that the router accepted locally
 * would confirm a conntrack entry with exactly the tuple the inside host's later outbound flow needs,
 * and MASQUERADE would then move that flow to another port; a dropped probe leaves nothing behind.
 */
function natRuleset(policy: NatPolicy): string {
  const masquerade = policy.mapping === 'symmetric' ? 'MASQUERADE --random-fully' : 'MASQUERADE';
  const dropDirect =
    policy.dropUdpTo === undefined ? [] : [`-A FORWARD -o wan -p udp -d ${policy.dropUdpTo} -j DROP`];
  return [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    `-A POSTROUTING -o wan -j ${masquerade}`,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ...dropDirect,
    '-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A INPUT -i wan -j DROP',
    '-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A FORWARD -i wan -j DROP',
    'COMMIT',
    '',
  ].join('\n');
}

/** Replaces the router's tables with `policy`'s (through a file: iptables-restore reads one, runCommand has no stdin). */
async function applyNatPolicy(ns: string, policy: NatPolicy, dir: string): Promise<void> {
  const file = join(dir, `${ns}.rules`);
  await writeFile(file, natRuleset(policy));
  await mustRunIn(ns, 'iptables-restore', [file]);
}

// ---------------------------------------------------------------------------------------------------
// Long-running helper processes inside a namespace (derper, echo services)

export interface NamespaceProcess {
  stop(): Promise<void>;
}

export async function startInNamespace(
  ns: string,
  command: string,
  args: string[],
  options: { describe: string; ready: RegExp; cwd?: string },
): Promise<NamespaceProcess> {
  const child: ChildProcess = spawn(...inNamespace(ns, command, args), {
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = new OutputLog();
  log.attach(child);
  const unregister = onProcessExit(() => killQuietly(child.pid, 'SIGKILL'));
  unrefChild(child);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= terminate(child, 'SIGTERM', 5_000).then(unregister);
    return stopping;
  };
  try {
    await waitForLine(child, log, (line) => options.ready.test(line), 15_000, options.describe);
  } catch (error) {
    await stop();
    throw error;
  }
  return { stop };
}

const ECHO_SERVER_SCRIPT = `
const port = Number(process.argv[1]);
require('node:net')
  .createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  })
  .listen(port, '127.0.0.1', () => console.log('echo listening on ' + port));
`;

/** A TCP echo service on the namespace's loopback: tailscaled (userspace) hands tailnet connections to it. */
function startEchoService(ns: string): Promise<NamespaceProcess> {
  return startInNamespace(ns, process.execPath, ['-e', ECHO_SERVER_SCRIPT, String(ECHO_PORT)], {
    describe: `echo service in ${ns}`,
    ready: /echo listening/,
  });
}

const SOCKS5_MODULE = new URL('../harness/socks5.ts', import.meta.url).href;

/** Runs in a client namespace (the SOCKS5 proxy listens on its loopback): echo a payload across the tailnet. */
const ECHO_EXCHANGE_SCRIPT = `
import { echoThroughSocks5 } from ${JSON.stringify(SOCKS5_MODULE)};
const [proxy, host, port, payload] = process.argv.slice(1);
process.stdout.write(await echoThroughSocks5(proxy, host, Number(port), payload));
`;

// ---------------------------------------------------------------------------------------------------
// TLS front for the control plane

/**
 * Official clients whose login server is plain HTTP on a non-private address (198.18.0.10 is not
 * RFC 1918) latch onto Noise-over-TLS on port 443 for every control dial that comes less than 2 minutes
 * after the previous one (controlhttp's forceNoise443 heuristic; only private and loopback hosts are
 * exempt), and never try the HTTP port again while they keep retrying. After any outage of weft they
 * would stay offline forever. A real deployment answers on 443 with TLS, so the lab does too: a
 * TLS-terminating forwarder from 198.18.0.10:443 to weft's plain listener, run as part of the server.
 * Noise-over-TLS accepts any certificate (the Noise handshake is what authenticates), so a throwaway
 * self-signed one is enough.
 */
const TLS_FRONT_SCRIPT = `
const { readFileSync } = require('node:fs');
const { connect } = require('node:net');
const { createServer } = require('node:tls');
const [cert, key, listenHost, listenPort, upstreamHost, upstreamPort] = process.argv.slice(1);
createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (client) => {
  const upstream = connect(Number(upstreamPort), upstreamHost);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream).pipe(client);
})
  .on('tlsClientError', () => {})
  .listen(Number(listenPort), listenHost, () => console.log('tls front listening'));
`;
const HTTPS_PORT = 443;

interface Certificate {
  cert: string;
  key: string;
}

async function createSelfSignedCertificate(dir: string): Promise<Certificate> {
  const certificate = { cert: join(dir, 'front.crt'), key: join(dir, 'front.key') };
  const ec = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2'.split(' ');
  const files = ['-keyout', certificate.key, '-out', certificate.cert];
  const subject = ['-subj', `/CN=${SERVER_IP}`, '-addext', `subjectAltName=IP:${SERVER_IP}`];
  await mustRun('openssl', ['req', '-x509', ...ec, ...files, ...subject]);
  return certificate;
}

function startTlsFront(ns: string, certificate: Certificate): Promise<NamespaceProcess> {
  const listen = [SERVER_IP, String(HTTPS_PORT)];
  const upstream = [SERVER_IP, String(CONTROL_PORT)];
  const args = ['-e', TLS_FRONT_SCRIPT, certificate.cert, certificate.key, ...listen, ...upstream];
  return startInNamespace(ns, process.execPath, args, {
    describe: 'TLS front',
    ready: /tls front listening/,
  });
}

// ---------------------------------------------------------------------------------------------------
// DERP relay

interface DerpSetup {
  /** Extra environment and arguments for weft. */
  weftEnv: Record<string, string>;
  weftArgs: string[];
  /** Starts the derper when it is the relay (it is stopped and started with weft, as part of the server). */
  startRelay(): Promise<NamespaceProcess | undefined>;
}

async function derpSetup(source: DerpSource, names: Namespaces, dir: string): Promise<DerpSetup> {
  if (source === 'embedded') {
    return {
      weftEnv: { WEFT_STUN_LISTEN_ADDR: `${SERVER_IP}:${STUN_PORT}` },
      weftArgs: [],
      startRelay: async () => undefined,
    };
  }
  const region = DERP_REGIONS.derper;
  const derpMapPath = join(dir, 'derpmap.json');
  const derpMap = {
    Regions: {
      [region.id]: {
        RegionID: region.id,
        RegionCode: region.code,
        RegionName: 'NAT lab derper',
        Nodes: [
          {
            Name: `${region.id}a`,
            RegionID: region.id,
            HostName: SERVER_IP,
            IPv4: SERVER_IP,
            IPv6: 'none',
            STUNPort: STUN_PORT,
            DERPPort: DERPER_PORT,
          },
        ],
      },
    },
  };
  await writeFile(derpMapPath, JSON.stringify(derpMap, null, 2));
  const configPath = join(dir, 'weft.yaml');
  await writeFile(configPath, `derp:\n  paths: [${JSON.stringify(derpMapPath)}]\n`);
  const { derper } = await tailscaleBinaries('newest');
  // A non-443 -a without --certmode=manual serves plain HTTP; -c keeps derper's key (the same after a restart).
  const derperArgs = [
    `-a=${SERVER_IP}:${DERPER_PORT}`,
    '-http-port=-1',
    `-stun-port=${STUN_PORT}`,
    `-hostname=${SERVER_IP}`,
    `-c=${join(dir, 'derper.key')}`,
  ];
  return {
    // The derper owns the STUN port; weft's own relay must stay out of its way.
    weftEnv: { WEFT_DERP_SERVER_ENABLED: 'false' },
    weftArgs: ['--config', configPath],
    startRelay: () =>
      startInNamespace(names.srv, derper, derperArgs, { describe: 'derper', ready: /serving on/, cwd: dir }),
  };
}

// ---------------------------------------------------------------------------------------------------
// The lab

export interface LabClient {
  readonly daemon: TailscaledProcess;
  readonly namespace: string;
  /** The public address its NAT router shows to the internet. */
  readonly publicIp: string;
  /** Its first tailnet address (IPv4), known once it is up. */
  readonly tailnetIp: string;
  readonly hostname: string;
}

export interface StartNatLabOptions {
  derp?: DerpSource;
  releases: { a: Release; b: Release };
}

export interface NatLab {
  readonly names: Namespaces;
  readonly derpRegion: DerpRegion;
  readonly a: LabClient;
  readonly b: LabClient;
  /** The weft currently running (replaced by startServer()). */
  readonly weft: WeftServer;
  /** Replaces a NAT router's rules; conntrack is flushed when the mapping behaviour changes. */
  setNat(nat: NatName, policy: NatPolicy): Promise<void>;
  /** Both NATs back to plain cone NATs without blocks; clients re-learn their public endpoints. */
  resetNetwork(): Promise<void>;
  /** Stops the whole server: weft, its TLS front, and the derper when that is the DERP source. */
  stopServer(): Promise<void>;
  /** Starts the server again on the same data dir and addresses. */
  startServer(): Promise<void>;
  /** Echoes a payload from `from` to the peer's echo service over a TCP connection through the tailnet. */
  exchangeData(from: LabClient, to: LabClient): Promise<void>;
  close(): Promise<void>;
}

const AUTH_USER = 'lab';
const UP_TIMEOUT_MS = 45_000;

export async function startNatLab(options: StartNatLabOptions): Promise<NatLab> {
  const source = options.derp ?? DERP_SOURCE;
  await Promise.all([tailscaleBinaries(options.releases.a), tailscaleBinaries(options.releases.b)]);
  removeLeftoverLabs();
  const names = namespacesFor(`wl${process.pid}`);
  const dir = await mkdtemp(join(tmpdir(), `weft-netns-${process.pid}-`));
  const dataDir = join(dir, 'weft-data');
  mkdirSync(dataDir);
  // Synchronous last resort (a crash, a file timeout): processes are killed by their own hooks.
  const unregisterCleanup = onProcessExit(() => {
    deleteNamespacesSync(Object.values(names));
    removeTestDir(dir, () => rmSync(dir, { recursive: true, force: true }));
  });

  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch(() => {});
    closers.length = 0;
    deleteNamespacesSync(Object.values(names));
    await removeTestDir(dir, () => rm(dir, { recursive: true, force: true }));
    unregisterCleanup();
  };

  try {
    await buildTopology(names);
    const policies: Record<NatName, NatPolicy> = { nata: CONE_NAT, natb: CONE_NAT };
    for (const nat of ['nata', 'natb'] as const) await applyNatPolicy(names[nat], CONE_NAT, dir);

    const derp = await derpSetup(source, names, dir);
    const certificate = await createSelfSignedCertificate(dir);
    // "The server" is everything on srv: weft, its TLS front and (when it is the relay) the derper.
    let weft: WeftServer | undefined;
    let beside: NamespaceProcess[] = [];
    const stopServer = async () => {
      await weft?.stop();
      weft = undefined;
      for (const helper of beside) await helper.stop();
      beside = [];
    };
    const startServer = async () => {
      const relay = await derp.startRelay();
      beside = relay === undefined ? [] : [relay];
      beside.push(await startTlsFront(names.srv, certificate));
      weft = await startWeft({ netns: names.srv, dataDir, env: weftEnv(derp), args: derp.weftArgs });
    };
    closers.push(stopServer);
    await startServer();
    const authKey = await createAuthKey(currentWeft(weft));

    for (const ns of [names.a, names.b]) {
      const echo = await startEchoService(ns);
      closers.push(echo.stop);
    }
    const daemons: TailscaledProcess[] = [];
    closers.push(() => Promise.all(daemons.map((d) => d.stop())).then(() => undefined));
    const joinTailnet = async (role: 'a' | 'b', publicIp: string): Promise<LabClient> => {
      const hostname = `node-${role}`;
      const daemon = await startTailscaled({
        version: options.releases[role],
        name: hostname,
        netns: names[role],
        socks5: true,
        env: { TS_DEBUG_USE_DERP_HTTP: '1' },
      });
      daemons.push(daemon);
      const up = await daemon.up({
        loginServer: CONTROL_URL,
        authKey,
        hostname,
        timeoutMs: UP_TIMEOUT_MS,
        extraArgs: ['--accept-dns=false'],
      });
      if (up.code !== 0)
        throw new Error(`tailscale up (${hostname}) failed: ${up.stderr}\n${daemon.log().slice(-3000)}`);
      const tailnetIp = (await daemon.status()).Self?.TailscaleIPs?.[0];
      if (tailnetIp === undefined) throw new Error(`${hostname} has no tailnet address after up`);
      return { daemon, namespace: names[role], publicIp, tailnetIp, hostname };
    };
    const a = await joinTailnet('a', NAT_A_PUBLIC_IP);
    const b = await joinTailnet('b', NAT_B_PUBLIC_IP);

    const setNat = async (nat: NatName, policy: NatPolicy) => {
      await applyNatPolicy(names[nat], policy, dir);
      // Existing mappings would otherwise outlive a change of mapping behaviour.
      if (policies[nat].mapping !== policy.mapping) await mustRunIn(names[nat], 'conntrack', ['-F']);
      policies[nat] = policy;
    };

    return {
      names,
      derpRegion: DERP_REGIONS[source],
      a,
      b,
      get weft() {
        return currentWeft(weft);
      },
      setNat,
      async resetNetwork() {
        const remapped = (['nata', 'natb'] as const).some(
          (nat) => policies[nat].mapping !== CONE_NAT.mapping,
        );
        for (const nat of ['nata', 'natb'] as const) await setNat(nat, CONE_NAT);
        // A client learns a new public mapping only at its next STUN round; ask for it now.
        if (remapped) for (const client of [a, b]) await client.daemon.cli(['debug', 'restun']);
      },
      stopServer,
      startServer,
      exchangeData,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

function currentWeft(weft: WeftServer | undefined): WeftServer {
  if (weft === undefined) throw new Error('weft is not running (stopServer() without startServer())');
  return weft;
}

function weftEnv(derp: DerpSetup): Record<string, string> {
  return {
    WEFT_LISTEN_ADDR: `${SERVER_IP}:${CONTROL_PORT}`,
    WEFT_SERVER_URL: CONTROL_URL,
    WEFT_METRICS_LISTEN_ADDR: '',
    ...derp.weftEnv,
  };
}

async function createAuthKey(weft: WeftServer): Promise<string> {
  const user = await weft.cli(['users', 'create', AUTH_USER]);
  if (user.code !== 0) throw new Error(`weft users create: ${user.stderr}`);
  const key = await weft.cli([
    'preauthkeys',
    'create',
    '--user',
    AUTH_USER,
    '--reusable',
    '--expiration',
    '1h',
  ]);
  if (key.code !== 0) throw new Error(`weft preauthkeys create: ${key.stderr}`);
  return key.stdout.trim();
}

async function exchangeData(from: LabClient, to: LabClient): Promise<void> {
  const proxy = from.daemon.socks5Address;
  if (proxy === undefined) throw new Error(`${from.hostname} runs no SOCKS5 proxy`);
  const payload = `weft lab ${from.hostname}->${to.hostname} ${Date.now()}`;
  const node = ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', ECHO_EXCHANGE_SCRIPT];
  const args = [...node, proxy, to.tailnetIp, String(ECHO_PORT), payload];
  const result = await runCommand(...inNamespace(from.namespace, process.execPath, args), {
    timeoutMs: 30_000,
  });
  if (result.code === 0 && result.stdout === payload) return;
  const outcome = result.code === null ? 'timed out' : `exit ${result.code}`;
  throw new Error(
    `echo ${from.hostname} -> ${to.hostname}:${ECHO_PORT} failed (${outcome}): ${result.stderr.trim()}`,
  );
}

// ---------------------------------------------------------------------------------------------------
// Observing paths (§5.4)

/** One `pong from … via <path> in …` of `tailscale ping`: a direct ip:port, DERP(<code>), or TSMP. */
export function pongPaths(stdout: string): string[] {
  return [...stdout.matchAll(/^pong from .* via (\S+) in /gm)].map((match) => match[1] ?? '');
}

export interface PingOutcome {
  result: CommandResult;
  paths: string[];
}

/**
 * `tailscale ping` (disco): by default up to `count` pings, stopping at the first direct pong, and a
 * non-zero exit when none came back direct.
 */
export async function discoPing(
  from: LabClient,
  to: LabClient,
  options: { count: number; untilDirect?: boolean },
): Promise<PingOutcome> {
  const args = [
    'ping',
    `--c=${options.count}`,
    '--timeout=3s',
    `--until-direct=${options.untilDirect ?? true}`,
  ];
  const result = await from.daemon.cli([...args, to.tailnetIp], {
    timeoutMs: options.count * 5_000 + 10_000,
  });
  return { result, paths: pongPaths(result.stdout) };
}

/** One TSMP ping: through WireGuard, so it is real tailnet traffic (and makes the peer "active"). */
export async function tsmpPing(from: LabClient, to: LabClient): Promise<boolean> {
  const ping = await from.daemon.cli(['ping', '--tsmp', '--c=1', '--timeout=3s', to.tailnetIp], {
    timeoutMs: 10_000,
  });
  return ping.code === 0 && /pong from/.test(ping.stdout);
}

export type PeerView = { CurAddr?: string; Relay?: string; Online?: boolean; Active?: boolean };

export function peerView(status: TailscaleStatus, hostname: string): PeerView | undefined {
  return Object.values(status.Peer ?? {}).find((peer) => peer.HostName === hostname) as PeerView | undefined;
}

/**
 * The peer as `status --json` shows it right after some traffic (only peers with recent traffic report
 * a current path: CurAddr for direct, empty CurAddr while relayed through the peer's home `Relay`).
 */
export async function activePeerView(from: LabClient, to: LabClient): Promise<PeerView> {
  if (!(await tsmpPing(from, to))) throw new Error(`${from.hostname} gets no TSMP pong from ${to.hostname}`);
  const view = peerView(await from.daemon.status(), to.hostname);
  if (view === undefined) throw new Error(`${from.hostname} does not list ${to.hostname}`);
  return view;
}

/** The address a direct path to `to` goes to: its NAT's public IP and tailscaled's port. */
export function directAddress(to: LabClient): string {
  return `${to.publicIp}:${CLIENT_UDP_PORT}`;
}
