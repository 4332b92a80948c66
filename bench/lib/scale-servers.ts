/**
 * The two coordination servers of the scale benchmark, each in a process of its own on 127.0.0.1 with a
 * fresh SQLite database: weft (`bin/weft serve`) and Headscale (the newest release, built with the Go
 * toolchain by scripts/headscale-bin.sh). Both get the same treatment: a user `bench`, a reusable
 * pre-auth key, an API key for the REST API (policy changes go through `PUT /api/v1/policy` on both),
 * log level warn, and no DERP relay in play (the simulated clients never use one).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeLoopbackPort, runCommand } from '../../test/harness/child.ts';
import { WEFT_BIN } from '../../test/harness/weft.ts';
import { launch, spawnWeft, waitForHttp } from './servers.ts';

export type ScaleServerName = 'weft' | 'headscale';

export interface ScaleServer {
  readonly name: ScaleServerName;
  /** `http://127.0.0.1:<port>`: what clients use as the login server. */
  readonly url: string;
  readonly pid: number;
  readonly version: string;
  /** A reusable pre-auth key of user `bench`. */
  readonly authKey: string;
  /** Replaces the policy through the server's REST API (HuJSON text). */
  setPolicy(text: string): Promise<void>;
  output(): string;
  stop(): Promise<void>;
}

/** Resident set size of a process in MiB, from /proc/<pid>/status; 0 if it is gone. */
export function rssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = Number(/^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1] ?? 0);
    return kib / 1024;
  } catch {
    return 0;
  }
}

async function must(what: string, result: Promise<{ code: number | null; stdout: string; stderr: string }>) {
  const done = await result;
  if (done.code !== 0) throw new Error(`${what} failed (${done.code}): ${done.stderr || done.stdout}`);
  return done.stdout.trim();
}

async function putPolicy(url: string, apiKey: string, text: string): Promise<void> {
  const res = await fetch(`${url}/api/v1/policy`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ policy: text }),
  });
  if (!res.ok) throw new Error(`PUT /api/v1/policy: ${res.status} ${await res.text()}`);
}

export async function startWeftScale(extraEnv: Record<string, string> = {}): Promise<ScaleServer> {
  const weft = await spawnWeft('weft-scale-', { WEFT_METRICS_LISTEN_ADDR: '', ...extraEnv });
  try {
    const cli = (args: string[]) =>
      must(`weft ${args.join(' ')}`, runCommand(WEFT_BIN, args, { env: weft.env, timeoutMs: 30_000 }));
    await cli(['users', 'create', 'bench']);
    const authKey = await cli([
      'preauthkeys',
      'create',
      '--user',
      'bench',
      '--reusable',
      '--expiration',
      '24h',
    ]);
    const apiKey = await cli(['apikeys', 'create', '--expiration', '1d']);
    const url = `http://127.0.0.1:${weft.port}`;
    return {
      name: 'weft',
      url,
      pid: weft.pid,
      version: weft.version,
      authKey,
      setPolicy: (text) => putPolicy(url, apiKey, text),
      output: () => weft.output.text(),
      stop: weft.stop,
    };
  } catch (err) {
    await weft.stop();
    throw err;
  }
}

function headscaleConfig(dir: string, port: number, metricsPort: number, grpcPort: number): string {
  return `server_url: http://127.0.0.1:${port}
listen_addr: 127.0.0.1:${port}
metrics_listen_addr: 127.0.0.1:${metricsPort}
grpc_listen_addr: 127.0.0.1:${grpcPort}
grpc_allow_insecure: false
noise:
  private_key_path: ${dir}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: false
  urls: []
  paths:
    - ${dir}/derp.yaml
  auto_update_enabled: false
disable_check_updates: true
database:
  type: sqlite
  sqlite:
    path: ${dir}/db.sqlite
    write_ahead_log: true
log:
  level: warn
policy:
  mode: database
dns:
  magic_dns: true
  base_domain: bench.internal
  override_local_dns: false
  nameservers:
    global: []
unix_socket: ${dir}/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
`;
}

/** A one-region DERP map no client dials (the simulated clients never relay). */
const DERP_MAP = `regions:
  900:
    regionid: 900
    regioncode: bench
    regionname: bench
    nodes:
      - name: 900a
        regionid: 900
        hostname: 127.0.0.1
        stunport: -1
        derpport: 1
`;

export async function startHeadscaleScale(binary: string, version: string): Promise<ScaleServer> {
  const dir = await mkdtemp(join(tmpdir(), 'headscale-scale-'));
  const port = await freeLoopbackPort();
  const config = join(dir, 'config.yaml');
  await writeFile(config, headscaleConfig(dir, port, await freeLoopbackPort(), await freeLoopbackPort()));
  await writeFile(join(dir, 'derp.yaml'), DERP_MAP);
  const env = { ...process.env, HOME: dir };
  const { pid, output, stop } = await launch(
    'headscale',
    binary,
    ['serve', '-c', config],
    { dir, env },
    (child, out) => waitForHttp(child, `http://127.0.0.1:${port}/health`, out, 'headscale'),
  );
  try {
    const cli = (args: string[]) =>
      must(
        `headscale ${args.join(' ')}`,
        runCommand(binary, ['-c', config, ...args], { env, timeoutMs: 30_000 }),
      );
    await cli(['users', 'create', 'bench']);
    const users = JSON.parse(await cli(['users', 'list', '-o', 'json'])) as Array<{
      id: number | string;
      name: string;
    }>;
    const userId = String(users.find((u) => u.name === 'bench')?.id ?? '1');
    const authKey = await cli([
      'preauthkeys',
      'create',
      '--user',
      userId,
      '--reusable',
      '--expiration',
      '24h',
    ]);
    const apiKey = await cli(['apikeys', 'create', '--expiration', '24h']);
    const url = `http://127.0.0.1:${port}`;
    return {
      name: 'headscale',
      url,
      pid,
      version,
      authKey: authKey.split('\n').pop() ?? authKey,
      setPolicy: (text) => putPolicy(url, apiKey.split('\n').pop() ?? apiKey, text),
      output: () => output.text(),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
