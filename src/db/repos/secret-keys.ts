/**
 * What pre-auth keys and API keys have in common: minting with a unique prefix, naming a key by a
 * prefix the admin typed, and checking a presented key.
 */
import {
  type MintedToken,
  mintToken,
  parseToken,
  prefixQuery,
  secretMatches,
  type TokenKind,
} from '../../crypto/tokens.ts';
import { type ErrorCode, WeftError } from '../../types/errors.ts';
import { isUniqueViolation } from '../errors.ts';

/** Prefix collisions (48 random bits) are astronomically rare; retry a few times, then give up loudly. */
const MINT_ATTEMPTS = 3;

export async function insertMinted<T>(
  kind: TokenKind,
  insert: (token: MintedToken) => Promise<T>,
): Promise<[T, string]> {
  for (let attempt = 1; ; attempt++) {
    const token = mintToken(kind);
    try {
      return [await insert(token), token.text];
    } catch (err) {
      if (!isUniqueViolation(err) || attempt >= MINT_ATTEMPTS) throw err;
    }
  }
}

interface KeyNaming {
  kind: TokenKind;
  noun: string;
  notFound: ErrorCode;
  ambiguous: ErrorCode;
}

export const PRE_AUTH_KEY_NAMING: KeyNaming = {
  kind: 'auth',
  noun: 'pre-auth key',
  notFound: 'PREAUTHKEY_NOT_FOUND',
  ambiguous: 'PREAUTHKEY_AMBIGUOUS',
};

export const API_KEY_NAMING: KeyNaming = {
  kind: 'api',
  noun: 'API key',
  notFound: 'APIKEY_NOT_FOUND',
  ambiguous: 'APIKEY_AMBIGUOUS',
};

/**
 * Picks the one key whose prefix starts with what the admin typed. `lookup` returns the keys whose
 * prefix starts with the (validated, lowercase hex) query.
 */
export async function resolveByPrefix<T extends { prefix: string }>(
  naming: KeyNaming,
  typed: string,
  lookup: (hexStart: string) => Promise<T[]>,
): Promise<T> {
  const query = prefixQuery(naming.kind, typed);
  if (query === undefined) {
    throw new WeftError(
      'BAD_REQUEST',
      `"${typed.slice(0, 40)}" is not a ${naming.noun} prefix (expected weft-${naming.kind}-<hex> or hex digits)`,
    );
  }
  const matches = await lookup(query);
  const [only] = matches;
  if (only === undefined) throw new WeftError(naming.notFound, `no ${naming.noun} has the prefix "${query}"`);
  if (matches.length > 1) {
    throw new WeftError(
      naming.ambiguous,
      `the prefix "${query}" matches ${matches.length} ${naming.noun}s; give more of it`,
    );
  }
  return only;
}

/**
 * Finds the stored key a presented secret text belongs to, or undefined when the text is malformed,
 * unknown or its secret doesn't match. The three cases are deliberately indistinguishable to callers.
 */
export async function verifyPresented<T>(
  kind: TokenKind,
  text: string,
  lookup: (prefix: string) => Promise<{ record: T; hash: string } | undefined>,
): Promise<T | undefined> {
  const parsed = parseToken(kind, text);
  if (!parsed) return undefined;
  const stored = await lookup(parsed.prefix);
  if (!stored || !secretMatches(parsed.secret, stored.hash)) return undefined;
  return stored.record;
}
