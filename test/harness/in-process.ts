/**
 * weft started in the test's own process (startServer on a fresh temp data dir, SQLite, loopback, no
 * metrics listener, no DERP) with its log discarded: for tests that want the server's internals
 * (`running.store`, `running.logins`, `running.routes`) next to its HTTP surface.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { type RunningServer, type ServerTuning, startServer } from '../../src/server/server.ts';

export interface InProcessWeft {
  running: RunningServer;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Stops the server and removes its data dir. */
  close(): Promise<void>;
}

export async function startInProcessWeft(
  tuning: ServerTuning = {},
  /** Config keys on top of the defaults above. */
  config: Record<string, unknown> = {},
): Promise<InProcessWeft> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-inproc-'));
  const parsed = parseConfig({
    listen_addr: '127.0.0.1:0',
    metrics_listen_addr: '',
    data_dir: dir,
    derp: { server: { enabled: false }, urls: [] },
    ...config,
  });
  const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
  const log = createLogger({ level: 'warn', format: 'json', destination: discard });
  let running: RunningServer;
  try {
    running = await startServer(parsed, log, tuning);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    running,
    url: `http://${running.httpAddress}`,
    close: async () => {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
