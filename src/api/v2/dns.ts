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
import type { z } from 'zod';
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
  /** `GET /tailnet/-/dns/<path>`, with the `dns:read` scope. */
  const read = (path: string, answer: () => unknown) =>
    addRoute(api, context, {
      method: 'GET',
      url: `/tailnet/:tailnet/dns/${path}`,
      scope: 'dns:read',
      handler: async () => answer(),
    });

  /** A change at `/tailnet/-/dns/<path>`, with the `dns` scope and a body checked by `schema`. */
  const write = <S extends z.ZodType>(
    method: 'POST' | 'PATCH' | 'PUT',
    path: string,
    schema: S,
    apply: (body: z.output<S>) => Promise<unknown>,
  ) =>
    addRoute(api, context, {
      method,
      url: `/tailnet/:tailnet/dns/${path}`,
      scope: 'dns',
      handler: async (request) => apply(parseBody(request, schema)),
    });

  read('nameservers', () => ({ dns: [...dns.current.nameservers.global] }));
  write('POST', 'nameservers', nameserversBody, async (body) => {
    const settings = await dns.modify((current) => ({
      ...current,
      nameservers: { ...current.nameservers, global: body.dns },
    }));
    return { dns: [...settings.nameservers.global], magicDNS: dns.magicDns };
  });

  read('preferences', () => ({ magicDNS: dns.magicDns }));
  write('POST', 'preferences', preferencesBody, async (body) => {
    requireMagicDns(dns, body.magicDNS);
    return { magicDNS: dns.magicDns };
  });

  read('searchpaths', () => ({ searchPaths: [...dns.current.searchDomains] }));
  write('POST', 'searchpaths', searchPathsBody, async ({ searchPaths }) => {
    const settings = await dns.modify((current) => ({ ...current, searchDomains: searchPaths }));
    return { searchPaths: [...settings.searchDomains] };
  });

  read('split-dns', () => ({ ...dns.current.nameservers.split }));
  for (const method of ['PATCH', 'PUT'] as const) {
    write(method, 'split-dns', splitDnsBody, async (body) => {
      const settings = await dns.modify((current) => {
        // PATCH merges (null removes a domain); PUT replaces the whole map.
        const split: Record<string, string[]> = method === 'PATCH' ? { ...current.nameservers.split } : {};
        for (const [domain, resolvers] of Object.entries(body)) {
          if (resolvers === null || resolvers.length === 0) delete split[domain];
          else split[domain] = resolvers;
        }
        return { ...current, nameservers: { ...current.nameservers, split } };
      });
      return { ...settings.nameservers.split };
    });
  }

  read('configuration', () => configurationJson(dns, dns.current));
  write('POST', 'configuration', dnsConfigurationBody, async (body) => {
    requireMagicDns(dns, body.preferences?.magicDNS);
    const addresses = (resolvers: readonly { address: string }[] | null | undefined) =>
      (resolvers ?? []).map((r) => r.address);
    const split: Record<string, string[]> = {};
    for (const [domain, resolvers] of Object.entries(body.splitDNS ?? {})) {
      if (resolvers !== null && resolvers.length > 0) split[domain] = addresses(resolvers);
    }
    const settings = await dns.modify((current) => ({
      ...current,
      nameservers: { global: addresses(body.nameservers), split },
      searchDomains: body.searchPaths ?? [],
    }));
    return configurationJson(dns, settings);
  });
}
