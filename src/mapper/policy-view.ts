/**
 * The active policy compiled against the live tailnet, kept current as either side changes.
 *
 * Compiling is lazy: a change only marks the result stale, and the next reader recompiles once — so a
 * burst of registrations inside one broadcast window costs one compile, not one per node. Changes are
 * also classified for the broadcaster: a node's presence or endpoints never touch the policy, its
 * addresses, owner, tags or routes can change who sees whom (`structural`), and a new or re-described
 * node only needs checking against the others (`incremental`).
 */
import { type CompiledPolicy, compilePolicy, type Policy } from '../policy/index.ts';
import type { NodeChange, TailnetNode } from '../state/model.ts';
import { policyNode, policyTailnet } from '../state/policy.ts';
import type { Tailnet } from '../state/tailnet.ts';

export type PolicyImpact = 'none' | 'incremental' | 'structural';

/**
 * What of a node the policy reads; when this text changes, visibility may change for anyone. The
 * primary routes count too: a failover moves a route from one router's AllowedIPs to another's, and
 * so does device approval: an unauthorized node is left out of the policy's tailnet.
 */
function fingerprint(tailnet: Tailnet, node: TailnetNode): string {
  const p = policyNode(node);
  const primary = tailnet.primaryRoutesOf(node.id);
  // The owner's name, e-mail and identity-provider groups decide which user and group aliases match.
  const owner = p.userId === null ? undefined : tailnet.user(p.userId);
  return JSON.stringify([
    p.ipv4,
    p.ipv6,
    p.userId,
    owner === undefined ? null : [owner.name, owner.email, owner.groups],
    p.tags,
    p.advertisedRoutes,
    p.approvedRoutes,
    primary,
    node.authorized,
  ]);
}

export class PolicyView {
  readonly #tailnet: Tailnet;
  readonly #serverUrl: string;
  #policy: Policy;
  #compiled: CompiledPolicy | undefined;
  readonly #fingerprints = new Map<number, string>();

  constructor(tailnet: Tailnet, policy: Policy, serverUrl: string) {
    this.#tailnet = tailnet;
    this.#policy = policy;
    this.#serverUrl = serverUrl;
    for (const node of tailnet.nodes()) this.#fingerprints.set(node.id, fingerprint(tailnet, node));
  }

  get policy(): Policy {
    return this.#policy;
  }

  /** The policy compiled against the tailnet as it is now. */
  get compiled(): CompiledPolicy {
    this.#compiled ??= compilePolicy(this.#policy, policyTailnet(this.#tailnet), {
      serverUrl: this.#serverUrl,
    });
    return this.#compiled;
  }

  /** A new policy is in force (already validated by whoever set it). */
  setPolicy(policy: Policy): void {
    this.#policy = policy;
    this.#compiled = undefined;
  }

  /** Records a tailnet change and says how far its effect on visibility can reach. */
  noteChange(change: NodeChange): PolicyImpact {
    const id = change.node.id;
    switch (change.kind) {
      case 'patched':
        return 'none';
      case 'removed':
        this.#fingerprints.delete(id);
        this.#compiled = undefined;
        return 'incremental';
      case 'added':
        this.#fingerprints.set(id, fingerprint(this.#tailnet, change.node));
        this.#compiled = undefined;
        return 'incremental';
      case 'updated': {
        const now = fingerprint(this.#tailnet, change.node);
        if (this.#fingerprints.get(id) === now) return 'none';
        this.#fingerprints.set(id, now);
        this.#compiled = undefined;
        return 'structural';
      }
    }
  }
}
