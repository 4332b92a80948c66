/**
 * The policy in force, where it comes from, and how a new one replaces it.
 *
 *   policy.mode: database   versions appended to the `policies` table by `set` (CLI/API), each with
 *                           who set it and when; the newest is in force. None yet: allow-all.
 *   policy.mode: file       the file at policy.path, reloaded when it changes (the directory is watched,
 *                           since editors replace files by renaming) and on `reload()` (SIGHUP).
 *
 * A new policy is checked in full against the live tailnet first (parse, compile, its own tests); one
 * that fails never replaces the active policy. In file mode the failure is logged and the last good
 * policy stays in force, so a typo in the file never takes clients offline. At start a missing or
 * broken file is an error: there is no last good policy to fall back on.
 */
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { PolicyConfig } from '../config/index.ts';
import type { User } from '../db/records.ts';
import type { PolicyRepository } from '../db/repos/policies.ts';
import type { Logger } from '../observe/logger.ts';
import {
  ALLOW_ALL_POLICY_TEXT,
  autoApprovedRoutes,
  type CompiledPolicy,
  checkPolicy,
  deniedTags,
  type Policy,
  PolicyError,
  type PolicyNode,
  type PolicyTailnet,
  type PolicyUser,
  parsePolicy,
} from '../policy/index.ts';
import { WeftError } from '../types/errors.ts';
import { etagMatches, strongEtag } from '../util/etag.ts';
import { SerialQueue } from '../util/serial.ts';
import type { TailnetNode } from './model.ts';
import { advertisedRoutes, type Tailnet, type TailnetPolicy } from './tailnet.ts';

export interface ActivePolicy {
  /** The policy exactly as it was set (HuJSON, comments kept). */
  text: string;
  policy: Policy;
  mode: PolicyConfig['mode'];
  /** Database: the version's row id (0 = nothing set yet, the built-in allow-all). File: loads so far. */
  version: number;
  /** A strong ETag of the text, for If-Match. */
  etag: string;
  /** When this version was set (database) or read from the file; null for the built-in default. */
  updatedAt: Date | null;
  /** Who set it (database mode); null for the file, the default and unattributed versions. */
  author: string | null;
}

export type PolicyListener = (active: ActivePolicy) => void;

export interface PolicyStoreOptions {
  config: PolicyConfig;
  repository: PolicyRepository;
  /** The tailnet a new policy is checked against: it must compile and pass its tests on it. */
  tailnet: () => PolicyTailnet;
  serverUrl: string;
  log: Logger;
  /** How long file changes settle before the file is read (editors write in several steps). */
  debounceMs?: number;
  now?: () => Date;
}

const DEFAULT_DEBOUNCE_MS = 200;

export function policyEtag(text: string): string {
  return strongEtag(text);
}

/** What the policy engine reads of a user (groups: from the identity provider, oidc.policy_groups). */
export function policyUser(user: User): PolicyUser {
  return { id: user.id, name: user.name, email: user.email, groups: user.groups };
}

/** What the policy engine reads of a node. */
export function policyNode(node: TailnetNode): PolicyNode {
  return {
    id: node.id,
    ipv4: node.ipv4,
    ipv6: node.ipv6,
    userId: node.userId,
    tags: node.tags,
    advertisedRoutes: advertisedRoutes(node.hostinfo),
    approvedRoutes: node.approvedRoutes,
  };
}

export function policyTailnet(tailnet: Tailnet): PolicyTailnet {
  const users = [...tailnet.users()].map(policyUser);
  // A copy: the tailnet re-elects primaries in place, a compiled policy must keep its own snapshot.
  // A node waiting for device approval is not part of the tailnet yet: it relates to no one.
  const nodes = [...tailnet.nodes()].filter((node) => node.authorized).map(policyNode);
  return { users, nodes, primaries: new Map(tailnet.primaries()) };
}

/**
 * The tailnet's view of the policy in force: tags at registration and autoApprovers. Tag ownership only
 * needs the users (owners are users, groups of users, or tags the node already has), and whether a node
 * is an approver only needs the node itself, so neither walks every node of a large tailnet.
 */
