/**
 * Official clients against a running weft, for the oldest and newest pinned Tailscale releases: a
 * tailscaled told to `up --login-server <weft> --auth-key <bad key>` fetches `GET /key?v=<capability
 * version>`, completes the Noise handshake, and `tailscale up` fails with weft's own error text (a bad
 * key must never leave `up` hanging). Every process is stopped afterwards.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { AUTH_KEY_ERRORS } from '../../src/control/register.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { listNodes, startWeft, type WeftServer } from '../harness/weft.ts';

async function countNodes(weft: WeftServer): Promise<number> {
  return (await listNodes(weft)).length;
}

/** v1.80, the oldest client weft supports, speaks capability version 113. */
const OLDEST_CAPABILITY_VERSION = 113;

for (const version of ['oldest', 'newest'] as const) {
  describe(`official tailscaled (${version}) against weft`, () => {
    let weft: WeftServer;
    let daemon: TailscaledProcess | undefined;

    before(async () => {
      await tailscaleBinaries(version); // a cold build takes minutes; keep it out of the test's timing
      weft = await startWeft();
    });

    after(async () => {
      await daemon?.stop();
      await weft?.stop();
    });

    test('a bad auth key: GET /key with its capability version, then our error from tailscale up', async (t) => {
      const user = await weft.cli(['users', 'create', 'smoke']);
      assert.equal(user.code, 0, user.stderr);
      const key = await weft.cli(['preauthkeys', 'create', '--user', 'smoke', '--expiration', '10m']);
      assert.equal(key.code, 0, key.stderr);
      // The same shape as a real key, but a secret weft never issued.
      const forged = key.stdout
        .trim()
        .replace(/[0-9a-f]{8}$/, (tail) => (tail === '00000000' ? '11111111' : '00000000'));

      daemon = await startTailscaled({ version, name: version });
      assert.equal((await daemon.status()).BackendState, 'NeedsLogin');
      const up = await daemon.up({
        loginServer: weft.url,
        authKey: forged,
        hostname: `smoke-${version}`,
        timeoutMs: 30_000,
      });
      assert.equal(typeof up.code, 'number', `tailscale up was killed instead of exiting: ${up.stderr}`);
      assert.notEqual(up.code, 0);
      assert.ok(up.stderr.includes(AUTH_KEY_ERRORS.invalid), up.stderr);
      assert.equal(await countNodes(weft), 0, 'a refused key registers nothing');

      const keyFetches = weft
        .logEntries()
        .filter((e) => e.msg === 'request' && e.method === 'GET' && /^\/key\?v=\d+$/.test(String(e.url)));
      assert.ok(keyFetches.length > 0, `weft logged no GET /key?v=<n>:\n${weft.output().slice(-3000)}`);
      const capabilityVersion = Number(/v=(\d+)$/.exec(String(keyFetches[0]?.url))?.[1]);
      if (version === 'oldest') assert.equal(capabilityVersion, OLDEST_CAPABILITY_VERSION);
      else
        assert.ok(capabilityVersion > OLDEST_CAPABILITY_VERSION, `capability version ${capabilityVersion}`);
      t.diagnostic(
        `${daemon.binaries.version} sent GET /key?v=${capabilityVersion} (${keyFetches.length} times)`,
      );
    });

    test('the harness stops the daemon and removes its folder', async () => {
      assert.ok(daemon, 'the daemon was not started');
      const { dir } = daemon;
      await daemon.stop();
      await daemon.stop();
      if (!process.env.KEEP_TEST_DIRS) assert.equal(existsSync(dir), false);
      const afterStop = await daemon.cli(['status', '--json'], { timeoutMs: 5_000 });
      assert.notEqual(afterStop.code, 0, 'the LocalAPI still answers after stop');
    });
  });
}
