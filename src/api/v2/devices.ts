/**
 * Devices: `GET /tailnet/-/devices`, and per device (`{id}` = the numeric id, which is also weft's
 * stable node id) get, delete, authorize, name, tags, key expiry and subnet routes. Every change
 * goes through the tailnet model, so connected clients hear of it at once.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { User } from '../../db/records.ts';
import { isExpired, type TailnetNode } from '../../state/model.ts';
import { advertisedRoutes, type Tailnet } from '../../state/tailnet.ts';
import { WeftError } from '../../types/errors.ts';
import { clientOf, ownerOf } from '../present.ts';
import { parseBody } from './body.ts';
import { addRoute, type V2Context } from './context.ts';
import { checkTagsForPrincipal } from './tags.ts';
import { tailscaleLoginName } from './users.ts';
import {
  authorizedBody,
  type DeviceJson,
  type DeviceRoutesJson,
  keyBody,
  nameBody,
  routesBody,
  tagsBody,
} from './wire.ts';

/** Tailscale's default node key lifetime, used when re-enabling expiry and the config sets none. */
const DEFAULT_KEY_LIFETIME_MS = 180 * 24 * 3_600_000;

export function deviceJson(
  node: TailnetNode,
  owner: User | undefined,
  context: Pick<V2Context, 'baseDomain'> & { now: Date; allFields: boolean },
): DeviceJson {
  const device: DeviceJson = {
    id: String(node.id),
    nodeId: String(node.id),
    name: `${node.givenName}.${context.baseDomain}`,
    hostname: node.hostname,
    addresses: [node.ipv4, node.ipv6].filter((ip): ip is string => ip !== null),
    user: node.userId === null || owner === undefined ? 'tagged-devices' : tailscaleLoginName(owner),
    authorized: node.authorized,
    tags: [...node.tags],
    keyExpiryDisabled: node.expiry === null,
    isEphemeral: node.ephemeral,
    isExternal: false,
    created: node.createdAt.toISOString(),
    expires: node.expiry?.toISOString() ?? '',
    lastSeen: node.online ? context.now.toISOString() : (node.lastSeen?.toISOString() ?? null),
    connectedToControl: node.online && !isExpired(node, context.now),
    machineKey: node.machineKey,
    nodeKey: node.nodeKey,
    ...clientOf(node),
    updateAvailable: false,
    blocksIncomingConnections: (node.hostinfo as Record<string, unknown>).ShieldsUp === true,
    tailnetLockKey: '',
    tailnetLockError: '',
  };
  if (context.allFields) Object.assign(device, routesJson(node));
  return device;
}

/** Advertised = what the client offers; enabled = what is approved (Tailscale's "enabled"). */
function routesJson(node: TailnetNode): DeviceRoutesJson {
  return { advertisedRoutes: advertisedRoutes(node.hostinfo), enabledRoutes: [...node.approvedRoutes] };
}

function nodeById(tailnet: Tailnet, id: string): TailnetNode {
  const node = /^[1-9][0-9]{0,14}$/.test(id) ? tailnet.node(Number(id)) : undefined;
  if (node === undefined)
    throw new WeftError('NODE_NOT_FOUND', `there is no device with id ${id.slice(0, 40)}`);
  return node;
}

function fieldsOf(query: unknown): boolean {
  const fields = (query as { fields?: unknown }).fields;
  if (fields === undefined || fields === 'default') return false;
  if (fields === 'all') return true;
  throw new WeftError('BAD_REQUEST', 'invalid request query.fields: expected "all" or "default"');
}

/**
 * Terraform's `tailscale_devices` filters pass any device field name with exact values; a device
 * matches when, for every filter, the field (or one element of a list field) equals one of the values.
 */
function matchesFilters(device: DeviceJson, filters: Map<string, string[]>): boolean {
  for (const [field, wanted] of filters) {
    const value = (device as unknown as Record<string, unknown>)[field];
    const values = Array.isArray(value) ? value.map(String) : [String(value)];
    if (!values.some((v) => wanted.includes(v))) return false;
  }
  return true;
}

function filtersOf(query: unknown, sample: DeviceJson): Map<string, string[]> {
  const filters = new Map<string, string[]>();
  for (const [field, raw] of Object.entries(query as Record<string, unknown>)) {
    if (field === 'fields') continue;
    if (!Object.hasOwn(sample, field)) {
      throw new WeftError(
        'BAD_REQUEST',
        `invalid request query.${field.slice(0, 40)}: devices have no such field to filter on`,
      );
    }
    filters.set(field, (Array.isArray(raw) ? raw : [raw]).map(String));
  }
  return filters;
}

