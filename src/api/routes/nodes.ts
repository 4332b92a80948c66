/**
 * `/api/v1/node`: list, show, delete, expire, rename and tag nodes, and approve their routes. Every
 * change goes through the tailnet model, which writes it to the database and tells connected clients
 * at once.
 */
import type { FastifyInstance } from 'fastify';
import type { TailnetNode } from '../../state/model.ts';
import { WeftError } from '../../types/errors.ts';
import type { RouteContext } from '../app.ts';
import { pageJson, paginate, withPaging } from '../paging.ts';
import { nodeJson, ownerOf } from '../present.ts';
import { parseInput } from '../problems.ts';
import {
  approveRoutesBody,
  expireNodeBody,
  idParams,
  type NodeJson,
  nodeFilterQuery,
  renameNodeParams,
  setTagsBody,
} from '../wire.ts';

export function registerNodeRoutes(
  api: FastifyInstance,
  { store, tailnet, now, baseDomain }: RouteContext,
): void {
  const present = async (node: TailnetNode): Promise<NodeJson> =>
    nodeJson(node, await ownerOf(tailnet, store, node), baseDomain, now(), tailnet.primaryRoutesOf(node.id));
  const nodeById = (id: number): TailnetNode => {
    const node = tailnet.node(id);
    if (node === undefined) throw new WeftError('NODE_NOT_FOUND', `there is no node with id ${id}`);
    return node;
  };

  api.get('/node', async (request) => {
    const { user, ...paging } = parseInput(withPaging(nodeFilterQuery), request.query, 'query');
    const owner = user === undefined ? undefined : await store.users.getByName(user);
    const nodes = [...tailnet.nodes()]
      .filter((node) => owner === undefined || node.userId === owner.id)
      .sort((a, b) => a.id - b.id);
    const page = paginate(nodes, paging);
    return pageJson('nodes', { ...page, items: await Promise.all(page.items.map(present)) });
  });

  api.get('/node/:id', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    return { node: await present(nodeById(id)) };
  });

  api.delete('/node/:id', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    await tailnet.deleteNode(id);
    return {};
  });

  api.post('/node/:id/expire', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    const body = parseInput(expireNodeBody, request.body, 'body');
    await tailnet.setExpiry(id, body === undefined ? now() : body.expiry);
    return { node: await present(nodeById(id)) };
  });

  // Headscale's path and body: the whole list of approved routes.
  api.post('/node/:id/approve_routes', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    const { routes } = parseInput(approveRoutesBody, request.body, 'body');
    return { node: await present(await tailnet.setApprovedRoutes(id, routes)) };
  });

  // Device approval: the node joins the tailnet and every connected client hears of it.
  api.post('/node/:id/approve', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    return { node: await present(await tailnet.setAuthorized(id, true)) };
  });

  api.post('/node/:id/tags', async (request) => {
    const { id } = parseInput(idParams, request.params, 'path');
    const { tags } = parseInput(setTagsBody, request.body, 'body');
    return { node: await present(await tailnet.setTags(id, tags)) };
  });

  api.post('/node/:id/rename/:newName', async (request) => {
    const { id, newName } = parseInput(renameNodeParams, request.params, 'path');
    return { node: await present(await tailnet.rename(id, newName)) };
  });
}
