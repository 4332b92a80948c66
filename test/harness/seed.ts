/** Writes nodes straight into a store, for tests that need a tailnet without registering clients. */
import type { NewNode } from '../../src/db/repos/nodes.ts';
import type { Repositories } from '../../src/db/store.ts';
import { DiscoPublic, MachinePublic, NodePublic, PrivateKey } from '../../src/types/keys.ts';

/** A node with fresh keys and the `n`th addresses (100.64.0.n, fd7a:115c:a1e0::n); returns its id. */
export async function seedNode(
  repos: Repositories,
  n: number,
  name: string,
  userId: number | null,
  extra: Partial<NewNode> = {},
): Promise<number> {
  const node = await repos.nodes.create({
    machineKey: PrivateKey.generate(MachinePublic).publicKey,
    nodeKey: PrivateKey.generate(NodePublic).publicKey,
    discoKey: PrivateKey.generate(DiscoPublic).publicKey,
    ipv4: `100.64.0.${n}`,
    ipv6: `fd7a:115c:a1e0::${n}`,
    hostname: name,
    givenName: name,
    userId,
    registerMethod: 'authkey',
    ...extra,
  });
  return node.id;
}
