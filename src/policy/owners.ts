/**
 * Who may do what to a node under the policy: which advertised routes are approved automatically
 * (autoApprovers, docs/policy.md §7) and which tags a user may apply (tagOwners).
 */
import type { PolicyNode, PolicyTailnet } from './api.ts';
import type { Alias, Policy } from './parse.ts';
import { covers, isExitRoute, prefixRange } from './ranges.ts';
import { type IndexedNode, indexTailnet, Resolver } from './resolve.ts';

/**
 * The node's advertised routes that autoApprovers approve. A `routes` key approves the prefixes it
 * covers (equal or narrower); exit routes only through `exitNode` — a `0.0.0.0/0` routes key does not
 * make an exit node (captures routes-a1 and routes-ea6: Tailscale leaves them pending).
 */
export function autoApprovedRoutes(policy: Policy, tailnet: PolicyTailnet, node: PolicyNode): string[] {
  const { resolver, self } = withNode(policy, tailnet, node);
  const matches = (approvers: readonly Alias[]) => approvers.some((a) => isApprover(resolver, a, self));
  const approved: string[] = [];
  const advertised = [...new Set(node.advertisedRoutes)];
  const exits = advertised.filter(isExitRoute);
  if (exits.length > 0 && matches(policy.autoApprovers.exitNode)) approved.push(...exits);
  for (const route of advertised) {
    if (isExitRoute(route)) continue;
    const range = prefixRange(route);
    if (range === undefined) continue;
    const entry = policy.autoApprovers.routes.some((r) => covers(r.prefix, range) && matches(r.approvers));
    if (entry) approved.push(route);
  }
  return approved;
}

/**
 * The requested tags the requester may not apply. A tag can be applied by its owners: users, members
 * of owner groups, and nodes that already carry an owner tag. Undefined tags are never allowed.
 */
export function deniedTags(
  policy: Policy,
  tailnet: PolicyTailnet,
  requester: { userId: number | null; tags: readonly string[] },
  requested: readonly string[],
): string[] {
  const resolver = new Resolver(policy, indexTailnet(tailnet));
  const ownsTag = (tag: string, seen: Set<string>): boolean => {
    const owners = policy.tagOwners.get(tag);
    if (owners === undefined || seen.has(tag)) return false;
    seen.add(tag);
    return owners.some((owner) => {
      if (owner.kind === 'tag') return requester.tags.includes(owner.name);
      if (owner.kind === 'autogroup') return owner.name === 'member' && requester.userId !== null;
      if (requester.userId === null) return false;
      if (owner.kind === 'user')
        return resolver.usersMatching(owner.login).some((u) => u.id === requester.userId);
      if (owner.kind === 'group')
        return resolver.groupMembers(owner.name).some((u) => u.id === requester.userId);
      return false;
    });
  };
  return requested.filter((tag) => !ownsTag(tag, new Set()));
}

function withNode(policy: Policy, tailnet: PolicyTailnet, node: PolicyNode) {
  const nodes = [...tailnet.nodes.filter((n) => n.id !== node.id), node];
  const index = indexTailnet({ users: tailnet.users, nodes });
  return { resolver: new Resolver(policy, index), self: index.byId.get(node.id) as IndexedNode };
}

function isApprover(resolver: Resolver, alias: Alias, node: IndexedNode): boolean {
  return resolver.nodesOf(alias).some((n) => n.id === node.id);
}
