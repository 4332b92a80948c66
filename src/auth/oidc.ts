/**
 * OIDC login for interactive registrations (docs/features.md §5.2), as a relying party built on
 * openid-client: authorization code flow with PKCE, state and nonce, userinfo, allow-lists.
 *
 *   1. begin     GET /register/<login id>   a random state, nonce and PKCE verifier are kept here
 *                                          under the state (bounded, expiring, single-use), a random
 *                                          browser-binding secret goes into a cookie, and the browser
 *                                          is sent to the provider.
 *   2. callback  GET /oidc/callback         the state must be known and unused and the binding cookie
 *                                          must match it (a link finished in another browser fails,
 *                                          leaving the state to the browser that started the login);
 *                                          the code is exchanged (PKCE), the ID token checked (nonce),
 *                                          userinfo read, the allow-lists applied. Nothing is written:
 *                                          the person sees a confirmation page naming the device and
 *                                          the account it will join, with a CSRF token (form + cookie).
 *   3. confirm   POST /register/confirm/<id>  the token must match; the user is created or matched by
 *                                          `<issuer>/<sub>` (never by e-mail alone) and the login is
 *                                          completed through `Logins.complete`. With
 *                                          use_expiry_from_token, an ID token less than a minute from
 *                                          its expiry is refused here (and at step 2) instead.
 *
 * The confirmation step is Headscale ≥0.29's defence against "open this link": without it, anyone could
 * send a victim their own AuthURL, and the victim's silent IdP login would put the sender's machine
 * into the victim's account.
 *
 * User names: a new user is named after `preferred_username` (else the verified e-mail, else the
 * subject). A name another user already holds is never taken over: the new user gets the name plus `-`
 * and six hex digits of a hash of its provider id, and an existing user whose wanted name is taken keeps
 * the name it has. A free wanted name replaces an existing user's name at each login, as in Headscale.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as client from 'openid-client';
import type { OidcConfig } from '../config/index.ts';
import type { User } from '../db/records.ts';
import type { UserRepository } from '../db/repos/users.ts';
import type { Logger } from '../observe/logger.ts';
import type { Logins, PendingLogin } from '../state/logins.ts';
import { WeftError } from '../types/errors.ts';
import { userNameProblem } from '../types/names.ts';
import { clearCookie, parseCookies, serializeCookie } from './cookies.ts';
import { identityFrom, type OidcIdentity, refusalFor, trustedEmail, wantedUserName } from './oidc-claims.ts';
import { SingleUseStore } from './single-use-store.ts';

export const CALLBACK_PATH = '/oidc/callback';
export const CONFIRM_PATH_PREFIX = '/register/confirm/';

/** How long a person has at the provider, and on the confirmation page. */
const AUTH_REQUEST_TTL_MS = 10 * 60_000;
const CONFIRMATION_TTL_MS = 5 * 60_000;
/**
 * With use_expiry_from_token: the least time the ID token must still have when the login is confirmed.
 * The person may take up to CONFIRMATION_TTL_MS to confirm; a node registered with a key that expires
 * at once (or within seconds) would only be thrown out again.
 */
const MIN_TOKEN_LIFETIME_MS = 60_000;
/** Logins in flight at once; beyond this the oldest is forgotten (see SingleUseStore). */
const MAX_IN_FLIGHT = 1024;
/** Seconds an HTTP request to the provider may take (discovery, token, userinfo, JWKS). */
const PROVIDER_TIMEOUT_SECONDS = 10;

const BINDING_COOKIE_PREFIX = 'weft_oidc_';
const CONFIRM_COOKIE = 'weft_confirm';
/** Login ids go into a cookie path and a form action: only these characters are accepted. */
const LOGIN_ID = /^[A-Za-z0-9_-]{1,100}$/;

interface AuthRequest {
  loginId: string;
  nonce: string;
  codeVerifier: string | undefined;
  bindingHash: Buffer;
}

interface Confirmation {
  loginId: string;
  identity: OidcIdentity;
  /** The key expiry to give the node: the ID token's with use_expiry_from_token, else the default. */
  expiry: Date | undefined;
}

