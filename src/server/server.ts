/**
 * The composition root: builds every part of a running weft from the config, owns the listeners, and
 * takes them down again in reverse order.
 *
 *   lock          <data_dir>/weft.lock     one server per data directory (taken first)
 *   database      SQLite <data_dir>/weft.db or PostgreSQL, migrated at start
 *   admin socket  <data_dir>/weft.sock     REST API for the local CLI, no API key
 *   server key    <data_dir>/noise_private.key   the control plane's Noise key, made on first start
 *   tailnet       in-memory model of users and nodes, loaded from the database, written through
 *   policy        the policy in force (database versions or policy.path, watched; SIGHUP reloads)
 *   DERP + STUN   listen_addr /derp, UDP stun_listen_addr   embedded relay (derp.ts), its key in the data dir
 *   HTTP(S)       listen_addr              /key, /ts2021 (control protocol), /derp, /verify, /health,
 *                                          /api/v1 (bearer API keys); TLS with tls_cert_path/tls_key_path
 *   metrics       metrics_listen_addr      Prometheus /metrics (optional)
 */
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { apiRoutes, createApiApp } from '../api/app.ts';
import { oidcLoginPage, registerOidcRoutes } from '../auth/routes.ts';
import { type Config, parseHostPort, redactConfig } from '../config/index.ts';
import { redactUrlSecrets } from '../config/redact.ts';
import { ControlPlane } from '../control/plane.ts';
import { type DatabaseOptions, openStore, type Store } from '../db/store.ts';
import {
  type BroadcasterOptions,
  DEFAULT_BROADCASTER_OPTIONS,
  MapBroadcaster,
} from '../mapper/broadcaster.ts';
import { MapBuilder } from '../mapper/builder.ts';
import { buildDnsConfig } from '../mapper/dns.ts';
import { PolicyView } from '../mapper/policy-view.ts';
import type { Logger } from '../observe/logger.ts';
import { createMetrics, type Metrics } from '../observe/metrics.ts';
import { DnsSettingsStore } from '../state/dns.ts';
import { PendingLogins, type PendingLoginsOptions } from '../state/logins.ts';
import { PolicyStore, policyTailnet, tailnetPolicy } from '../state/policy.ts';
import { Tailnet, type TailnetOptions } from '../state/tailnet.ts';
import { WeftError } from '../types/errors.ts';
import { TrustedProxies } from '../util/forwarded.ts';
import type { RateLimit } from '../util/rate-limit.ts';
import { openAdminSocket } from './admin-socket.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { type EmbeddedDerp, registerDerpRoutes, registerVerifyRoute, startEmbeddedDerp } from './derp.ts';
import { loadDerpMap } from './derp-map.ts';
import { StartupError } from './errors.ts';
import { databaseHealthCheck } from './health.ts';
import { closeServer, listen } from './listen.ts';
import { forgetGroupsUnlessEnabled, startOidc } from './oidc.ts';
import { loadOrCreateServerKey } from './server-key.ts';

export { StartupError } from './errors.ts';

export const SQLITE_FILE_NAME = 'weft.db';

/** How long a graceful stop waits for in-flight requests before exiting anyway. */
const STOP_DEADLINE_MS = 10_000;

/** How long the process may outlive a completed stop before it exits by itself. */
const LINGER_MS = 2_000;

export interface RunningServer {
  /** The bound HTTP address, e.g. `127.0.0.1:8080` (the real port when listen_addr asked for port 0). */
  readonly httpAddress: string;
  readonly socketPath: string;
  readonly metricsAddress: string | undefined;
  readonly store: Store;
  readonly tailnet: Tailnet;
  readonly policy: PolicyStore;
  /** Interactive logins waiting to be completed. */
  readonly logins: PendingLogins;
  /** The embedded DERP relay, when derp.server.enabled. */
  readonly derp: EmbeddedDerp | undefined;
  /** Every HTTP route served, as "METHOD /path" (tests compare the API's with its OpenAPI document). */
  readonly routes: readonly string[];
  close(): Promise<void>;
}

function formatAddress(server: Server): string {
  const address = server.address();
  if (address === null || typeof address === 'string') return String(address);
  return address.family === 'IPv6'
    ? `[${address.address}]:${address.port}`
    : `${address.address}:${address.port}`;
}

function listenConfigured(server: Server, address: string, key: string): Promise<void> {
  return listen(server, parseHostPort(address), `${address} (${key})`);
}

