/**
 * weft's embedded DERP relay and STUN server judged by official clients (oldest and newest pinned
 * releases): netcheck measures the embedded region, traffic forced onto DERP carries data, the relay
 * refuses keys weft does not know — over plain HTTP on loopback (TS_DEBUG_USE_DERP_HTTP=1) and over TLS
 * with a self-signed certificate that the DERP map pins. Also the reverse set-up: the official derper
 * admitting clients through weft's POST /verify.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DerpClient } from '../../src/derp/index.ts';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { freeLoopbackPort, freeLoopbackUdpPort } from '../harness/child.ts';
import { type Derper, startDerper } from '../harness/derper.ts';
import { pingPeer } from '../harness/ping.ts';
import { echoThroughSocks5 } from '../harness/socks5.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { listNodes, startWeft, type WeftServer } from '../harness/weft.ts';

const DERP_HTTP = { TS_DEBUG_USE_DERP_HTTP: '1' };
/** No UDP at all: every packet to and from this client goes through DERP. */
const ALWAYS_DERP = { TS_DEBUG_ALWAYS_USE_DERP: '1' };

async function metric(weft: WeftServer, name: string): Promise<number> {
  const text = await (await fetch(`http://${weft.metricsAddress}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

/** A small tailnet: weft, user alice, and an echo service on the host's loopback. */
class Lab {
  weft!: WeftServer;
  loginServer = '';
  echo!: Server;
  echoPort = 0;
  readonly daemons: TailscaledProcess[] = [];

  async start(env: Record<string, string>, loginServer: (port: number) => string): Promise<void> {
    const port = await freeLoopbackPort();
    this.loginServer = loginServer(port);
    this.weft = await startWeft({
      env: {
        WEFT_LISTEN_ADDR: `127.0.0.1:${port}`,
        WEFT_SERVER_URL: this.loginServer,
        WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${await freeLoopbackUdpPort()}`,
        ...env,
      },
    });
    const user = await this.weft.cli(['users', 'create', 'alice', '--email', 'alice@example.com']);
    assert.equal(user.code, 0, user.stderr);
    this.echo = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => this.echo.listen(0, '127.0.0.1', resolve));
    this.echoPort = (this.echo.address() as { port: number }).port;
  }

  async join(
    name: string,
    version: 'oldest' | 'newest',
    env: Record<string, string>,
  ): Promise<TailscaledProcess> {
    const key = await this.weft.cli(['preauthkeys', 'create', '--user', 'alice', '--expiration', '1h']);
    assert.equal(key.code, 0, key.stderr);
    const daemon = await startTailscaled({ version, name, socks5: true, env });
    this.daemons.push(daemon);
    const up = await daemon.up({ loginServer: this.loginServer, authKey: key.stdout.trim(), hostname: name });
    assert.equal(up.code, 0, `tailscale up (${name}) failed: ${up.stderr}\n${daemon.log().slice(-3000)}`);
    return daemon;
  }

  async stop(): Promise<void> {
    await Promise.all(this.daemons.map((d) => d.stop()));
    await this.weft?.stop();
    this.echo?.close();
  }
}

async function tailscaleIp(daemon: TailscaledProcess): Promise<string> {
  const ip = (await daemon.status()).Self?.TailscaleIPs?.[0];
  assert.ok(ip, `${daemon.name} has no tailnet address`);
  return ip;
}

/** `tailscale netcheck` lists the region with a measured latency, e.g. "- weft: 0.4ms (weft embedded DERP)". */
async function assertNetcheckMeasures(daemon: TailscaledProcess, regionCode: string): Promise<void> {
  await eventually(
    `${daemon.name}'s netcheck measures region ${regionCode}`,
    async () => {
      const result = await daemon.cli(['netcheck'], { timeoutMs: 30_000 });
      const latency = new RegExp(`-\\s+${regionCode}:\\s+[0-9.]+(ms|µs|s)\\b`);
      if (result.code === 0 && latency.test(result.stdout) && /UDP: true/.test(result.stdout)) return true;
      throw new Error(`netcheck (exit ${result.code}):\n${result.stdout}${result.stderr}`);
    },
    { timeoutMs: 30_000 },
  );
}