export function tailnetPolicy(tailnet: Tailnet, current: () => Policy): TailnetPolicy {
  const users = () => [...tailnet.users()].map(policyUser);
  return {
    tagsFor(owner, requested) {
      const policy = current();
      const onlyUsers = { users: users(), nodes: [] };
      if (owner.keyTags.length > 0) {
        // The admin who made the key may apply any tag the policy defines; the client may add tags
        // that the key's tags own.
        const extra = requested.filter((tag) => !owner.keyTags.includes(tag));
        const denied = [
          ...owner.keyTags.filter((tag) => !policy.tagOwners.has(tag)),
          ...deniedTags(policy, onlyUsers, { userId: null, tags: owner.keyTags }, extra),
        ];
        return denied.length > 0 ? { denied } : { tags: unique([...owner.keyTags, ...extra]) };
      }
      if (requested.length === 0) return { tags: [] };
      const denied = deniedTags(policy, onlyUsers, { userId: owner.userId, tags: [] }, requested);
      return denied.length > 0 ? { denied } : { tags: unique(requested) };
    },
    autoApprovedRoutes(node) {
      const candidate: PolicyNode = { ...node, approvedRoutes: [] };
      return autoApprovedRoutes(current(), { users: users(), nodes: [candidate] }, candidate);
    },
  };
}

function unique(tags: readonly string[]): string[] {
  return [...new Set(tags)].sort();
}

export class PolicyStore {
  readonly #options: PolicyStoreOptions;
  readonly #listeners = new Set<PolicyListener>();
  #active: ActivePolicy;
  /** Sets and reloads run one at a time, so If-Match and "unchanged" checks see the latest version. */
  readonly #queue = new SerialQueue();
  #watcher: FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: PolicyStoreOptions, active: ActivePolicy) {
    this.#options = options;
    this.#active = active;
  }

  /** Loads the policy in force; throws a WeftError naming the problem when there is none usable. */
  static async open(options: PolicyStoreOptions): Promise<PolicyStore> {
    const store = new PolicyStore(options, await initialPolicy(options));
    if (options.config.mode === 'file') store.#watch(options.config.path);
    return store;
  }

  get current(): ActivePolicy {
    return this.#active;
  }

  get mode(): PolicyConfig['mode'] {
    return this.#options.config.mode;
  }

  subscribe(listener: PolicyListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Parses, compiles and runs the tests of `text` against the live tailnet; throws PolicyError. */
  check(text: string): { policy: Policy; compiled: CompiledPolicy } {
    return checkAgainstTailnet(this.#options, text);
  }

  /**
   * Database mode: makes `text` the policy in force, recorded as set by `author`. `ifMatch` (an ETag
   * from `current`) refuses the change when someone else changed the policy since it was read.
   */
  set(text: string, author: string | null, ifMatch?: string): Promise<ActivePolicy> {
    return this.#queue.run(async () => {
      if (this.#options.config.mode === 'file') {
        throw new WeftError(
          'POLICY_FILE_MODE',
          `the policy is read from ${this.#options.config.path} (policy.mode: file); edit that file instead`,
        );
      }
      if (ifMatch !== undefined && !etagMatches(ifMatch, this.#active.etag)) {
        throw new WeftError(
          'POLICY_CHANGED',
          `the policy changed since it was read (If-Match ${ifMatch}, now ${this.#active.etag}); read it again`,
        );
      }
      const { policy } = this.check(text);
      const now = this.#now();
      const row = await this.#options.repository.append(text, author, now);
      this.#activate({ ...versionOf(text, policy, 'database', row.id, row.createdAt), author });
      this.#options.log.info({ version: row.id, author }, 'policy updated');
      return this.#active;
    });
  }

  /**
   * File mode: reads the file again and puts it in force if it changed and passes every check;
   * otherwise the last good policy stays and the log says why. Database mode: nothing to do.
   */
  reload(): Promise<'changed' | 'unchanged' | 'refused'> {
    return this.#queue.run(async () => {
      const config = this.#options.config;
      if (config.mode !== 'file' || this.#closed) return 'unchanged';
      let text: string;
      try {
        text = await readFile(config.path, 'utf8');
      } catch (err) {
        this.#options.log.error(
          { path: config.path, err: (err as Error).message },
          'cannot read the policy file; the last good policy stays in force',
        );
        return 'refused';
      }
      if (policyEtag(text) === this.#active.etag) return 'unchanged';
      let policy: Policy;
      try {
        policy = this.check(text).policy;
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        this.#options.log.error(
          { path: config.path, problem: err.describe() },
          'the policy file is invalid; the last good policy stays in force',
        );
        return 'refused';
      }
      this.#activate(versionOf(text, policy, 'file', this.#active.version + 1, this.#now()));
      this.#options.log.info({ path: config.path, version: this.#active.version }, 'policy file reloaded');
      return 'changed';
    });
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    clearTimeout(this.#debounce);
  }

  #activate(active: ActivePolicy): void {
    this.#active = active;
    for (const listener of this.#listeners) {
      try {
        listener(active);
      } catch (err) {
        this.#options.log.error({ err }, 'a policy listener failed');
      }
    }
  }

  #now(): Date {
    return nowOf(this.#options);
  }

  /** Watches the file's directory: an editor's rename-into-place replaces the inode a file watch holds. */
  #watch(path: string): void {
    const name = basename(path);
    try {
      this.#watcher = watch(dirname(resolve(path)), (_event, changed) => {
        if (changed !== null && changed !== name) return;
        clearTimeout(this.#debounce);
        this.#debounce = setTimeout(() => {
          this.reload().catch((err: unknown) => this.#options.log.error({ err }, 'policy reload failed'));
        }, this.#options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
      });
      this.#watcher.on('error', (err) =>
        this.#options.log.warn({ err, path }, 'cannot watch the policy file; SIGHUP still reloads it'),
      );
    } catch (err) {
      this.#options.log.warn({ err, path }, 'cannot watch the policy file; SIGHUP still reloads it');
    }
  }
}

