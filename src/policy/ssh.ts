/**
 * SSH rules → one node's `SSHPolicy` (docs/policy.md §6). Rules are only sent to nodes an `ssh` entry
 * names as a destination; principals are the source nodes' addresses. Check rules come first, because
 * the client uses the first rule that matches and a check must not be bypassed by a broader accept.
 */
import type { SSHAction, SSHPolicy, SSHPrincipal, SSHRule } from '../tailcfg/index.ts';
import type { Alias, Policy, SshRuleDef } from './parse.ts';
import { type IndexedNode, Resolver, type TailnetIndex } from './resolve.ts';

const ACCEPT: SSHAction = {
  accept: true,
  allowAgentForwarding: true,
  allowLocalPortForwarding: true,
  allowRemotePortForwarding: true,
};

const LOCALPART = 'localpart:*@';

export function sshCheckUrl(serverUrl: string): string {
  return `${serverUrl.replace(/\/+$/, '')}/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID?local_user=$LOCAL_USER`;
}

export function compileSsh(
  policy: Policy,
  index: TailnetIndex,
  node: IndexedNode,
  serverUrl: string,
): SSHPolicy | undefined {
  const resolver = new Resolver(policy, index);
  const checks: SSHRule[] = [];
  const accepts: SSHRule[] = [];
  for (const def of policy.ssh) {
    const rules = rulesFor(def, resolver, index, node, serverUrl);
    (def.action === 'check' ? checks : accepts).push(...rules);
  }
  const rules = [...checks, ...accepts];
  return rules.length === 0 ? undefined : { rules };
}

const isSelf = (a: Alias) => a.kind === 'autogroup' && a.name === 'self';

/** The source nodes whose sessions to `node` this entry governs. */
export function sshSources(def: SshRuleDef, resolver: Resolver, node: IndexedNode): IndexedNode[] {
  const sources = unique(def.src.flatMap((a) => resolver.nodesOf(a)));
  const named = def.dst.some((a) => !isSelf(a) && resolver.nodesOf(a).some((n) => n.id === node.id));
  if (named) return sources;
  const mates = sources.filter((s) => !s.tagged && !node.tagged && s.userId === node.userId);
  if (def.dst.some(isSelf)) return mates;
  // Tailscale's control plane also hands a localpart rule's per-user rules to that user's own source
  // nodes (capture ssh-d3), even when they are not destinations.
  if (def.users.some((u) => u.startsWith(LOCALPART)) && sources.some((s) => s.id === node.id)) return mates;
  return [];
}

function rulesFor(
  def: SshRuleDef,
  resolver: Resolver,
  index: TailnetIndex,
  node: IndexedNode,
  serverUrl: string,
): SSHRule[] {
  const sources = sshSources(def, resolver, node);
  if (sources.length === 0) return [];
  const action: SSHAction =
    def.action === 'check' ? { holdAndDelegate: sshCheckUrl(serverUrl) } : { ...ACCEPT };
  const domains = def.users.filter((u) => u.startsWith(LOCALPART)).map((u) => u.slice(LOCALPART.length));
  const common = commonUsers(def.users);
  const make = (principals: IndexedNode[], sshUsers: Record<string, string>): SSHRule => {
    const rule: SSHRule = { principals: principalsOf(principals), sshUsers, action: { ...action } };
    if (def.acceptEnv !== undefined) rule.acceptEnv = [...def.acceptEnv];
    return rule;
  };
  const ordered = orderPrincipals(sources);
  if (domains.length === 0) return [make(ordered, common)];
  // With localpart users each source user gets its own rule pair: the common users, then its login name.
  const rules: SSHRule[] = [];
  for (const user of index.users) {
    const own = ordered.filter((n) => !n.tagged && n.userId === user.id);
    if (own.length === 0) continue;
    rules.push(make(own, common));
    const [local, domain] = user.email.split('@');
    if (local !== undefined && domain !== undefined && domains.includes(domain))
      rules.push(make(own, sortedKeys({ [local]: local })));
  }
  const tagged = ordered.filter((n) => n.tagged);
  if (tagged.length > 0) rules.push(make(tagged, common));
  return rules;
}

/** `root` must be mapped explicitly; without it root is denied (`"root": ""`). */
function commonUsers(users: readonly string[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const user of users) {
    if (user.startsWith(LOCALPART)) continue;
    if (user === 'autogroup:nonroot') map['*'] = '=';
    else map[user] = user;
  }
  if (!('root' in map)) map.root = '';
  return sortedKeys(map);
}

/** Users' nodes first (by user, then node), tagged nodes after. */
function orderPrincipals(nodes: IndexedNode[]): IndexedNode[] {
  const owned = nodes
    .filter((n) => !n.tagged)
    .sort((a, b) => (a.userId ?? 0) - (b.userId ?? 0) || a.id - b.id);
  const tagged = nodes.filter((n) => n.tagged).sort((a, b) => a.id - b.id);
  return [...owned, ...tagged];
}

function principalsOf(nodes: IndexedNode[]): SSHPrincipal[] {
  return nodes.flatMap((n) => n.ipTexts.map((ip) => ({ nodeIP: ip })));
}

function unique(nodes: IndexedNode[]): IndexedNode[] {
  const seen = new Set<number>();
  return nodes.filter((n) => !seen.has(n.id) && seen.add(n.id));
}

/** Go writes map keys sorted; the client does not care, but byte-equal policies make equal maps. */
function sortedKeys(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
