/** `weft oauthclients create|list|delete`: OAuth clients for API v2 (client credentials grant). */
import { Command, InvalidArgumentError } from '@commander-js/extra-typings';
import { tagsArgument } from '../arguments.ts';
import type { Connect } from '../connect.ts';
import { formatTime, outputOption, printJson, printResult, printTable } from '../output.ts';

/** `--scopes a,b`: Tailscale's scope names; the server says which it knows. */
function scopesArgument(text: string): string[] {
  const scopes = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (scopes.length === 0) throw new InvalidArgumentError('give at least one scope, e.g. devices:core:read');
  return scopes;
}

export function oauthClientsCommand(connect: Connect): Command {
  const clients = new Command('oauthclients')
    .alias('oauthclient')
    .description('manage OAuth clients for API v2 (their tokens come from POST /api/v2/oauth/token)');

  clients
    .command('create')
    .description('create an OAuth client and print its id and secret (the secret is shown only once)')
    .requiredOption(
      '--scopes <scopes>',
      'comma-separated scopes, e.g. devices:core:read,auth_keys',
      scopesArgument,
    )
    .option(
      '--tags <tags>',
      'tags its auth keys may carry (needed for auth_keys and devices:core)',
      tagsArgument,
      [],
    )
    .option('--description <text>', 'a note for admins', '')
    .addOption(outputOption())
    .action(async (options, command) => {
      const created = await connect(command).createOAuthClient({
        scopes: options.scopes,
        tags: options.tags,
        description: options.description,
      });
      printResult(
        options,
        { ...created.oauthClient, secret: created.secret },
        `client id: ${created.oauthClient.id}\nclient secret: ${created.secret}`,
      );
    });

  clients
    .command('list')
    .alias('ls')
    .description('list OAuth clients')
    .addOption(outputOption())
    .action(async (options, command) => {
      const list = await connect(command).listOAuthClients();
      if (options.output === 'json') return printJson(list);
      printTable(
        ['ID', 'SCOPES', 'TAGS', 'DESCRIPTION', 'CREATED'],
        list.map((c) => [c.id, c.scopes.join(','), c.tags.join(','), c.description, formatTime(c.createdAt)]),
      );
    });

  clients
    .command('delete')
    .alias('rm')
    .description('delete an OAuth client; the tokens it issued stop working at once')
    .argument('<id>', 'the client id, as oauthclients list shows it')
    .addOption(outputOption())
    .action(async (id, options, command) => {
      await connect(command).deleteOAuthClient(id.trim().toLowerCase());
      printResult(options, { deleted: id }, `OAuth client ${id} deleted`);
    });

  return clients;
}
