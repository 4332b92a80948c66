/**
 * IP addresses as integers: strict parsing (the forms Go's `netip` accepts, no zones) and canonical
 * printing (dotted quad; RFC 5952 for IPv6, as Go prints it). Integers make prefix arithmetic and
 * set membership cheap, and BigInt covers the 128-bit family.
 */

export type IpFamily = 4 | 6;

export interface IpValue {
  readonly family: IpFamily;
  readonly value: bigint;
}

export interface IpPrefix {
  readonly family: IpFamily;
  /** The network address (host bits cleared). */
  readonly network: bigint;
  readonly bits: number;
  /** Number of addresses in the prefix. */
  readonly size: bigint;
}

const DECIMAL_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIPv4(text: string): bigint | undefined {
  const fields = text.split('.');
  if (fields.length !== 4) return undefined;
  let value = 0;
  for (const field of fields) {
    if (!DECIMAL_OCTET.test(field)) return undefined;
    const octet = Number(field);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return BigInt(value);
}

function parseIPv6(text: string): bigint | undefined {
  // An embedded IPv4 tail (`::ffff:1.2.3.4`) stands for the last two groups.
  let body = text;
  let tail32: bigint | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail32 = parseIPv4(text.slice(lastColon + 1));
    if (tail32 === undefined) return undefined;
    body = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = groupsOf(halves[1] ?? '');
  const count = head.length + tail.length;
  if (halves.length === 2 ? count > 7 : count !== 8) return undefined;
  let value = 0n;
  for (const group of [...head, ...Array<string>(8 - count).fill('0'), ...tail]) {
    if (!HEX_GROUP.test(group)) return undefined;
    value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  }
  return tail32 === undefined ? value : (value & ~0xffffffffn) | tail32;
}

/** The address as an integer, or undefined when `text` is not a plain IPv4 or IPv6 address. */
export function parseIp(text: string): IpValue | undefined {
  if (text.includes(':')) {
    const value = parseIPv6(text);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseIPv4(text);
  return value === undefined ? undefined : { family: 4, value };
}

/** `100.64.0.1`, `fd7a:115c:a1e0::1`: the text Go's `netip.Addr.String()` produces. */
export function formatIp(family: IpFamily, value: bigint): string {
  if (family === 4) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  }
  if (value >> 32n === 0xffffn) return `::ffff:${formatIp(4, value & 0xffffffffn)}`; // IPv4-mapped, as Go prints it
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  // RFC 5952: compress the longest run of at least two zero groups (the first one on a tie).
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((group) => group.toString(16))
      .join(':');
  return bestStart < 0 ? hex(0, 8) : `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

export function familyBits(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

/** `100.64.0.0/10` → its network, length and size; host bits in the text are cleared. */
export function parsePrefix(text: string): IpPrefix | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = parseIp(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (addr === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  const width = familyBits(addr.family);
  if (bits > width) return undefined;
  const size = 1n << BigInt(width - bits);
  return { family: addr.family, network: addr.value & ~(size - 1n), bits, size };
}

export function formatPrefix(prefix: IpPrefix): string {
  return `${formatIp(prefix.family, prefix.network)}/${prefix.bits}`;
}
