/** Binding and closing node:net/node:http servers with errors an admin can act on. */
import type { Server } from 'node:net';
import { StartupError } from './errors.ts';

export type ListenTarget = { path: string } | { host: string; port: number };

/**
 * Listens and resolves once bound; a bind failure becomes a StartupError naming `what` (e.g.
 * "127.0.0.1:8080 (listen_addr)"). The one-shot error listener is removed either way, so later runtime
 * errors are not swallowed by a settled promise.
 */
export function listen(server: Server, target: ListenTarget, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      const reason = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message;
      reject(new StartupError(`cannot listen on ${what}: ${reason}`, { cause: err }));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if ('path' in target) server.listen(target.path);
    else server.listen(target.port, target.host);
  });
}

/**
 * Stops accepting connections and resolves when the open ones have finished; idle keep-alive
 * connections are closed at once. (The caller's stop deadline bounds requests that never finish.)
 */
export function closeServer(server: Server & { closeIdleConnections?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections?.();
  });
}
