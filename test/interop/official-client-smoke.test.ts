/**
 * Official clients against a running weft: for the oldest and newest pinned Tailscale releases, a
 * tailscaled told to `up --login-server <weft> --auth-key <key from weft's CLI>` fetches
 * `GET /key?v=<capability version>` from weft. The full join needs the control protocol (next issue);
 * until then `up` must fail rather than hang. Every process is stopped afterwards.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { startWeft, type WeftServer } from '../harness/weft.ts';

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

    test('fetches GET /key from weft with its capability version', async (t) => {
      const user = await weft.cli(['users', 'create', 'smoke']);
      assert.equal(user.code, 0, user.stderr);
      const key = await weft.cli(['preauthkeys', 'create', '--user', 'smoke', '--expiration', '10m']);
      assert.equal(key.code, 0, key.stderr);

      daemon = await startTailscaled({ version, name: version });
      assert.equal((await daemon.status()).BackendState, 'NeedsLogin');
      const up = await daemon.up({
        loginServer: weft.url,
        authKey: key.stdout.trim(),
        hostname: `smoke-${version}`,
        timeoutMs: 3_000,
      });
      assert.equal(typeof up.code, 'number', `tailscale up was killed instead of exiting: ${up.stderr}`);
      assert.notEqual(up.code, 0, 'joining needs the control protocol, which is not there yet');

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
