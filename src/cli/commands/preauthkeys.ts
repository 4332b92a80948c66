/** `weft preauthkeys create|list|expire`. */
import { Command } from '@commander-js/extra-typings';
import { durationArgument, tagsArgument } from '../arguments.ts';
import type { Connect } from '../connect.ts';
import { formatTime, outputOption, printJson, printResult, printTable, yesNo } from '../output.ts';
import { userByName } from './users.ts';

export function preAuthKeysCommand(connect: Connect): Command {
  const keys = new Command('preauthkeys')
    .alias('preauthkey')
    .description('manage pre-auth keys (tailscale up --auth-key)');

  keys
    .command('create')
    .description('create a pre-auth key and print it (it is shown only once)')
    .requiredOption('-u, --user <name>', 'user that will own the nodes')
    .option('--reusable', 'the key can register more than one node', false)
    .option('--ephemeral', 'nodes registered with it are removed when they go offline', false)
    .option(
      '-e, --expiration <duration>',
      'how long the key stays valid (e.g. 30m, 1h, 90d)',
      durationArgument,
      3_600_000,
    )
    .option('--tags <tags>', 'comma-separated tags for the nodes (tag:a,tag:b)', tagsArgument, [] as string[])
    .addOption(outputOption())
    .action(async (options, command) => {
      const client = connect(command);
      const owner = await userByName(client, options.user);
      const key = await client.createPreAuthKey({
        user: owner.id,
        reusable: options.reusable,
        ephemeral: options.ephemeral,
        expiration: new Date(Date.now() + options.expiration).toISOString(),
        aclTags: options.tags,
      });
      printResult(options, key, key.key ?? '');
    });

  keys
    .command('list')
    .alias('ls')
    .description('list pre-auth keys')
    .option('-u, --user <name>', 'only the keys of this user')
    .addOption(outputOption())
    .action(async (options, command) => {
      const client = connect(command);
      const user = options.user === undefined ? undefined : await userByName(client, options.user);
      const list = await client.listPreAuthKeys(user ? { user: user.id } : {});
      if (options.output === 'json') return printJson(list);
      printTable(
        ['ID', 'PREFIX', 'USER', 'REUSABLE', 'EPHEMERAL', 'USED', 'EXPIRATION', 'TAGS'],
        list.map((k) => [
          k.id,
          k.prefix,
          k.user?.name ?? '-',
          yesNo(k.reusable),
          yesNo(k.ephemeral),
          yesNo(k.used),
          formatTime(k.expiration, { markPast: true }),
          k.aclTags.join(','),
        ]),
      );
    });

  keys
    .command('expire')
    .alias('revoke')
    .description('expire a pre-auth key now')
    .argument('<key-prefix>', 'the key, its listed prefix (weft-auth-…) or enough hex digits of it')
    .addOption(outputOption())
    .action(async (prefix, options, command) => {
      const key = await connect(command).expirePreAuthKey(prefix);
      printResult(options, key, `Pre-auth key ${key.prefix} expired`);
    });

  return keys;
}