/** Traffic between the two daemons, one of which has no UDP: DERP carries pings and a TCP echo. */
async function assertTrafficOverDerp(
  lab: Lab,
  direct: TailscaledProcess,
  relayOnly: TailscaledProcess,
  regionCode: string,
) {
  const ping = await pingPeer(direct, await tailscaleIp(relayOnly), { count: 3, acceptRelayOnly: true });
  assert.match(ping, new RegExp(`via DERP\\(${regionCode}\\)`));
  assert.ok(relayOnly.socks5Address);
  const payload = `over DERP ${Date.now()}`;
  const echoed = await echoThroughSocks5(
    relayOnly.socks5Address,
    await tailscaleIp(direct),
    lab.echoPort,
    payload,
  );
  assert.equal(echoed, payload);
}

async function assertUnknownKeyRefused(url: string, tls?: { ca: Buffer }): Promise<void> {
  const stranger = PrivateKey.generate(NodePublic);
  await assert.rejects(
    DerpClient.connect(url, stranger, { timeoutMs: 5_000, ...(tls ? { tls } : {}) }),
    /closed|refused/,
  );
}

describe('embedded DERP over plain HTTP with official clients', () => {
  const lab = new Lab();
  let alpha: TailscaledProcess;
  let beta: TailscaledProcess;

  before(async () => {
    await Promise.all([tailscaleBinaries('oldest'), tailscaleBinaries('newest')]);
    await lab.start({}, (port) => `http://127.0.0.1:${port}`);
    alpha = await lab.join('alpha', 'newest', DERP_HTTP);
    beta = await lab.join('beta', 'oldest', { ...DERP_HTTP, ...ALWAYS_DERP });
  });
  after(() => lab.stop());

  test('tailscale netcheck on both releases measures the embedded region over STUN', async () => {
    await assertNetcheckMeasures(alpha, 'weft');
    const newest = await lab.join('gamma', 'newest', DERP_HTTP);
    await assertNetcheckMeasures(newest, 'weft');
  });

  test('traffic between two official clients forced onto DERP carries data', async () => {
    const before = await metric(lab.weft, 'weft_derp_packets_relayed_total');
    await assertTrafficOverDerp(lab, alpha, beta, 'weft');
    assert.ok((await metric(lab.weft, 'weft_derp_packets_relayed_total')) > before);
  });

  test('the relay refuses a node key weft does not know, and admits registered ones', async () => {
    await assertUnknownKeyRefused(`${lab.loginServer}/derp`);
    assert.ok((await metric(lab.weft, 'weft_derp_refused_total')) >= 1);
    assert.ok((await metric(lab.weft, 'weft_derp_clients')) >= 2, 'the daemons are connected to DERP');
    assert.ok(lab.weft.logEntries().some((e) => e.msg === 'DERP client refused'));
  });

  test('probe, latency-check and captive-portal endpoints answer like derper', async () => {
    for (const path of ['/derp/probe', '/derp/latency-check']) {
      const response = await fetch(`${lab.loginServer}${path}`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('access-control-allow-origin'), '*');
    }
    const captive = await fetch(`${lab.loginServer}/generate_204`, {
      headers: { 'X-Tailscale-Challenge': 'abc.123' },
    });
    assert.equal(captive.status, 204);
    assert.equal(captive.headers.get('x-tailscale-response'), 'response abc.123');
    assert.equal((await fetch(`${lab.loginServer}/derp`)).status, 426);
  });

  test('deleting a node drops its relay connection at once', async () => {
    const nodes = await listNodes(lab.weft);
    const gamma = nodes.find((n) => n.givenName === 'gamma');
    assert.ok(gamma, JSON.stringify(nodes));
    await eventually(
      'all three daemons hold a relay connection',
      async () => ((await metric(lab.weft, 'weft_derp_clients')) >= 3 ? true : undefined),
      { timeoutMs: 10_000 },
    );
    const deleted = await lab.weft.cli(['nodes', 'delete', String(gamma.id)]);
    assert.equal(deleted.code, 0, deleted.stderr);
    await eventually(
      'the relay drops gamma',
      async () =>
        lab.weft.logEntries().some((e) => e.msg === 'DERP client disconnected' && e.reason === 'node deleted')
          ? true
          : undefined,
      { timeoutMs: 2_000 },
    );
  });
});

