/** `weft users create|list|rename|delete`. */
import { Command } from '@commander-js/extra-typings';
import type { ApiClient } from '../../api/client.ts';
import { ApiError } from '../../api/client.ts';
import type { UserJson } from '../../api/wire.ts';
import type { Connect } from '../connect.ts';
import { formatTime, outputOption, printJson, printResult, printTable } from '../output.ts';

/** The one user with this name, or an error saying there is none. */
export async function userByName(client: ApiClient, name: string): Promise<UserJson> {
  const [user] = await client.listUsers({ name });
  if (!user) throw new ApiError(`there is no user named "${name}"`, 'USER_NOT_FOUND', 404);
  return user;
}

export function usersCommand(connect: Connect): Command {
  const users = new Command('users').description('manage users');

  users
    .command('create')
    .description('create a user')
    .argument('<name>', 'user name (letters, digits and . _ @ + -)')
    .option('--display-name <name>', 'name shown in clients')
    .option('--email <address>', 'e-mail address')
    .addOption(outputOption())
    .action(async (name, options, command) => {
      const user = await connect(command).createUser({
        name,
        ...(options.displayName === undefined ? {} : { displayName: options.displayName }),
        ...(options.email === undefined ? {} : { email: options.email }),
      });
      printResult(options, user, `User "${user.name}" created (id ${user.id})`);
    });

  users
    .command('list')
    .alias('ls')
    .description('list users')
    .addOption(outputOption())
    .action(async (options, command) => {
      const list = await connect(command).listUsers();
      if (options.output === 'json') return printJson(list);
      printTable(
        ['ID', 'NAME', 'DISPLAY NAME', 'EMAIL', 'CREATED'],
        list.map((u) => [u.id, u.name, u.displayName, u.email, formatTime(u.createdAt)]),
      );
    });

  users
    .command('rename')
    .description('rename a user')
    .argument('<old-name>', 'current name')
    .argument('<new-name>', 'new name')
    .addOption(outputOption())
    .action(async (oldName, newName, options, command) => {
      const client = connect(command);
      const user = await client.renameUser((await userByName(client, oldName)).id, newName);
      printResult(options, user, `User "${oldName}" renamed to "${user.name}"`);
    });

  users
    .command('delete')
    .alias('destroy')
    .description('delete a user who owns no nodes (their pre-auth keys go too)')
    .argument('<name>', 'user name')
    .addOption(outputOption())
    .action(async (name, options, command) => {
      const client = connect(command);
      const user = await userByName(client, name);
      await client.deleteUser(user.id);
      printResult(options, { deleted: user }, `User "${name}" deleted`);
    });

  return users;
}
