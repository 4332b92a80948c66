/**
 * Which server the CLI talks to: the local admin socket in the data directory (found through the same
 * config `weft serve` reads), or a remote server given by --server/WEFT_SERVER with an API key.
 */
import type { Command } from '@commander-js/extra-typings';
import { ApiClient, type ApiTarget } from '../api/client.ts';
import { loadConfig } from '../config/index.ts';
import { adminSocketPath } from '../server/admin-socket.ts';
import { UsageError } from './errors.ts';

export interface GlobalOptions {
  config?: string;
  server?: string;
  apiKey?: string;
}

export function resolveTarget(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): ApiTarget {
  const server = options.server ?? env.WEFT_SERVER;
  const apiKey = options.apiKey ?? env.WEFT_API_KEY;
  if (server) {
    if (!apiKey)
      throw new UsageError('talking to a remote server needs an API key: pass --api-key or set WEFT_API_KEY');
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new UsageError(`--server "${server}" is not a URL; expected e.g. https://weft.example.com`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new UsageError(`--server "${server}" must be an http:// or https:// URL`);
    }
    return { url: url.toString(), apiKey };
  }
  if (options.apiKey) throw new UsageError('--api-key is only used together with --server (or WEFT_SERVER)');
  const config = loadConfig({ file: options.config, env });
  return { socketPath: adminSocketPath(config.data_dir) };
}

/** True when the CLI talks to a remote server (--server or WEFT_SERVER), not the local socket. */
export function isRemote(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(options.server ?? env.WEFT_SERVER);
}

export function connect(options: GlobalOptions): ApiClient {
  return new ApiClient(resolveTarget(options));
}

/** How a command gets its client: from the global options of the command that is running. */
export type Connect = (command: Command<unknown[], Record<string, unknown>>) => ApiClient;
