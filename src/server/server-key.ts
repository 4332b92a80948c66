/**
 * Long-lived server keys, created once on first start and kept in the data dir:
 *
 *   noise_private.key          the control plane's Noise key (machine key). Clients keep its public half
 *                              for the life of their process, so it must survive restarts.
 *   derp_server_private.key    the embedded DERP relay's key. Clients and mesh peers know the relay by
 *                              it; a new one makes `tailscale debug derp` report a changed server.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyParseError, MachinePublic, NodePublic, PrivateKey, type PublicKeyKind } from '../types/keys.ts';
import { StartupError } from './errors.ts';

export const SERVER_KEY_FILE = 'noise_private.key';

export function loadOrCreateServerKey(dataDir: string): Promise<PrivateKey<'mkey'>> {
  return loadOrCreateKey(join(dataDir, SERVER_KEY_FILE), MachinePublic, 'the server key');
}

/** The DERP relay's key; DERP keys are node-key shaped (Go's derper uses key.NodePrivate too). */
export function loadOrCreateDerpKey(path: string): Promise<PrivateKey<'nodekey'>> {
  return loadOrCreateKey(path, NodePublic, 'the DERP server key (derp.server.private_key_path)');
}

async function loadOrCreateKey<K extends string>(
  path: string,
  kind: PublicKeyKind<K>,
  what: string,
): Promise<PrivateKey<K>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new StartupError(`cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
    const key = PrivateKey.generate(kind);
    // 'wx': never overwrite a key another process just wrote.
    await writeFile(path, `${key.toSecretText()}\n`, { mode: 0o600, flag: 'wx' });
    return key;
  }
  try {
    return PrivateKey.parse(kind, text.trim());
  } catch (err) {
    if (!(err instanceof KeyParseError)) throw err;
    throw new StartupError(
      `${what} ${path} is damaged (${err.message}); restore it from a backup, or delete it to make a new one (connected clients then fail until they reconnect and fetch the new key)`,
    );
  }
}
