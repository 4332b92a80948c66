/**
 * OIDC login, assembled from the config: reads the client secret, discovers the provider (start-up
 * stops when it is unavailable and `oidc.only_start_if_oidc_is_available` is set), and connects the
 * relying party to the pending logins, the users and the tailnet.
 */
import { readFile } from 'node:fs/promises';
import { OidcLogin } from '../auth/oidc.ts';
import type { Config } from '../config/index.ts';
import type { Store } from '../db/store.ts';
import type { Logger } from '../observe/logger.ts';
import type { Logins } from '../state/logins.ts';
import type { Tailnet } from '../state/tailnet.ts';
import { StartupError } from './errors.ts';

export interface OidcParts {
  store: Store;
  tailnet: Tailnet;
  logins: Logins;
  log: Logger;
}

/** The relying party when `oidc` is configured, ready for logins; undefined otherwise. */
export async function startOidc(config: Config, parts: OidcParts): Promise<OidcLogin | undefined> {
  const oidc = config.oidc;
  if (oidc === undefined) return undefined;
  const login = new OidcLogin({
    config: oidc,
    serverUrl: config.server_url,
    clientSecret: await readClientSecret(oidc.client_secret_path),
    logins: parts.logins,
    users: parts.store.users,
    userChanged: (userId) => parts.tailnet.refreshUser(userId),
    groupsChanged: (userId, groups) => parts.store.users.setGroups(userId, groups),
    log: parts.log.child({ component: 'oidc' }),
  });
  try {
    await login.start();
  } catch (err) {
    throw new StartupError(
      `${(err as Error).message}; start-up stops because oidc.only_start_if_oidc_is_available is true (set it to false to start without the provider)`,
      { cause: err },
    );
  }
  return login;
}

/**
 * Stored identity-provider groups count in the policy only while oidc.policy_groups is on: when it is
 * off they are forgotten at start (before the tailnet loads its users), so turning the option off
 * really takes those memberships away.
 */
export async function forgetGroupsUnlessEnabled(config: Config, store: Store, log: Logger): Promise<void> {
  if (config.oidc?.policy_groups === true) return;
  const cleared = await store.users.clearGroups();
  if (cleared > 0) log.info({ users: cleared }, 'oidc.policy_groups is off: forgot the stored OIDC groups');
}

async function readClientSecret(path: string | undefined): Promise<string | undefined> {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new StartupError(`cannot read ${path} (oidc.client_secret_path): ${(err as Error).message}`, {
      cause: err,
    });
  }
  const secret = text.trim();
  if (secret === '') throw new StartupError(`${path} (oidc.client_secret_path) is empty`);
  return secret;
}
