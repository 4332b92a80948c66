/**
 * Two weft processes as the two DERP servers of one region, meshed with a shared mesh key: a client of
 * one reaches a client of the other through ForwardPacket, and learns when that peer leaves. Clients
 * are weft's own DERP client with throwaway keys, so admission is off here (verify_clients: false); the
 * admission of real nodes is covered by the interop tests.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DerpClient, PeerGoneReason } from '../../src/derp/index.ts';
import { NodePublic, PrivateKey } from '../../src/types/keys.ts';
import { freeLoopbackPort } from '../harness/child.ts';
import { eventually } from '../harness/wait.ts';
import { loopbackServerEnv, startWeft, type WeftServer } from '../harness/weft.ts';

function nextPacket(client: DerpClient): Promise<{ src: Buffer; data: Buffer }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no packet within 5 s')), 5_000);
    client.events.packet = (src, data) => {
      clearTimeout(timer);
      resolve({ src: Buffer.from(src), data: Buffer.from(data) });
    };
  });
}

describe('two weft DERP servers meshed in one region', () => {
  let dir: string;
  const servers: WeftServer[] = [];
  const urls: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weft-mesh-'));
    const meshKeyPath = join(dir, 'mesh.key');
    await writeFile(meshKeyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const ports = [await freeLoopbackPort(), await freeLoopbackPort()];
    for (const port of ports) urls.push(`http://127.0.0.1:${port}/derp`);
    for (const [i, port] of ports.entries()) {
      const config = join(dir, `weft${i}.yaml`);
      const other = urls[1 - i];
      await writeFile(
        config,
        `derp:\n  server:\n    verify_clients: false\n    mesh_key_path: ${JSON.stringify(meshKeyPath)}\n    mesh_with: [${JSON.stringify(other)}]\n`,
      );
      servers.push(
        await startWeft({
          env: loopbackServerEnv(port),
          args: ['--config', config],
        }),
      );
    }
    // Each links to the other; the first one retries until the second is up.
    for (const server of servers) {
      await eventually(
        'mesh link up',
        async () => (server.logEntries().some((e) => e.msg === 'DERP mesh link up') ? true : undefined),
        { timeoutMs: 15_000 },
      );
    }
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  test('a packet to a client of the other server is forwarded with its original source, both ways', async () => {
    const aliceKey = PrivateKey.generate(NodePublic);
    const bobKey = PrivateKey.generate(NodePublic);
    const alice = await DerpClient.connect(urls[0] ?? '', aliceKey);
    const bob = await DerpClient.connect(urls[1] ?? '', bobKey);
    try {
      // The other server learns of a new client through its watch stream; retry until it has.
      const toBob = await eventually(
        'alice reaches bob across the mesh',
        async () => {
          const received = nextPacket(bob);
          alice.send(bobKey.publicKey, Buffer.from('hello bob'));
          return await received;
        },
        { timeoutMs: 10_000 },
      );
      assert.equal(NodePublic.fromRaw(toBob.src), aliceKey.publicKey);
      assert.equal(toBob.data.toString(), 'hello bob');

      const toAlice = nextPacket(alice);
      bob.send(aliceKey.publicKey, Buffer.from('hello alice'));
      const reply = await toAlice;
      assert.equal(NodePublic.fromRaw(reply.src), bobKey.publicKey);
      assert.equal(reply.data.toString(), 'hello alice');

      // Bob leaves: alice received from him through the mesh, so her server tells her he is gone.
      const gone = new Promise<{ key: Buffer; reason: number }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no PeerGone within 5 s')), 5_000);
        alice.events.peerGone = (key, reason) => {
          clearTimeout(timer);
          resolve({ key: Buffer.from(key), reason });
        };
      });
      bob.close();
      const notice = await gone;
      assert.equal(NodePublic.fromRaw(notice.key), bobKey.publicKey);
      assert.equal(notice.reason, PeerGoneReason.Disconnected);
    } finally {
      alice.close();
      bob.close();
    }
  });

  test('a wrong mesh key is refused', async () => {
    const intruder = PrivateKey.generate(NodePublic);
    await assert.rejects(
      DerpClient.connect(urls[0] ?? '', intruder, {
        meshKey: randomBytes(32).toString('hex'),
        timeoutMs: 5_000,
      }),
      /closed|refused/,
    );
  });
});