export interface OidcLoginOptions {
  config: OidcConfig;
  /** server_url (an origin): the callback URL and cookie security derive from it. */
  serverUrl: string;
  /** The client secret read from client_secret_path; undefined for a public client. */
  clientSecret: string | undefined;
  logins: Logins;
  users: UserRepository;
  /** Called after a user was created or changed, so the tailnet model (and peers) pick it up. */
  userChanged: (userId: number) => Promise<void>;
  /** With oidc.policy_groups: stores the user's groups claim for the policy. */
  groupsChanged?: (userId: number, groups: readonly string[]) => Promise<void>;
  log: Logger;
  now?: () => number;
}

/** What the routes need to send the browser to the provider. */
export interface BeginResult {
  location: string;
  setCookie: string;
}

/** What the confirmation page shows and sets. */
export interface ConfirmationView {
  loginId: string;
  /** Posted back in the form, and set as a cookie: both must match. */
  csrfToken: string;
  formAction: string;
  hostname: string;
  machineKeyShort: string;
  /** The weft user name the device will belong to. */
  userName: string;
  /** The account as the provider names it (e-mail, else name, else subject). */
  accountLabel: string;
  newUser: boolean;
  setCookies: string[];
}

export interface ConfirmedLogin {
  userName: string;
  hostname: string;
  setCookies: string[];
}

/** The relying party; one per server. */
export class OidcLogin {
  readonly #options: OidcLoginOptions;
  readonly #redirectUri: string;
  readonly #secureCookies: boolean;
  readonly #authRequests: SingleUseStore<AuthRequest>;
  readonly #confirmations: SingleUseStore<Confirmation>;
  /** The discovered provider; a failed discovery is not kept, so the next login tries again. */
  #discovered: Promise<client.Configuration> | undefined;

  constructor(options: OidcLoginOptions) {
    this.#options = options;
    this.#redirectUri = `${options.serverUrl.replace(/\/+$/, '')}${CALLBACK_PATH}`;
    this.#secureCookies = options.serverUrl.startsWith('https:');
    const now = options.now;
    this.#authRequests = new SingleUseStore({ maxEntries: MAX_IN_FLIGHT, ttlMs: AUTH_REQUEST_TTL_MS, now });
    this.#confirmations = new SingleUseStore({ maxEntries: MAX_IN_FLIGHT, ttlMs: CONFIRMATION_TTL_MS, now });
  }

