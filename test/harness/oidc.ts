/**
 * A real OpenID Connect provider (panva's `oidc-provider`, OpenID-certified) on 127.0.0.1 for login
 * tests, and a small cookie-jar browser that walks through its development login and consent pages the
 * way a person would, without a real browser.
 *
 * The provider runs in the test process with one confidential client whose redirect URI is weft's
 * `/oidc/callback`, PKCE required, and accounts whose claims each test chooses (and may change between
 * logins). Its dev interactions accept any password: the login name picks the account.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Provider from 'oidc-provider';

export interface OidcAccountClaims {
  email?: string;
  email_verified?: boolean | string;
  preferred_username?: string;
  name?: string;
  picture?: string;
  groups?: string[] | string;
}

export interface OidcProviderOptions {
  /** weft's callback URL, e.g. `http://127.0.0.1:PORT/oidc/callback`. */
  redirectUri: string;
  /**
   * `sub` → the other claims. The test signs in by typing the `sub` as the login name. The map may be
   * changed between logins.
   */
  accounts: Map<string, OidcAccountClaims>;
  /**
   * false puts every claim into the ID token even when an access token is issued; the default (true,
   * the spec's rule) leaves profile and e-mail claims to the userinfo endpoint.
   */
  conformIdTokenClaims?: boolean;
  /** Seconds an ID token is valid; 600 by default. */
  idTokenTtlSeconds?: number;
}

export interface TestOidcProvider {
  /** `http://127.0.0.1:<port>` — what weft's `oidc.issuer` is set to. */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** A file holding the client secret, for `oidc.client_secret_path`. */
  readonly clientSecretPath: string;
  /** Grant events the provider emitted (e.g. `grant.success`, `grant.error` with the error name). */
  readonly events: string[];
  close(): Promise<void>;
}

export async function startOidcProvider(options: OidcProviderOptions): Promise<TestOidcProvider> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('could not read the bound port');
  const issuer = `http://127.0.0.1:${address.port}`;
  const clientId = 'weft-test';
  const clientSecret = `secret-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  const dir = await mkdtemp(join(tmpdir(), 'weft-oidc-'));
  const clientSecretPath = join(dir, 'client_secret');
  await writeFile(clientSecretPath, `${clientSecret}\n`, { mode: 0o600 });

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    // The login name typed on the dev login page becomes the account id, which is the `sub`. The
    // claims are read at each use, so a test can change an account's e-mail between two logins.
    findAccount: (_ctx, id) => {
      const claims = options.accounts.get(id);
      return claims === undefined ? undefined : { accountId: id, claims: () => ({ ...claims, sub: id }) };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'picture'],
      groups: ['groups'],
    },
    scopes: ['openid', 'profile', 'email', 'groups'],
    cookies: { keys: [`cookie-key-${clientSecret}`] },
    // Confidential clients need not use PKCE by default; this provider insists, so a client that
    // forgets it fails.
    pkce: { required: () => true },
    conformIdTokenClaims: options.conformIdTokenClaims ?? true,
    features: { devInteractions: { enabled: true } },
    // Set, so the provider does not print a notice about each default.
    ttl: {
      Interaction: 600,
      Session: 600,
      Grant: 600,
      AccessToken: 600,
      IdToken: options.idTokenTtlSeconds ?? 600,
    },
  });
  const events: string[] = [];
  provider.on('grant.success', () => events.push('grant.success'));
  provider.on('grant.error', (_ctx, err) => events.push(`grant.error:${(err as Error).name}`));
  provider.on('authorization.error', (_ctx, err) =>
    events.push(`authorization.error:${(err as Error).name}`),
  );
  provider.on('server_error', (_ctx, err) => events.push(`server_error:${(err as Error).message}`));
  server.on('request', provider.callback());

  return {
    issuer,
    clientId,
    clientSecret,
    clientSecretPath,
    events,
    close: async () => {
      await closeServer(server);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

interface StoredCookie {
  value: string;
  path: string;
}

/**
 * A browser reduced to what logins need: a cookie jar (per host name, ignoring the port, as browsers
 * do; paths respected), redirects followed by hand so each hop's cookies are kept, and HTML forms.
 */
export class CookieBrowser {
  /** host name → cookie name → cookie. */
  readonly #jar = new Map<string, Map<string, StoredCookie>>();
  /** Every URL requested, in order (the redirect chain of a login included). */
  readonly visited: string[] = [];

  cookies(host: string): Map<string, StoredCookie> {
    let cookies = this.#jar.get(host);
    if (cookies === undefined) {
      cookies = new Map();
      this.#jar.set(host, cookies);
    }
    return cookies;
  }

  /** Forgets the cookies whose name matches, on every host (to play a browser that lacks them). */
  dropCookies(match: (name: string) => boolean): void {
    for (const cookies of this.#jar.values())
      for (const name of [...cookies.keys()]) if (match(name)) cookies.delete(name);
  }

  /** One request, with the jar's cookies, no redirect following; the response's cookies are kept. */
  async request(
    url: string,
    init: { method?: string; form?: Record<string, string> } = {},
  ): Promise<Response> {
    const target = new URL(url);
    this.visited.push(target.href);
    const headers: Record<string, string> = {};
    const cookie = [...this.cookies(target.hostname)]
      .filter(
        ([, c]) =>
          target.pathname === c.path ||
          target.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`),
      )
      .map(([name, c]) => `${name}=${c.value}`)
      .join('; ');
    if (cookie !== '') headers.cookie = cookie;
    let body: string | undefined;
    if (init.form !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(target, {
      method: init.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(15_000),
    });
    this.#keep(target, response.headers.getSetCookie());
    return response;
  }

  /**
   * Requests `url` and follows up to 20 redirects; returns the last response and its URL. A redirect
   * to a URL that `stopBefore` accepts is not followed (its URL is `stoppedAt`).
   */
  async follow(
    url: string,
    init: { method?: string; form?: Record<string, string>; stopBefore?: (url: string) => boolean } = {},
  ): Promise<{ response: Response; url: string; stoppedAt?: string }> {
    let current = url;
    let response = await this.request(current, init);
    for (let hop = 0; hop < 20; hop += 1) {
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || location === null)
        return { response, url: current };
      const next = new URL(location, current).href;
      if (init.stopBefore?.(next)) return { response, url: current, stoppedAt: next };
      await response.body?.cancel();
      current = next;
      response = await this.request(current);
    }
    throw new Error(`more than 20 redirects from ${url}`);
  }

  #keep(url: URL, setCookies: string[]): void {
    const cookies = this.cookies(url.hostname);
    for (const header of setCookies) {
      const [pair = '', ...attributes] = header.split(';').map((part) => part.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let expired = value === '';
      for (const attribute of attributes) {
        const [key = '', attrValue = ''] = attribute.split('=');
        if (key.toLowerCase() === 'path') path = attrValue;
        if (key.toLowerCase() === 'max-age' && Number(attrValue) <= 0) expired = true;
        if (key.toLowerCase() === 'expires' && Date.parse(attrValue) <= Date.now()) expired = true;
      }
      if (expired) cookies.delete(name);
      else cookies.set(name, { value, path });
    }
  }
}

