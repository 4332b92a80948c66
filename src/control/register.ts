/**
 * `POST /machine/register`: turns a RegisterRequest into a RegisterResponse.
 *
 * Every answer is HTTP 200. The official client shows `Error` to the user (`tailscale up` prints
 * "backend error: <Error>"), while a non-200 status is only logged and retried silently — so anything
 * a person must act on (bad key, expired key, wrong machine) goes into `Error`.
 *
 * The decision order follows the client's flows (docs/control-protocol.md §5.3):
 *   known node key  → logout (past Expiry) | expire sooner (future Expiry) | NodeKeyExpired | refresh
 *   unknown key     → pre-auth key (new node, or the same machine re-registering / rotating its key)
 *                   | no key: interactive login — an AuthURL `<server_url>/register/<id>`, then the
 *                     client's follow-up request (Followup = that URL) waits until an admin or OIDC
 *                     completes the login, it is rejected, it expires (→ a fresh AuthURL) or the
 *                     client goes away or the server stops (→ no answer at all).
 *
 * A known node re-authenticates through the same login: `tailscale up --force-reauth`, `tailscale
 * login` and a client whose key expired all send a brand-new node key with OldNodeKey = the current
 * one (control/controlclient/direct.go `doLogin`, regen=true), which is an unknown key here; completing
 * the login for the node's user finds the node by machine + user and gives it the new key and expiry.
 */
import type { User } from '../db/records.ts';
import { loginName, TAGGED_DEVICES_USER_ID } from '../mapper/node-view.ts';
import type { Logger } from '../observe/logger.ts';
import { isLoginId, type PendingLogin, type PendingLogins } from '../state/logins.ts';
import { isExpired, type TailnetNode } from '../state/model.ts';
import { type AuthKeyRejection, deniedTagsMessage, type Tailnet } from '../state/tailnet.ts';
import {
  MIN_SUPPORTED_CAPABILITY_VERSION,
  type RegisterRequest,
  type RegisterResponse,
  unsupportedVersionMessage,
} from '../tailcfg/index.ts';
import { WeftError } from '../types/errors.ts';
import type { MachinePublic } from '../types/keys.ts';

export const AUTH_KEY_ERRORS: Record<AuthKeyRejection, string> = {
  invalid: 'invalid auth key: this weft server does not know it',
  expired: 'auth key has expired: create a new one with `weft preauthkeys create`',
  used: 'auth key was already used: it is single-use; create a new one or use a --reusable key',
};

export const WRONG_MACHINE_ERROR = 'this node key is registered to a different machine';

export const SUPERSEDED_LOGIN_ERROR = 'a newer login from this device replaced this one';

/** The path of a login page under server_url; the id follows. */
export const LOGIN_PATH = '/register/';

export interface RegisterContext {
  tailnet: Tailnet;
  log: Logger;
  machineKey: MachinePublic;
  /** Interactive logins: created here, completed by an admin or OIDC. */
  logins: PendingLogins;
  /** What clients use as --login-server; AuthURLs are built on it. */
  serverUrl: string;
  /** Aborted when the request's stream closes: a follow-up stops waiting. */
  signal: AbortSignal;
}

/** `<server_url>/register/<id>` (server_url may carry a path prefix). */
export function loginUrl(serverUrl: string, id: string): string {
  return `${serverUrl.replace(/\/+$/, '')}${LOGIN_PATH}${id}`;
}

/** The login id in a follow-up URL we issued, or undefined when it is not one of ours. */
export function loginIdOf(followup: string, serverUrl: string): string | undefined {
  const prefix = loginUrl(serverUrl, '');
  if (!followup.startsWith(prefix)) return undefined;
  const id = followup.slice(prefix.length);
  return isLoginId(id) ? id : undefined;
}

