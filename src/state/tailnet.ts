/**
 * The tailnet: the authoritative in-memory model of users and nodes, loaded from the database at start
 * and written through to it. Everything that reads the tailnet on a hot path (map building, peer
 * fan-out) reads this model, never the database.
 *
 * Writes that decide something (registration: which address, which name, is the key still unused) run
 * one at a time through a serial queue and are awaited in the database. Frequent, low-value writes
 * from map requests (endpoints, hostinfo, disco key, last seen) are applied in memory at once and
 * written behind in batches, so a churning tailnet does not turn into a database write storm.
 */
import type { Node, PreAuthKey, User } from '../db/records.ts';
import type { NodeUpdate } from '../db/repos/nodes.ts';
import type { Repositories, Store } from '../db/store.ts';
import {
  AddressAllocator,
  isAutoDerivedGivenName,
  labelProblem,
  sanitizeHostname,
  uniqueGivenName,
} from '../netaddr/index.ts';
import type { Logger } from '../observe/logger.ts';
import { EXIT_ROUTES, isExitRoute } from '../policy/index.ts';
import type { Hostinfo } from '../tailcfg/index.ts';
import { WeftError } from '../types/errors.ts';
import type { DiscoPublic, MachinePublic, NodePublic } from '../types/keys.ts';
import { formatPrefix, parsePrefix } from '../util/ip.ts';
import { SerialQueue } from '../util/serial.ts';
import {
  type ChangeListener,
  isExpired,
  type NodeChange,
  type PeerPatch,
  type TailnetNode,
} from './model.ts';

export interface TailnetOptions {
  store: Store;
  log: Logger;
  prefixes: { v4: string; v6: string; allocation: 'sequential' | 'random' };
  /** An ephemeral node is deleted after being offline this long. */
  ephemeralInactivityMs: number;
  /** How long a node key is valid after (re-)registration; 0 or absent = never expires. */
  keyExpiryMs?: number;
  /** New nodes wait for an admin's approval (setAuthorized) unless their pre-auth key is preauthorized. */
  deviceApproval?: boolean;
  /** A node whose last stream ended is reported offline only after this grace period (a reconnect cancels it). */
  offlineGraceMs?: number;
  /** How long map-request updates wait before they are written to the database together. */
  writeBehindMs?: number;
  now?: () => Date;
}

export type AuthKeyRejection = 'invalid' | 'expired' | 'used';

/**
 * What the policy decides about a node as it registers or advertises routes (docs/policy.md §7): which
 * tags it may carry and which of its routes autoApprovers approve. Without one, every well-formed tag is
 * accepted and nothing is approved automatically (a bare tailnet, as in unit tests).
 */
export interface TailnetPolicy {
  /**
   * The tags a node registering with this key gets, or the tags it may not have. `keyTags` were set by
   * an admin on the pre-auth key; `requested` come from the client (`--advertise-tags`).
   */
  tagsFor(
    owner: { userId: number | null; keyTags: readonly string[] },
    requested: readonly string[],
  ): { tags: string[] } | { denied: string[] };
  /** The node's advertised routes that autoApprovers approve (exit routes included). */
  autoApprovedRoutes(node: {
    id: number;
    userId: number | null;
    tags: readonly string[];
    ipv4: string | null;
    ipv6: string | null;
    advertisedRoutes: readonly string[];
  }): string[];
}

/** The routes a client advertises (`--advertise-routes`, `--advertise-exit-node`). */
export function advertisedRoutes(hostinfo: Hostinfo): string[] {
  const routable = hostinfo.RoutableIPs;
  return Array.isArray(routable) ? routable.filter((r): r is string => typeof r === 'string') : [];
}

/** `routes` checked and completed for approval on `node`; throws a WeftError naming the bad one. */
function approvableRoutes(node: TailnetNode, routes: readonly string[]): string[] {
  const advertised = advertisedRoutes(node.hostinfo);
  const approved = new Set<string>();
  for (const route of routes) {
    const prefix = parsePrefix(route);
    if (prefix === undefined)
      throw new WeftError(
        'BAD_REQUEST',
        `"${route}" is not a route: expected a CIDR prefix such as 10.0.0.0/24`,
      );
    const canonical = formatPrefix(prefix);
    if (canonical !== route)
      throw new WeftError('BAD_REQUEST', `"${route}" has host bits set; the route is ${canonical}`);
    // Approvals outlive a withdrawn advertisement, so only new approvals must be advertised now.
    if (!advertised.includes(route) && !node.approvedRoutes.includes(route)) {
      const offered =
        advertised.length === 0 ? 'it advertises no routes' : `it advertises ${advertised.join(', ')}`;
      throw new WeftError('ROUTE_NOT_ADVERTISED', `node ${node.id} does not advertise ${route}; ${offered}`);
    }
    approved.add(route);
    if (isExitRoute(route)) for (const exit of EXIT_ROUTES) approved.add(exit);
  }
  return [...approved].sort();
}

/** Tailscale's own words (Go's %v of a string slice) for tags a node may not have; admins search for them. */
export function deniedTagsMessage(denied: readonly string[]): string {
  return `requested tags [${denied.join(' ')}] are invalid or not permitted`;
}

