/** Nodes: registered Tailscale devices with their keys, addresses and last reported state. */
import type { Kysely, Selectable, Updateable } from 'kysely';
import { WeftError } from '../../types/errors.ts';
import type { DiscoPublic, MachinePublic, NodePublic } from '../../types/keys.ts';
import { fromJson, type Node, type RegisterMethod, toBool, toDate, toDateOrNull } from '../records.ts';
import type { Database, NodesTable } from '../schema.ts';

/** What registration knows about a node; the rest starts empty (no tags, routes, expiry, ...). */
export type NewNode = Pick<
  Node,
  | 'machineKey'
  | 'nodeKey'
  | 'discoKey'
  | 'ipv4'
  | 'ipv6'
  | 'hostname'
  | 'givenName'
  | 'userId'
  | 'registerMethod'
> &
  Partial<
    Pick<
      Node,
      | 'tags'
      | 'authKeyId'
      | 'ephemeral'
      | 'expiry'
      | 'lastSeen'
      | 'endpoints'
      | 'hostinfo'
      | 'approvedRoutes'
      | 'authorized'
    >
  >;

/** Fields that change after registration. */
export type NodeUpdate = Partial<
  Pick<
    Node,
    | 'nodeKey'
    | 'discoKey'
    | 'hostname'
    | 'givenName'
    | 'userId'
    | 'tags'
    | 'expiry'
    | 'lastSeen'
    | 'endpoints'
    | 'hostinfo'
    | 'approvedRoutes'
    | 'authKeyId'
    | 'ephemeral'
    | 'registerMethod'
    | 'authorized'
  >
>;

function toNode(row: Selectable<NodesTable>): Node {
  return {
    id: row.id,
    machineKey: row.machine_key as MachinePublic,
    nodeKey: row.node_key as NodePublic,
    discoKey: row.disco_key as DiscoPublic,
    ipv4: row.ipv4,
    ipv6: row.ipv6,
    hostname: row.hostname,
    givenName: row.given_name,
    userId: row.user_id,
    tags: fromJson<string[]>(row.tags),
    registerMethod: row.register_method as RegisterMethod,
    authKeyId: row.auth_key_id,
    ephemeral: toBool(row.ephemeral),
    expiry: toDateOrNull(row.expiry),
    lastSeen: toDateOrNull(row.last_seen),
    endpoints: fromJson<string[]>(row.endpoints),
    hostinfo: fromJson<Record<string, unknown>>(row.hostinfo),
    approvedRoutes: fromJson<string[]>(row.approved_routes),
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
    authorized: toBool(row.authorized),
  };
}

function toRow(update: NodeUpdate): Updateable<NodesTable> {
  const row: Updateable<NodesTable> = {};
  if (update.nodeKey !== undefined) row.node_key = update.nodeKey;
  if (update.discoKey !== undefined) row.disco_key = update.discoKey;
  if (update.hostname !== undefined) row.hostname = update.hostname;
  if (update.givenName !== undefined) row.given_name = update.givenName;
  if (update.userId !== undefined) row.user_id = update.userId;
  if (update.tags !== undefined) row.tags = JSON.stringify(update.tags);
  if (update.expiry !== undefined) row.expiry = update.expiry;
  if (update.lastSeen !== undefined) row.last_seen = update.lastSeen;
  if (update.endpoints !== undefined) row.endpoints = JSON.stringify(update.endpoints);
  if (update.hostinfo !== undefined) row.hostinfo = JSON.stringify(update.hostinfo);
  if (update.approvedRoutes !== undefined) row.approved_routes = JSON.stringify(update.approvedRoutes);
  if (update.authKeyId !== undefined) row.auth_key_id = update.authKeyId;
  if (update.ephemeral !== undefined) row.ephemeral = update.ephemeral;
  if (update.registerMethod !== undefined) row.register_method = update.registerMethod;
  if (update.authorized !== undefined) row.authorized = update.authorized;
  return row;
}

export class NodeRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(node: NewNode, now = new Date()): Promise<Node> {
    const row = await this.#db
      .insertInto('nodes')
      .values({
        machine_key: node.machineKey,
        node_key: node.nodeKey,
        disco_key: node.discoKey,
        ipv4: node.ipv4,
        ipv6: node.ipv6,
        hostname: node.hostname,
        given_name: node.givenName,
        user_id: node.userId,
        tags: JSON.stringify(node.tags ?? []),
        register_method: node.registerMethod,
        auth_key_id: node.authKeyId ?? null,
        ephemeral: node.ephemeral ?? false,
        expiry: node.expiry ?? null,
        last_seen: node.lastSeen ?? null,
        endpoints: JSON.stringify(node.endpoints ?? []),
        hostinfo: JSON.stringify(node.hostinfo ?? {}),
        approved_routes: JSON.stringify(node.approvedRoutes ?? []),
        authorized: node.authorized ?? true,
        created_at: now,
        updated_at: now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toNode(row);
  }

  async findById(id: number): Promise<Node | undefined> {
    const row = await this.#db.selectFrom('nodes').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toNode(row);
  }

  async getById(id: number): Promise<Node> {
    const node = await this.findById(id);
    if (!node) throw new WeftError('NODE_NOT_FOUND', `there is no node with id ${id}`);
    return node;
  }

  async findByNodeKey(nodeKey: NodePublic): Promise<Node | undefined> {
    const row = await this.#db
      .selectFrom('nodes')
      .selectAll()
      .where('node_key', '=', nodeKey)
      .executeTakeFirst();
    return row && toNode(row);
  }

  async listByMachineKey(machineKey: MachinePublic): Promise<Node[]> {
    const rows = await this.#db
      .selectFrom('nodes')
      .selectAll()
      .where('machine_key', '=', machineKey)
      .orderBy('id')
      .execute();
    return rows.map(toNode);
  }

  async list(filter: { userId?: number } = {}): Promise<Node[]> {
    let query = this.#db.selectFrom('nodes').selectAll().orderBy('id');
    if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
    return (await query.execute()).map(toNode);
  }

  async update(id: number, update: NodeUpdate, now = new Date()): Promise<Node> {
    const row = await this.#db
      .updateTable('nodes')
      .set({ ...toRow(update), updated_at: now })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new WeftError('NODE_NOT_FOUND', `there is no node with id ${id}`);
    return toNode(row);
  }

  async delete(id: number): Promise<void> {
    const result = await this.#db.deleteFrom('nodes').where('id', '=', id).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0)
      throw new WeftError('NODE_NOT_FOUND', `there is no node with id ${id}`);
  }
}
