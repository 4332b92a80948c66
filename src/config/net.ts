/**
 * Checks for the network-shaped strings in the config: host:port addresses, CIDR prefixes, IP
 * addresses, DNS names and URLs.
 *
 * Each `…Problem` function returns undefined when the text is acceptable, or a short sentence saying what
 * is wrong with it; the zod schema reports that sentence under the key's path. IP literals are checked
 * with node:net (strict dotted decimal, unlike ipaddr.js which also takes forms such as `0x64.1`), and
 * ipaddr.js does the prefix arithmetic.
 */
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

export interface HostPort {
  /** Hostname, IPv4 address, or IPv6 address without brackets. */
  readonly host: string;
  readonly port: number;
}

const HOST_PORT_EXAMPLE = 'expected host:port such as 0.0.0.0:8080, 127.0.0.1:0 or [::]:8080';

/** Splits a host:port address the config has already validated, ready for `server.listen(port, host)`. */
export function parseHostPort(text: string): HostPort {
  const parsed = splitHostPort(text);
  if (typeof parsed === 'string') throw new Error(badHostPort(text, parsed));
  return parsed;
}

export function hostPortProblem(text: string): string | undefined {
  const parsed = splitHostPort(text);
  return typeof parsed === 'string' ? badHostPort(text, parsed) : undefined;
}

function badHostPort(text: string, reason: string): string {
  return `${JSON.stringify(text)}: ${reason}; ${HOST_PORT_EXAMPLE}`;
}

/** The parsed address, or the reason it is not one. */
function splitHostPort(text: string): HostPort | string {
  const colon = text.lastIndexOf(':');
  if (colon < 0 || text.endsWith(']')) return 'missing ":port"';
  const hostText = text.slice(0, colon);
  const host = hostText.startsWith('[') && hostText.endsWith(']') ? hostText.slice(1, -1) : hostText;
  const problem = host === hostText ? unbracketedHostProblem(host) : bracketedHostProblem(host);
  if (problem !== undefined) return problem;
  const port = parsePort(text.slice(colon + 1));
  if (typeof port === 'string') return port;
  return { host, port };
}

function unbracketedHostProblem(host: string): string | undefined {
  if (host === '') return 'missing host (use 0.0.0.0 or [::] to listen on every interface)';
  if (host.includes(':')) return 'an IPv6 host must be written in brackets';
  if (isIPv4(host)) return undefined;
  if (/^[\d.]+$/.test(host)) return `${JSON.stringify(host)} is not a valid IPv4 address`;
  if (dnsNameProblem(host.toLowerCase(), 1) !== undefined)
    return `${JSON.stringify(host)} is not an IP address or host name`;
  return undefined;
}

function bracketedHostProblem(host: string): string | undefined {
  return isPlainIPv6(host) ? undefined : `[${host}] is not an IPv6 address`;
}

function parsePort(text: string): number | string {
  if (text === '') return 'missing port';
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) return `port ${text} is not a number from 0 to 65535`;
  return Number(text);
}

/** IPv6 literal without a zone (`fe80::1%eth0`): zones mean nothing to the peers we hand these to. */
function isPlainIPv6(text: string): boolean {
  return isIPv6(text) && !text.includes('%');
}

export function isIpAddress(text: string): boolean {
  return isIPv4(text) || isPlainIPv6(text);
}

export function ipProblem(text: string): string | undefined {
  return isIpAddress(text) ? undefined : `${JSON.stringify(text)} is not an IP address`;
}

/** A DNS resolver as Tailscale clients take it: a plain IP address or a DNS-over-HTTPS URL. */
export function resolverProblem(text: string): string | undefined {
  if (isIpAddress(text)) return undefined;
  if (text.startsWith('https://')) return urlProblem(text, ['https:']);
  return `${JSON.stringify(text)} is not an IP address or an https:// DNS-over-HTTPS URL`;
}

export type IpFamily = 4 | 6;

