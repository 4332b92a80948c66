/**
 * The control plane on PostgreSQL: registration, map streaming and a restart that keeps every node,
 * against a real PostgreSQL server the test starts (the SQLite path is covered by the other control
 * tests). The tailnet model is the same on both; this proves its writes and its reload on `pg`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { type RunningServer, startServer } from '../../src/server/server.ts';
import { DiscoPublic, MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { type ControlConnection, connectControl } from '../harness/control-client.ts';
import { type PostgresServer, startPostgres } from '../harness/postgres.ts';

let postgres: PostgresServer;
let dataDir: string;
let databaseUrl: string;
let server: RunningServer | undefined;
const connections: ControlConnection[] = [];

async function start(): Promise<RunningServer> {
  const config = parseConfig({
    listen_addr: '127.0.0.1:0',
    metrics_listen_addr: '',
    data_dir: dataDir,
    derp: { server: { enabled: false } },
    database: { url: databaseUrl },
    log: { level: 'silent' },
  });
  return startServer(config, createLogger({ level: 'silent', format: 'json' }));
}

before(async () => {
  postgres = await startPostgres();
  databaseUrl = await postgres.createDatabase('control');
  dataDir = await mkdtemp(join(tmpdir(), 'weft-control-pg-'));
  server = await start();
});

after(async () => {
  for (const connection of connections) connection.close();
  await server?.close();
  await postgres?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

function register(
  connection: ControlConnection,
  nodeKey: NodePublic,
  authKey?: string,
  hostname = 'pg-node',
) {
  return connection.request('POST', '/machine/register', {
    Version: 142,
    NodeKey: nodeKey,
    OldNodeKey: NodePublic.zero,
    Auth: authKey === undefined ? null : { AuthKey: authKey },
    Expiry: '0001-01-01T00:00:00Z',
    Followup: '',
    Hostinfo: { Hostname: hostname, OS: 'linux', BackendLogID: 'test' },
  });
}

function mapRequest(nodeKey: NodePublic, hostname: string) {
  return {
    Version: 142,
    Compress: 'zstd',
    KeepAlive: true,
    Stream: true,
    NodeKey: nodeKey,
    DiscoKey: PrivateKey.generate(DiscoPublic).publicKey,
    Endpoints: ['127.0.0.1:41641'],
    Hostinfo: { Hostname: hostname, OS: 'linux' },
  };
}

test('nodes register, stream maps and survive a restart on PostgreSQL', async () => {
  assert.ok(server);
  const user = await server.store.users.create({ name: 'pg-user' });
  const { text: authKey } = await server.store.preAuthKeys.create({
    userId: user.id,
    reusable: true,
    ephemeral: false,
    tags: [],
    expiration: new Date(Date.now() + 3_600_000),
  });
  const url = `http://${server.httpAddress}`;
  const machines = [PrivateKey.generate(MachinePublic), PrivateKey.generate(MachinePublic)];
  const nodeKeys = [PrivateKey.generate(NodePublic).publicKey, PrivateKey.generate(NodePublic).publicKey];

  const first = await connectControl(url, { machineKey: machines[0] });
  connections.push(first);
  const registered = await register(first, nodeKeys[0] as NodePublic, authKey, 'alpha');
  assert.equal(registered.status, 200);
  assert.equal(registered.json().Error, undefined);
  const stream = await first.openMapStream(mapRequest(nodeKeys[0] as NodePublic, 'alpha'));
  const full = (await stream.next()).message;
  assert.deepEqual(full.Node.Addresses, ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128']);

  const second = await connectControl(url, { machineKey: machines[1] });
  connections.push(second);
  assert.equal((await register(second, nodeKeys[1] as NodePublic, authKey, 'beta')).json().Error, undefined);
  // Other deltas may come first (alpha's own hostinfo from its map request); wait for the peer.
  let delta = (await stream.next()).message;
  while (delta.PeersChanged === undefined) delta = (await stream.next()).message;
  assert.deepEqual(
    delta.PeersChanged.map((peer: { Name: string }) => peer.Name),
    ['beta.tailnet.internal.'],
    'the first node hears about the second',
  );

  // Restart on the same database and data dir: same server key, same nodes, same addresses.
  for (const connection of connections.splice(0)) connection.close();
  await server.close();
  server = await start();
  const again = await connectControl(`http://${server.httpAddress}`, { machineKey: machines[1] });
  connections.push(again);
  const refreshed = await register(again, nodeKeys[1] as NodePublic);
  assert.equal(refreshed.json().Error, undefined, 'a known node refreshes without a key');
  assert.equal(refreshed.json().MachineAuthorized, true);
  const restream = await again.openMapStream(mapRequest(nodeKeys[1] as NodePublic, 'beta'));
  const map = (await restream.next()).message;
  assert.deepEqual(map.Node.Addresses, ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128']);
  assert.deepEqual(
    map.Peers.map((peer: { Name: string; Endpoints: string[] }) => [peer.Name, peer.Endpoints]),
    [['alpha.tailnet.internal.', ['127.0.0.1:41641']]],
    'the peer and its endpoints came back from PostgreSQL',
  );
});