export interface HtmlForm {
  action: string;
  method: string;
  fields: Record<string, string>;
}

/** The forms of an HTML page: action (absolute against `pageUrl`), method, and hidden/preset fields. */
export function parseForms(html: string, pageUrl: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attributes = match[1] ?? '';
    const action = decodeEntities(/\baction="([^"]*)"/i.exec(attributes)?.[1] ?? '');
    const method = (/\bmethod="([^"]*)"/i.exec(attributes)?.[1] ?? 'get').toLowerCase();
    const fields: Record<string, string> = {};
    for (const input of (match[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
      const name = /\bname="([^"]*)"/i.exec(input[1] ?? '')?.[1];
      const value = /\bvalue="([^"]*)"/i.exec(input[1] ?? '')?.[1];
      if (name !== undefined && value !== undefined) fields[decodeEntities(name)] = decodeEntities(value);
    }
    forms.push({ action: new URL(action, pageUrl).href, method, fields });
  }
  return forms;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))
    .replace(/&#([0-9]+);/g, (_, dec: string) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

export interface BrowserPage {
  status: number;
  url: string;
  html: string;
}

async function page(result: { response: Response; url: string }): Promise<BrowserPage> {
  return { status: result.response.status, url: result.url, html: await result.response.text() };
}

/**
 * Opens `startUrl` (weft's AuthURL), signs in at the test provider as `login`, grants consent, and
 * returns the page weft shows after its callback (the confirmation page, or a refusal). Pages that are
 * not the provider's login or consent form end the walk.
 */
export async function signInThroughProvider(
  browser: CookieBrowser,
  startUrl: string,
  login: string,
  issuer: string,
): Promise<BrowserPage> {
  return (await walkProvider(browser, startUrl, login, issuer)).page;
}

/**
 * Like signInThroughProvider, but stops before the provider's redirect back to weft and returns that
 * callback URL (with its code and state) unrequested, for tests that tamper with it.
 */
export async function callbackUrlFromProvider(
  browser: CookieBrowser,
  startUrl: string,
  login: string,
  issuer: string,
): Promise<string> {
  const isCallback = (url: string) => new URL(url).pathname.endsWith('/oidc/callback');
  const walked = await walkProvider(browser, startUrl, login, issuer, isCallback);
  if (walked.stoppedAt === undefined) {
    throw new Error(`the provider did not redirect back: ${walked.page.status} ${walked.page.url}`);
  }
  return walked.stoppedAt;
}

async function walkProvider(
  browser: CookieBrowser,
  startUrl: string,
  login: string,
  issuer: string,
  stopBefore?: (url: string) => boolean,
): Promise<{ page: BrowserPage; stoppedAt?: string | undefined }> {
  const options = stopBefore === undefined ? {} : { stopBefore };
  let result = await browser.follow(startUrl, options);
  let current = await page(result);
  // Login, then consent: two forms at most, bounded.
  for (
    let step = 0;
    step < 4 && result.stoppedAt === undefined && current.url.startsWith(issuer);
    step += 1
  ) {
    const form = parseForms(current.html, current.url).find((f) => f.method === 'post');
    if (form === undefined) break;
    const fields =
      form.fields.prompt === 'login' ? { ...form.fields, login, password: 'any password' } : form.fields;
    result = await browser.follow(form.action, { form: fields, ...options });
    current = await page(result);
  }
  return { page: current, stoppedAt: result.stoppedAt };
}

/** Submits the (only) POST form of weft's confirmation page and returns the resulting page. */
export async function submitConfirmation(
  browser: CookieBrowser,
  confirmation: BrowserPage,
  override: Record<string, string> = {},
): Promise<BrowserPage> {
  const form = parseForms(confirmation.html, confirmation.url).find((f) => f.method === 'post');
  if (form === undefined)
    throw new Error(`no confirmation form on ${confirmation.url}: ${confirmation.html.slice(0, 300)}`);
  return page(await browser.follow(form.action, { form: { ...form.fields, ...override } }));
}
