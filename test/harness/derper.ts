/**
 * The official `derper` (built with the pinned tailscale binaries), for tests that check weft against
 * the reference relay: its `--verify-client-url` admission through weft's /verify, and benchmarks. It listens on 127.0.0.1 only, serves
 * DERP over plain HTTP (clients need TS_DEBUG_USE_DERP_HTTP=1) and STUN on a UDP port of its own.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  freeLoopbackPort,
  freeLoopbackUdpPort,
  OutputLog,
  removeTestDir,
  terminate,
  unrefChild,
  waitForLine,
} from './child.ts';
import { killQuietly, onProcessExit } from './exit-cleanup.ts';
import { tailscaleBinaries } from './tailscale.ts';

export const DERP_REGION_ID = 900;

export interface Derper {
  readonly port: number;
  readonly stunPort: number;
  /** A DERP map file with one region pointing at this derper, for weft's `derp.paths`. */
  readonly derpMapPath: string;
  /** Environment official clients need to use it (plain-HTTP DERP). */
  readonly clientEnv: Record<string, string>;
  stop(): Promise<void>;
}

export async function startDerper(
  version: 'oldest' | 'newest' | string = 'newest',
  options: { args?: string[] } = {},
): Promise<Derper> {
  const binaries = await tailscaleBinaries(version);
  const dir = await mkdtemp(join(tmpdir(), 'derper-'));
  const port = await freeLoopbackPort();
  const stunPort = await freeLoopbackUdpPort();
  const derpMapPath = join(dir, 'derpmap.json');
  const derpMap = {
    Regions: {
      [DERP_REGION_ID]: {
        RegionID: DERP_REGION_ID,
        RegionCode: 'lab',
        RegionName: 'Lab derper',
        Nodes: [
          {
            Name: `${DERP_REGION_ID}a`,
            RegionID: DERP_REGION_ID,
            HostName: '127.0.0.1',
            IPv4: '127.0.0.1',
            IPv6: 'none',
            STUNPort: stunPort,
            DERPPort: port,
            InsecureForTests: true,
          },
        ],
      },
    },
  };
  await writeFile(derpMapPath, JSON.stringify(derpMap, null, 2));

  // A non-443 -a without --certmode=manual serves plain HTTP; -c keeps derper's key in the temp dir.
  const args = [
    `-a=127.0.0.1:${port}`,
    '-http-port=-1',
    `-stun-port=${stunPort}`,
    `-c=${join(dir, 'derper.key')}`,
    '-hostname=127.0.0.1',
    ...(options.args ?? []),
  ];
  const child = spawn(binaries.derper, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = new OutputLog();
  log.attach(child);
  const unregister = onProcessExit(() => {
    killQuietly(child.pid, 'SIGKILL');
    removeTestDir(dir, () => rmSync(dir, { recursive: true, force: true }));
  });
  unrefChild(child);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await terminate(child, 'SIGTERM', 5_000);
      await removeTestDir(dir, () => rm(dir, { recursive: true, force: true }));
      unregister();
    })();
    return stopping;
  };
  try {
    await waitForLine(
      child,
      log,
      (line) => /derper: serving on|serving on/.test(line),
      15_000,
      'derper start-up',
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    port,
    stunPort,
    derpMapPath,
    clientEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
    stop,
  };
}
