/**
 * Start-up of the embedded relay when its inputs are bad: a clear StartupError, and nothing left running
 * (the STUN port is free again at once, so a corrected config starts on the same port).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { StartupError, startServer } from '../../src/server/server.ts';
import { freeLoopbackUdpPort } from '../harness/child.ts';

const silent = createLogger({ level: 'silent', format: 'json' });

describe('embedded DERP start-up', () => {
  let dir: string;
  let stunPort: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-derp-startup-'));
    stunPort = await freeLoopbackUdpPort();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const config = (extra: Record<string, unknown>, derpServer: Record<string, unknown> = {}) =>
    parseConfig({
      listen_addr: '127.0.0.1:0',
      metrics_listen_addr: '',
      data_dir: join(dir, 'data'),
      derp: { server: { stun_listen_addr: `127.0.0.1:${stunPort}`, ...derpServer } },
      ...extra,
    });

  test('a missing certificate is a StartupError naming tls_cert_path, and leaves nothing running', async () => {
    const bad = config({
      server_url: 'https://127.0.0.1:8443',
      tls_cert_path: join(dir, 'missing.crt'),
      tls_key_path: join(dir, 'missing.key'),
    });
    await assert.rejects(startServer(bad, silent), (err: Error) => {
      assert.ok(err instanceof StartupError, String(err));
      assert.match(err.message, /tls_cert_path/);
      return true;
    });
    const running = await startServer(config({}), silent);
    assert.equal(running.derp?.stun?.port, stunPort);
    await running.close();
  });

  test('an all-zero mesh key is refused (it would make "no key" a privilege)', async () => {
    const keyPath = join(dir, 'mesh.key');
    await writeFile(keyPath, `${'0'.repeat(64)}\n`);
    await assert.rejects(startServer(config({}, { mesh_key_path: keyPath }), silent), /not all zero/);
  });
});
