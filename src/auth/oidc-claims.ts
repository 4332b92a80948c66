/**
 * What an OIDC login says about the person, and whether they may log in (docs/features.md §5.2).
 *
 * Providers disagree on shapes: `email_verified` arrives as a boolean or the string "true", `groups` as
 * an array or one string, and profile claims sit in the ID token or only at the userinfo endpoint. This
 * module reduces both sources to one `OidcIdentity` and applies the `allowed_*` and
 * `email_verified_required` rules. Pure functions, so every rule is tested in a table.
 */
import type { OidcConfig } from '../config/index.ts';
import { userNameProblem } from '../types/names.ts';

/** The claims weft uses, normalised. Strings are '' when the provider did not send them. */
export interface OidcIdentity {
  /** `<issuer without trailing slash>/<sub>`: the stable key of the user, never the e-mail. */
  providerId: string;
  issuer: string;
  subject: string;
  email: string;
  emailVerified: boolean;
  preferredUsername: string;
  name: string;
  picture: string;
  groups: string[];
}

/** Bounds on what a provider may hand us, so a hostile or broken provider cannot bloat a user row. */
const MAX_CLAIM_LENGTH = 512;
const MAX_GROUPS = 256;

type Claims = Readonly<Record<string, unknown>>;

function stringClaim(value: unknown): string {
  return typeof value === 'string' && value.length <= MAX_CLAIM_LENGTH ? value.trim() : '';
}

/** `true` and `"true"` count as verified (some providers, e.g. AWS Cognito, send a string). */
export function isVerified(value: unknown): boolean {
  return value === true || (typeof value === 'string' && value.trim().toLowerCase() === 'true');
}

/** An array of strings, or one string (Azure AD and Keycloak mappers send either), as a clean list. */
export function groupsClaim(value: unknown): string[] {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
  const groups = list
    .filter((g): g is string => typeof g === 'string')
    .map((g) => g.trim())
    .filter((g) => g !== '' && g.length <= MAX_CLAIM_LENGTH);
  return [...new Set(groups)].slice(0, MAX_GROUPS);
}

export function providerIdOf(issuer: string, subject: string): string {
  return `${issuer.replace(/\/+$/, '')}/${subject}`;
}

/**
 * One identity from the verified ID token claims and, when fetched, the userinfo response (whose `sub`
 * the caller has checked against the token's). Userinfo values win where present: with access tokens,
 * conforming providers put profile and e-mail claims only there.
 */
export function identityFrom(idToken: Claims, userinfo: Claims | undefined): OidcIdentity {
  const pick = (claim: string): unknown =>
    userinfo !== undefined && userinfo[claim] !== undefined ? userinfo[claim] : idToken[claim];
  const issuer = stringClaim(idToken.iss);
  const subject = typeof idToken.sub === 'string' ? idToken.sub : '';
  return {
    providerId: providerIdOf(issuer, subject),
    issuer,
    subject,
    email: stringClaim(pick('email')),
    emailVerified: isVerified(pick('email_verified')),
    preferredUsername: stringClaim(pick('preferred_username')),
    name: stringClaim(pick('name')),
    picture: stringClaim(pick('picture')),
    groups: groupsClaim(pick('groups')),
  };
}

export type OidcRules = Pick<
  OidcConfig,
  'allowed_domains' | 'allowed_users' | 'allowed_groups' | 'email_verified_required'
>;

/**
 * Why this identity may not log in (one sentence for the person at the browser), or undefined when it
 * may. Every configured restriction must pass. E-mail comparisons ignore case (the domain part is
 * case-insensitive, and providers differ in how they case the local part).
 */
export function refusalFor(identity: OidcIdentity, rules: OidcRules): string | undefined {
  if (rules.allowed_groups.length > 0 && !identity.groups.some((g) => rules.allowed_groups.includes(g))) {
    return 'Your account is not in any of the groups allowed to log in to this tailnet.';
  }
  const checksEmail = rules.allowed_domains.length > 0 || rules.allowed_users.length > 0;
  if (!checksEmail) return undefined;
  const email = identity.email.toLowerCase();
  if (email === '') {
    return 'Your identity provider did not share an e-mail address, which this tailnet needs to decide whether you may log in.';
  }
  if (rules.email_verified_required && !identity.emailVerified) {
    return `Your e-mail address ${identity.email} is not verified with your identity provider; verify it there and log in again.`;
  }
  const domain = email.slice(email.lastIndexOf('@') + 1);
  if (rules.allowed_domains.length > 0 && !rules.allowed_domains.some((d) => d.toLowerCase() === domain)) {
    return `Accounts in the domain ${domain} may not log in to this tailnet.`;
  }
  if (rules.allowed_users.length > 0 && !rules.allowed_users.some((u) => u.toLowerCase() === email)) {
    return `The account ${identity.email} may not log in to this tailnet.`;
  }
  return undefined;
}

/** The e-mail weft may record: only one the provider vouches for, unless the admin waived that. */
export function trustedEmail(identity: OidcIdentity, emailVerifiedRequired: boolean): string {
  return identity.emailVerified || !emailVerifiedRequired ? identity.email : '';
}

/**
 * The user name an identity asks for: its `preferred_username`, else its e-mail address, else a name
 * made from the subject, each only if it is a valid weft user name.
 */
export function wantedUserName(identity: OidcIdentity, email: string): string {
  for (const candidate of [identity.preferredUsername, email]) {
    if (candidate !== '' && userNameProblem(candidate) === undefined) return candidate;
  }
  const fromSubject = `oidc-${identity.subject.replace(/[^\p{L}\p{N}._-]/gu, '').slice(0, 40)}`;
  return userNameProblem(fromSubject) === undefined ? fromSubject : 'oidc-user';
}