function metricsHandler(metrics: Metrics) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  };
}

/** Runs cleanup steps in reverse order of registration, never letting one failure skip the rest. */
class Teardown {
  readonly #steps: Array<() => Promise<void>> = [];

  add(step: () => Promise<void>): void {
    this.#steps.push(step);
  }

  async run(log: Logger): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step();
      } catch (err) {
        log.warn({ err }, 'error while stopping');
      }
    }
  }
}

/** Timings that tests shorten (keep-alives every few seconds instead of a minute, etc.). */
export interface ServerTuning {
  broadcaster?: Partial<Omit<BroadcasterOptions, 'log'>>;
  tailnet?: Pick<TailnetOptions, 'offlineGraceMs' | 'writeBehindMs'>;
  logins?: Pick<PendingLoginsOptions, 'ttlMs' | 'maxEntries'>;
  /** Failed auth keys and new logins per address on /machine/register (tests that start many logins). */
  registerLimit?: RateLimit;
}

export async function startServer(
  config: Config,
  log: Logger,
  tuning: ServerTuning = {},
): Promise<RunningServer> {
  const teardown = new Teardown();
  try {
    return await assemble(config, log, teardown, tuning);
  } catch (err) {
    await teardown.run(log);
    throw err;
  }
}

async function prepareDataDir(dataDir: string, teardown: Teardown): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartupError(`cannot create data_dir ${dataDir}: ${(err as Error).message}`, { cause: err });
  }
  teardown.add(await lockDataDir(dataDir));
}

async function assemble(
  config: Config,
  log: Logger,
  teardown: Teardown,
  tuning: ServerTuning,
): Promise<RunningServer> {
  await prepareDataDir(config.data_dir, teardown);
  // Read once: the listener serves it, and the embedded DERP region may pin it.
  const tls = await readTls(config);
  const store = await openDatabase(config, log);
  teardown.add(() => store.close());
  await forgetGroupsUnlessEnabled(config, store, log);
  // Registered after the store, so on stop admin requests drain before the database closes.
  const admin = await openAdminSocket(config.data_dir);
  teardown.add(() => closeServer(admin.server));

  const metrics = createMetrics();
  // One list for both planes: the API's request.ip and the control plane's client address agree.
  const trustedProxies = TrustedProxies.of(config.trusted_proxies);
  const { tailnet, policy, dns, control, derp, logins } = await startControlPlane(config, {
    store,
    log,
    metrics,
    teardown,
    tuning,
    tlsCert: tls?.cert,
    trustedProxies,
  });

  // Before the listener opens: an unavailable provider may stop start-up.
  const oidc = await startOidc(config, { store, tailnet, logins, log });

  const app = createApiApp({
    ...(tls !== undefined ? { https: tls } : {}),
    store,
    tailnet,
    policy,
    dns,
    baseDomain: config.dns.base_domain,
    nodeKeyExpiryMs: config.node.expiry,
    logger: log,
    metrics,
    health: databaseHealthCheck(store, log),
    isLocalAdmin: admin.isLocal,
    logins,
    ...(oidc !== undefined ? { loginPage: oidcLoginPage(oidc) } : {}),
    trustedProxies,
  });
  if (oidc !== undefined) registerOidcRoutes(app, oidc);
  app.get('/key', (request, reply) => {
    const body = control.keyResponse(request.query as { v?: unknown });
    if (body === undefined)
      return reply
        .code(400)
        .type('text/plain')
        .send("the query parameter v must be the client's capability version\n");
    return reply.send(body);
  });
  // /ts2021 is only ever an upgrade; a plain request reaches Fastify, so it is refused here.
  app.route({
    method: ['GET', 'POST'],
    url: '/ts2021',
    handler: (request, reply) =>
      reply
        .code(400)
        .type('text/plain')
        .send(`${control.refuseWithoutUpgrade(request.ip)}\n`),
  });
  if (derp !== undefined) registerDerpRoutes(app);
  registerVerifyRoute(app, tailnet);
  await app.ready();
  teardown.add(() => app.close());
  // Upgraded control and DERP connections are not the HTTP server's to drain: close them first (teardown
  // runs in reverse), or app.close() would wait for them until the stop deadline.
  teardown.add(async () => control.close());
  if (derp !== undefined) teardown.add(() => derp.close());
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node leaves an upgraded socket without an error listener: a reset from the peer while we answer
    // would otherwise be an uncaught exception.
    socket.on('error', () => socket.destroy());
    try {
      if (control.handleUpgrade(req, socket, head)) return;
      if (derp?.upgrades.handleUpgrade(req, socket, head)) return;
      socket.end(
        'HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nno upgrade is served at this path\n',
      );
    } catch (err) {
      log.error({ err, url: req.url }, 'upgrade request failed');
      socket.destroy();
    }
  });
  admin.setHandler((req, res) => app.server.emit('request', req, res));

  await listenConfigured(app.server, config.listen_addr, 'listen_addr');
  let metricsServer: Server | undefined;
  if (config.metrics_listen_addr !== '') {
    const server = createServer(metricsHandler(metrics));
    teardown.add(() => closeServer(server));
    await listenConfigured(server, config.metrics_listen_addr, 'metrics_listen_addr');
    metricsServer = server;
  }

  const running: RunningServer = {
    httpAddress: formatAddress(app.server),
    socketPath: admin.path,
    metricsAddress: metricsServer && formatAddress(metricsServer),
    store,
    tailnet,
    policy,
    logins,
    derp,
    routes: apiRoutes(app),
    close: () => teardown.run(log),
  };
  log.info(
    {
      http: running.httpAddress,
      socket: running.socketPath,
      metrics: running.metricsAddress ?? null,
      database: redactConfig(config).database,
      server_url: config.server_url,
      derp:
        derp === undefined
          ? null
          : { region: derp.region?.RegionID ?? null, stun_port: derp.stun?.port ?? null },
    },
    'weft is serving',
  );
  return running;
}

