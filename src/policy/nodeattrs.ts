/**
 * nodeAttrs → the node's own CapMap (SelfNode.CapMap). Attributes without a value map to null, app
 * capabilities carry their JSON values; several matching entries add up. Unknown attributes pass
 * through untouched: the client ignores what it does not know (capture nodeattrs-attr-c11-unknown).
 */
import type { Policy } from './parse.ts';
import { type IndexedNode, Resolver, type TailnetIndex } from './resolve.ts';

export const RANDOMIZE_CLIENT_PORT = 'randomize-client-port';

export function nodeCapMap(
  policy: Policy,
  index: TailnetIndex,
  node: IndexedNode,
): Record<string, unknown[] | null> {
  const caps: Record<string, unknown[] | null> = {};
  if (policy.randomizeClientPort) caps[RANDOMIZE_CLIENT_PORT] = null;
  const resolver = new Resolver(policy, index);
  for (const entry of policy.nodeAttrs) {
    const targeted = entry.target.some((alias) => resolver.resolve(alias, 'dst').nodes.has(node.id));
    if (!targeted) continue;
    for (const attr of entry.attr) if (!(attr in caps)) caps[attr] = null;
    for (const [name, values] of Object.entries(entry.app ?? {}))
      caps[name] = [...(caps[name] ?? []), ...values];
  }
  return caps;
}
