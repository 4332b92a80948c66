/**
 * The composition root: builds every part of a running weft from the config, owns the listeners, and
 * takes them down again in reverse order.
 *
 *   admin socket  <data_dir>/weft.sock   REST API for the local CLI, no API key (claimed first, so a
 *                                        second server on the same data dir stops before touching it)
 *   database      SQLite <data_dir>/weft.db or PostgreSQL, migrated at start
 *   HTTP          listen_addr            /health, /api/v1 (bearer API keys)
 *   metrics       metrics_listen_addr    Prometheus /metrics (optional)
 */
import { mkdir, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createApiApp } from '../api/app.ts';
import type { HealthJson } from '../api/wire.ts';
import { type Config, parseHostPort, redactConfig } from '../config/index.ts';
import { redactUrlSecrets } from '../config/redact.ts';
import { type DatabaseOptions, openStore, type Store } from '../db/store.ts';
import type { Logger } from '../observe/logger.ts';
import { createMetrics, type Metrics } from '../observe/metrics.ts';
import { adminSocketPath, listenAdminSocket } from './admin-socket.ts';

export const SQLITE_FILE_NAME = 'weft.db';

/** How long /health waits for the database before calling it down. */
const HEALTH_TIMEOUT_MS = 3_000;
/** How long a graceful stop waits for in-flight requests before cutting connections. */
const STOP_DEADLINE_MS = 10_000;

/** A failure to start, said in one sentence fit for an admin (the cause is kept for the log). */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}

export interface RunningServer {
  /** The bound HTTP address, e.g. `127.0.0.1:8080` (the real port when listen_addr asked for port 0). */
  readonly httpAddress: string;
  readonly socketPath: string;
  readonly metricsAddress: string | undefined;
  readonly store: Store;
  close(): Promise<void>;
}

function formatAddress(server: Server): string {
  const address = server.address();
  if (address === null || typeof address === 'string') return String(address);
  return address.family === 'IPv6'
    ? `[${address.address}]:${address.port}`
    : `${address.address}:${address.port}`;
}

function listenTcp(server: Server, address: string, key: string): Promise<void> {
  const { host, port } = parseHostPort(address);
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const reason = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message;
      reject(new StartupError(`cannot listen on ${address} (${key}): ${reason}`, { cause: err }));
    });
    server.listen(port, host, () => resolve());
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

async function checkHealth(store: Store): Promise<HealthJson> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${HEALTH_TIMEOUT_MS} ms`)),
      HEALTH_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([store.ping(), timeout]);
    return { status: 'pass', checks: { database: { status: 'pass' } } };
  } catch (err) {
    return { status: 'fail', checks: { database: { status: 'fail', output: (err as Error).message } } };
  } finally {
    clearTimeout(timer);
  }
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

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const teardown = new Teardown();
  try {
    return await assemble(config, log, teardown);
  } catch (err) {
    await teardown.run(log);
    throw err;
  }
}

async function assemble(config: Config, log: Logger, teardown: Teardown): Promise<RunningServer> {
  try {
    await mkdir(config.data_dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartupError(`cannot create data_dir ${config.data_dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  // The admin socket first: it doubles as the "one server per data dir" lock.
  const localSockets = new WeakSet<Socket>();
  let handleLocal: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const adminServer = createServer((req, res) => {
    if (handleLocal) return handleLocal(req, res);
    res.writeHead(503, { 'content-type': 'text/plain' }).end('weft is starting\n');
  });
  adminServer.on('connection', (socket) => localSockets.add(socket));
  const socketPath = adminSocketPath(config.data_dir);
  await listenAdminSocket(adminServer, socketPath);
  teardown.add(async () => {
    adminServer.closeAllConnections();
    await closeServer(adminServer);
    await unlink(socketPath).catch(() => {});
  });

  const store = await openDatabase(config, log);
  teardown.add(() => store.close());

  const metrics = createMetrics();
  const app = createApiApp({
    store,
    logger: log,
    metrics,
    health: () => checkHealth(store),
    isLocalAdmin: (req) => localSockets.has(req.socket),
  });
  await app.ready();
  teardown.add(() => app.close());
  handleLocal = (req, res) => app.server.emit('request', req, res);

  await listenTcp(app.server, config.listen_addr, 'listen_addr');
  let metricsServer: Server | undefined;
  if (config.metrics_listen_addr !== '') {
    metricsServer = createServer(metricsHandler(metrics));
    const server = metricsServer;
    teardown.add(() => closeServer(server));
    await listenTcp(metricsServer, config.metrics_listen_addr, 'metrics_listen_addr');
  }

  const running: RunningServer = {
    httpAddress: formatAddress(app.server),
    socketPath,
    metricsAddress: metricsServer && formatAddress(metricsServer),
    store,
    close: () => teardown.run(log),
  };
  log.info(
    {
      http: running.httpAddress,
      socket: running.socketPath,
      metrics: running.metricsAddress ?? null,
      database: redactConfig(config).database,
      server_url: config.server_url,
    },
    'weft is serving',
  );
  return running;
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
  const running = await startServer(config, log);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
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
}