  /**
   * Fetches the provider's discovery document. With only_start_if_oidc_is_available a failure is
   * thrown (start-up stops); otherwise it is logged and the next login tries again.
   */
  async start(): Promise<void> {
    try {
      await this.#provider();
      this.#options.log.info({ issuer: this.#options.config.issuer }, 'OIDC provider discovered');
    } catch (err) {
      if (this.#options.config.only_start_if_oidc_is_available) throw err;
      this.#options.log.warn(
        { issuer: this.#options.config.issuer, reason: (err as Error).message },
        'OIDC provider unavailable; starting anyway (CLI registration works; OIDC logins retry discovery)',
      );
    }
  }

  /** The pending login behind an id from a URL, or LOGIN_NOT_FOUND. */
  pendingLogin(loginId: string): PendingLogin {
    const pending = LOGIN_ID.test(loginId) ? this.#options.logins.get(loginId) : undefined;
    if (pending === undefined) {
      throw new WeftError(
        'LOGIN_NOT_FOUND',
        'This login link is unknown or has expired; run tailscale up again to get a new one.',
      );
    }
    return pending;
  }

  /** Step 1: where to send the browser for the pending login `loginId`, and the binding cookie. */
  async begin(loginId: string): Promise<BeginResult> {
    this.pendingLogin(loginId);
    const configuration = await this.#provider();
    const { config } = this.#options;
    const state = client.randomState();
    const nonce = client.randomNonce();
    const binding = randomToken();
    const codeVerifier = config.pkce.enabled ? client.randomPKCECodeVerifier() : undefined;
    const parameters: Record<string, string> = {
      ...config.extra_params,
      redirect_uri: this.#redirectUri,
      scope: config.scope.join(' '),
      state,
      nonce,
    };
    if (codeVerifier !== undefined) {
      parameters.code_challenge =
        config.pkce.method === 'S256' ? await client.calculatePKCECodeChallenge(codeVerifier) : codeVerifier;
      parameters.code_challenge_method = config.pkce.method;
    }
    this.#authRequests.put(state, { loginId, nonce, codeVerifier, bindingHash: sha256(binding) });
    return {
      location: client.buildAuthorizationUrl(configuration, parameters).href,
      setCookie: serializeCookie({
        name: bindingCookieName(state),
        value: binding,
        path: CALLBACK_PATH,
        maxAgeSeconds: AUTH_REQUEST_TTL_MS / 1000,
        secure: this.#secureCookies,
      }),
    };
  }

  /**
   * Step 2: checks the provider's answer and prepares the confirmation. `query` is the callback URL's
   * query string; nothing is stored except the confirmation token.
   */
  async callback(query: string, cookieHeader: string | undefined): Promise<ConfirmationView> {
    const params = new URLSearchParams(query);
    const state = params.get('state') ?? '';
    const request = state === '' ? undefined : this.#authRequests.peek(state);
    if (request === undefined) {
      throw new WeftError(
        'OIDC_STATE_INVALID',
        'This login response is unknown, was already used, or has expired; run tailscale up again to get a new link.',
      );
    }
    // The binding first: the callback opened in another browser must not use up the state, or the
    // browser that started the login could no longer finish it.
    const cookieName = bindingCookieName(state);
    const binding = parseCookies(cookieHeader).get(cookieName);
    if (binding === undefined || !timingSafeEqual(sha256(binding), request.bindingHash)) {
      throw new WeftError(
        'OIDC_STATE_INVALID',
        'This login was started in another browser (or cookies are blocked); open the login link from tailscale up in this browser.',
      );
    }
    // Single use from here on (no await since the peek): a replay finds the state gone.
    this.#authRequests.take(state);
    const pending = this.pendingLogin(request.loginId);
    const { identity, tokenExpiry } = await this.#exchange(query, state, request);
    const refusal = refusalFor(identity, this.#options.config);
    if (refusal !== undefined) {
      this.#options.log.info({ provider_id: identity.providerId }, 'OIDC login refused by the allow-lists');
      throw new WeftError('OIDC_NOT_ALLOWED', refusal);
    }
    const expiry = this.#options.config.use_expiry_from_token ? tokenExpiry : undefined;
    this.#refuseExpiringToken(expiry);
    const plan = await this.#planUser(identity);
    const csrfToken = randomToken();
    this.#confirmations.put(csrfToken, { loginId: request.loginId, identity, expiry });
    return {
      loginId: request.loginId,
      csrfToken,
      formAction: `${CONFIRM_PATH_PREFIX}${request.loginId}`,
      hostname: pending.hostinfo.Hostname ?? '',
      machineKeyShort: pending.machineKey.slice('mkey:'.length, 'mkey:'.length + 12),
      userName: plan.name,
      accountLabel: identity.email || identity.name || identity.providerId,
      newUser: plan.user === undefined,
      setCookies: [
        clearCookie(cookieName, CALLBACK_PATH, this.#secureCookies),
        serializeCookie({
          name: CONFIRM_COOKIE,
          value: csrfToken,
          path: `${CONFIRM_PATH_PREFIX}${request.loginId}`,
          maxAgeSeconds: CONFIRMATION_TTL_MS / 1000,
          secure: this.#secureCookies,
        }),
      ],
    };
  }

  /** Step 3: the confirmation form was posted; creates or updates the user and completes the login. */
  async confirm(
    loginId: string,
    cookieHeader: string | undefined,
    formToken: string,
  ): Promise<ConfirmedLogin> {
    const cookieToken = parseCookies(cookieHeader).get(CONFIRM_COOKIE) ?? '';
    const matches =
      cookieToken !== '' && formToken !== '' && timingSafeEqual(sha256(cookieToken), sha256(formToken));
    const confirmation = matches ? this.#confirmations.take(formToken) : undefined;
    if (confirmation === undefined || confirmation.loginId !== loginId) {
      throw new WeftError(
        'CSRF_INVALID',
        'This confirmation form is invalid, expired or was opened in another browser; open the login link from tailscale up again.',
      );
    }
    const pending = this.pendingLogin(loginId);
    this.#refuseExpiringToken(confirmation.expiry);
    const user = await this.#resolveUser(confirmation.identity);
    if (this.#options.config.policy_groups && this.#options.groupsChanged !== undefined) {
      await this.#options.groupsChanged(user.id, confirmation.identity.groups);
    }
    // After the groups: the tailnet re-reads the whole user, and the policy follows.
    await this.#options.userChanged(user.id);
    await this.#options.logins.complete(loginId, {
      userId: user.id,
      method: 'oidc',
      ...(confirmation.expiry !== undefined ? { expiry: confirmation.expiry } : {}),
    });
    this.#options.log.info(
      { user: user.name, user_id: user.id, hostname: pending.hostinfo.Hostname ?? '' },
      'OIDC login completed',
    );
    return {
      userName: user.name,
      hostname: pending.hostinfo.Hostname ?? '',
      setCookies: [clearCookie(CONFIRM_COOKIE, `${CONFIRM_PATH_PREFIX}${loginId}`, this.#secureCookies)],
    };
  }

  /**
   * With use_expiry_from_token the node's key expires with the ID token: one that has passed, or is less
   * than a minute away, is refused (OIDC_LOGIN_EXPIRED) before anything changes, and the pending login
   * stays, so the person can open its link again and get a fresh token.
   */
  #refuseExpiringToken(expiry: Date | undefined): void {
    if (expiry === undefined) return;
    const now = this.#options.now?.() ?? Date.now();
    if (expiry.getTime() - now >= MIN_TOKEN_LIFETIME_MS) return;
    this.#options.log.info(
      { token_expiry: expiry.toISOString() },
      'OIDC login refused: the ID token expires within a minute (use_expiry_from_token)',
    );
    throw new WeftError(
      'OIDC_LOGIN_EXPIRED',
      "The identity provider's login has expired; start again: open the login link from tailscale up in this browser.",
    );
  }

