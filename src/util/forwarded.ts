/**
 * The client's address behind reverse proxies that weft trusts (`trusted_proxies`). Each proxy appends
 * the address it received the request from to X-Forwarded-For, so the header reads client, proxy1,
 * proxy2… and the connection comes from the last proxy. Walking from the right, the first address that
 * is not a trusted proxy is the client; anything left of it could have been written by the client
 * itself and is ignored. A connection not from a trusted proxy is the client, whatever it claims.
 */
import { familyBits, type IpPrefix, parseIp, parsePrefix } from './ip.ts';

export class TrustedProxies {
  readonly #prefixes: readonly IpPrefix[];

  private constructor(prefixes: readonly IpPrefix[]) {
    this.#prefixes = prefixes;
  }

  /** From the config's list of addresses and CIDR prefixes (already validated). */
  static of(entries: readonly string[]): TrustedProxies {
    const prefixes = entries.flatMap((entry) => {
      const text = entry.includes('/') ? entry : hostPrefix(entry);
      const prefix = text === undefined ? undefined : parsePrefix(text);
      return prefix === undefined ? [] : [prefix];
    });
    return new TrustedProxies(prefixes);
  }

  get empty(): boolean {
    return this.#prefixes.length === 0;
  }

  has(address: string): boolean {
    const ip = parseIp(unmapped(address));
    if (ip === undefined) return false;
    return this.#prefixes.some(
      (prefix) =>
        prefix.family === ip.family && ip.value - prefix.network < prefix.size && ip.value >= prefix.network,
    );
  }

  /** The client's address for a connection from `socketAddress` carrying this X-Forwarded-For. */
  clientOf(socketAddress: string, forwardedFor: string | readonly string[] | undefined): string {
    if (this.empty || !this.has(socketAddress) || forwardedFor === undefined) return socketAddress;
    const hops = [forwardedFor]
      .flat()
      .join(',')
      .split(',')
      .map((hop) => hop.trim())
      .filter((hop) => hop !== '');
    let client = socketAddress;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i] as string;
      if (parseIp(unmapped(hop)) === undefined) break; // garbage: stop believing the header here
      client = hop;
      if (!this.has(hop)) break;
    }
    return client;
  }
}

function hostPrefix(address: string): string | undefined {
  const ip = parseIp(address);
  return ip === undefined ? undefined : `${address}/${familyBits(ip.family)}`;
}

/** `::ffff:192.0.2.1` (how a dual-stack socket reports IPv4 peers) → `192.0.2.1`. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice('::ffff:'.length) : address;
}