describe('embedded DERP over TLS with a self-signed certificate pinned in the DERP map', () => {
  const lab = new Lab();
  let dir: string;
  let certPath: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-tls-'));
    certPath = join(dir, 'weft.crt');
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-keyout',
      join(dir, 'weft.key'),
      '-out',
      certPath,
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    await lab.start(
      { WEFT_TLS_CERT_PATH: certPath, WEFT_TLS_KEY_PATH: join(dir, 'weft.key') },
      (port) => `https://127.0.0.1:${port}`,
    );
  });
  after(async () => {
    await lab.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('official clients (control over TLS trusting the certificate) measure and use the pinned region', async () => {
    // The control connection verifies the certificate the ordinary way, so the daemons trust it as a CA.
    // DERP: the newest release checks it against CertName "sha256-raw:…" from the map; the oldest
    // (v1.80, before pins) gets the region without the pin and verifies it like control does.
    const trust = { SSL_CERT_FILE: certPath };
    const alpha = await lab.join('alpha', 'newest', trust);
    const beta = await lab.join('beta', 'oldest', { ...trust, ...ALWAYS_DERP });
    const certName = async (daemon: TailscaledProcess) => {
      const map = JSON.parse((await daemon.cli(['debug', 'derp-map'])).stdout) as {
        Regions: Record<string, { Nodes: Array<{ CertName?: string }> }>;
      };
      return map.Regions['999']?.Nodes[0]?.CertName;
    };
    assert.match((await certName(alpha)) ?? '', /^sha256-raw:[0-9a-f]{64}$/);
    assert.equal(await certName(beta), undefined);
    await assertNetcheckMeasures(alpha, 'weft');
    await assertTrafficOverDerp(lab, alpha, beta, 'weft');
    await assertUnknownKeyRefused(`${lab.loginServer}/derp`, { ca: await readFile(certPath) });
  });
});

describe("the official derper admits clients through weft's POST /verify", () => {
  const lab = new Lab();
  let derper: Derper;
  let mapDir: string;

  before(async () => {
    const port = await freeLoopbackPort();
    // derper needs weft's URL at start, and weft needs derper's map: fix weft's port first.
    derper = await startDerper('newest', {
      args: [`--verify-client-url=http://127.0.0.1:${port}/verify`, '--verify-client-url-fail-open=false'],
    });
    mapDir = await mkdtemp(join(tmpdir(), 'weft-verify-'));
    const config = join(mapDir, 'weft.yaml');
    await writeFile(
      config,
      `derp:\n  server: { enabled: false }\n  paths: [${JSON.stringify(derper.derpMapPath)}]\n`,
    );
    lab.loginServer = `http://127.0.0.1:${port}`;
    await lab.start(
      { WEFT_CONFIG: config, WEFT_LISTEN_ADDR: `127.0.0.1:${port}` },
      () => `http://127.0.0.1:${port}`,
    );
  });
  after(async () => {
    await lab.stop();
    await derper?.stop();
    await rm(mapDir, { recursive: true, force: true });
  });

  test('registered nodes relay through derper; an unknown key is turned away', async () => {
    const alpha = await lab.join('alpha', 'newest', derper.clientEnv);
    const beta = await lab.join('beta', 'oldest', { ...derper.clientEnv, ...ALWAYS_DERP });
    await assertTrafficOverDerp(lab, alpha, beta, 'lab');
    await assertUnknownKeyRefused(`http://127.0.0.1:${derper.port}/derp`);
  });
});
