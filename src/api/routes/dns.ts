/**
 * `/api/v1/dns`: read the tailnet's DNS settings, or replace their editable part (resolvers, split DNS,
 * search domains, extra records). A new value is checked by the config's rules and refused with the
 * field and the reason (400, nothing changed); an accepted one reaches connected clients at once and
 * stays in force across restarts. `magicDns` and `baseDomain` are shown but only the config sets them.
 */
import type { FastifyInstance } from 'fastify';
import type { DnsSettings, DnsSettingsStore } from '../../state/dns.ts';
import { parseInput } from '../problems.ts';
import { type DnsJson, dnsBody } from '../wire.ts';

function dnsJson(dns: DnsSettingsStore, settings: DnsSettings): DnsJson {
  return {
    magicDns: dns.magicDns,
    baseDomain: dns.baseDomain,
    nameservers: { global: settings.nameservers.global, split: settings.nameservers.split },
    searchDomains: settings.searchDomains,
    extraRecords: settings.extraRecords,
  };
}

export function registerDnsRoutes(api: FastifyInstance, dns: DnsSettingsStore): void {
  api.get('/dns', async (_request, reply) => reply.header('etag', dns.etag).send(dnsJson(dns, dns.current)));

  // If-Match (the ETag of a GET) turns a read-modify-write into one that cannot drop a concurrent change.
  api.put('/dns', async (request, reply) => {
    const body = parseInput(dnsBody, request.body, 'body');
    const ifMatch = request.headers['if-match'];
    const updated = await dns.update(body, ifMatch);
    return reply.header('etag', dns.etag).send(dnsJson(dns, updated));
  });
}