/** Whose node a pre-auth key makes: its user's, or (a tagged key) the machine's tagged node. */
function keyOwner(key: PreAuthKey): { userId: number | null; tagged: boolean } {
  return { userId: key.userId, tagged: key.tags.length > 0 };
}

function requestedTags(hostinfo: Hostinfo): string[] {
  const tags = hostinfo.RequestTags;
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
}

/** What every registration knows of the device: its keys and what it reported. */
interface DeviceRegistration {
  machineKey: MachinePublic;
  nodeKey: NodePublic;
  hostinfo: Hostinfo;
  /** The client asked for an ephemeral node (tailscaled --state=mem:). */
  ephemeral: boolean;
}

export interface AuthKeyRegistration extends DeviceRegistration {
  authKey: string;
}

/** An interactive login finished by an admin (`weft nodes register`) or through OIDC. */
export interface UserRegistration extends DeviceRegistration {
  userId: number;
  method: 'cli' | 'oidc';
  /** The key's expiry: absent = the configured lifetime, null = never. */
  expiry?: Date | null;
}

export type Registration =
  | { ok: true; node: TailnetNode; created: boolean }
  | { ok: false; reason: AuthKeyRejection }
  /** The key's tags or the client's requested tags are not defined, or not the owner's to apply. */
  | { ok: false; reason: 'tags'; denied: string[] };

/** Who owns a node and how it was authorised: what a pre-auth key or a login decides. */
type Ownership = Pick<
  TailnetNode,
  'userId' | 'tags' | 'ephemeral' | 'authKeyId' | 'expiry' | 'registerMethod' | 'authorized'
>;

/** What a map request may update; absent fields are unchanged. */
export interface MapUpdate {
  discoKey?: DiscoPublic;
  endpoints?: string[];
  hostinfo?: Hostinfo;
  capVersion: number;
}

const DEFAULT_OFFLINE_GRACE_MS = 10_000;
const DEFAULT_WRITE_BEHIND_MS = 1_000;
/** setTimeout's limit; expiry timers further out are re-armed when they fire. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

/** Hostinfo as peers see it: NetInfo (latencies, home DERP) changes constantly and peers don't need it. */
export function hostinfoForPeers(hostinfo: Hostinfo): Hostinfo {
  if (!('NetInfo' in hostinfo)) return hostinfo;
  const { NetInfo: _netInfo, ...rest } = hostinfo;
  return rest;
}

export class Tailnet {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly #offlineGraceMs: number;
  readonly #ephemeralInactivityMs: number;
  readonly #writeBehindMs: number;
  readonly #keyExpiryMs: number;
  readonly #deviceApproval: boolean;
  readonly #allocator: AddressAllocator;
  readonly #nodes = new Map<number, TailnetNode>();
  readonly #byNodeKey = new Map<NodePublic, TailnetNode>();
  readonly #givenNames = new Set<string>();
  readonly #users = new Map<number, User>();
  readonly #listeners = new Set<ChangeListener>();
  readonly #serial = new SerialQueue();
  readonly #dirty = new Map<number, NodeUpdate>();
  readonly #offlineTimers = new Map<number, NodeJS.Timeout>();
  readonly #ephemeralTimers = new Map<number, NodeJS.Timeout>();
  #flushTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #expiryCheckedAt: Date;
  #closed = false;
  #policy: TailnetPolicy | undefined;
  /** The HA primary router of each subnet route (route → node id); see #elect. */
  readonly #primaries = new Map<string, number>();