/** The tailnet model, map fan-out and the Noise plane; torn down before the database closes. */
interface ControlPlaneParts {
  store: Store;
  log: Logger;
  metrics: Metrics;
  teardown: Teardown;
  tuning: ServerTuning;
  /** The listener's PEM certificate, when it serves TLS. */
  tlsCert: Buffer | undefined;
  trustedProxies: TrustedProxies;
}

async function startControlPlane(
  config: Config,
  { store, log, metrics, teardown, tuning, tlsCert, trustedProxies }: ControlPlaneParts,
): Promise<{
  tailnet: Tailnet;
  policy: PolicyStore;
  dns: DnsSettingsStore;
  control: ControlPlane;
  derp: EmbeddedDerp | undefined;
  logins: PendingLogins;
}> {
  const serverKey = await loadOrCreateServerKey(config.data_dir);
  const tailnet = await Tailnet.load({
    store,
    log: log.child({ component: 'tailnet' }),
    prefixes: config.prefixes,
    ephemeralInactivityMs: config.ephemeral_node_inactivity_timeout,
    keyExpiryMs: config.node.expiry,
    deviceApproval: config.node.device_approval,
    ...tuning.tailnet,
  });
  teardown.add(() => tailnet.close());
  const policy = await openPolicy(config, store, tailnet, log);
  teardown.add(async () => policy.close());
  tailnet.usePolicy(tailnetPolicy(tailnet, () => policy.current.policy));
  // Routes advertised while weft was down, or under an older policy, get approved at start too.
  await tailnet.applyAutoApprovals();
  const derp = config.derp.server.enabled
    ? await startEmbeddedDerp(config, tailnet, log, tlsCert)
    : undefined;
  // Registered after the tailnet, so it runs before it on stop.
  if (derp !== undefined) teardown.add(() => derp.close());
  const derpMap = await loadDerpMap(config.derp, log, derp?.region);
  const policyView = new PolicyView(tailnet, policy.current.policy, config.server_url);
  // dns.* from the config until an admin changes the settings through the API (then the stored ones).
  const dns = await DnsSettingsStore.open({
    config: config.dns,
    storage: store.settings,
    log: log.child({ component: 'dns' }),
  });
  const builder = new MapBuilder(
    tailnet,
    {
      baseDomain: config.dns.base_domain,
      domain: new URL(config.server_url).hostname,
      derpMap,
      dnsConfig: buildDnsConfig(config.dns, dns.current),
    },
    policyView,
  );
  const broadcaster = new MapBroadcaster(tailnet, builder, {
    ...DEFAULT_BROADCASTER_OPTIONS,
    ...tuning.broadcaster,
    log: log.child({ component: 'mapper' }),
  });
  teardown.add(async () => broadcaster.close());
  dns.subscribe((settings) => broadcaster.dnsChanged(buildDnsConfig(config.dns, settings)));
  policy.subscribe((active) => {
    broadcaster.policyChanged(active.policy);
    tailnet
      .applyAutoApprovals()
      .catch((err: unknown) => log.error({ err }, 'could not apply autoApprovers after a policy change'));
  });
  const logins = new PendingLogins({ registrar: tailnet, ...tuning.logins });
  // Registered before the control plane's own close, so it runs after it: by then every follow-up
  // stream is gone and this only clears the expiry timers.
  teardown.add(async () => logins.close());
  const control = new ControlPlane({
    tailnet,
    broadcaster,
    serverKey,
    log,
    metrics,
    logins,
    serverUrl: config.server_url,
    trustedProxies,
    ...(tuning.registerLimit !== undefined ? { registerLimit: tuning.registerLimit } : {}),
  });
  metrics.observeTailnet(() => {
    let online = 0;
    for (const node of tailnet.nodes()) if (node.online) online += 1;
    return { nodes: tailnet.size, online, streams: broadcaster.sessionCount };
  });
  if (derp !== undefined) metrics.observeDerp(() => derp.server.stats);
  return { tailnet, policy, dns, control, derp, logins };
}

