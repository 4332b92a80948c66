/**
 * `weft auth register --auth-id ID --user NAME | list | reject --auth-id ID` (Headscale's `auth`
 * commands): interactive logins waiting for an admin. `weft nodes register --user NAME --key ID` is
 * the same completion under its older name.
 */
import { Command, InvalidArgumentError } from '@commander-js/extra-typings';
import type { ApiClient } from '../../api/client.ts';
import type { NodeJson } from '../../api/wire.ts';
import type { Connect } from '../connect.ts';
import { formatTime, outputOption, printJson, printResult, printTable } from '../output.ts';

/**
 * The login id, from the id itself or from the whole AuthURL the device printed (people paste either).
 */
export function loginIdArgument(text: string): string {
  const trimmed = text.trim();
  const id = trimmed.includes('/register/') ? (trimmed.split('/register/').pop() ?? '') : trimmed;
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(id)) {
    throw new InvalidArgumentError(
      'it must be the login id from the URL the device printed (…/register/<id>), or that URL',
    );
  }
  return id;
}

/** Completes the login and says which node it made. */
export async function completeLogin(
  client: ApiClient,
  authId: string,
  user: string,
  options: { output: 'table' | 'json' },
): Promise<void> {
  const node: NodeJson = await client.completeLogin(authId, user);
  const owner = node.user?.name ?? `tags ${node.tags.join(',')}`;
  printResult(options, node, `Node ${node.id} (${node.givenName}) registered for ${owner}`);
}

export function authCommand(connect: Connect): Command {
  const auth = new Command('auth').description('complete, list and reject interactive logins');

  auth
    .command('register')
    .description('complete a waiting login: the device joins as a node of the user')
    .requiredOption('--auth-id <id>', 'the login id from the URL the device printed', loginIdArgument)
    .requiredOption('-u, --user <name>', 'the user the device will belong to')
    .addOption(outputOption())
    .action(async (options, command) => {
      await completeLogin(connect(command), options.authId, options.user, options);
    });

  auth
    .command('list')
    .alias('ls')
    .description('list the logins waiting to be completed')
    .addOption(outputOption())
    .action(async (options, command) => {
      const logins = await connect(command).listPendingLogins();
      if (options.output === 'json') return printJson(logins);
      printTable(
        ['ID', 'HOSTNAME', 'OS', 'MACHINE KEY', 'WAITING SINCE', 'EXPIRES'],
        logins.map((l) => [
          l.id,
          l.hostname || '-',
          l.os || '-',
          `${l.machineKey.slice(0, 13)}…`,
          formatTime(l.createdAt),
          formatTime(l.expiresAt),
        ]),
      );
    });

  auth
    .command('reject')
    .description('reject a waiting login; the device is told so')
    .requiredOption('--auth-id <id>', 'the login id from the URL the device printed', loginIdArgument)
    .addOption(outputOption())
    .action(async (options, command) => {
      await connect(command).rejectLogin(options.authId);
      printResult(options, { rejected: options.authId }, `Login ${options.authId} rejected`);
    });

  return auth;
}