function userAndLogin(tailnet: Tailnet, node: TailnetNode): Pick<RegisterResponse, 'User' | 'Login'> {
  const user: User | undefined = node.userId === null ? undefined : tailnet.user(node.userId);
  if (user === undefined) {
    return {
      User: { ID: TAGGED_DEVICES_USER_ID, DisplayName: 'Tagged Devices' },
      Login: {
        ID: TAGGED_DEVICES_USER_ID,
        Provider: '',
        LoginName: 'tagged-devices',
        DisplayName: 'Tagged Devices',
      },
    };
  }
  const display = user.displayName || user.name;
  return {
    User: {
      ID: user.id,
      DisplayName: display,
      ProfilePicURL: user.profilePicUrl,
      Created: user.createdAt.toISOString(),
    },
    Login: {
      ID: user.id,
      Provider: user.provider,
      LoginName: loginName(user),
      DisplayName: display,
      ProfilePicURL: user.profilePicUrl,
    },
  };
}

function loggedIn(tailnet: Tailnet, node: TailnetNode): RegisterResponse {
  return { ...userAndLogin(tailnet, node), MachineAuthorized: node.authorized, NodeKeyExpired: false };
}

function keyExpired(tailnet: Tailnet, node: TailnetNode): RegisterResponse {
  return { ...userAndLogin(tailnet, node), MachineAuthorized: false, NodeKeyExpired: true };
}

export async function handleRegister(
  request: RegisterRequest,
  ctx: RegisterContext,
): Promise<RegisterResponse> {
  try {
    return await register(request, ctx);
  } catch (err) {
    // A refusal decided while registering (a node deleted meanwhile, a node key in use) is for the
    // user to see; as an HTTP error the client would only retry silently and `tailscale up` would hang.
    if (err instanceof WeftError && err.status < 500) return { Error: err.message };
    throw err;
  }
}

async function register(request: RegisterRequest, ctx: RegisterContext): Promise<RegisterResponse> {
  const { tailnet, log, machineKey } = ctx;
  if (request.Version < MIN_SUPPORTED_CAPABILITY_VERSION) {
    return { Error: unsupportedVersionMessage(request.Version) };
  }
  if (request.NodeKey === undefined) throw new WeftError('BAD_REQUEST', 'NodeKey is missing');

  const known = tailnet.nodeByKey(request.NodeKey);
  if (known !== undefined) {
    if (known.machineKey !== machineKey) {
      log.warn(
        { node: known.id, machine_key: machineKey },
        'register refused: node key belongs to another machine',
      );
      return { Error: WRONG_MACHINE_ERROR };
    }
    return registerKnown(known, request, ctx);
  }

  const old = request.OldNodeKey === undefined ? undefined : tailnet.nodeByKey(request.OldNodeKey);
  if (old !== undefined && old.machineKey !== machineKey) {
    log.warn(
      { node: old.id, machine_key: machineKey },
      'register refused: old node key belongs to another machine',
    );
    return { Error: WRONG_MACHINE_ERROR };
  }
  // A logout of a node weft no longer knows (deleted meanwhile): it is logged out already. Registering
  // it with the auth key the daemon still holds would make a node the client abandons at once.
  if (request.Expiry !== undefined && request.Expiry.getTime() <= tailnet.now().getTime()) {
    return { MachineAuthorized: false, NodeKeyExpired: true };
  }
  const authKey = request.Auth?.AuthKey;
  if (authKey === undefined || authKey === '') {
    const device = { nodeKey: request.NodeKey, hostinfo: request.Hostinfo ?? {} };
    return request.Followup === ''
      ? startLogin(device, request.Ephemeral, ctx)
      : followUp(request.Followup, device, request.Ephemeral, ctx);
  }

  const registration = await tailnet.registerWithAuthKey({
    machineKey,
    nodeKey: request.NodeKey,
    authKey,
    hostinfo: request.Hostinfo ?? {},
    ephemeral: request.Ephemeral === true,
  });
  if (!registration.ok) {
    if (registration.reason === 'tags') {
      log.info(
        { machine_key: machineKey, denied: registration.denied },
        'register refused: tags not permitted',
      );
      return { Error: deniedTagsMessage(registration.denied) };
    }
    log.info({ machine_key: machineKey, reason: registration.reason }, 'register refused: bad auth key');
    return { Error: AUTH_KEY_ERRORS[registration.reason] };
  }
  const { node, created } = registration;
  log.info(
    {
      node: node.id,
      name: node.givenName,
      ipv4: node.ipv4,
      ipv6: node.ipv6,
      created,
      ephemeral: node.ephemeral,
    },
    created ? 'node registered' : 'node re-registered',
  );
  return loggedIn(tailnet, node);
}

