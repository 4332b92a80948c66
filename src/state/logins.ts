/**
 * Interactive logins waiting for someone to finish them (docs/features.md §5.1).
 *
 * A client that registers without an auth key gets an AuthURL `<server_url>/register/<id>`; the
 * login waits here under that id until an admin completes it (`weft nodes register`, the API) or the
 * user does through OIDC, until it is rejected, or until it expires. The client's follow-up register
 * request long-polls on it.
 *
 * This file is the contract between the control plane (which creates and waits on logins), the API
 * (CLI/console completion) and auth (OIDC completion).
 */
import { randomBytes } from 'node:crypto';
import type { Hostinfo } from '../tailcfg/index.ts';
import { WeftError } from '../types/errors.ts';
import type { MachinePublic, NodePublic } from '../types/keys.ts';
import type { TailnetNode } from './model.ts';

export interface PendingLogin {
  /** The id in the AuthURL's path. */
  readonly id: string;
  readonly machineKey: MachinePublic;
  readonly nodeKey: NodePublic;
  /** What the client reported; the hostname is shown on the login and confirmation pages. */
  readonly hostinfo: Hostinfo;
  readonly createdAt: Date;
  readonly expiresAt: Date;
}

export interface LoginCompletion {
  /** The user the node will belong to (unless the policy makes it a tagged node). */
  userId: number;
  /** How the login was completed, recorded on the node as its register method. */
  method: 'cli' | 'oidc';
  /** Overrides the configured key expiry (OIDC `use_expiry_from_token`); null = never expires. */
  expiry?: Date | null;
}

export interface Logins {
  /** The pending login with this id, or undefined when it is unknown, finished or expired. */
  get(id: string): PendingLogin | undefined;
  /**
   * Registers the waiting node for the user and wakes the client's follow-up request. Throws a
   * WeftError (LOGIN_NOT_FOUND when the id is unknown or expired; the policy's refusal otherwise).
   */
  complete(id: string, completion: LoginCompletion): Promise<TailnetNode>;
  /** Ends the login with an error the client shows; false when there was no such login. */
  reject(id: string, reason: string): boolean;
}

// ---- the implementation: pending logins in memory ----

/** How a client's wait on a pending login ended. */
export type LoginOutcome =
  | { kind: 'completed'; node: TailnetNode }
  /** An admin rejected it, or completing it failed for good (tags the user may not apply). */
  | { kind: 'rejected'; reason: string }
  /** It expired unfinished: the client needs a fresh AuthURL. */
  | { kind: 'expired' }
  /** The same machine started a newer login, which replaces this one. */
  | { kind: 'superseded' }
  /** The waiting request went away (the client disconnected or cancelled), or the server is stopping. */
  | { kind: 'aborted' };

/** What the device sent when it asked to log in. */
export interface LoginRequest {
  machineKey: MachinePublic;
  nodeKey: NodePublic;
  hostinfo: Hostinfo;
  /** The client asked for an ephemeral node (tailscaled --state=mem:). */
  ephemeral: boolean;
}

/** How a completed login becomes a node: the tailnet's registration for a user. */
export interface LoginRegistrar {
  registerForUser(request: LoginRequest & LoginCompletion): Promise<{ node: TailnetNode; created: boolean }>;
}

export interface PendingLoginsOptions {
  registrar: LoginRegistrar;
  /** How long a login waits to be completed; default 15 minutes. */
  ttlMs?: number;
  /** Most logins waiting at once; default 1024. */
  maxEntries?: number;
  now?: () => Date;
}

export const DEFAULT_LOGIN_TTL_MS = 15 * 60_000;
export const DEFAULT_MAX_PENDING_LOGINS = 1024;
const LOGIN_ID_PREFIX = 'weft-login-';
/** 24 hex digits (96 random bits), like Headscale's `hskey-authreq-` ids. */
const LOGIN_ID = /^weft-login-[0-9a-f]{24}$/;
/** setTimeout's limit. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  login: PendingLogin;
  ephemeral: boolean;
  waiters: Set<(outcome: LoginOutcome) => void>;
  timer: NodeJS.Timeout;
  /** A completion is registering the node: the entry may neither expire nor be completed twice. */
  completing: boolean;
}

/** A login id as weft makes them: anything else is unknown without a lookup. */
export function isLoginId(id: string): boolean {
  return LOGIN_ID.test(id);
}

/**
 * Pending logins, in memory (a restart forgets them; the clients then get fresh AuthURLs).
 *
 * Bounded: when `maxEntries` logins wait, a new one is refused (LOGINS_FULL) rather than evicting the
 * oldest. Evicting would let anyone who can open control connections flush the logins that admins
 * are completing right now; refusing only delays new devices until entries expire (15 minutes), and
 * one machine never holds more than one entry, because its newer login replaces the older one.
 */
export class PendingLogins implements Logins {
  readonly #registrar: LoginRegistrar;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => Date;
  readonly #entries = new Map<string, Entry>();

