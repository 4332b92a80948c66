/**
 * The local admin socket: `<data_dir>/weft.sock`, a unix socket the CLI on the same host talks to
 * without an API key. Only the server's user may connect: the socket is created with mode 0600.
 *
 * Requests on it are the server's own admin, so the socket must never exist with looser permissions,
 * not even for a moment: it is bound under a umask that makes it 0600 from the start, rather than
 * chmod-ed after listen (a connection accepted in between would keep admin rights).
 */
import { unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { StartupError } from './errors.ts';
import { listen } from './listen.ts';

export const ADMIN_SOCKET_NAME = 'weft.sock';

/** Linux's sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, ADMIN_SOCKET_NAME);
}

export interface AdminSocket {
  readonly path: string;
  readonly server: Server;
  /** True for requests that arrived on this socket. */
  isLocal(request: IncomingMessage): boolean;
  /** Where requests go once the server is ready; until then they get 503. */
  setHandler(handler: (req: IncomingMessage, res: ServerResponse) => void): void;
}

/**
 * Binds the admin socket in `dataDir`. The caller holds the data directory lock, so a socket file
 * already there is a leftover of a server that is gone and is replaced.
 */
export async function openAdminSocket(dataDir: string): Promise<AdminSocket> {
  const path = adminSocketPath(dataDir);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new StartupError(
      `the admin socket path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes; use a shorter data_dir`,
    );
  }
  const localSockets = new WeakSet<Socket>();
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handler) return handler(req, res);
    res.writeHead(503, { 'content-type': 'text/plain' }).end('weft is starting\n');
  });
  server.on('connection', (socket) => localSockets.add(socket));

  await unlink(path).catch(() => {});
  const previousUmask = process.umask(0o177);
  try {
    await listen(server, { path }, `the admin socket ${path}`);
  } finally {
    process.umask(previousUmask);
  }
  return {
    path,
    server,
    isLocal: (request) => localSockets.has(request.socket),
    setHandler: (next) => {
      handler = next;
    },
  };
}