async function openPolicy(config: Config, store: Store, tailnet: Tailnet, log: Logger): Promise<PolicyStore> {
  try {
    return await PolicyStore.open({
      config: config.policy,
      repository: store.policies,
      tailnet: () => policyTailnet(tailnet),
      serverUrl: config.server_url,
      log: log.child({ component: 'policy' }),
    });
  } catch (err) {
    if (err instanceof WeftError) throw new StartupError(err.message, { cause: err });
    throw err;
  }
}

async function readTls(config: Config): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  if (config.tls_cert_path === undefined || config.tls_key_path === undefined) return undefined;
  const read = async (path: string, key: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new StartupError(`cannot read ${path} (${key}): ${(err as Error).message}`, { cause: err });
    }
  };
  return {
    cert: await read(config.tls_cert_path, 'tls_cert_path'),
    key: await read(config.tls_key_path, 'tls_key_path'),
  };
}

async function openDatabase(config: Config, log: Logger): Promise<Store> {
  const options: DatabaseOptions =
    config.database.type === 'sqlite'
      ? { type: 'sqlite', path: join(config.data_dir, SQLITE_FILE_NAME) }
      : { type: 'postgres', url: config.database.url };
  const where = options.type === 'sqlite' ? options.path : redactUrlSecrets(options.url);
  try {
    const { store, applied } = await openStore(options, {
      onBackgroundError: (err) => log.warn({ err }, 'database connection error'),
    });
    if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');
    return store;
  } catch (err) {
    throw new StartupError(
      `cannot open the ${options.type} database at ${where}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Starts weft and runs until SIGINT or SIGTERM, then stops gracefully within a deadline. A second
 * signal during the stop exits at once.
 */
export async function serveUntilSignal(config: Config, log: Logger): Promise<void> {
  // Listen before starting: a signal that arrives while start-up finishes must stop weft cleanly,
  // not kill it with Node's default action.
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  // SIGHUP re-reads the policy file (policy.mode: file), as admins expect from a daemon; one that
  // arrives during start-up must not kill weft either.
  let running: RunningServer | undefined;
  const reload = () => {
    running?.policy.reload().catch((err: unknown) => log.error({ err }, 'policy reload failed'));
  };
  process.on('SIGHUP', reload);
  running = await startServer(config, log);
  const signal = await stopRequested;
  process.off('SIGHUP', reload);
  log.info({ signal }, 'stopping');
  const force = () => {
    log.warn('second signal: exiting without a clean stop');
    process.exit(1);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  const deadline = setTimeout(() => {
    log.warn({ deadline_ms: STOP_DEADLINE_MS }, 'stop deadline passed: exiting');
    process.exit(1);
  }, STOP_DEADLINE_MS);
  deadline.unref();
  await running.close();
  clearTimeout(deadline);
  log.info('stopped');
  // Everything weft opened is closed now. Should anything still hold the event loop (a bug), exit
  // anyway after a moment rather than linger as a half-stopped server.
  setTimeout(() => {
    // Named, so the log says which kind of handle outlived the stop (sockets, timers, …).
    log.warn(
      { handles: process.getActiveResourcesInfo() },
      'handles were still open after the stop; exiting',
    );
    process.exit(0);
  }, LINGER_MS).unref();
}
