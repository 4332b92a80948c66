/**
 * Strict parsing and canonical printing of the address forms on the wire (Go's `netip.Addr`,
 * `netip.AddrPort`, `netip.Prefix`).
 *
 * Written here rather than taken from ipaddr.js because the client's own parser is strict (no leading
 * zeros in IPv4 fields, no hex or short IPv4 forms) and because the canonical text must match what Go
 * prints (RFC 5952, with `::ffff:1.2.3.4` for IPv4-mapped addresses) so stored values compare equal.
 */

export interface ParsedAddr {
  /** 4 bytes for IPv4, 16 for IPv6 (including IPv4-mapped IPv6). */
  readonly bytes: Uint8Array;
  /** IPv6 zone (`fe80::1%eth0`), if any. */
  readonly zone?: string;
}

function parseIPv4Into(text: string, out: Uint8Array, offset: number): boolean {
  const fields = text.split('.');
  if (fields.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const field = fields[i] ?? '';
    if (!/^(0|[1-9][0-9]{0,2})$/.test(field)) return false;
    const value = Number(field);
    if (value > 255) return false;
    out[offset + i] = value;
  }
  return true;
}

function parseIPv6(text: string): Uint8Array | undefined {
  // An embedded IPv4 address (`::ffff:1.2.3.4`) can only be the last 32 bits: parse it on its own and
  // stand two zero groups in for it.
  let body = text;
  let embedded: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    embedded = new Uint8Array(4);
    if (!parseIPv4Into(text.slice(lastColon + 1), embedded, 0)) return undefined;
    body = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = groupsOf(halves[1] ?? '');
  const count = head.length + tail.length;
  if (halves.length === 2 ? count > 7 : count !== 8) return undefined;
  const groups = [...head, ...Array<string>(8 - count).fill('0'), ...tail];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const group = groups[i] ?? '';
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    const value = Number.parseInt(group, 16);
    bytes[2 * i] = value >> 8;
    bytes[2 * i + 1] = value & 0xff;
  }
  if (embedded !== undefined) bytes.set(embedded, 12);
  return bytes;
}

/** Parses an IPv4 or IPv6 address (IPv6 optionally with `%zone`); undefined if it is not one. */
export function parseAddr(text: string): ParsedAddr | undefined {
  if (text.includes(':')) {
    const percent = text.indexOf('%');
    const zone = percent < 0 ? undefined : text.slice(percent + 1);
    if (zone === '') return undefined;
    const bytes = parseIPv6(percent < 0 ? text : text.slice(0, percent));
    if (bytes === undefined) return undefined;
    return zone === undefined ? { bytes } : { bytes, zone };
  }
  const bytes = new Uint8Array(4);
  return parseIPv4Into(text, bytes, 0) ? { bytes } : undefined;
}

function isV4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Go's `netip.Addr.String()`: dotted quad, or RFC 5952 IPv6 (longest zero run of ≥ 2 groups as `::`). */
export function formatAddr(addr: ParsedAddr): string {
  const { bytes } = addr;
  if (bytes.length === 4) return bytes.join('.');
  const zone = addr.zone === undefined ? '' : `%${addr.zone}`;
  if (isV4Mapped(bytes)) return `::ffff:${bytes.subarray(12).join('.')}${zone}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
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
      .map((g) => g.toString(16))
      .join(':');
  const text = bestStart < 0 ? hex(0, 8) : `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
  return text + zone;
}

/** fe80::/10, where the client's own interface-scoped addresses live. */
export function isIPv6LinkLocal(addr: ParsedAddr): boolean {
  const [first = 0, second = 0] = addr.bytes;
  return addr.bytes.length === 16 && first === 0xfe && (second & 0xc0) === 0x80;
}

export interface ParsedAddrPort {
  readonly addr: ParsedAddr;
  readonly port: number;
}

/** `1.2.3.4:41641` or `[2001:db8::1]:41641`; a reason string when the text is neither. */
export function parseAddrPort(text: string): ParsedAddrPort | string {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return 'missing ":port"';
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  const bracketed = host.startsWith('[') && host.endsWith(']');
  if (bracketed) host = host.slice(1, -1);
  const addr = parseAddr(host);
  if (addr === undefined) return `${JSON.stringify(host.slice(0, 64))} is not an IP address`;
  if (addr.bytes.length === 16 && !bracketed) return 'an IPv6 address must be written in brackets';
  if (addr.bytes.length === 4 && bracketed) return 'brackets are only for IPv6 addresses';
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) return 'the port must be 0–65535';
  return { addr, port: Number(portText) };
}

export function formatAddrPort({ addr, port }: ParsedAddrPort): string {
  return addr.bytes.length === 4 ? `${formatAddr(addr)}:${port}` : `[${formatAddr(addr)}]:${port}`;
}

/** `10.0.0.0/24`, `fd00::/64` in canonical text (address bits kept as written, like Go); else a reason. */
export function canonicalPrefix(text: string): string | { problem: string } {
  const slash = text.indexOf('/');
  if (slash < 0) return { problem: 'missing "/bits"' };
  const addr = parseAddr(text.slice(0, slash));
  if (addr === undefined || addr.zone !== undefined) {
    return { problem: `${JSON.stringify(text.slice(0, 64))} is not an IP prefix` };
  }
  const bitsText = text.slice(slash + 1);
  const max = addr.bytes.length * 8;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bitsText) || Number(bitsText) > max) {
    return { problem: `the prefix length must be 0–${max}` };
  }
  return `${formatAddr(addr)}/${bitsText}`;
}
