/**
 * The policy engine's public surface: what the rest of weft gives it (users and nodes, plain data) and
 * what it gives back (per-node packet filters, SSH policy, capabilities, peer visibility, route
 * approvals, tag ownership). Everything here is pure: no I/O, no clocks, no globals.
 */
import type { FilterRule, SSHPolicy } from '../tailcfg/index.ts';
import type { IdSet } from '../util/id-set.ts';

export interface PolicyUser {
  id: number;
  /** Login name without a domain; a user without an email is written `name@` in a policy. */
  name: string;
  /** Empty when the user has none. */
  email: string;
  /**
   * Groups an identity provider put the user in (oidc.policy_groups): membership in `group:<name>`
   * when the policy declares that group, on top of the members the policy lists.
   */
  groups?: readonly string[];
}

export interface PolicyNode {
  id: number;
  ipv4: string | null;
  ipv6: string | null;
  /** The owner. A tagged node belongs to its tags: the policy never treats it as its user's node. */
  userId: number | null;
  tags: readonly string[];
  /** What the client advertises (Hostinfo.RoutableIPs), exit routes included. */
  advertisedRoutes: readonly string[];
  /** The advertised routes an admin or an autoApprover approved, exit routes included. */
  approvedRoutes: readonly string[];
}

export interface PolicyTailnet {
  users: readonly PolicyUser[];
  nodes: readonly PolicyNode[];
  /**
   * The HA primary for each approved subnet prefix (prefix text → node id). Only the primary carries
   * a prefix in its peers' AllowedIPs. Defaults to `electPrimaries(nodes)`.
   */
  primaries?: ReadonlyMap<string, number>;
}

export interface CompileOptions {
  /** Base of SSH check-mode URLs (`<serverUrl>/machine/ssh/action/…`). */
  serverUrl: string;
}

/** Where in the policy text a problem is (1-based). */
export interface PolicyLocation {
  line: number;
  column: number;
}

/**
 * A policy that cannot be used. `message` is Tailscale's own wording where Tailscale has one, so tools
 * written against Tailscale's API see the same text; `location` points at the offending part.
 */
export class PolicyError extends Error {
  readonly location: PolicyLocation | undefined;
  /** For `test(s) failed`: one line per failing test. */
  readonly failures: readonly string[];

  constructor(message: string, location?: PolicyLocation, failures: readonly string[] = []) {
    super(message);
    this.name = 'PolicyError';
    this.location = location;
    this.failures = failures;
  }

  /** `message (line 3, column 12)`, plus the failing tests, for people. */
  describe(): string {
    const where = this.location ? ` (line ${this.location.line}, column ${this.location.column})` : '';
    return [`${this.message}${where}`, ...this.failures.map((f) => `  - ${f}`)].join('\n');
  }
}

/** What one node receives from a compiled policy. */
export interface NodePolicy {
  /** The node's PacketFilter: only rules where it is a destination. Empty = deny all inbound. */
  packetFilter: FilterRule[];
  /** Undefined when no SSH rule names the node (then tailscaled refuses SSH). */
  sshPolicy: SSHPolicy | undefined;
  /** nodeAttrs capabilities for SelfNode.CapMap (values are raw JSON, null when the attr has none). */
  capMap: Record<string, unknown[] | null>;
}

export interface CompiledPolicy {
  /** The per-node view; computed once per node per compiled policy. */
  forNode(nodeId: number): NodePolicy;
  /** Whether the two nodes may know each other (either can reach the other). Symmetric. */
  canSee(a: number, b: number): boolean;
  /** Every node `viewer` may know (canSee), as a bit set of ids: one pass over the rules, not n pairs. */
  peersOf(viewer: number): IdSet;
  /** The nodes whose peerRoutes can be non-empty for some viewer: subnet routers and exit nodes. */
  routeCarriers(): readonly number[];
  /**
   * The routes of `peer` that `viewer` may use through it: the peer's primary subnet routes the viewer
   * may reach, plus its exit routes when the viewer may use the internet. Goes into Peer.AllowedIPs.
   */
  peerRoutes(viewer: number, peer: number): string[];
}

/** The default for a tailnet without a policy: every node may reach every node (Tailscale's default file). */
export const ALLOW_ALL_POLICY_TEXT = `{
  // Every device may reach every device on every port. Replace this with your own rules.
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
}
`;
