/**
 * DNS: nameservers, preferences (MagicDNS), search paths, split DNS and the combined configuration,
 * mapped onto weft's DNS settings, so every accepted change reaches connected clients at once and
 * outlives restarts. A value the config's rules refuse is a 400 naming the field; nothing changes.
 *
 * weft's global nameservers always override the devices' local DNS (they become DNSConfig.Resolvers),
 * so `overrideLocalDNS` reads true when there are any. MagicDNS is config-only (`dns.magic_dns`): a
 * request that asks for the value in force is fine, one that asks for the other is refused.
 */
import type { FastifyInstance } from 'fastify';
import type { DnsSettings, DnsSettingsStore } from '../../state/dns.ts';
import { WeftError } from '../../types/errors.ts';
import { parseBody } from './body.ts';
import { addRoute, type V2Context } from './context.ts';
import {
  dnsConfigurationBody,
  nameserversBody,
  preferencesBody,
  searchPathsBody,
  splitDnsBody,
} from './wire.ts';

function requireMagicDns(dns: DnsSettingsStore, wanted: boolean | undefined): void {
  if (wanted === undefined || wanted === dns.magicDns) return;
  throw new WeftError(
    'BAD_REQUEST',
    `MagicDNS is ${dns.magicDns ? 'on' : 'off'} by dns.magic_dns in weft's config and cannot be changed through the API`,
  );
}

function configurationJson(dns: DnsSettingsStore, settings: DnsSettings) {
  const resolvers = (addresses: readonly string[]) => addresses.map((address) => ({ address }));
  return {
    nameservers: resolvers(settings.nameservers.global),
    splitDNS: Object.fromEntries(
      Object.entries(settings.nameservers.split).map(([domain, addresses]) => [domain, resolvers(addresses)]),
    ),
    searchPaths: [...settings.searchDomains],
    preferences: { overrideLocalDNS: settings.nameservers.global.length > 0, magicDNS: dns.magicDns },
  };
}

export function registerDnsRoutes(api: FastifyInstance, context: V2Context, dns: DnsSettingsStore): void {
  const update = (change: (current: DnsSettings) => DnsSettings) => dns.update(change(dns.current));

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/dns/nameservers',
    scope: 'dns:read',
    handler: async () => ({ dns: [...dns.current.nameservers.global] }),
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/tailnet/:tailnet/dns/nameservers',
    scope: 'dns',
    handler: async (request) => {
      const body = parseBody(request, nameserversBody);
      const settings = await update((current) => ({
        ...current,
        nameservers: { ...current.nameservers, global: body.dns },
      }));
      return { dns: [...settings.nameservers.global], magicDNS: dns.magicDns };
    },
  });

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/dns/preferences',
    scope: 'dns:read',
    handler: async () => ({ magicDNS: dns.magicDns }),
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/tailnet/:tailnet/dns/preferences',
    scope: 'dns',
    handler: async (request) => {
      requireMagicDns(dns, parseBody(request, preferencesBody).magicDNS);
      return { magicDNS: dns.magicDns };
    },
  });

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/dns/searchpaths',
    scope: 'dns:read',
    handler: async () => ({ searchPaths: [...dns.current.searchDomains] }),
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/tailnet/:tailnet/dns/searchpaths',
    scope: 'dns',
    handler: async (request) => {
      const { searchPaths } = parseBody(request, searchPathsBody);
      const settings = await update((current) => ({ ...current, searchDomains: searchPaths }));
      return { searchPaths: [...settings.searchDomains] };
    },
  });

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/dns/split-dns',
    scope: 'dns:read',
    handler: async () => ({ ...dns.current.nameservers.split }),
  });

  for (const method of ['PATCH', 'PUT'] as const) {
    addRoute(api, context, {
      method,
      url: '/tailnet/:tailnet/dns/split-dns',
      scope: 'dns',
      handler: async (request) => {
        const body = parseBody(request, splitDnsBody);
        const settings = await update((current) => {
          // PATCH merges (null removes a domain); PUT replaces the whole map.
          const split: Record<string, string[]> = method === 'PATCH' ? { ...current.nameservers.split } : {};
          for (const [domain, resolvers] of Object.entries(body)) {
            if (resolvers === null || resolvers.length === 0) delete split[domain];
            else split[domain] = resolvers;
          }
          return { ...current, nameservers: { ...current.nameservers, split } };
        });
        return { ...settings.nameservers.split };
      },
    });
  }

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/dns/configuration',
    scope: 'dns:read',
    handler: async () => configurationJson(dns, dns.current),
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/tailnet/:tailnet/dns/configuration',
    scope: 'dns',
    handler: async (request) => {
      const body = parseBody(request, dnsConfigurationBody);
      requireMagicDns(dns, body.preferences?.magicDNS);
      const addresses = (resolvers: readonly { address: string }[] | null | undefined) =>
        (resolvers ?? []).map((r) => r.address);
      const split: Record<string, string[]> = {};
      for (const [domain, resolvers] of Object.entries(body.splitDNS ?? {})) {
        if (resolvers !== null && resolvers.length > 0) split[domain] = addresses(resolvers);
      }
      const settings = await update((current) => ({
        ...current,
        nameservers: { global: addresses(body.nameservers), split },
        searchDomains: body.searchPaths ?? [],
      }));
      return configurationJson(dns, settings);
    },
  });
}