/** A device's field names, to check filters against even when the tailnet has no devices. */
const SAMPLE_DEVICE: DeviceJson = {
  id: '',
  nodeId: '',
  name: '',
  hostname: '',
  addresses: [],
  user: '',
  authorized: true,
  tags: [],
  keyExpiryDisabled: false,
  isEphemeral: false,
  isExternal: false,
  created: '',
  expires: '',
  lastSeen: null,
  connectedToControl: false,
  machineKey: '',
  nodeKey: '',
  os: '',
  clientVersion: '',
  updateAvailable: false,
  blocksIncomingConnections: false,
  tailnetLockKey: '',
  tailnetLockError: '',
  advertisedRoutes: [],
  enabledRoutes: [],
};

export function registerDeviceRoutes(api: FastifyInstance, context: V2Context): void {
  const { tailnet, store } = context;
  const present = async (node: TailnetNode, allFields: boolean) =>
    deviceJson(node, await ownerOf(tailnet, store, node), {
      baseDomain: context.baseDomain,
      now: context.now(),
      allFields,
    });
  const idOf = (request: FastifyRequest) => (request.params as { id: string }).id;

  addRoute(api, context, {
    method: 'GET',
    url: '/tailnet/:tailnet/devices',
    scope: 'devices:core:read',
    handler: async (request) => {
      const allFields = fieldsOf(request.query);
      const filters = filtersOf(request.query, SAMPLE_DEVICE);
      const nodes = [...tailnet.nodes()].sort((a, b) => a.id - b.id);
      const devices = await Promise.all(nodes.map((node) => present(node, allFields || filters.size > 0)));
      const matching = devices.filter((device) => matchesFilters(device, filters));
      if (!allFields) for (const device of matching) stripRoutes(device);
      return { devices: matching };
    },
  });

  addRoute(api, context, {
    method: 'GET',
    url: '/device/:id',
    scope: 'devices:core:read',
    handler: async (request) => present(nodeById(tailnet, idOf(request)), fieldsOf(request.query)),
  });

  addRoute(api, context, {
    method: 'DELETE',
    url: '/device/:id',
    scope: 'devices:core',
    handler: async (request) => {
      await tailnet.deleteNode(nodeById(tailnet, idOf(request)).id);
      return {};
    },
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/device/:id/authorized',
    scope: 'devices:core',
    handler: async (request) => {
      const node = nodeById(tailnet, idOf(request));
      // Device approval: an unauthorized device stays registered but sees no one until approved.
      const { authorized } = parseBody(request, authorizedBody);
      await tailnet.setAuthorized(node.id, authorized);
      return {};
    },
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/device/:id/name',
    scope: 'devices:core',
    handler: async (request) => {
      const node = nodeById(tailnet, idOf(request));
      const { name } = parseBody(request, nameBody);
      // Tailscale takes the label or the whole MagicDNS name.
      const suffix = `.${context.baseDomain}`;
      const label = name.endsWith(suffix) ? name.slice(0, -suffix.length) : name.replace(/\.$/, '');
      await tailnet.rename(node.id, label);
      return {};
    },
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/device/:id/tags',
    scope: 'devices:core',
    handler: async (request) => {
      const node = nodeById(tailnet, idOf(request));
      const { tags } = parseBody(request, tagsBody);
      checkTagsForPrincipal(context.principalOf(request), context.policy?.current.policy, tags);
      await tailnet.setTags(node.id, tags);
      return {};
    },
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/device/:id/key',
    scope: 'devices:core',
    handler: async (request) => {
      const node = nodeById(tailnet, idOf(request));
      const { keyExpiryDisabled } = parseBody(request, keyBody);
      if (keyExpiryDisabled) {
        if (node.expiry !== null) await tailnet.setExpiry(node.id, null);
      } else if (node.expiry === null) {
        const lifetime =
          context.nodeKeyExpiryMs && context.nodeKeyExpiryMs > 0
            ? context.nodeKeyExpiryMs
            : DEFAULT_KEY_LIFETIME_MS;
        await tailnet.setExpiry(node.id, new Date(context.now().getTime() + lifetime));
      }
      return {};
    },
  });

  addRoute(api, context, {
    method: 'GET',
    url: '/device/:id/routes',
    scope: 'devices:routes:read',
    handler: async (request) => routesJson(nodeById(tailnet, idOf(request))),
  });

  addRoute(api, context, {
    method: 'POST',
    url: '/device/:id/routes',
    scope: 'devices:routes',
    handler: async (request) => {
      const node = nodeById(tailnet, idOf(request));
      const { routes } = parseBody(request, routesBody);
      return routesJson(await tailnet.setApprovedRoutes(node.id, routes));
    },
  });
}

function stripRoutes(device: DeviceJson): void {
  delete device.advertisedRoutes;
  delete device.enabledRoutes;
}
