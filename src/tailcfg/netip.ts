/**
 * Strict parsing and canonical printing of the address forms on the wire (Go's `netip.Addr`,
 * `netip.AddrPort`, `netip.Prefix`).
 *
 * The address grammar itself is src/util/ip.ts (strict like Go: no leading zeros, hex or short IPv4
 * forms; canonical RFC 5952 output), so stored values compare equal with what clients print.
 */
import { familyBits, formatIp, type IpValue, parseIp } from '../util/ip.ts';

export interface ParsedAddr {
  readonly ip: IpValue;
  /** IPv6 zone (`fe80::1%eth0`), if any. */
  readonly zone?: string;
}

/** Parses an IPv4 or IPv6 address (IPv6 optionally with `%zone`); undefined if it is not one. */
export function parseAddr(text: string): ParsedAddr | undefined {
  const percent = text.includes(':') ? text.indexOf('%') : -1;
  if (percent < 0) {
    const ip = parseIp(text);
    return ip === undefined ? undefined : { ip };
  }
  const zone = text.slice(percent + 1);
  const ip = parseIp(text.slice(0, percent));
  return ip === undefined || zone === '' ? undefined : { ip, zone };
}

/** Go's `netip.Addr.String()`. */
export function formatAddr(addr: ParsedAddr): string {
  const text = formatIp(addr.ip.family, addr.ip.value);
  return addr.zone === undefined ? text : `${text}%${addr.zone}`;
}

/** fe80::/10, where the client's own interface-scoped addresses live. */
export function isIPv6LinkLocal(addr: ParsedAddr): boolean {
  return addr.ip.family === 6 && addr.ip.value >> 118n === 0x3fan;
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
  if (addr.ip.family === 6 && !bracketed) return 'an IPv6 address must be written in brackets';
  if (addr.ip.family === 4 && bracketed) return 'brackets are only for IPv6 addresses';
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) return 'the port must be 0–65535';
  return { addr, port: Number(portText) };
}

export function formatAddrPort({ addr, port }: ParsedAddrPort): string {
  return addr.ip.family === 4 ? `${formatAddr(addr)}:${port}` : `[${formatAddr(addr)}]:${port}`;
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
  const max = familyBits(addr.ip.family);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bitsText) || Number(bitsText) > max) {
    return { problem: `the prefix length must be 0–${max}` };
  }
  return `${formatAddr(addr)}/${bitsText}`;
}
