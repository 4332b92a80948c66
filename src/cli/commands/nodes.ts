/** `weft nodes list|show|delete|expire|rename|tag|register|approve`. */
import { Command } from '@commander-js/extra-typings';
import type { NodeJson } from '../../api/wire.ts';
import { durationArgument, nodeIdArgument, tagsArgument } from '../arguments.ts';
import type { Connect } from '../connect.ts';
import { UsageError } from '../errors.ts';
import { formatTime, outputOption, printJson, printLine, printResult, printTable, yesNo } from '../output.ts';
import { completeLogin, loginIdArgument } from './auth.ts';

function ipv4Of(node: NodeJson): string {
  return node.ipAddresses.find((ip) => !ip.includes(':')) ?? '-';
}

function ipv6Of(node: NodeJson): string {
  return node.ipAddresses.find((ip) => ip.includes(':')) ?? '-';
}

/** "online" while connected, else when the node was last seen ("never" if it never connected). */
function presence(node: NodeJson): string {
  if (node.online) return 'online';
  return node.lastSeen === null ? 'never' : formatTime(node.lastSeen);
}

function expiry(node: NodeJson): string {
  return node.expiry === null ? 'never' : formatTime(node.expiry, { markPast: true });
}

function owner(node: NodeJson): string {
  return node.user?.name ?? '-';
}

/** `weft nodes show`: one "Key: value" line per field, the values aligned. */
function describeNode(node: NodeJson): string {
  const fields: [string, string][] = [
    ['ID', node.id],
    ['Name', node.givenName],
    ['FQDN', node.fqdn],
    ['Hostname', node.hostname],
    ['User', node.user === null ? '- (tagged node)' : node.user.name],
    ['Tags', node.tags.length > 0 ? node.tags.join(',') : '-'],
    ['Advertised routes', node.availableRoutes.join(', ') || '-'],
    ['Approved routes', node.approvedRoutes.join(', ') || '-'],
    ['Serving routes', node.subnetRoutes.join(', ') || '-'],
    ['IPv4', ipv4Of(node)],
    ['IPv6', ipv6Of(node)],
    ['Online', yesNo(node.online)],
    ['Authorized', node.authorized ? 'yes' : 'no (waiting for weft nodes approve)'],
    ['Last seen', node.lastSeen === null ? 'never' : formatTime(node.lastSeen)],
    ['Expiry', expiry(node)],
    ['Ephemeral', yesNo(node.ephemeral)],
    ['OS', node.os || '-'],
    ['Client version', node.clientVersion || '-'],
    ['Registered via', node.registerMethod],
    ['Created', formatTime(node.createdAt)],
    ['Machine key', node.machineKey],
    ['Node key', node.nodeKey],
    ['Disco key', node.discoKey || '-'],
  ];
  const width = Math.max(...fields.map(([key]) => key.length)) + 1;
  return fields.map(([key, value]) => `${`${key}:`.padEnd(width)} ${value}`).join('\n');
}

export function nodesCommand(connect: Connect): Command {
  const nodes = new Command('nodes').alias('node').description('manage nodes (devices in the tailnet)');

  nodes
    .command('list')
    .alias('ls')
    .description('list nodes')
    .option('-u, --user <name>', 'only the nodes of this user')
    .addOption(outputOption())
    .action(async (options, command) => {
      const list = await connect(command).listNodes(options.user === undefined ? {} : { user: options.user });
      if (options.output === 'json') return printJson(list);
      printTable(
        ['ID', 'NAME', 'HOSTNAME', 'USER', 'IPV4', 'IPV6', 'LAST SEEN', 'EXPIRY', 'TAGS'],
        list.map((n) => [
          n.id,
          n.givenName,
          n.hostname,
          owner(n),
          ipv4Of(n),
          ipv6Of(n),
          presence(n),
          expiry(n),
          n.tags.join(','),
        ]),
      );
    });

  nodes
    .command('show')
    .description('show one node')
    .argument('<id>', 'node id (from weft nodes list)', nodeIdArgument)
    .addOption(outputOption())
    .action(async (id, options, command) => {
      const node = await connect(command).getNode(id);
      printResult(options, node, describeNode(node));
    });

  nodes
    .command('delete')
    .alias('destroy')
    .description('delete a node; it is logged out and disappears from its peers')
    .argument('<id>', 'node id (from weft nodes list)', nodeIdArgument)
    .addOption(outputOption())
    .action(async (id, options, command) => {
      const client = connect(command);
      const node = await client.getNode(id);
      await client.deleteNode(id);
      printResult(options, { deleted: node }, `Node ${node.id} (${node.givenName}) deleted`);
    });

  nodes
    .command('expire')
    .alias('logout')
    .description("expire a node's key (now by default); an expired node must log in again")
    .argument('<id>', 'node id (from weft nodes list)', nodeIdArgument)
    .option(
      '--in <duration>',
      'expire this long from now instead (e.g. 30d); extends a key too',
      durationArgument,
    )
    .option('--never', 'disable key expiry for this node')
    .addOption(outputOption())
    .action(async (id, options, command) => {
      if (options.in !== undefined && options.never)
        throw new UsageError('--in and --never exclude each other');
      const expiry = options.never
        ? null
        : options.in === undefined
          ? undefined
          : new Date(Date.now() + options.in);
      const node = await connect(command).expireNode(id, expiry);
      if (options.output === 'json') return printJson(node);
      if (expiry === undefined) printLine(`Node ${node.id} (${node.givenName}) expired`);
      else
        printLine(
          `Node ${node.id} (${node.givenName}) now expires: ${node.expiry === null ? 'never' : formatTime(node.expiry)}`,
        );
    });

  nodes
    .command('tag')
    .description("set a node's tags (server-set tags replace its user as owner)")
    .argument('<id>', 'node id (from weft nodes list)', nodeIdArgument)
    .requiredOption('-t, --tags <tags>', 'comma-separated tags, e.g. tag:server,tag:prod', tagsArgument)
    .addOption(outputOption())
    .action(async (id, options, command) => {
      const node = await connect(command).setNodeTags(id, options.tags);
      printResult(
        options,
        node,
        `Node ${node.id} (${node.givenName}) tagged ${node.tags.join(',') || '(none)'}`,
      );
    });

  nodes
    .command('rename')
    .description("change a node's name in the tailnet (its MagicDNS name)")
    .argument('<id>', 'node id (from weft nodes list)', nodeIdArgument)
    .argument('<new-name>', 'new name: a DNS label (lowercase letters, digits and -)')
    .addOption(outputOption())
    .action(async (id, newName, options, command) => {
      const client = connect(command);
      const before = await client.getNode(id);
      const node = await client.renameNode(id, newName);
      printResult(options, node, `Node ${node.id} renamed from "${before.givenName}" to "${node.givenName}"`);
    });

  nodes
    .command('approve')
    .description('let a node that waits for device approval into the tailnet')
    .argument('<id>', 'node id (from weft nodes list)', nodeIdArgument)
    .addOption(outputOption())
    .action(async (id, options, command) => {
      const node = await connect(command).approveNode(id);
      printResult(options, node, `Node ${node.id} (${node.givenName}) approved`);
    });

  nodes
    .command('register')
    .description('complete an interactive login (same as weft auth register)')
    .requiredOption('-u, --user <name>', 'the user the device will belong to')
    .requiredOption('-k, --key <id>', 'the login id from the URL the device printed', loginIdArgument)
    .addOption(outputOption())
    .action(async (options, command) => {
      await completeLogin(connect(command), options.key, options.user, options);
    });

  return nodes;
}
