/**
 * `weft dns show | nameservers set | split set|remove | search-domains set | records add|remove`.
 *
 * Every change reads the settings in force, changes one part and writes them all back (GET, then PUT),
 * so the server checks the result by the config's rules and refuses it whole (exit 1, nothing changed)
 * if any part is wrong. Accepted settings reach connected clients at once and outlive restarts.
 */
import { Command, InvalidArgumentError } from '@commander-js/extra-typings';
import { type ApiClient, ApiError } from '../../api/client.ts';
import type { DnsJson, DnsRecordJson, DnsSettingsJson } from '../../api/wire.ts';
import type { Connect } from '../connect.ts';
import { CommandError } from '../errors.ts';
import { outputOption, printResult, yesNo } from '../output.ts';

type RecordType = DnsRecordJson['type'];

/** `A` or `AAAA`, in any case; anything else is a usage error (exit 2). */
function recordTypeArgument(text: string): RecordType {
  const type = text.toUpperCase();
  if (type !== 'A' && type !== 'AAAA') throw new InvalidArgumentError('it must be A or AAAA');
  return type;
}

function editable(dns: DnsJson): DnsSettingsJson {
  return {
    nameservers: { global: [...dns.nameservers.global], split: { ...dns.nameservers.split } },
    searchDomains: [...dns.searchDomains],
    extraRecords: dns.extraRecords.map((record) => ({ ...record })),
  };
}

/** Read-modify-write attempts before giving up when other admins keep changing the settings. */
const MODIFY_ATTEMPTS = 5;

/**
 * Reads the settings, lets `change` edit a copy, and writes the result back only if nobody changed them
 * in between (If-Match); otherwise reads them again and re-applies `change`, so two admins editing
 * different parts at once both win. Returns what is now in force.
 */
export async function modify(
  client: Pick<ApiClient, 'getDnsVersioned' | 'setDns'>,
  change: (settings: DnsSettingsJson) => void,
): Promise<DnsJson> {
  for (let attempt = 1; ; attempt++) {
    const { dns, etag } = await client.getDnsVersioned();
    const settings = editable(dns);
    change(settings);
    try {
      return await client.setDns(settings, etag);
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'DNS_CHANGED' || attempt >= MODIFY_ATTEMPTS) throw err;
    }
  }
}

function list(items: readonly string[]): string {
  return items.length > 0 ? items.join(', ') : '-';
}

function recordText(record: DnsRecordJson): string {
  return `${record.name} ${record.type} ${record.value}`;
}