function versionOf(
  text: string,
  policy: Policy,
  mode: PolicyConfig['mode'],
  version: number,
  updatedAt: Date | null,
): ActivePolicy {
  return { text, policy, mode, version, etag: policyEtag(text), updatedAt, author: null };
}

async function initialPolicy(options: PolicyStoreOptions): Promise<ActivePolicy> {
  const { config } = options;
  if (config.mode === 'database') {
    const stored = await options.repository.current();
    if (stored === undefined)
      return versionOf(ALLOW_ALL_POLICY_TEXT, parsePolicy(ALLOW_ALL_POLICY_TEXT), 'database', 0, null);
    // It passed every check when it was set; only the language itself can reject it now.
    const policy = parseOrExplain(stored.data, `policy version ${stored.id} in the database`);
    return {
      ...versionOf(stored.data, policy, 'database', stored.id, stored.createdAt),
      author: stored.author,
    };
  }
  let text: string;
  try {
    text = await readFile(config.path, 'utf8');
  } catch (err) {
    throw new WeftError(
      'POLICY_INVALID',
      `cannot read the policy file ${config.path} (policy.path): ${(err as Error).message}`,
    );
  }
  let policy: Policy;
  try {
    policy = checkAgainstTailnet(options, text).policy;
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    throw new WeftError('POLICY_INVALID', `the policy file ${config.path} is invalid: ${err.describe()}`);
  }
  return versionOf(text, policy, 'file', 1, nowOf(options));
}

function checkAgainstTailnet(options: PolicyStoreOptions, text: string) {
  return checkPolicy(text, options.tailnet(), { serverUrl: options.serverUrl });
}

function nowOf(options: PolicyStoreOptions): Date {
  return options.now?.() ?? new Date();
}

function parseOrExplain(text: string, what: string): Policy {
  try {
    return parsePolicy(text);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    throw new WeftError('POLICY_INVALID', `${what} is invalid: ${err.describe()}`);
  }
}