/** A proxy weft may believe about the client's address: an IP address or a CIDR prefix of either family. */
export function trustedProxyProblem(text: string): string | undefined {
  if (isIpAddress(text)) return undefined;
  const address = text.includes('/') ? text.slice(0, text.indexOf('/')) : text;
  const family: IpFamily = isIPv4(address) ? 4 : 6;
  if (prefixSyntaxProblem(text, family) === undefined) return undefined;
  return `${JSON.stringify(text)} is not an IP address or CIDR prefix`;
}

/**
 * A CIDR prefix of the given family that lies inside `range` and has no host bits set. Returns the
 * canonical text (lowercase, compressed IPv6) or the problem.
 */
export function checkPrefixInside(
  text: string,
  family: IpFamily,
  range: string,
): { canonical: string } | { problem: string } {
  const syntax = prefixSyntaxProblem(text, family);
  if (syntax !== undefined) return { problem: syntax };
  const [address, bits] = ipaddr.parseCIDR(text);
  const network = networkAddress(text, family);
  if (network.toString() !== address.toString()) {
    return { problem: `${text} has host bits set; the network is ${network.toString()}/${bits}` };
  }
  const [rangeAddress, rangeBits] = ipaddr.parseCIDR(range);
  if (bits < rangeBits || !address.match(rangeAddress, rangeBits)) {
    return { problem: `${text} is outside ${range}, the range Tailscale clients use for node addresses` };
  }
  return { canonical: `${address.toString()}/${bits}` };
}

function prefixSyntaxProblem(text: string, family: IpFamily): string | undefined {
  const familyName = family === 4 ? 'IPv4' : 'IPv6';
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const isFamily = family === 4 ? isIPv4(address) : isPlainIPv6(address);
  if (slash < 0 || !isFamily)
    return `${JSON.stringify(text)} is not an ${familyName} CIDR prefix (address/length)`;
  const maxBits = family === 4 ? 32 : 128;
  const lengthText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > maxBits) {
    return `${text} has an invalid prefix length (expected 0 to ${maxBits})`;
  }
  return undefined;
}

function networkAddress(text: string, family: IpFamily): ipaddr.IPv4 | ipaddr.IPv6 {
  return family === 4 ? ipaddr.IPv4.networkAddressFromCIDR(text) : ipaddr.IPv6.networkAddressFromCIDR(text);
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A lowercase DNS name of at least `minLabels` labels: each label 1..63 characters of [a-z0-9-], not
 * starting or ending with a hyphen; 253 characters at most; no trailing dot.
 */
export function dnsNameProblem(name: string, minLabels: number): string | undefined {
  const quoted = JSON.stringify(name);
  if (name.length === 0) return 'must not be empty';
  if (name.length > 253) return `${quoted} is longer than 253 characters`;
  const labels = name.split('.');
  const badLabel = labels.find((label) => !DNS_LABEL.test(label));
  if (badLabel !== undefined) {
    return `${quoted} is not a DNS name: label ${JSON.stringify(badLabel)} must be 1 to 63 characters of a-z, 0-9 and "-", not starting or ending with "-"`;
  }
  if (labels.length < minLabels) return `${quoted} needs at least ${minLabels} labels, e.g. tailnet.internal`;
  return undefined;
}

/** True when `name` is `domain` itself or a name under it. */
export function isSameOrSubdomain(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

/** An absolute URL with one of the given protocols (e.g. `['http:', 'https:']`) and no user:password part. */
export function urlProblem(text: string, protocols: readonly string[]): string | undefined {
  const url = URL.parse(text);
  const expected = protocols.map((protocol) => `${protocol}//`).join(' or ');
  if (url === null) return `${JSON.stringify(text)} is not a URL (expected ${expected}…)`;
  if (!protocols.includes(url.protocol)) return `${JSON.stringify(text)} must start with ${expected}`;
  if (url.username !== '' || url.password !== '')
    return `${JSON.stringify(text)} must not contain a user name or password`;
  return undefined;
}

/** Host names that only ever reach this machine, where plain http leaks nothing. */
export function isLoopbackHost(hostname: string): boolean {
  const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  return isIpAddress(bare) && ipaddr.parse(bare).range() === 'loopback';
}
