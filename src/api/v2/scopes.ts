/**
 * The OAuth scopes of API v2, with Tailscale's names (the Terraform provider and the Kubernetes
 * operator ask for these), and the rule for whether a grant covers what an endpoint needs:
 *   - `all` covers everything, `all:read` every `…:read` scope;
 *   - a write scope covers its own `:read` subset (`devices:core` ⊇ `devices:core:read`).
 * weft API keys and the local admin socket are not scoped: they may do everything.
 */

const WRITE_SCOPES = [
  'devices:core',
  'devices:routes',
  'dns',
  'auth_keys',
  'oauth_keys',
  'policy_file',
  'users',
] as const;

export type WriteScope = (typeof WRITE_SCOPES)[number];
export type Scope = 'all' | 'all:read' | WriteScope | `${WriteScope}:read`;

export const KNOWN_SCOPES: readonly Scope[] = [
  'all',
  'all:read',
  ...WRITE_SCOPES.flatMap((s): Scope[] => [s, `${s}:read`]),
];

export function isScope(value: string): value is Scope {
  return (KNOWN_SCOPES as readonly string[]).includes(value);
}

function covers(held: string, wanted: Scope): boolean {
  if (held === wanted || held === 'all') return true;
  if (held === 'all:read') return wanted.endsWith(':read');
  return wanted === `${held}:read`;
}

/** True when one of the `granted` scopes covers `wanted`. */
export function grants(granted: readonly string[], wanted: Scope): boolean {
  return granted.some((held) => covers(held, wanted));
}

/**
 * Tailscale's rule: a client that can create devices or auth keys must be given tags, because the
 * keys it mints (and the devices that join with them) belong to tags, never to a person.
 */
export function scopesNeedTags(scopes: readonly string[]): boolean {
  return scopes.some((s) => s === 'auth_keys' || s === 'devices:core');
}
