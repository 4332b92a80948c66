/**
 * The server's Noise key (the control plane's machine key). Clients keep its public half for the life
 * of their process, so it must survive restarts: it is created once, on first start, in the data dir.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyParseError, MachinePublic, PrivateKey } from '../types/keys.ts';
import { StartupError } from './errors.ts';

export const SERVER_KEY_FILE = 'noise_private.key';

export async function loadOrCreateServerKey(dataDir: string): Promise<PrivateKey<'mkey'>> {
  const path = join(dataDir, SERVER_KEY_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new StartupError(`cannot read the server key ${path}: ${(err as Error).message}`, { cause: err });
    }
    const key = PrivateKey.generate(MachinePublic);
    // 'wx': never overwrite a key another process just wrote.
    await writeFile(path, `${key.toSecretText()}\n`, { mode: 0o600, flag: 'wx' });
    return key;
  }
  try {
    return PrivateKey.parse(MachinePublic, text.trim());
  } catch (err) {
    if (!(err instanceof KeyParseError)) throw err;
    throw new StartupError(
      `the server key ${path} is damaged (${err.message}); restore it from a backup, or delete it to make a new one (connected clients then fail until they restart and fetch the new key)`,
    );
  }
}