/** `weft dns show`: aligned "Key: value" lines, then one line per split domain and per record. */
export function describeDns(dns: DnsJson): string {
  const fields: [string, string][] = [
    ['MagicDNS', yesNo(dns.magicDns)],
    ['Base domain', dns.baseDomain],
    ['Nameservers', list(dns.nameservers.global)],
    ['Search domains', list(dns.searchDomains)],
  ];
  const width = Math.max(...fields.map(([key]) => key.length)) + 1;
  const lines = fields.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`);
  const split = Object.entries(dns.nameservers.split);
  lines.push(`Split DNS:${split.length > 0 ? '' : ' -'}`);
  for (const [domain, resolvers] of split) lines.push(`  ${domain}: ${list(resolvers)}`);
  lines.push(`Extra records:${dns.extraRecords.length > 0 ? '' : ' -'}`);
  for (const record of dns.extraRecords) lines.push(`  ${recordText(record)}`);
  return lines.join('\n');
}

export function dnsCommand(connect: Connect): Command {
  const dns = new Command('dns').description(
    'show or change the DNS settings clients get (resolvers, split DNS, search domains, extra records)',
  );

  dns
    .command('show')
    .description('show the DNS settings in force')
    .addOption(outputOption())
    .action(async (options, command) => {
      const current = await connect(command).getDns();
      printResult(options, current, describeDns(current));
    });

  const nameservers = dns.command('nameservers').description('the resolvers for every DNS query');
  nameservers
    .command('set')
    .description('replace the global resolvers (IP addresses or https:// DoH URLs); none clears them')
    .argument('[addresses...]', 'resolvers, in order of preference')
    .addOption(outputOption())
    .action(async (addresses, options, command) => {
      const updated = await modify(connect(command), (s) => {
        s.nameservers.global = addresses;
      });
      printResult(options, updated, `Nameservers: ${list(updated.nameservers.global)}`);
    });

  const split = dns.command('split').description('split DNS: resolvers for one domain');
  split
    .command('set')
    .description('send queries for DOMAIN (and names under it) to these resolvers')
    .argument('<domain>', 'a DNS name, e.g. corp.example.com')
    .argument('<addresses...>', 'resolvers for that domain')
    .addOption(outputOption())
    .action(async (domain, addresses, options, command) => {
      const updated = await modify(connect(command), (s) => {
        s.nameservers.split[domain] = addresses;
      });
      printResult(
        options,
        updated,
        `Split DNS: ${domain} → ${list(updated.nameservers.split[domain] ?? [])}`,
      );
    });
  split
    .command('remove')
    .description('stop sending queries for DOMAIN to its own resolvers')
    .argument('<domain>', 'a domain as weft dns show lists it')
    .addOption(outputOption())
    .action(async (domain, options, command) => {
      const updated = await modify(connect(command), (s) => {
        if (!Object.hasOwn(s.nameservers.split, domain))
          throw new CommandError(`there is no split DNS entry for ${domain}`);
        delete s.nameservers.split[domain];
      });
      printResult(options, updated, `Split DNS for ${domain} removed`);
    });

  const searchDomains = dns.command('search-domains').description('domains tried for short names');
  searchDomains
    .command('set')
    .description('replace the search domains (after the MagicDNS domain); none clears them')
    .argument('[domains...]', 'DNS names, in order')
    .addOption(outputOption())
    .action(async (domains, options, command) => {
      const updated = await modify(connect(command), (s) => {
        s.searchDomains = domains;
      });
      printResult(options, updated, `Search domains: ${list(updated.searchDomains)}`);
    });

  const records = dns.command('records').description('extra A/AAAA records every client resolves');
  records
    .command('add')
    .description('add a record, e.g. grafana.tailnet.internal A 100.64.0.5')
    .argument('<name>', 'a DNS name')
    .argument('<type>', 'A (IPv4) or AAAA (IPv6)', recordTypeArgument)
    .argument('<value>', 'the address')
    .addOption(outputOption())
    .action(async (name, type, value, options, command) => {
      const record: DnsRecordJson = { name, type, value };
      const updated = await modify(connect(command), (s) => {
        if (s.extraRecords.some((r) => recordText(r) === recordText(record)))
          throw new CommandError(`the record ${recordText(record)} already exists`);
        s.extraRecords.push(record);
      });
      printResult(options, updated, `Record added: ${recordText(record)}`);
    });
  records
    .command('remove')
    .description('remove the records of NAME (only those of TYPE, when given)')
    .argument('<name>', 'a record name as weft dns show lists it')
    .argument('[type]', 'A or AAAA', recordTypeArgument)
    .addOption(outputOption())
    .action(async (name, type, options, command) => {
      const matches = (r: DnsRecordJson) => r.name === name && (type === undefined || r.type === type);
      let removed: DnsRecordJson[] = [];
      const updated = await modify(connect(command), (s) => {
        removed = s.extraRecords.filter(matches);
        if (removed.length === 0)
          throw new CommandError(`there is no ${type === undefined ? '' : `${type} `}record for ${name}`);
        s.extraRecords = s.extraRecords.filter((r) => !matches(r));
      });
      printResult(options, updated, removed.map((r) => `Record removed: ${recordText(r)}`).join('\n'));
    });

  return dns;
}
