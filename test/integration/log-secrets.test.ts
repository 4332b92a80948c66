/**
 * Secrets never reach the log. One weft process at log level trace goes through everything that handles
 * a secret — pre-auth and API keys created, listed, used by clients and the remote CLI, presented wrongly,
 * sent as Bearer and as Basic, expired; OAuth client secrets and access tokens; auth keys minted through
 * API v2 — and then its whole output is searched for every secret the test created or presented (the
 * whole text and the random part alone). OIDC's secrets (client secret, codes, cookies) are checked the
 * same way in oidc.test.ts, Terraform's in terraform.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { type ControlConnection, connectControl, DEFAULT_CAP_VERSION } from '../harness/control-client.ts';
import { startWeft, type WeftServer } from '../harness/weft.ts';

let weft: WeftServer;
const secrets = new Set<string>();
const connections: ControlConnection[] = [];

/** Remembers a secret (and its random tail, which alone would be enough to rebuild it). */
function secret(text: string): string {
  const value = text.trim();
  assert.ok(value.length >= 16, `not a secret: ${value}`);
  secrets.add(value);
  const tail = /-([0-9a-f]{32,})$/.exec(value)?.[1];
  if (tail) secrets.add(tail);
  return value;
}

function ok(result: { code: number | null; stdout: string; stderr: string }): string {
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

before(async () => {
  weft = await startWeft({ env: { WEFT_LOG_LEVEL: 'trace' } });
});

after(async () => {
  await Promise.allSettled(connections.map((c) => c.close()));
  await weft?.stop();
});

async function register(authKey: string): Promise<Record<string, unknown>> {
  const conn = await connectControl(weft.url);
  connections.push(conn);
  const res = await conn.request('POST', '/machine/register', {
    Version: DEFAULT_CAP_VERSION,
    NodeKey: PrivateKey.generate(NodePublic).publicKey,
    Hostinfo: { Hostname: `secretive-${connections.length}`, OS: 'linux' },
    Auth: { AuthKey: authKey },
  });
  return res.json();
}

test('keys created, used and refused never appear in the log', async () => {
  ok(await weft.cli(['users', 'create', 'keeper']));
  // A policy that lets OAuth clients own tag:ci (Tailscale's rule: minted keys carry tags).
  const policyFile = join(weft.dataDir, 'policy.hujson');
  await writeFile(
    policyFile,
    JSON.stringify({ tagOwners: { 'tag:ci': [] }, acls: [{ action: 'accept', src: ['*'], dst: ['*:*'] }] }),
  );
  ok(await weft.cli(['policy', 'set', policyFile]));
  const single = secret(ok(await weft.cli(['preauthkeys', 'create', '--user', 'keeper'])));
  const reusable = secret(ok(await weft.cli(['preauthkeys', 'create', '--user', 'keeper', '--reusable'])));
  const apiKey = secret(ok(await weft.cli(['apikeys', 'create', '--expiration', '1h'])));

  // Clients register with good keys, a used one, and ones the server never issued.
  assert.equal((await register(single)).MachineAuthorized, true);
  assert.equal((await register(reusable)).MachineAuthorized, true);
  assert.match(String((await register(single)).Error), /already used/);
  const forged = secret(`weft-auth-${randomBytes(6).toString('hex')}-${randomBytes(32).toString('hex')}`);
  assert.match(String((await register(forged)).Error), /invalid auth key/);
  const garbage = secret(`tskey-auth-${randomBytes(24).toString('hex')}`);
  assert.match(String((await register(garbage)).Error), /invalid auth key/);

  // The remote CLI and raw requests, with the key as Bearer and as Basic, good and bad.
  const remote = ['--server', weft.url, '--api-key', apiKey];
  ok(await weft.cli(['nodes', 'list', ...remote]));
  ok(await weft.cli(['preauthkeys', 'list', ...remote]));
  const fromRemote = secret(ok(await weft.cli(['preauthkeys', 'create', '--user', 'keeper', ...remote])));
  const basic = `Basic ${Buffer.from(`${apiKey}:`).toString('base64')}`;
  secret(basic.slice('Basic '.length));
  assert.equal((await fetch(`${weft.url}/api/v1/user`, { headers: { authorization: basic } })).status, 200);
  const wrongApi = secret(`weft-api-${randomBytes(6).toString('hex')}-${randomBytes(32).toString('hex')}`);
  const refused = await fetch(`${weft.url}/api/v1/user?token=${wrongApi}`, {
    headers: { authorization: `Bearer ${wrongApi}` },
  });
  assert.equal(refused.status, 401);

  // OAuth: a client secret, a token from it (form fields and Basic), a key minted through API v2.
  const client = JSON.parse(
    ok(await weft.cli(['oauthclients', 'create', '--scopes', 'all', '--tags', 'tag:ci', '-o', 'json'])),
  ) as { secret: string };
  secret(client.secret);
  const tokenResponse = await fetch(`${weft.url}/api/v2/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_secret: client.secret }),
  });
  assert.equal(tokenResponse.status, 200, await tokenResponse.clone().text());
  const token = secret(((await tokenResponse.json()) as { access_token: string }).access_token);
  const minted = await fetch(`${weft.url}/api/v2/tailnet/-/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ capabilities: { devices: { create: { reusable: true, tags: ['tag:ci'] } } } }),
  });
  assert.equal(minted.status, 200, await minted.clone().text());
  const mintedKey = secret(((await minted.json()) as { key: string }).key);
  assert.equal((await register(mintedKey)).MachineAuthorized, true);
  const badClient = secret(
    `weft-client-${randomBytes(6).toString('hex')}-${randomBytes(32).toString('hex')}`,
  );
  const refusedToken = await fetch(`${weft.url}/api/v2/oauth/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`id:${badClient}`).toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  assert.equal(refusedToken.status, 401);

  // An interactive login: its id is a capability while it waits (with OIDC, whoever opens it first).
  const waiting = await connectControl(weft.url);
  connections.push(waiting);
  const started = await waiting.request('POST', '/machine/register', {
    Version: DEFAULT_CAP_VERSION,
    NodeKey: PrivateKey.generate(NodePublic).publicKey,
    Hostinfo: { Hostname: 'interactive', OS: 'linux' },
  });
  const authUrl = String(started.json().AuthURL);
  const loginId = secret(authUrl.slice(authUrl.lastIndexOf('/') + 1));
  assert.equal((await fetch(`${weft.url}${new URL(authUrl).pathname}`)).status, 200);
  ok(await weft.cli(['auth', 'list']));
  ok(await weft.cli(['nodes', 'register', '--user', 'keeper', '--key', loginId]));

  ok(await weft.cli(['preauthkeys', 'expire', fromRemote]));
  ok(await weft.cli(['apikeys', 'expire', apiKey]));
  assert.equal((await fetch(`${weft.url}/api/v1/user`, { headers: { authorization: basic } })).status, 401);

  // Stop first, so every line the server wrote is in.
  await weft.stop();
  const output = weft.output();
  assert.ok(output.includes('"level":10') || output.includes('"msg":"request"'), 'the log was captured');
  const leaked = [...secrets].filter((s) => output.includes(s));
  assert.deepEqual(leaked, [], 'secrets found in the log');
});
