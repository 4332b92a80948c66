/** `weft apikeys create|list|expire`. */
import { Command } from '@commander-js/extra-typings';
import { durationArgument } from '../arguments.ts';
import type { Connect } from '../connect.ts';
import { formatTime, outputOption, printJson, printResult, printTable } from '../output.ts';
import { userByName } from './users.ts';

const NINETY_DAYS_MS = 90 * 24 * 3_600_000;

export function apiKeysCommand(connect: Connect): Command {
  const keys = new Command('apikeys')
    .alias('apikey')
    .description('manage API keys for the REST API and remote CLI');

  keys
    .command('create')
    .description('create an API key and print it (it is shown only once)')
    .option(
      '-e, --expiration <duration>',
      'how long the key stays valid (e.g. 90d)',
      durationArgument,
      NINETY_DAYS_MS,
    )
    .option(
      '-u, --user <name>',
      'the user that untagged auth keys made with this key through API v2 (Terraform, the Go client) belong to',
    )
    .addOption(outputOption())
    .action(async (options, command) => {
      const client = connect(command);
      const owner = options.user === undefined ? undefined : await userByName(client, options.user);
      const key = await client.createApiKey(
        new Date(Date.now() + options.expiration).toISOString(),
        owner?.id,
      );
      printResult(options, { apiKey: key }, key);
    });

  keys
    .command('list')
    .alias('ls')
    .description('list API keys')
    .addOption(outputOption())
    .action(async (options, command) => {
      const list = await connect(command).listApiKeys();
      if (options.output === 'json') return printJson(list);
      printTable(
        ['ID', 'PREFIX', 'USER', 'EXPIRATION', 'LAST SEEN', 'CREATED'],
        list.map((k) => [
          k.id,
          k.prefix,
          k.user?.name ?? '-',
          formatTime(k.expiration, { markPast: true }),
          formatTime(k.lastSeen),
          formatTime(k.createdAt),
        ]),
      );
    });

  keys
    .command('expire')
    .alias('revoke')
    .description('expire an API key now')
    .argument('<prefix>', 'the key, its listed prefix (weft-api-…) or enough hex digits of it')
    .addOption(outputOption())
    .action(async (prefix, options, command) => {
      const key = await connect(command).expireApiKey(prefix);
      printResult(options, key, `API key ${key.prefix} expired`);
    });

  return keys;
}
