/**
 * The `weft` command line. `serve` runs the server; every other command is a client of the running
 * server's REST API, through the local admin socket or --server/--api-key.
 */
import { Command, CommanderError } from '@commander-js/extra-typings';
import { ApiError } from '../api/client.ts';
import { ConfigError } from '../config/index.ts';
import { PolicyError } from '../policy/index.ts';
import { StartupError } from '../server/server.ts';
import { apiKeysCommand } from './commands/apikeys.ts';
import { authCommand } from './commands/auth.ts';
import { dnsCommand } from './commands/dns.ts';
import { nodesCommand } from './commands/nodes.ts';
import { oauthClientsCommand } from './commands/oauthclients.ts';
import { policyCommand } from './commands/policy.ts';
import { preAuthKeysCommand } from './commands/preauthkeys.ts';
import { routesCommand } from './commands/routes.ts';
import { serveCommand } from './commands/serve.ts';
import { usersCommand } from './commands/users.ts';
import { connect, type GlobalOptions, isRemote } from './connect.ts';
import { CommandError, EXIT_FAILURE, EXIT_USAGE, UsageError } from './errors.ts';

type AnyCommand = Command<unknown[], Record<string, unknown>>;

function globalOptions(command: AnyCommand): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions;
}

export function buildProgram(): Command {
  const program = new Command('weft')
    .description('weft: a self-hosted coordination server for Tailscale networks')
    .option('-c, --config <file>', 'config file (default: $WEFT_CONFIG, else built-in defaults)')
    .option('--server <url>', 'talk to this server instead of the local one (or $WEFT_SERVER)')
    .option('--api-key <key>', 'API key for --server (or $WEFT_API_KEY)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: () => {} });

  const connectFrom = (command: AnyCommand) => connect(globalOptions(command));
  program.addCommand(serveCommand((command) => globalOptions(command).config));
  program.addCommand(usersCommand(connectFrom));
  program.addCommand(preAuthKeysCommand(connectFrom));
  program.addCommand(nodesCommand(connectFrom));
  program.addCommand(routesCommand(connectFrom));
  program.addCommand(apiKeysCommand(connectFrom));
  program.addCommand(oauthClientsCommand(connectFrom));
  program.addCommand(policyCommand(connectFrom, (command) => isRemote(globalOptions(command))));
  program.addCommand(dnsCommand(connectFrom));
  program.addCommand(authCommand(connectFrom));
  for (const command of program.commands) propagateSettings(command);
  return program as unknown as Command;
}

/** Subcommands don't inherit exitOverride/output settings made after they were created. */
function propagateSettings(command: AnyCommand): void {
  command
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(true);
  for (const sub of command.commands) propagateSettings(sub);
}

/** Commander's message as one line: without its own "error:" and with a suggestion joined on. */
function sentence(message: string): string {
  return message
    .replace(/^error:\s*/i, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

/** Runs the CLI and returns the exit code; every failure is one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    const [message, code] = describeFailure(err);
    if (message !== undefined) process.stderr.write(`error: ${message}\n`);
    return code;
  }
}

/** What to print (nothing for help) and the exit code for anything that ended a command early. */
function describeFailure(err: unknown): [string | undefined, number] {
  if (err instanceof CommanderError) {
    const helpOnly = ['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(err.code);
    return helpOnly ? [undefined, 0] : [sentence(err.message), EXIT_USAGE];
  }
  if (err instanceof UsageError) return [err.message, EXIT_USAGE];
  // A refused policy: Tailscale's message with its line and column, or the failing tests.
  if (err instanceof PolicyError) return [err.describe(), EXIT_FAILURE];
  // Expected failures carry a sentence written for the admin (a config error: one line per problem).
  if (
    err instanceof ApiError ||
    err instanceof StartupError ||
    err instanceof ConfigError ||
    err instanceof CommandError
  ) {
    return [err.message, EXIT_FAILURE];
  }
  // A bug: one line by default; NODE_DEBUG=weft adds the stack trace.
  const stack = process.env.NODE_DEBUG?.includes('weft') && err instanceof Error ? `\n${err.stack}` : '';
  return [`unexpected failure: ${err instanceof Error ? err.message : String(err)}${stack}`, EXIT_FAILURE];
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
