/**
 * Strong ETags for documents that change as a whole (the policy, the DNS settings), and the If-Match
 * comparison that guards read-modify-write against lost updates (RFC 9110 §8.8.3, §13.1.1).
 */
import { createHash } from 'node:crypto';

/** A quoted strong ETag: the first 128 bits of the text's SHA-256. */
export function strongEtag(text: string): string {
  return `"${createHash('sha256').update(text).digest('hex').slice(0, 32)}"`;
}

/** `*`, one ETag or a list of them; weak ones never match a strong comparison. */
export function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => candidate.trim() === etag);
}