  private constructor(options: TailnetOptions, nodes: Node[], users: User[]) {
    this.#store = options.store;
    this.#log = options.log;
    this.#now = options.now ?? (() => new Date());
    this.#offlineGraceMs = options.offlineGraceMs ?? DEFAULT_OFFLINE_GRACE_MS;
    this.#ephemeralInactivityMs = options.ephemeralInactivityMs;
    this.#writeBehindMs = options.writeBehindMs ?? DEFAULT_WRITE_BEHIND_MS;
    this.#keyExpiryMs = options.keyExpiryMs ?? 0;
    this.#deviceApproval = options.deviceApproval ?? false;
    const used = nodes.flatMap((n) => [n.ipv4, n.ipv6]).filter((ip): ip is string => ip !== null);
    this.#allocator = new AddressAllocator(options.prefixes, used);
    for (const user of users) this.#users.set(user.id, user);
    for (const record of nodes) this.#index(toTailnetNode(record));
    this.#expiryCheckedAt = this.#now();
    // Nodes are offline until they connect; ephemeral ones must still go away if they never come back.
    for (const node of this.#nodes.values()) if (node.ephemeral) this.#scheduleEphemeralRemoval(node);
    this.#armExpiryTimer();
  }

  static async load(options: TailnetOptions): Promise<Tailnet> {
    const [nodes, users] = await Promise.all([options.store.nodes.list(), options.store.users.list()]);
    return new Tailnet(options, nodes, users);
  }

  /** A new node key's expiry: the configured lifetime from now; never for tagged nodes (as Tailscale). */
  #keyExpiry(tags: readonly string[], now: Date): Date | null {
    if (tags.length > 0 || this.#keyExpiryMs <= 0) return null;
    return new Date(now.getTime() + this.#keyExpiryMs);
  }

  /** The primary router of every subnet route that some online node serves (route → node id). */
  primaries(): ReadonlyMap<string, number> {
    return this.#primaries;
  }

  /** The subnet routes this node is the primary router for. */
  primaryRoutesOf(id: number): string[] {
    const routes: string[] = [];
    for (const [route, primary] of this.#primaries) if (primary === id) routes.push(route);
    return routes.sort();
  }

  /** From now on, registrations and advertised routes follow this policy. */
  usePolicy(policy: TailnetPolicy): void {
    this.#policy = policy;
  }

  // ---- reading ----

  get size(): number {
    return this.#nodes.size;
  }

  nodes(): IterableIterator<TailnetNode> {
    return this.#nodes.values();
  }

  node(id: number): TailnetNode | undefined {
    return this.#nodes.get(id);
  }

  nodeByKey(nodeKey: NodePublic): TailnetNode | undefined {
    return this.#byNodeKey.get(nodeKey);
  }

  user(id: number): User | undefined {
    return this.#users.get(id);
  }

  /** Users the model knows: every owner of a node, loaded at start or at registration. */
  users(): IterableIterator<User> {
    return this.#users.values();
  }

  now(): Date {
    return this.#now();
  }

  /** Subscribes to every change; returns the unsubscribe function. Listeners run synchronously. */
  subscribe(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Re-reads a user after the API changed it (name, display name), and tells peers of its nodes. */
  async refreshUser(id: number): Promise<void> {
    const user = await this.#store.users.findById(id);
    if (user === undefined) {
      this.#users.delete(id);
      return;
    }
    this.#users.set(id, user);
    for (const node of this.#nodes.values()) if (node.userId === id) this.#changed(node, { self: true });
  }

  // ---- registration ----

  /**
   * Registers `nodeKey` with a pre-auth key. A machine that already has a node owned by the key's
   * owner (the same user, or tags for a tagged key) keeps that node — same id, addresses and name —
   * and only gets the new node key; otherwise a new node is created. Running `tailscale up` again with
   * the same single-use key on the same machine is a re-registration, not a second use.
   */
  registerWithAuthKey(request: AuthKeyRegistration): Promise<Registration> {
    return this.#serial.run(async () => {
      const now = this.#now();
      const check = await this.#store.preAuthKeys.check(request.authKey, now);
      let key: PreAuthKey;
      if (check.ok) key = check.key;
      else if (
        check.reason === 'used' &&
        this.#identityNode(request.machineKey, keyOwner(check.key))?.authKeyId === check.key.id
      )
        key = check.key;
      else return { ok: false, reason: check.reason };

      const existing = this.#sameKeyNode(request) ?? this.#identityNode(request.machineKey, keyOwner(key));
      const reRun = existing?.authKeyId === key.id;
      if (key.userId !== null) await this.#loadUser(key.userId);
      const decided = this.#policy?.tagsFor(
        { userId: key.userId, keyTags: key.tags },
        requestedTags(request.hostinfo),
      ) ?? { tags: key.tags };
      if ('denied' in decided) return { ok: false, reason: 'tags', denied: decided.denied };
      const ownership: Ownership = {
        userId: decided.tags.length > 0 ? null : key.userId,
        tags: decided.tags,
        ephemeral: key.ephemeral || request.ephemeral,
        authKeyId: key.id,
        expiry: this.#keyExpiry(decided.tags, now),
        registerMethod: 'authkey',
        authorized: this.#authorized(existing) || key.preauthorized,
      };
      // Using up the key and writing the node are one transaction: a failed write leaves the key usable.
      const useKey = async (repos: Repositories) => reRun || (await repos.preAuthKeys.consume(key.id));
      const result = await this.#register(request, ownership, existing, now, useKey);
      return result === undefined ? { ok: false, reason: 'used' } : { ok: true, ...result };
    });
  }

  /**
   * Registers `nodeKey` for a user who finished an interactive login. The same rules as for pre-auth
   * keys: a machine that already has a node of this owner keeps it (same id, addresses and name) with
   * the new key and a new expiry; tags the client requests (`--advertise-tags`) must be the user's to
   * apply under tagOwners, and make the node a tagged one. Throws USER_NOT_FOUND, or BAD_REQUEST with
   * Tailscale's words for tags the user may not apply.
   */
  registerForUser(request: UserRegistration): Promise<{ node: TailnetNode; created: boolean }> {
    return this.#serial.run(async () => {
      const now = this.#now();
      const user = await this.#store.users.findById(request.userId);
      if (user === undefined)
        throw new WeftError('USER_NOT_FOUND', `there is no user with id ${request.userId}`);
      this.#users.set(user.id, user);
      const decided = this.#policy?.tagsFor(
        { userId: user.id, keyTags: [] },
        requestedTags(request.hostinfo),
      ) ?? { tags: [] };
      if ('denied' in decided) throw new WeftError('BAD_REQUEST', deniedTagsMessage(decided.denied));
      const tagged = decided.tags.length > 0;
      const existing =
        this.#sameKeyNode(request) ?? this.#identityNode(request.machineKey, { userId: user.id, tagged });
      const ownership: Ownership = {
        userId: tagged ? null : user.id,
        tags: decided.tags,
        ephemeral: request.ephemeral,
        authKeyId: null,
        expiry: request.expiry === undefined ? this.#keyExpiry(decided.tags, now) : request.expiry,
        registerMethod: request.method,
        authorized: this.#authorized(existing),
      };
      const result = await this.#register(request, ownership, existing, now, async () => true);
      // Only a pre-auth key can be used up meanwhile; a login has nothing that could refuse the write.
      if (result === undefined) throw new Error('registration was refused without a reason');
      return result;
    });
  }

  /**
   * Whether a registering node is let in: a node that logs in again keeps its approval (or its lack
   * of one); a new node is in unless device approval is on.
   */
  #authorized(existing: TailnetNode | undefined): boolean {
    return existing?.authorized ?? !this.#deviceApproval;
  }

  /** Re-authenticates `existing` or creates a node; undefined when `authorise` refused the write. */
  async #register(
    request: DeviceRegistration,
    ownership: Ownership,
    existing: TailnetNode | undefined,
    now: Date,
    authorise: (repos: Repositories) => Promise<boolean>,
  ): Promise<{ node: TailnetNode; created: boolean } | undefined> {
    if (existing !== undefined) {
      const node = await this.#reauthenticate(existing, request, ownership, authorise);
      return node === undefined ? undefined : { node, created: false };
    }
    const node = await this.#create(request, ownership, now, authorise);
    return node === undefined ? undefined : { node, created: true };
  }

  /** The node already registered with this node key; throws when another machine holds the key. */
  #sameKeyNode(request: DeviceRegistration): TailnetNode | undefined {
    const clash = this.#byNodeKey.get(request.nodeKey);
    if (clash !== undefined && clash.machineKey !== request.machineKey) {
      throw new WeftError('BAD_REQUEST', 'this node key is registered to a different machine');
    }
    return clash;
  }

  /**
   * The node this machine already has for the owner, if any (Headscale's identity rule: machine +
   * user; a tagged owner matches the machine's tagged node).
   */
  #identityNode(
    machineKey: MachinePublic,
    owner: { userId: number | null; tagged: boolean },
  ): TailnetNode | undefined {
    for (const node of this.#nodes.values()) {
      if (node.machineKey !== machineKey) continue;
      if (owner.tagged ? node.userId === null : node.userId === owner.userId) return node;
    }
    return undefined;
  }

  async #loadUser(id: number): Promise<void> {
    const user = await this.#store.users.findById(id);
    if (user !== undefined) this.#users.set(id, user);
  }

  /** Creates the node (addresses and name reserved first, released again if the write fails). */
  async #create(
    request: DeviceRegistration,
    ownership: Ownership,
    now: Date,
    useKey: (repos: Repositories) => Promise<boolean>,
  ): Promise<TailnetNode | undefined> {
    const hostname = hostnameOf(request.hostinfo);
    const givenName = uniqueGivenName(sanitizeHostname(hostname), (name) => this.#givenNames.has(name));
    const { ipv4, ipv6 } = this.#allocator.next();
    const approvedRoutes = this.#autoApproved(
      { id: 0, userId: ownership.userId, tags: ownership.tags, ipv4, ipv6 },
      request.hostinfo,
      [],
    );
    let record: Node | undefined;
    try {
      record = await this.#store.transaction(async (repos) => {
        if (!(await useKey(repos))) return undefined;
        return repos.nodes.create(
          {
            machineKey: request.machineKey,
            nodeKey: request.nodeKey,
            discoKey: '' as DiscoPublic,
            ipv4,
            ipv6,
            hostname,
            givenName,
            hostinfo: request.hostinfo,
            approvedRoutes,
            ...ownership,
          },
          now,
        );
      });
    } finally {
      if (record === undefined) for (const ip of [ipv4, ipv6]) if (ip !== null) this.#allocator.release(ip);
    }
    if (record === undefined) return undefined;
    const node = toTailnetNode(record);
    this.#index(node);
    if (node.ephemeral) this.#scheduleEphemeralRemoval(node);
    this.#emit({ kind: 'added', node });
    return node;
  }

  /** The same machine logs in again: new node key and owner, same id, addresses and (usually) name. */
  async #reauthenticate(
    node: TailnetNode,
    request: DeviceRegistration,
    ownership: Ownership,
    useKey: (repos: Repositories) => Promise<boolean>,
  ): Promise<TailnetNode | undefined> {
    const hostinfoBefore = node.hostinfo;
    const update: NodeUpdate = {
      nodeKey: request.nodeKey,
      hostinfo: request.hostinfo,
      approvedRoutes: this.#autoApproved({ ...node, ...ownership }, request.hostinfo, node.approvedRoutes),
      ...ownership,
    };
    const hostname = hostnameOf(request.hostinfo);
    const rename = hostname === node.hostname ? {} : this.#proposeName(node, hostname);
    Object.assign(update, rename);
    const written = await this.#store.transaction(async (repos) => {
      if (!(await useKey(repos))) return false;
      await repos.nodes.update(node.id, update);
      return true;
    });
    if (!written) return undefined;
    this.#dropPending(node.id, update);
    if (rename.givenName !== undefined) this.#takeName(node.givenName, rename.givenName);
    // A lite update may have brought newer hostinfo while the write was in flight; keep that one.
    if (node.hostinfo !== hostinfoBefore) delete update.hostinfo;
    this.#rekey(node, request.nodeKey);
    Object.assign(node, update);
    if (!node.ephemeral) this.#clearTimer(this.#ephemeralTimers, node.id);
    this.#changed(node, { self: true });
    this.#electFor(node);
    return node;
  }

  /**
   * The name a node gets when its client reports a new hostname: re-derived from it, unless an admin
   * renamed the node (then only the hostname changes). Nothing is reserved until `#takeName`.
   */
  #proposeName(node: TailnetNode, hostname: string): Pick<NodeUpdate, 'hostname' | 'givenName'> {
    if (!isAutoDerivedGivenName(node.givenName, node.hostname)) return { hostname };
    const base = sanitizeHostname(hostname);
    const givenName = uniqueGivenName(base, (name) => name !== node.givenName && this.#givenNames.has(name));
    return givenName === node.givenName ? { hostname } : { hostname, givenName };
  }

  #takeName(old: string, name: string): void {
    this.#givenNames.delete(old);
    this.#givenNames.add(name);
  }

  #rekey(node: TailnetNode, nodeKey: NodePublic): void {
    if (node.nodeKey === nodeKey) return;
    this.#byNodeKey.delete(node.nodeKey);
    node.nodeKey = nodeKey;
    this.#byNodeKey.set(nodeKey, node);
  }

  /** `tailscale logout`: an ephemeral node is deleted, any other node's key expires now. */
  logout(node: TailnetNode): Promise<void> {
    if (node.ephemeral) return this.deleteNode(node.id);
    return this.setExpiry(node.id, this.#now());
  }

  // ---- map requests and presence ----

  /**
   * Applies what a map request reports. A streaming request may not erase endpoints that a lite update
   * stored (modern clients send their endpoints through lite updates), so empty lists there are ignored.
   */
  applyMapUpdate(node: TailnetNode, update: MapUpdate, streaming: boolean): void {
    const patch: PeerPatch = {};
    const stored: NodeUpdate = {};
    if (update.discoKey !== undefined && update.discoKey !== node.discoKey) {
      node.discoKey = patch.discoKey = stored.discoKey = update.discoKey;
    }
    const endpoints = update.endpoints;
    if (
      endpoints !== undefined &&
      !(streaming && endpoints.length === 0) &&
      !sameStrings(endpoints, node.endpoints)
    ) {
      node.endpoints = patch.endpoints = stored.endpoints = endpoints;
    }
    if (update.capVersion !== node.capVersion) node.capVersion = patch.cap = update.capVersion;
    let whole = false;
    if (update.hostinfo !== undefined) {
      const merged: Hostinfo =
        update.hostinfo.NetInfo === undefined && node.hostinfo.NetInfo !== undefined
          ? { ...update.hostinfo, NetInfo: node.hostinfo.NetInfo }
          : update.hostinfo;
      const derp = homeDerpOf(merged);
      if (derp !== homeDerpOf(node.hostinfo)) patch.derpRegion = derp;
      whole = JSON.stringify(hostinfoForPeers(merged)) !== JSON.stringify(hostinfoForPeers(node.hostinfo));
      if (whole || derp !== homeDerpOf(node.hostinfo)) {
        const hostname = hostnameOf(merged);
        const rename = hostname !== node.hostname ? this.#proposeName(node, hostname) : {};
        if (rename.givenName !== undefined) this.#takeName(node.givenName, rename.givenName);
        Object.assign(node, rename);
        node.hostinfo = stored.hostinfo = merged;
        const approved = this.#autoApproved(node, merged, node.approvedRoutes);
        if (!sameStrings(approved, node.approvedRoutes))
          node.approvedRoutes = stored.approvedRoutes = approved;
        if (rename.givenName !== undefined) this.#storeRename(node.id, rename);
        else Object.assign(stored, rename);
      }
    }
    if (Object.keys(stored).length > 0) this.#writeBehind(node.id, stored);
    if (whole) this.#changed(node, { self: true });
    else if (Object.keys(patch).length > 0) this.#patched(node, patch);
    if (whole) this.#electFor(node);
  }

  /** A streaming map session started for the node: it is online. */
  sessionOpened(node: TailnetNode): void {
    node.sessions += 1;
    this.#clearTimer(this.#offlineTimers, node.id);
    this.#clearTimer(this.#ephemeralTimers, node.id);
    if (!node.online) {
      node.online = true;
      this.#patched(node, { online: true });
      this.#electFor(node);
    }
  }

  /** A streaming session ended; when the node has none left for the grace period, it is offline. */
  sessionClosed(node: TailnetNode): void {
    node.sessions = Math.max(0, node.sessions - 1);
    if (node.sessions > 0 || !this.#nodes.has(node.id) || this.#closed) return;
    this.#clearTimer(this.#offlineTimers, node.id);
    const timer = setTimeout(() => {
      this.#offlineTimers.delete(node.id);
      if (node.sessions > 0 || !this.#nodes.has(node.id)) return;
      this.#markOffline(node);
      if (node.ephemeral) this.#scheduleEphemeralRemoval(node);
    }, this.#offlineGraceMs);
    timer.unref();
    this.#offlineTimers.set(node.id, timer);
  }

  #markOffline(node: TailnetNode): void {
    const lastSeen = this.#now();
    node.online = false;
    node.lastSeen = lastSeen;
    this.#writeBehind(node.id, { lastSeen });
    this.#patched(node, { online: false, lastSeen });
    this.#electFor(node);
  }

  #scheduleEphemeralRemoval(node: TailnetNode): void {
    this.#clearTimer(this.#ephemeralTimers, node.id);
    const timer = setTimeout(
      () => {
        this.#ephemeralTimers.delete(node.id);
        if (node.sessions > 0 || !this.#nodes.has(node.id)) return;
        this.#removeInactiveEphemeral(node.id).catch((err: unknown) => {
          this.#log.warn({ err, node: node.id }, 'could not remove an inactive ephemeral node');
        });
      },
      Math.min(this.#ephemeralInactivityMs, MAX_TIMER_MS),
    );
    timer.unref();
    this.#ephemeralTimers.set(node.id, timer);
  }

  #clearTimer(timers: Map<number, NodeJS.Timeout>, id: number): void {
    const timer = timers.get(id);
    if (timer === undefined) return;
    clearTimeout(timer);
    timers.delete(id);
  }

  /** Deletes an ephemeral node that is still inactive when its turn in the queue comes. */
  #removeInactiveEphemeral(id: number): Promise<void> {
    return this.#serial.run(async () => {
      const node = this.#nodes.get(id);
      // It may have reconnected, been deleted or stopped being ephemeral while the task waited.
      if (node === undefined || node.sessions > 0 || !node.ephemeral || this.#closed) return;
      this.#log.info({ node: id, name: node.givenName }, 'removing ephemeral node after inactivity');
      await this.#delete(node);
    });
  }

  // ---- administration ----

  deleteNode(id: number): Promise<void> {
    return this.#serial.run(() => this.#delete(this.#require(id)));
  }

  async #delete(node: TailnetNode): Promise<void> {
    await this.#store.nodes.delete(node.id);
    this.#unindex(node);
    this.#emit({ kind: 'removed', node });
    this.#electFor(node);
  }

  /** Sets the node key's expiry (null = never); a time in the past logs the node out at once. */
  setExpiry(id: number, expiry: Date | null): Promise<void> {
    return this.#serial.run(async () => {
      const node = this.#require(id);
      await this.#writeNow(id, { expiry });
      node.expiry = expiry;
      this.#changed(node, { self: true });
      this.#elect();
      this.#armExpiryTimer();
    });
  }

  /**
   * Device approval: an authorized node joins the tailnet (its peers and their maps); an unauthorized
   * one stays registered but sees no one and is seen by no one, and its client says it needs approval.
   */
  setAuthorized(id: number, authorized: boolean): Promise<TailnetNode> {
    return this.#serial.run(async () => {
      const node = this.#require(id);
      if (node.authorized === authorized) return node;
      await this.#writeNow(id, { authorized });
      node.authorized = authorized;
      this.#log.info({ node: id, name: node.givenName, authorized }, 'node authorization changed');
      this.#changed(node, { self: true });
      this.#elect();
      return node;
    });
  }

  /** Gives the node a new DNS label, unique in the tailnet. */
  rename(id: number, name: string): Promise<TailnetNode> {
    return this.#serial.run(async () => {
      const node = this.#require(id);
      const problem = labelProblem(name);
      if (problem !== undefined)
        throw new WeftError('BAD_REQUEST', `invalid node name "${name}": ${problem}`);
      if (name !== node.givenName && this.#givenNames.has(name)) {
        throw new WeftError('NODE_NAME_TAKEN', `another node is already called "${name}"`);
      }
      await this.#writeNow(id, { givenName: name });
      this.#givenNames.delete(node.givenName);
      this.#givenNames.add(name);
      node.givenName = name;
      this.#changed(node, { self: true });
      return node;
    });
  }

  /**
   * Approves what the policy's autoApprovers now allow, for every node (after a policy change). Routes
   * approved before stay approved: a policy change never takes a route away from a router.
   */
  applyAutoApprovals(): Promise<void> {
    return this.#serial.run(async () => {
      for (const node of this.#nodes.values()) {
        const approved = this.#autoApproved(node, node.hostinfo, node.approvedRoutes);
        if (sameStrings(approved, node.approvedRoutes)) continue;
        await this.#writeNow(node.id, { approvedRoutes: approved });
        node.approvedRoutes = approved;
        this.#log.info({ node: node.id, approved_routes: approved }, 'routes approved by autoApprovers');
        this.#changed(node, { self: true });
      }
      this.#elect();
    });
  }

  /**
   * Server-set tags (an admin's `nodes tag`): they replace the node's owner, as in Tailscale, and must
   * be tags the policy defines. A tagged node cannot be left without tags: it would belong to no one.
   */
  setTags(id: number, tags: readonly string[]): Promise<TailnetNode> {
    return this.#serial.run(async () => {
      const node = this.#require(id);
      const wanted = [...new Set(tags)].sort();
      if (wanted.length === 0) {
        if (node.tags.length === 0) return node;
        throw new WeftError(
          'BAD_REQUEST',
          `node ${id} is owned by its tags; it needs at least one (to give it to a user, log it in again as that user)`,
        );
      }
      const decided = this.#policy?.tagsFor({ userId: null, keyTags: wanted }, []) ?? { tags: wanted };
      if ('denied' in decided) throw new WeftError('BAD_REQUEST', deniedTagsMessage(decided.denied));
      if (sameStrings(decided.tags, node.tags) && node.userId === null) return node;
      const update: NodeUpdate = { tags: decided.tags, userId: null, expiry: null };
      await this.#writeNow(id, update);
      Object.assign(node, update);
      this.#changed(node, { self: true });
      this.#armExpiryTimer();
      return node;
    });
  }

  /**
   * Sets the node's approved routes (an admin's approve/unapprove). Each must be a canonical prefix the
   * node advertises; approving either exit route approves both, as one exit node is both families.
   */
  setApprovedRoutes(id: number, routes: readonly string[]): Promise<TailnetNode> {
    return this.#serial.run(async () => {
      const node = this.#require(id);
      const approved = approvableRoutes(node, routes);
      if (!sameStrings(approved, node.approvedRoutes)) {
        await this.#writeNow(id, { approvedRoutes: approved });
        node.approvedRoutes = approved;
        this.#changed(node, { self: true });
        this.#elect();
      }
      return node;
    });
  }

  /**
   * Re-elects only when `node` can matter: it has approved subnet routes or is a primary. Presence
   * changes of every other node (nearly all of them) then cost nothing, even in a join storm.
   */
  #electFor(node: TailnetNode): void {
    const router = node.approvedRoutes.some((route) => !isExitRoute(route));
    if (router || this.primaryRoutesOf(node.id).length > 0) this.#elect();
  }

  /**
   * HA subnet routers: for each approved, advertised subnet route, one online router is primary and
   * only it carries the route in its peers' AllowedIPs (a prefix may map to one peer only). The
   * primary stays while it is online (no flapping back when an older router returns); otherwise the
   * lowest node id among the online candidates takes over. Both the old and the new primary are
   * announced, so every peer re-reads their routes.
   */
  #elect(): void {
    const now = this.#now();
    const candidates = new Map<string, number[]>();
    for (const node of this.#nodes.values()) {
      if (!node.online || !node.authorized || isExpired(node, now)) continue;
      const advertised = advertisedRoutes(node.hostinfo);
      for (const route of node.approvedRoutes) {
        if (isExitRoute(route) || !advertised.includes(route)) continue;
        candidates.set(route, [...(candidates.get(route) ?? []), node.id]);
      }
    }
    const touched = new Set<number>();
    for (const [route, id] of this.#primaries) {
      if (!candidates.has(route)) {
        this.#primaries.delete(route);
        touched.add(id);
      }
    }
    for (const [route, ids] of candidates) {
      const previous = this.#primaries.get(route);
      if (previous !== undefined && ids.includes(previous)) continue;
      const primary = Math.min(...ids);
      this.#primaries.set(route, primary);
      touched.add(primary);
      if (previous !== undefined) {
        touched.add(previous);
        this.#log.info({ route, from: previous, to: primary }, 'subnet route failed over');
      }
    }
    for (const id of touched) {
      const node = this.#nodes.get(id);
      if (node !== undefined) this.#changed(node, { self: true });
    }
  }

  /** `already` plus the advertised routes autoApprovers approve for this node, in a stable order. */
  #autoApproved(
    node: Pick<TailnetNode, 'id' | 'userId' | 'tags' | 'ipv4' | 'ipv6'>,
    hostinfo: Hostinfo,
    already: readonly string[],
  ): string[] {
    const advertised = advertisedRoutes(hostinfo);
    if (this.#policy === undefined || advertised.length === 0) return [...already];
    const auto = this.#policy.autoApprovedRoutes({ ...node, advertisedRoutes: advertised });
    const fresh = auto.filter((route) => !already.includes(route)).sort();
    return fresh.length === 0 ? [...already] : [...already, ...fresh];
  }

  #require(id: number): TailnetNode {
    const node = this.#nodes.get(id);
    if (node === undefined) throw new WeftError('NODE_NOT_FOUND', `there is no node with id ${id}`);
    return node;
  }

  // ---- key expiry ----

  /**
   * Clients work out expiry themselves from KeyExpiry, but peers' cached views (Expired, and later the
   * policy) must change when a key expires, so a timer announces each expiry as it passes.
   */
  #armExpiryTimer(): void {
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    if (this.#closed) return;
    const now = this.#now().getTime();
    let next = Number.POSITIVE_INFINITY;
    for (const node of this.#nodes.values()) {
      const at = node.expiry?.getTime();
      if (at !== undefined && at > now && at < next) next = at;
    }
    if (next === Number.POSITIVE_INFINITY) return;
    this.#expiryTimer = setTimeout(() => this.#announceExpiries(), Math.min(next - now + 1, MAX_TIMER_MS));
    this.#expiryTimer.unref();
  }

  #announceExpiries(): void {
    const from = this.#expiryCheckedAt.getTime();
    const now = this.#now();
    this.#expiryCheckedAt = now;
    for (const node of this.#nodes.values()) {
      const at = node.expiry?.getTime();
      if (at !== undefined && at > from && isExpired(node, now)) this.#changed(node, { self: true });
    }
    this.#elect();
    this.#armExpiryTimer();
  }

  // ---- bookkeeping ----

  #index(node: TailnetNode): void {
    this.#nodes.set(node.id, node);
    this.#byNodeKey.set(node.nodeKey, node);
    this.#givenNames.add(node.givenName);
    for (const ip of [node.ipv4, node.ipv6]) if (ip !== null) this.#allocator.reserve(ip);
  }

  #unindex(node: TailnetNode): void {
    this.#nodes.delete(node.id);
    if (this.#byNodeKey.get(node.nodeKey) === node) this.#byNodeKey.delete(node.nodeKey);
    this.#givenNames.delete(node.givenName);
    for (const ip of [node.ipv4, node.ipv6]) if (ip !== null) this.#allocator.release(ip);
    this.#clearTimer(this.#offlineTimers, node.id);
    this.#clearTimer(this.#ephemeralTimers, node.id);
    this.#dirty.delete(node.id);
  }

  #changed(node: TailnetNode, options: { self: boolean }): void {
    node.version += 1;
    this.#emit({ kind: 'updated', node, self: options.self });
  }

  #patched(node: TailnetNode, patch: PeerPatch): void {
    node.version += 1;
    this.#emit({ kind: 'patched', node, patch });
  }

  #emit(change: NodeChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.#log.error({ err, change: change.kind, node: change.node.id }, 'change listener failed');
      }
    }
  }

  /**
   * A name is unique in the database too, so a rename caused by a new hostname is stored at once, in
   * the serial queue: a registration or admin rename that wants the freed name runs after it.
   */
  #storeRename(id: number, rename: Pick<NodeUpdate, 'hostname' | 'givenName'>): void {
    this.#serial
      .run(() => this.#writeNow(id, rename))
      .catch((err: unknown) => this.#log.warn({ err, node: id }, 'could not store a node rename'));
  }

  /**
   * Writes `update` now. Callers run in the serial queue, as do write-behind flushes, so writes reach
   * the database in the order they were decided.
   */
  async #writeNow(id: number, update: NodeUpdate): Promise<void> {
    this.#dropPending(id, update);
    await this.#store.nodes.update(id, update);
  }

  /** Pending write-behind values of fields just written directly are older: they must not land later. */
  #dropPending(id: number, update: NodeUpdate): void {
    const pending = this.#dirty.get(id);
    if (pending === undefined) return;
    for (const field of Object.keys(update)) delete pending[field as keyof NodeUpdate];
    if (Object.keys(pending).length === 0) this.#dirty.delete(id);
  }

  #writeBehind(id: number, update: NodeUpdate): void {
    this.#dirty.set(id, { ...this.#dirty.get(id), ...update });
    if (this.#flushTimer !== undefined || this.#closed) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.flush();
    }, this.#writeBehindMs);
    this.#flushTimer.unref();
  }

  /**
   * Writes pending map-request updates to the database now, in one transaction, in the serial queue
   * (so a direct write decided later cannot be overtaken by an older value from here).
   */
  flush(): Promise<void> {
    return this.#serial.run(async () => {
      const batch = [...this.#dirty].filter(([id]) => this.#nodes.has(id));
      this.#dirty.clear();
      if (batch.length === 0) return;
      try {
        await this.#store.transaction(async (repos) => {
          for (const [id, update] of batch) await repos.nodes.update(id, update);
        });
      } catch (err) {
        this.#log.warn({ err, nodes: batch.length }, 'could not store node updates');
      }
    });
  }

  /** Stops timers and stores what is pending: last seen for connected nodes, queued updates. */
  async close(): Promise<void> {
    this.#closed = true; // from here, sessions ending arm no timers
    for (const timer of [...this.#offlineTimers.values(), ...this.#ephemeralTimers.values()])
      clearTimeout(timer);
    this.#offlineTimers.clear();
    this.#ephemeralTimers.clear();
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    const now = this.#now();
    for (const node of this.#nodes.values())
      if (node.online) this.#dirty.set(node.id, { ...this.#dirty.get(node.id), lastSeen: now });
    await this.flush();
  }
}

function toTailnetNode(record: Node): TailnetNode {
  const { updatedAt: _updatedAt, ...fields } = record;
  // Stored hostinfo was validated when it arrived in a request.
  return {
    ...fields,
    hostinfo: record.hostinfo as Hostinfo,
    version: 1,
    online: false,
    sessions: 0,
    capVersion: 0,
  };
}

export function hostnameOf(hostinfo: Hostinfo): string {
  return typeof hostinfo.Hostname === 'string' ? hostinfo.Hostname : '';
}

export function homeDerpOf(hostinfo: Hostinfo): number {
  const derp = hostinfo.NetInfo?.PreferredDERP;
  return typeof derp === 'number' && Number.isInteger(derp) && derp > 0 ? derp : 0;
}
