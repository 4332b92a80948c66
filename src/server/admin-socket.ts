/**
 * The local admin socket: `<data_dir>/weft.sock`, a unix socket the CLI on the same host talks to
 * without an API key. Its file mode (0600) limits it to the server's user.
 *
 * Claiming the socket also keeps a second server off the same data directory (SQLite allows one
 * writer process): if the path answers, another weft is running there; if it doesn't, the file is a
 * leftover from a crash and is replaced.
 */
import { chmod, unlink } from 'node:fs/promises';
import { connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

export const ADMIN_SOCKET_NAME = 'weft.sock';

/** Linux's sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export function adminSocketPath(dataDir: string): string {
  return join(dataDir, ADMIN_SOCKET_NAME);
}

export class AdminSocketError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AdminSocketError';
  }
}

function listenOnce(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(path);
  });
}

/** Resolves true when something accepts connections at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe: Socket = connect(path);
    const done = (alive: boolean) => {
      probe.destroy();
      resolve(alive);
    };
    probe.once('connect', () => done(true));
    probe.once('error', () => done(false));
    probe.setTimeout(2_000, () => done(false));
  });
}

/** Listens on the admin socket at `path`, replacing a stale socket file and refusing a live one. */
export async function listenAdminSocket(server: Server, path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new AdminSocketError(
      `the admin socket path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes; use a shorter data_dir`,
    );
  }
  try {
    await listenOnce(server, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
      throw new AdminSocketError(`cannot listen on the admin socket ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (await answers(path)) {
      throw new AdminSocketError(
        `another weft server is already running with this data directory (its socket ${path} answers)`,
        { cause: err },
      );
    }
    await unlink(path);
    await listenOnce(server, path);
  }
  await chmod(path, 0o600);
}