async function registerKnown(
  node: TailnetNode,
  request: RegisterRequest,
  ctx: RegisterContext,
): Promise<RegisterResponse> {
  const { tailnet, log } = ctx;
  const now = tailnet.now();
  const expiry = request.Expiry;
  if (expiry !== undefined && expiry.getTime() <= now.getTime()) {
    await tailnet.logout(node);
    log.info({ node: node.id, name: node.givenName, ephemeral: node.ephemeral }, 'node logged out');
    return keyExpired(tailnet, node);
  }
  if (isExpired(node, now)) return keyExpired(tailnet, node);
  if (expiry !== undefined) {
    // A client may only bring its expiry closer (`tailscale debug set-expire`), never push it out.
    if (node.expiry !== null && expiry.getTime() > node.expiry.getTime()) {
      return { Error: 'a node cannot extend its own key expiry; an admin can' };
    }
    await tailnet.setExpiry(node.id, expiry);
  }
  return loggedIn(tailnet, node);
}

type Device = Pick<PendingLogin, 'nodeKey' | 'hostinfo'>;

/** A new pending login; the client shows the AuthURL ("To authenticate, visit: …"). */
function startLogin(device: Device, ephemeral: boolean, ctx: RegisterContext): RegisterResponse {
  let login: PendingLogin;
  try {
    login = ctx.logins.create({ machineKey: ctx.machineKey, ...device, ephemeral });
  } catch (err) {
    if (err instanceof WeftError && err.code === 'LOGINS_FULL') {
      ctx.log.warn({ machine_key: ctx.machineKey }, 'login refused: too many logins are waiting');
      return { Error: err.message };
    }
    throw err;
  }
  ctx.log.info(
    { machine_key: ctx.machineKey, hostname: login.hostinfo.Hostname ?? '', expires: login.expiresAt },
    'interactive login started',
  );
  return { AuthURL: loginUrl(ctx.serverUrl, login.id) };
}

/**
 * The client waits on the AuthURL it was given. An id that is not (or no longer) pending for this
 * device gets a fresh AuthURL: returning the old one again would only make the client back off.
 */
async function followUp(
  followup: string,
  device: Device,
  ephemeral: boolean,
  ctx: RegisterContext,
): Promise<RegisterResponse> {
  const id = loginIdOf(followup, ctx.serverUrl);
  const waiting =
    id === undefined
      ? undefined
      : ctx.logins.wait(id, { machineKey: ctx.machineKey, nodeKey: device.nodeKey }, ctx.signal);
  if (waiting === undefined) return startLogin(device, ephemeral, ctx);
  const outcome = await waiting;
  switch (outcome.kind) {
    case 'completed':
      ctx.log.info(
        { node: outcome.node.id, name: outcome.node.givenName, user: outcome.node.userId },
        'interactive login completed',
      );
      return loggedIn(ctx.tailnet, outcome.node);
    case 'rejected':
      return { Error: outcome.reason };
    case 'superseded':
      return { Error: SUPERSEDED_LOGIN_ERROR };
    case 'expired':
      return startLogin(device, ephemeral, ctx);
    case 'aborted':
      // The client went away, or the server is stopping (PendingLogins.close) and closes this stream
      // next. Either way the follow-up gets no answer: an Error would be shown to the user, and a new
      // login would only sit unused. The answer waits for the stream to close, so the control plane
      // finds it closed and writes nothing; the client redials and follows up again, and the restarted
      // server, which does not know the login, gives it a fresh AuthURL.
      await closed(ctx.signal);
      return {};
  }
}

/** Resolves when `signal` is aborted (the request's stream closed). */
function closed(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
