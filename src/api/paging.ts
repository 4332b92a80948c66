/**
 * Pagination of list endpoints: `?pageSize=N` returns at most N items in id order plus a
 * `nextPageToken` when more follow; `?pageToken=…` continues after the last item of the previous page.
 * Without pageSize a list is returned whole, as Headscale's API does, so existing scripts keep working.
 *
 * The token names the last id seen rather than an offset, so a page boundary does not shift when items
 * are created or deleted between requests. It is opaque to callers (base64url) so it can change later.
 */
import { z } from 'zod';
import { WeftError } from '../types/errors.ts';

export const MAX_PAGE_SIZE = 1000;

export const pageQuery = z.strictObject({
  pageSize: z
    .string()
    .regex(/^[1-9][0-9]{0,5}$/, `must be a whole number from 1 to ${MAX_PAGE_SIZE}`)
    .transform(Number)
    .refine((n) => n <= MAX_PAGE_SIZE, `must be a whole number from 1 to ${MAX_PAGE_SIZE}`)
    .optional(),
  pageToken: z.string().min(1).max(64).optional(),
});

export type PageQuery = z.output<typeof pageQuery>;

/** A list endpoint's filter query with the paging parameters added. */
export function withPaging<S extends z.ZodRawShape>(query: z.ZodObject<S>) {
  return z.strictObject({ ...query.shape, ...pageQuery.shape });
}

function encodeToken(afterId: number): string {
  return Buffer.from(`after:${afterId}`).toString('base64url');
}

function decodeToken(token: string): number {
  const match = /^after:([0-9]{1,15})$/.exec(Buffer.from(token, 'base64url').toString('latin1'));
  if (!match?.[1]) {
    throw new WeftError(
      'BAD_REQUEST',
      'invalid request query.pageToken: not a token from this API; pass nextPageToken from the previous page',
    );
  }
  return Number(match[1]);
}

/** One page of `items`, which must be sorted by ascending numeric id. */
export function paginate<T extends { id: number }>(
  items: readonly T[],
  query: PageQuery,
): { items: T[]; nextPageToken?: string } {
  const after = query.pageToken === undefined ? 0 : decodeToken(query.pageToken);
  const rest = after === 0 ? items : items.filter((item) => item.id > after);
  if (query.pageSize === undefined || rest.length <= query.pageSize) return { items: [...rest] };
  const page = rest.slice(0, query.pageSize);
  const last = page[page.length - 1];
  return last === undefined ? { items: page } : { items: page, nextPageToken: encodeToken(last.id) };
}

/** `{[name]: items, nextPageToken?}` — the list response shape of every paginated endpoint. */
export function pageJson<K extends string, T>(
  name: K,
  page: { items: T[]; nextPageToken?: string },
): Record<K, T[]> & { nextPageToken?: string } {
  const out = { [name]: page.items } as Record<K, T[]> & { nextPageToken?: string };
  if (page.nextPageToken !== undefined) out.nextPageToken = page.nextPageToken;
  return out;
}
