/** The tailnet's DNS settings as clients receive them (MapResponse.DNSConfig). */
import type { DnsConfig } from '../config/index.ts';
import type { DNSConfig, DNSResolver } from '../tailcfg/index.ts';

function resolvers(addresses: readonly string[]): DNSResolver[] {
  return addresses.map((Addr) => ({ Addr }));
}

export function buildDnsConfig(dns: DnsConfig): DNSConfig {
  const config: DNSConfig = { Proxied: dns.magic_dns };
  if (dns.nameservers.global.length > 0) config.Resolvers = resolvers(dns.nameservers.global);
  const split = Object.entries(dns.nameservers.split);
  // Route values must be lists, never null: the client drops null entries when it copies the config.
  if (split.length > 0)
    config.Routes = Object.fromEntries(split.map(([domain, list]) => [domain, resolvers(list)]));
  const domains = dns.magic_dns ? [dns.base_domain, ...dns.search_domains] : dns.search_domains;
  if (domains.length > 0) config.Domains = domains;
  if (dns.extra_records.length > 0) {
    config.ExtraRecords = dns.extra_records.map((r) => ({ Name: r.name, Type: r.type, Value: r.value }));
  }
  return config;
}
