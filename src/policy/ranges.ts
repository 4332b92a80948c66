/**
 * Address ranges as the policy compiler needs them: every alias becomes a list of inclusive integer
 * ranges (one per IP, CIDR or a-b range) next to the exact text the client will receive, so membership
 * and overlap tests are integer comparisons and the wire text stays the way Tailscale writes it.
 */
import { familyBits, formatIp, type IpFamily, parseIp, parsePrefix } from '../util/ip.ts';

export interface Range {
  readonly family: IpFamily;
  readonly first: bigint;
  readonly last: bigint;
}

export function ipRange(family: IpFamily, value: bigint): Range {
  return { family, first: value, last: value };
}

/** `10.0.0.0/8` → its range; undefined when the text is not a prefix. Host bits are cleared. */
export function prefixRange(text: string): Range | undefined {
  const prefix = parsePrefix(text);
  if (prefix === undefined) return undefined;
  return { family: prefix.family, first: prefix.network, last: prefix.network + prefix.size - 1n };
}

/** An IP, a prefix or an `a-b` range. */
export function parseRange(text: string): Range | undefined {
  if (text.includes('/')) return prefixRange(text);
  const dash = text.indexOf('-');
  if (dash > 0) {
    const first = parseIp(text.slice(0, dash));
    const last = parseIp(text.slice(dash + 1));
    if (first === undefined || last === undefined || first.family !== last.family) return undefined;
    if (first.value > last.value) return undefined;
    return { family: first.family, first: first.value, last: last.value };
  }
  const ip = parseIp(text);
  return ip === undefined ? undefined : ipRange(ip.family, ip.value);
}

export function overlaps(a: Range, b: Range): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

/** Whether `outer` covers all of `inner`. */
export function covers(outer: Range, inner: Range): boolean {
  return outer.family === inner.family && outer.first <= inner.first && inner.last <= outer.last;
}

export function anyOverlap(list: readonly Range[], other: readonly Range[]): boolean {
  return list.some((a) => other.some((b) => overlaps(a, b)));
}

/** Whether the range is a whole address family (`0.0.0.0/0`, `::/0`). */
export function isWholeFamily(range: Range): boolean {
  return range.first === 0n && range.last === (1n << BigInt(familyBits(range.family))) - 1n;
}

/** Text as Tailscale's control plane writes a range in a filter: `a-b`. */
export function formatRange(range: Range): string {
  return `${formatIp(range.family, range.first)}-${formatIp(range.family, range.last)}`;
}

const must = (text: string): Range => {
  const range = parseRange(text);
  if (range === undefined) throw new Error(`bad built-in range ${text}`);
  return range;
};

/** Tailscale's ULA block for node IPv6 addresses. */
export const TAILSCALE_ULA = 'fd7a:115c:a1e0::/48';

/**
 * `*` as a source: the CGNAT block without 100.115.92.0/23 (reserved by Tailscale for its own services)
 * plus the ULA /48, written as Tailscale writes it.
 */
export const TAILNET_SOURCE_TEXT = [
  '100.64.0.0-100.115.91.255',
  '100.115.94.0-100.127.255.255',
  TAILSCALE_ULA,
];
export const TAILNET_SOURCE_RANGES: readonly Range[] = TAILNET_SOURCE_TEXT.map(must);

/**
 * `autogroup:internet`: every public address — all of IPv4 but 10/8, 100.64/10, 169.254/16, 172.16/12
 * and 192.168/16, plus global unicast IPv6 (2000::/3) — in the form Tailscale's control plane sends.
 */
export const INTERNET_TEXT = [
  '0.0.0.0-9.255.255.255',
  '11.0.0.0-100.63.255.255',
  '100.128.0.0-169.253.255.255',
  '169.255.0.0-172.15.255.255',
  '172.32.0.0-192.167.255.255',
  '192.169.0.0-255.255.255.255',
  '2000::-3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
];
export const INTERNET_RANGES: readonly Range[] = INTERNET_TEXT.map(must);

export function insideInternet(range: Range): boolean {
  return INTERNET_RANGES.some((internet) => covers(internet, range));
}

export const EXIT_ROUTES = ['0.0.0.0/0', '::/0'] as const;

export function isExitRoute(route: string): boolean {
  const range = prefixRange(route);
  return range !== undefined && isWholeFamily(range);
}
