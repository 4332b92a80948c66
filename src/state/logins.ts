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
import type { Hostinfo } from '../tailcfg/index.ts';
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
