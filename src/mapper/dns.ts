/**
 * The tailnet's DNS settings as clients receive them (MapResponse.DNSConfig): MagicDNS and its domain
 * from the config, resolvers, split DNS, search domains and extra records from the run-time settings.
 */
import type { DnsConfig } from '../config/index.ts';
import type { DnsSettings } from '../state/dns.ts';
import type { DNSConfig, DNSResolver } from '../tailcfg/index.ts';

function resolvers(addresses: readonly string[]): DNSResolver[] {
  return addresses.map((Addr) => ({ Addr }));
}

export function buildDnsConfig(
  dns: Pick<DnsConfig, 'base_domain' | 'magic_dns'>,
  settings: DnsSettings,
): DNSConfig {
  const config: DNSConfig = { Proxied: dns.magic_dns };
  const { global, split } = settings.nameservers;
  if (global.length > 0) config.Resolvers = resolvers(global);
  const routes = Object.entries(split);
  // Route values must be lists, never null: the client drops null entries when it copies the config.
  if (routes.length > 0)
    config.Routes = Object.fromEntries(routes.map(([domain, list]) => [domain, resolvers(list)]));
  const domains = dns.magic_dns ? [dns.base_domain, ...settings.searchDomains] : [...settings.searchDomains];
  if (domains.length > 0) config.Domains = domains;
  if (settings.extraRecords.length > 0) {
    config.ExtraRecords = settings.extraRecords.map((r) => ({ Name: r.name, Type: r.type, Value: r.value }));
  }
  return config;
}
