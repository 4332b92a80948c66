/** The Headscale binary for the scale benchmark, built on first use by scripts/headscale-bin.sh. */
import { fileURLToPath } from 'node:url';
import { runCommand } from '../../test/harness/child.ts';

const SCRIPT = fileURLToPath(new URL('../../scripts/headscale-bin.sh', import.meta.url));
/** A cold build of Headscale and its dependencies takes many minutes on two cores. */
const BUILD_TIMEOUT_MS = 45 * 60_000;

export async function headscaleBinary(): Promise<{ path: string; version: string }> {
  const built = await runCommand(SCRIPT, [], { timeoutMs: BUILD_TIMEOUT_MS });
  if (built.code !== 0)
    throw new Error(`scripts/headscale-bin.sh failed: ${built.stderr.trim().slice(-2000)}`);
  const path = built.stdout.trim().split('\n').pop() ?? '';
  const version = /\/(v[0-9][^/]*)\/headscale$/.exec(path)?.[1] ?? 'unknown';
  return { path, version };
}
