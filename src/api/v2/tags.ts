/**
 * Which tags an OAuth token may give (to an auth key it mints, or to a device), Tailscale's rule: the
 * token's own tags, or tags that the policy's `tagOwners` give to one of its tags; a token with the
 * `all` scope may give any tag. Every tag must be defined in `tagOwners`. API keys are not limited.
 */
import { deniedTags, type Policy } from '../../policy/index.ts';
import { WeftError } from '../../types/errors.ts';
import type { Principal } from './auth.ts';

/** Throws BAD_REQUEST naming the tags the policy's `tagOwners` does not define; without a policy, none are checked. */
export function requireTagsDefined(policy: Policy | undefined, tags: readonly string[]): void {
  if (policy === undefined) return;
  const undefinedTags = tags.filter((tag) => !policy.tagOwners.has(tag));
  if (undefinedTags.length > 0) {
    throw new WeftError(
      'BAD_REQUEST',
      `tags ${undefinedTags.join(', ')} are not defined in the policy's tagOwners`,
    );
  }
}

export function checkTagsForPrincipal(
  principal: Principal,
  policy: Policy | undefined,
  tags: readonly string[],
): void {
  if (principal.kind !== 'oauth' || principal.scopes.includes('all')) return;
  requireTagsDefined(policy, tags);
  const others = tags.filter((tag) => !principal.tags.includes(tag));
  const denied =
    policy === undefined
      ? others
      : deniedTags(policy, { users: [], nodes: [] }, { userId: null, tags: principal.tags }, others);
  if (denied.length > 0) {
    throw new WeftError(
      'FORBIDDEN',
      `this OAuth client may not give the tags ${denied.join(', ')}: it may give its own tags (${principal.tags.join(', ') || 'none'}) and tags they own in tagOwners`,
    );
  }
}