  constructor(options: PendingLoginsOptions) {
    this.#registrar = options.registrar;
    this.#ttlMs = options.ttlMs ?? DEFAULT_LOGIN_TTL_MS;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_PENDING_LOGINS;
    this.#now = options.now ?? (() => new Date());
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Requests waiting on any login right now (follow-up long polls). */
  get waiterCount(): number {
    let count = 0;
    for (const entry of this.#entries.values()) count += entry.waiters.size;
    return count;
  }

  /**
   * A new pending login for the device. An older login of the same machine is replaced (its waiters
   * are told so). Throws LOGINS_FULL when the bound is reached.
   */
  create(request: LoginRequest): PendingLogin {
    for (const [id, entry] of this.#entries) {
      if (entry.login.machineKey === request.machineKey && !entry.completing)
        this.#finish(id, { kind: 'superseded' });
    }
    if (this.#entries.size >= this.#maxEntries) {
      throw new WeftError(
        'LOGINS_FULL',
        `${this.#entries.size} logins are already waiting to be completed on this weft server; try again in a few minutes`,
      );
    }
    const createdAt = this.#now();
    const login: PendingLogin = {
      id: `${LOGIN_ID_PREFIX}${randomBytes(12).toString('hex')}`,
      machineKey: request.machineKey,
      nodeKey: request.nodeKey,
      hostinfo: request.hostinfo,
      createdAt,
      expiresAt: new Date(createdAt.getTime() + this.#ttlMs),
    };
    const timer = setTimeout(() => this.#expire(login.id), Math.min(this.#ttlMs, MAX_TIMER_MS));
    timer.unref();
    this.#entries.set(login.id, {
      login,
      ephemeral: request.ephemeral,
      waiters: new Set(),
      timer,
      completing: false,
    });
    return login;
  }

  get(id: string): PendingLogin | undefined {
    return this.#live(id)?.login;
  }

  /** Every pending login, oldest first. */
  list(): PendingLogin[] {
    const logins: PendingLogin[] = [];
    for (const id of [...this.#entries.keys()]) {
      const entry = this.#live(id);
      if (entry !== undefined) logins.push(entry.login);
    }
    return logins.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  /**
   * Waits until the login ends, for the device that asked for it (same machine and node key);
   * undefined at once when there is no such login for it. Aborting `signal` ends the wait and leaves
   * nothing behind.
   */
  wait(
    id: string,
    device: Pick<LoginRequest, 'machineKey' | 'nodeKey'>,
    signal: AbortSignal,
  ): Promise<LoginOutcome> | undefined {
    const entry = this.#live(id);
    if (entry === undefined) return undefined;
    if (entry.login.machineKey !== device.machineKey || entry.login.nodeKey !== device.nodeKey)
      return undefined;
    if (signal.aborted) return Promise.resolve({ kind: 'aborted' });
    return new Promise((resolve) => {
      const onAbort = () => settle({ kind: 'aborted' });
      const settle = (outcome: LoginOutcome) => {
        entry.waiters.delete(settle);
        signal.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      entry.waiters.add(settle);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async complete(id: string, completion: LoginCompletion): Promise<TailnetNode> {
    const entry = this.#live(id);
    if (entry === undefined) throw loginNotFound(id);
    if (entry.completing) throw new WeftError('LOGIN_NOT_FOUND', `login ${id} is already being completed`);
    entry.completing = true;
    try {
      const { login } = entry;
      const { node } = await this.#registrar.registerForUser({
        machineKey: login.machineKey,
        nodeKey: login.nodeKey,
        hostinfo: login.hostinfo,
        ephemeral: entry.ephemeral,
        ...completion,
      });
      this.#finish(id, { kind: 'completed', node });
      // A login the same device started while this one was being completed (it could not replace this
      // one then) is done as well: its follow-up would otherwise wait for the expiry.
      for (const [other, { login: pending }] of [...this.#entries]) {
        if (pending.machineKey === login.machineKey && pending.nodeKey === login.nodeKey)
          this.#finish(other, { kind: 'completed', node });
      }
      return node;
    } catch (err) {
      entry.completing = false;
      // The device asked for something the user may not have (tags) or its key moved: no other user
      // changes that, so the client is told why, as with a refused pre-auth key.
      if (err instanceof WeftError && err.code === 'BAD_REQUEST')
        this.#finish(id, { kind: 'rejected', reason: err.message });
      else if (this.#now().getTime() >= entry.login.expiresAt.getTime()) this.#expire(id);
      throw err;
    }
  }

  reject(id: string, reason: string): boolean {
    const entry = this.#live(id);
    if (entry === undefined || entry.completing) return false;
    this.#finish(id, { kind: 'rejected', reason });
    return true;
  }

  /**
   * Ends every login (shutdown). Waiting follow-ups end as `aborted`: they get no answer, their streams
   * close with the server, and the clients redial, follow up again and get fresh AuthURLs from the
   * restarted server (which knows none of these logins).
   */
  close(): void {
    for (const id of [...this.#entries.keys()]) this.#finish(id, { kind: 'aborted' });
  }

  /** The entry, unless it has expired (then it is removed and its waiters are told). */
  #live(id: string): Entry | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    if (!entry.completing && this.#now().getTime() >= entry.login.expiresAt.getTime()) {
      this.#finish(id, { kind: 'expired' });
      return undefined;
    }
    return entry;
  }

  #expire(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.completing) return;
    this.#finish(id, { kind: 'expired' });
  }

  #finish(id: string, outcome: LoginOutcome): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    this.#entries.delete(id);
    clearTimeout(entry.timer);
    for (const wake of [...entry.waiters]) wake(outcome);
  }
}

/** LOGIN_NOT_FOUND for `id`, shown shortened: it may be anything a caller typed. */
export function loginNotFound(id: string): WeftError {
  const shown = id.length > 64 ? `${id.slice(0, 64)}…` : id;
  return new WeftError(
    'LOGIN_NOT_FOUND',
    `there is no pending login ${JSON.stringify(shown)}: it was completed, rejected or expired, or the id is mistyped`,
  );
}
