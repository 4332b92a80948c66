/**
 * Rules for names admins choose: user names and ACL tags. Each check returns the reason a value is
 * refused (one sentence fragment), or undefined when it is fine.
 */

const USER_NAME = /^[\p{L}\p{N}][\p{L}\p{N}._@+-]*$/u;
const USER_NAME_MAX = 64;

/** User names are what admins type on the CLI and what OIDC logins derive (often an e-mail address). */
export function userNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a user name cannot be empty';
  if (name.length > USER_NAME_MAX) return `a user name has at most ${USER_NAME_MAX} characters`;
  if (!USER_NAME.test(name)) {
    return 'a user name starts with a letter or digit and contains only letters, digits and . _ @ + -';
  }
  if ((name.match(/@/g) ?? []).length > 1) return 'a user name contains at most one @';
  return undefined;
}

/** Tailscale's tag syntax: `tag:` then a letter, then letters, digits and dashes. */
const TAG = /^tag:[a-zA-Z][a-zA-Z0-9-]*$/;

export function tagProblem(tag: string): string | undefined {
  if (!tag.startsWith('tag:')) return `"${tag.slice(0, 40)}" is not a tag: tags start with "tag:"`;
  if (!TAG.test(tag)) {
    return `"${tag.slice(0, 40)}" is not a valid tag: after "tag:" comes a letter, then letters, digits or dashes`;
  }
  return undefined;
}
