/**
 * test/go/apiclient: weft's API v2 driven by Tailscale's official Go client library
 * (`tailscale.com/client/tailscale/v2`). `apiClientBinary` builds it (or finds it cached) through
 * scripts/apiclient-bin.sh; `runApiClient` runs one scenario and parses the JSON it prints.
 */
import { fileURLToPath } from 'node:url';
import { runCommand } from './child.ts';

const BUILD_SCRIPT = fileURLToPath(new URL('../../scripts/apiclient-bin.sh', import.meta.url));
/** A cold build downloads the client library and compiles it on 2 cores. */
const BUILD_TIMEOUT_MS = 10 * 60_000;
const RUN_TIMEOUT_MS = 90_000;

let build: Promise<string> | undefined;

/** The built program's path; memoised per process (a failure too, so it is not retried per test). */
export function apiClientBinary(): Promise<string> {
  build ??= (async () => {
    const result = await runCommand(BUILD_SCRIPT, [], {
      timeoutMs: BUILD_TIMEOUT_MS,
      killProcessGroup: true,
    });
    const path = result.stdout.trim().split('\n').at(-1) ?? '';
    if (result.code !== 0 || path === '') {
      const outcome = result.code === null ? `timed out after ${BUILD_TIMEOUT_MS} ms` : `exit ${result.code}`;
      throw new Error(`scripts/apiclient-bin.sh failed (${outcome}):\n${result.stderr.slice(-4000)}`);
    }
    return path;
  })();
  return build;
}

export interface ApiClientResult {
  /** 0 on success, 1 when the scenario failed (then `json` is `{error, status}`). */
  code: number | null;
  json: Record<string, unknown>;
  stdout: string;
  stderr: string;
}

/**
 * Runs one scenario. `auth` is an API key, or an OAuth client's id and secret (optionally narrowed
 * to `scopes`). Credentials go in the environment, not the command line, so `ps` never shows them.
 */
export async function runApiClient(
  baseUrl: string,
  auth: { apiKey: string } | { oauthId: string; oauthSecret: string; scopes?: string[] },
  scenario: string,
  args: string[] = [],
): Promise<ApiClientResult> {
  const binary = await apiClientBinary();
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, APICLIENT_URL: baseUrl };
  const extra: string[] = [];
  if ('apiKey' in auth) env.APICLIENT_API_KEY = auth.apiKey;
  else {
    env.APICLIENT_OAUTH_ID = auth.oauthId;
    env.APICLIENT_OAUTH_SECRET = auth.oauthSecret;
    if (auth.scopes !== undefined) extra.push('-scopes', auth.scopes.join(','));
  }
  const result = await runCommand(binary, [...extra, scenario, ...args], { env, timeoutMs: RUN_TIMEOUT_MS });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  } catch {
    json = { unparsed: result.stdout };
  }
  return { code: result.code, json, stdout: result.stdout, stderr: result.stderr };
}
