/**
 * `weft policy get | set FILE | check FILE`.
 *
 * `check` asks the running server when there is one (the policy's tests then run against the live
 * tailnet); with no server it checks offline, against an empty tailnet (tests about users, groups and
 * tags then run on stand-in devices, as they do for names without devices on a server). A refused policy prints Tailscale's message with line and column (or the
 * failing tests) and exits 1; the policy in force is never touched by `check`, nor by a refused `set`.
 */
import { open } from 'node:fs/promises';
import { Command } from '@commander-js/extra-typings';
import { ApiError } from '../../api/client.ts';
import { POLICY_BODY_LIMIT } from '../../api/routes/policy.ts';
import { checkPolicy } from '../../policy/index.ts';
import type { Connect } from '../connect.ts';
import { CommandError } from '../errors.ts';
import { formatTime, outputOption, printJson, printLine } from '../output.ts';

/** Reads FILE (`-` = stdin), refusing anything bigger than the server would accept before reading it. */
export async function readPolicyFile(path: string): Promise<string> {
  if (path === '-') return readLimited(process.stdin, 'standard input');
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new CommandError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).message}`);
  }
  try {
    const { size } = await handle.stat();
    if (size > POLICY_BODY_LIMIT)
      throw new CommandError(`${path} is ${size} bytes; a policy may be at most ${POLICY_BODY_LIMIT}`);
    return await readLimited(handle.createReadStream({ encoding: undefined, autoClose: false }), path);
  } finally {
    await handle.close();
  }
}

async function readLimited(stream: AsyncIterable<Buffer | string>, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buffer.length;
    if (size > POLICY_BODY_LIMIT)
      throw new CommandError(`${what} holds more than ${POLICY_BODY_LIMIT} bytes; too big for a policy`);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function policyCommand(
  connect: Connect,
  remote: (command: Command<unknown[], Record<string, unknown>>) => boolean,
): Command {
  const policy = new Command('policy').description('show, replace or check the tailnet policy');

  policy
    .command('get')
    .description('print the policy in force (the text alone, ready to edit and set again)')
    .addOption(outputOption())
    .action(async (options, command) => {
      const current = await connect(command).getPolicy();
      if (options.output === 'json') return printJson(current);
      process.stdout.write(current.policy.endsWith('\n') ? current.policy : `${current.policy}\n`);
    });

  policy
    .command('set')
    .description('replace the policy (policy.mode: database); it must parse, compile and pass its tests')
    .argument('<file>', 'policy file (HuJSON), or - for standard input')
    .option('--if-match <etag>', 'only if the policy in force still has this ETag')
    .addOption(outputOption())
    .action(async (file, options, command) => {
      const text = await readPolicyFile(file);
      const updated = await connect(command).setPolicy(text, options.ifMatch);
      if (options.output === 'json') return printJson(updated);
      printLine(`Policy updated: version ${updated.version}, ${formatTime(updated.updatedAt)}`);
    });

  policy
    .command('check')
    .description('validate a policy and run its tests without applying it (works without a server)')
    .argument('<file>', 'policy file (HuJSON), or - for standard input')
    .action(async (file, _options, command) => {
      const text = await readPolicyFile(file);
      try {
        const result = await connect(command).checkPolicy(text);
        printLine(`Policy is valid; ${result.tests} test(s) passed against the live tailnet`);
        return;
      } catch (err) {
        if (!(err instanceof ApiError) || err.code !== 'CLIENT_UNREACHABLE' || remote(command)) throw err;
      }
      // No server here: check offline, against an empty tailnet.
      const { policy: checked } = checkPolicy(
        text,
        { users: [], nodes: [] },
        { serverUrl: 'https://offline.invalid' },
      );
      const tests = checked.tests.length + checked.sshTests.length;
      printLine(
        `Policy is valid; ${tests} test(s) passed (offline, against an empty tailnet: no weft server was reachable)`,
      );
    });

  return policy;
}
