/**
 * weft's API v2 judged by Tailscale's official Go client library (test/go/apiclient, built from
 * `tailscale.com/client/tailscale/v2`) against a running weft, with an official tailscaled: the client
 * round-trips the policy file with its ETag, creates an auth key that tailscaled joins with, lists the
 * devices, enables the routes the device advertises (and a peer sees it carry them), sets the
 * DNS nameservers, does the same reading through OAuth client credentials, and gets a 401 for a
 * wrong key.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { apiClientBinary, runApiClient } from '../harness/apiclient.ts';
import { freeLoopbackPort, freeLoopbackUdpPort } from '../harness/child.ts';
import { startTailscaled, type TailscaledProcess, tailscaleBinaries } from '../harness/tailscale.ts';
import { eventually } from '../harness/wait.ts';
import { loopbackServerEnv, startWeft, type WeftServer } from '../harness/weft.ts';

const ROUTE = '10.77.0.0/24';
const POLICY = `// set through the official Go client
{
  "tagOwners": { "tag:ci": [] },
  "acls": [
    { "action": "accept", "src": ["*"], "dst": ["*:*"] }, // everyone reaches everyone
  ],
}
`;

describe('API v2 with the official Go client library', () => {
  let weft: WeftServer;
  let dir: string;
  let apiKey: string;
  let daemon: TailscaledProcess | undefined;
  let viewer: TailscaledProcess | undefined;
  let authKey = '';
  let deviceId = '';

  const asAdmin = (scenario: string, args: string[] = []) =>
    runApiClient(weft.url, { apiKey }, scenario, args);

  function succeeded(result: Awaited<ReturnType<typeof runApiClient>>): Record<string, unknown> {
    assert.equal(result.code, 0, `apiclient failed: ${result.stdout}${result.stderr}`);
    return result.json;
  }

  async function cli(args: string[]): Promise<string> {
    const result = await weft.cli(args);
    assert.equal(result.code, 0, `weft ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  }

  before(async () => {
    await Promise.all([tailscaleBinaries('newest'), apiClientBinary()]);
    dir = await mkdtemp(join(tmpdir(), 'weft-api-v2-go-'));
    const port = await freeLoopbackPort();
    const stunPort = await freeLoopbackUdpPort();
    weft = await startWeft({
      env: { ...loopbackServerEnv(port), WEFT_STUN_LISTEN_ADDR: `127.0.0.1:${stunPort}` },
    });
    apiKey = (await cli(['apikeys', 'create', '--expiration', '1h'])).trim();
  });

  after(async () => {
    await Promise.all([daemon?.stop(), viewer?.stop()]);
    await weft?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the policy round-trips: read with its ETag, validated, set with that ETag, read back unchanged', async () => {
    const file = join(dir, 'policy.hujson');
    await writeFile(file, POLICY);
    const out = succeeded(await asAdmin('acl-roundtrip', ['-file', file]));
    assert.notEqual(out.etagBefore, out.etagAfter);
    assert.equal(out.acls, 1);
    assert.deepEqual(out.tagOwners, { 'tag:ci': [] });
    const stale = await asAdmin('acl-stale', ['-file', file]);
    assert.equal(stale.code, 1);
    assert.equal(stale.json.status, 412);
    assert.match(String(stale.json.error), /precondition failed, invalid old hash/);
  });

  test('an auth key made by the Go client lets an official tailscaled join', async () => {
    const created = succeeded(
      await asAdmin('create-key', [
        '-tags',
        'tag:ci',
        '-reusable',
        '-expiry-seconds',
        '3600',
        '-description',
        'go client',
      ]),
    );
    assert.match(String(created.key), /^weft-auth-/);
    authKey = String(created.key);
    const read = created.read as {
      description: string;
      capabilities: { devices: { create: { tags: string[] } } };
    };
    assert.equal(read.description, 'go client');
    assert.deepEqual(read.capabilities.devices.create.tags, ['tag:ci']);

    daemon = await startTailscaled({
      version: 'newest',
      name: 'router',
      env: { TS_DEBUG_USE_DERP_HTTP: '1' },
    });
    const up = await daemon.up({
      loginServer: weft.url,
      authKey: String(created.key),
      hostname: 'router',
      extraArgs: [`--advertise-routes=${ROUTE}`],
    });
    assert.equal(up.code, 0, `tailscale up: ${up.stderr}`);
    assert.equal((await daemon.status()).BackendState, 'Running');
  });

  test("the Go client lists the device with Tailscale's fields", async () => {
    const devices = await eventually(
      'the router advertises its route to weft',
      async () => {
        const out = succeeded(await asAdmin('list-devices'));
        const list = out.devices as Record<string, unknown>[];
        const router = list.find((d) => d.hostname === 'router');
        // The Go struct's tag is "AdvertisedRoutes" (it decodes either case), so it prints that spelling.
        return (router?.AdvertisedRoutes as string[] | undefined)?.includes(ROUTE) ? list : undefined;
      },
      { timeoutMs: 10_000 },
    );
    const router = devices.find((d) => d.hostname === 'router');
    assert.ok(router);
    deviceId = String(router.nodeId);
    assert.equal(router.id, deviceId);
    assert.equal(router.name, 'router.tailnet.internal');
    assert.deepEqual(router.tags, ['tag:ci']);
    assert.equal(router.authorized, true);
    assert.equal(router.os, 'linux');
    assert.equal((router.addresses as string[]).length, 2);
  });

  test('routes: the Go client enables the advertised route and peers see the device carry it', async () => {
    const before = succeeded(await asAdmin('get-routes', ['-device', deviceId]));
    assert.deepEqual(before, { advertisedRoutes: [ROUTE], enabledRoutes: [] });
    const after = succeeded(await asAdmin('set-routes', ['-device', deviceId, '-routes', ROUTE]));
    assert.deepEqual(after, { advertisedRoutes: [ROUTE], enabledRoutes: [ROUTE] });
    // A peer sees the router carry the route (PrimaryRoutes are what peers are told).
    viewer = await startTailscaled({
      version: 'newest',
      name: 'viewer',
      env: { TS_DEBUG_USE_DERP_HTTP: '1' },
    });
    const up = await viewer.up({ loginServer: weft.url, authKey, hostname: 'viewer' });
    assert.equal(up.code, 0, `tailscale up (viewer): ${up.stderr}`);
    const peer = viewer;
    await eventually(
      'the viewer sees the router as the primary for the route',
      async () => {
        const status = await peer.status();
        const router = Object.values(status.Peer ?? {}).find((p) => p.HostName === 'router');
        return (router?.PrimaryRoutes as string[] | undefined)?.includes(ROUTE) ? true : undefined;
      },
      { timeoutMs: 5_000 },
    );
  });

  test('DNS nameservers set through the Go client are in force', async () => {
    const out = succeeded(await asAdmin('set-nameservers', ['-dns', '1.1.1.1,9.9.9.9']));
    assert.deepEqual(out.dns, ['1.1.1.1', '9.9.9.9']);
    const shown = JSON.parse(await cli(['dns', 'show', '-o', 'json'])) as {
      nameservers: { global: string[] };
    };
    assert.deepEqual(shown.nameservers.global, ['1.1.1.1', '9.9.9.9']);
  });

  test('OAuth client credentials: the Go client lists devices and users within its scopes only', async () => {
    const created = JSON.parse(
      await cli(['oauthclients', 'create', '--scopes', 'devices:core:read,users:read', '-o', 'json']),
    ) as { id: string; secret: string };
    const oauth = { oauthId: created.id, oauthSecret: created.secret };
    const devices = succeeded(await runApiClient(weft.url, oauth, 'list-devices'));
    assert.ok((devices.devices as { hostname: string }[]).some((d) => d.hostname === 'router'));
    succeeded(await runApiClient(weft.url, oauth, 'list-users'));
    const narrowed = await runApiClient(weft.url, { ...oauth, scopes: ['users:read'] }, 'list-devices');
    assert.equal(narrowed.code, 1);
    assert.equal(narrowed.json.status, 403);
    const beyond = await runApiClient(weft.url, oauth, 'create-key', ['-tags', 'tag:ci']);
    assert.equal(beyond.code, 1);
    assert.equal(beyond.json.status, 403);
    const listed = JSON.parse(await cli(['oauthclients', 'list', '-o', 'json'])) as { id: string }[];
    assert.ok(listed.some((c) => c.id === created.id));
    await cli(['oauthclients', 'delete', created.id]);
    const gone = await runApiClient(weft.url, oauth, 'list-devices');
    assert.equal(gone.code, 1);
  });

  test("a wrong API key gets the client's 401 error", async () => {
    const wrong = await runApiClient(weft.url, { apiKey: `${apiKey.slice(0, -4)}0000` }, 'list-devices');
    assert.equal(wrong.code, 1);
    assert.equal(wrong.json.status, 401);
    assert.match(String(wrong.json.error), /unknown, malformed or expired \(401\)/);
  });
});