  /** The code exchange (PKCE, state, nonce, ID token signature and claims) and userinfo. */
  async #exchange(
    query: string,
    state: string,
    request: AuthRequest,
  ): Promise<{ identity: OidcIdentity; tokenExpiry: Date | undefined }> {
    const configuration = await this.#provider();
    try {
      const tokens = await client.authorizationCodeGrant(
        configuration,
        new URL(`${this.#redirectUri}?${query}`),
        {
          expectedState: state,
          expectedNonce: request.nonce,
          idTokenExpected: true,
          ...(request.codeVerifier !== undefined ? { pkceCodeVerifier: request.codeVerifier } : {}),
        },
        { redirect_uri: this.#redirectUri },
      );
      const claims = tokens.claims();
      if (claims === undefined) throw new Error('the token response has no ID token');
      // Conforming providers put profile and e-mail claims only at userinfo when they issue an access
      // token; a mismatching `sub` there is refused by openid-client.
      const userinfo =
        configuration.serverMetadata().userinfo_endpoint !== undefined
          ? await client.fetchUserInfo(configuration, tokens.access_token, claims.sub)
          : undefined;
      return {
        identity: identityFrom(claims, userinfo),
        tokenExpiry: typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : undefined,
      };
    } catch (err) {
      throw this.#providerFailure(err);
    }
  }

  /** One sentence about a failed exchange; the log gets the reason but never codes or tokens. */
  #providerFailure(err: unknown): WeftError {
    if (err instanceof WeftError) return err;
    const reason = err instanceof Error ? err.message : String(err);
    const code = (err as { code?: unknown }).code;
    if (err instanceof client.AuthorizationResponseError || err instanceof client.ResponseBodyError) {
      const detail = [err.error, err.error_description].filter(Boolean).join(': ');
      this.#options.log.warn({ error: err.error, code }, 'OIDC provider refused the login');
      return new WeftError(
        'OIDC_LOGIN_FAILED',
        `The identity provider refused the login (${limit(detail)}).`,
        {
          cause: err,
        },
      );
    }
    if (isNetworkError(err)) {
      this.#options.log.warn({ reason, code }, 'OIDC provider unreachable during a login');
      return new WeftError(
        'OIDC_UNAVAILABLE',
        'The identity provider cannot be reached right now; try again shortly.',
        {
          cause: err,
        },
      );
    }
    this.#options.log.warn({ reason: limit(reason), code }, 'OIDC login response failed verification');
    return new WeftError(
      'OIDC_LOGIN_FAILED',
      `The identity provider's answer could not be verified (${limit(reason)}).`,
      { cause: err },
    );
  }

  /** Discovery, once; concurrent callers share it, and a failure lets the next caller try again. */
  #provider(): Promise<client.Configuration> {
    if (this.#discovered === undefined) {
      const attempt = this.#discover();
      this.#discovered = attempt;
      attempt.catch(() => {
        if (this.#discovered === attempt) this.#discovered = undefined;
      });
    }
    return this.#discovered;
  }

  async #discover(): Promise<client.Configuration> {
    const { config, clientSecret } = this.#options;
    const issuer = new URL(config.issuer);
    // The config allows http:// only for loopback issuers (tests, a provider on the same host).
    const execute = issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [];
    try {
      const discovered = await client.discovery(issuer, config.client_id, undefined, undefined, {
        execute,
        timeout: PROVIDER_TIMEOUT_SECONDS,
      });
      const configuration = new client.Configuration(
        discovered.serverMetadata(),
        config.client_id,
        clientSecret,
        clientAuthFor(discovered.serverMetadata(), clientSecret),
      );
      for (const apply of execute) apply(configuration);
      configuration.timeout = PROVIDER_TIMEOUT_SECONDS;
      return configuration;
    } catch (err) {
      throw new WeftError(
        'OIDC_UNAVAILABLE',
        `the OIDC provider ${config.issuer} cannot be used: ${limit((err as Error).message)}`,
        { cause: err },
      );
    }
  }

  /** Which user a login will become, without writing anything (for the confirmation page). */
  async #planUser(identity: OidcIdentity): Promise<{ user: User | undefined; name: string }> {
    const { users, config } = this.#options;
    const wanted = wantedUserName(identity, trustedEmail(identity, config.email_verified_required));
    const user = await users.findByProviderId(identity.providerId);
    if (user !== undefined) {
      if (user.name === wanted) return { user, name: wanted };
      const holder = await users.findByName(wanted);
      return { user, name: holder === undefined ? wanted : user.name };
    }
    const holder = await users.findByName(wanted);
    return {
      user: undefined,
      name: holder === undefined ? wanted : suffixedName(wanted, identity.providerId),
    };
  }

  /** Creates the user of a first login, or refreshes the profile of a known one. */
  async #resolveUser(identity: OidcIdentity, attempt = 0): Promise<User> {
    const { users, config } = this.#options;
    const email = trustedEmail(identity, config.email_verified_required);
    const { user, name } = await this.#planUser(identity);
    const profile = { displayName: identity.name, email, profilePicUrl: identity.picture };
    try {
      if (user !== undefined) return await users.updateProfile(user.id, { name, ...profile });
      return await users.create({ name, provider: 'oidc', providerId: identity.providerId, ...profile });
    } catch (err) {
      // Another login of the same subject, or a user created under the same name, won the race:
      // plan again against what is there now.
      if (err instanceof WeftError && err.code === 'USER_EXISTS' && attempt < 2) {
        return this.#resolveUser(identity, attempt + 1);
      }
      throw err;
    }
  }
}

/** `name-<6 hex>`; the hash of the provider id keeps the name stable across logins and tries. */
export function suffixedName(name: string, providerId: string): string {
  const suffix = createHash('sha256').update(providerId).digest('hex').slice(0, 6);
  const candidate = `${name.slice(0, 57)}-${suffix}`;
  return userNameProblem(candidate) === undefined ? candidate : `oidc-${suffix}`;
}

function clientAuthFor(metadata: client.ServerMetadata, secret: string | undefined): client.ClientAuth {
  if (secret === undefined) return client.None();
  const supported = metadata.token_endpoint_auth_methods_supported;
  // client_secret_basic is the OIDC default when the provider lists nothing.
  if (supported === undefined || supported.includes('client_secret_basic'))
    return client.ClientSecretBasic(secret);
  return client.ClientSecretPost(secret);
}

function bindingCookieName(state: string): string {
  // The state's start in the name lets two logins run side by side in one browser.
  return `${BINDING_COOKIE_PREFIX}${state.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 16)}`;
}

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function limit(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function isNetworkError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'AbortError' || err.name === 'TimeoutError') return true;
  return err instanceof TypeError && /fetch failed/i.test(err.message);
}
