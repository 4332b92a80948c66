/**
 * `weft routes list | approve NODE-ID CIDR... | unapprove NODE-ID CIDR...`.
 *
 * Routes a client advertises (`--advertise-routes`, `--advertise-exit-node`) wait for approval; an
 * approved route is served (subnets by their HA primary). approve/unapprove edit the node's approved
 * list through the API's "set the whole list" call; the server checks each route (canonical CIDR, and
 * advertised by that node) and says which one is wrong. One exit route stands for both families.
 */
import { Command } from '@commander-js/extra-typings';
import type { NodeJson } from '../../api/wire.ts';
import { EXIT_ROUTES, isExitRoute } from '../../policy/index.ts';
import { nodeIdArgument } from '../arguments.ts';
import type { Connect } from '../connect.ts';
import { CommandError } from '../errors.ts';
import { outputOption, printJson, printResult, printTable } from '../output.ts';

/** A route and its exit-family twin, so that approving or removing one exit route covers both. */
function withExitTwin(routes: readonly string[]): string[] {
  const out = new Set(routes);
  if (routes.some(isExitRoute)) for (const r of EXIT_ROUTES) out.add(r);
  return [...out];
}

function list(routes: readonly string[]): string {
  return routes.length === 0 ? '-' : routes.join(', ');
}

function summary(node: NodeJson): string {
  return `Node ${node.id} (${node.givenName}): approved ${list(node.approvedRoutes)}; serving ${list(node.subnetRoutes)}`;
}

export function routesCommand(connect: Connect): Command {
  const routes = new Command('routes')
    .alias('route')
    .description('list and approve the routes nodes advertise');

  routes
    .command('list')
    .alias('ls')
    .description('nodes that advertise or have approved routes')
    .addOption(outputOption())
    .action(async (options, command) => {
      const nodes = (await connect(command).listNodes()).filter(
        (n) => n.availableRoutes.length > 0 || n.approvedRoutes.length > 0,
      );
      if (options.output === 'json') {
        return printJson(
          nodes.map((n) => ({
            id: n.id,
            name: n.givenName,
            availableRoutes: n.availableRoutes,
            approvedRoutes: n.approvedRoutes,
            subnetRoutes: n.subnetRoutes,
          })),
        );
      }
      printTable(
        ['ID', 'NAME', 'ADVERTISED', 'APPROVED', 'SERVING'],
        nodes.map((n) => [
          n.id,
          n.givenName,
          list(n.availableRoutes),
          list(n.approvedRoutes),
          list(n.subnetRoutes),
        ]),
      );
    });

  routes
    .command('approve')
    .description('approve routes a node advertises (0.0.0.0/0 or ::/0 makes it an exit node)')
    .argument('<node-id>', 'node id (from weft nodes list)', nodeIdArgument)
    .argument('<cidr...>', 'routes to approve, e.g. 10.0.0.0/24')
    .addOption(outputOption())
    .action(async (id, cidrs, options, command) => {
      const client = connect(command);
      const node = await client.getNode(id);
      const updated = await client.approveRoutes(id, [...new Set([...node.approvedRoutes, ...cidrs])]);
      printResult(options, updated, summary(updated));
    });

  routes
    .command('unapprove')
    .description('withdraw the approval of routes (the node keeps advertising them)')
    .argument('<node-id>', 'node id (from weft nodes list)', nodeIdArgument)
    .argument('<cidr...>', 'approved routes to withdraw')
    .addOption(outputOption())
    .action(async (id, cidrs, options, command) => {
      const client = connect(command);
      const node = await client.getNode(id);
      const missing = cidrs.filter((r) => !node.approvedRoutes.includes(r));
      if (missing.length > 0)
        throw new CommandError(
          `node ${id} has no approved route ${missing.join(', ')}; approved: ${list(node.approvedRoutes)}`,
        );
      const drop = withExitTwin(cidrs);
      const updated = await client.approveRoutes(
        id,
        node.approvedRoutes.filter((r) => !drop.includes(r)),
      );
      printResult(options, updated, summary(updated));
    });

  return routes;
}
