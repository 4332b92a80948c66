/**
 * OAuth clients and their access tokens (the client credentials grant of API v2, as Tailscale and
 * Headscale 0.30 have it).
 *
 *   weft-client-<client id>-<secret>   the client secret; the 12 hex digits of the client id are its prefix
 *   weft-oauth-<prefix>-<secret>       an access token, valid for an hour
 *
 * Only SHA-256 hashes of the secrets are stored (they are random, so a slow hash adds nothing), and the
 * tokens live in the database so that any replica accepts a token another replica issued.
 */
import type { Kysely, Selectable } from 'kysely';
import { WeftError } from '../../types/errors.ts';
import { fromJson, type OAuthClient, type OAuthToken, toDate } from '../records.ts';
import type { Database, OAuthClientsTable } from '../schema.ts';
import { insertMinted, verifyPresented } from './secret-keys.ts';

export interface NewOAuthClient {
  scopes: string[];
  tags: string[];
  description: string;
  createdBy: string | null;
}

export interface NewOAuthToken {
  scopes: string[];
  tags: string[];
  expiresAt: Date;
}

function toClient(row: Selectable<OAuthClientsTable>): OAuthClient {
  return {
    id: row.id,
    clientId: row.client_id,
    scopes: fromJson<string[]>(row.scopes),
    tags: fromJson<string[]>(row.tags),
    description: row.description,
    createdBy: row.created_by,
    createdAt: toDate(row.created_at),
  };
}

export class OAuthRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** Creates a client; the returned `secret` is the only time the whole secret exists. */
  async createClient(
    client: NewOAuthClient,
    now = new Date(),
  ): Promise<{ client: OAuthClient; secret: string }> {
    const [row, secret] = await insertMinted('client', (token) =>
      this.#db
        .insertInto('oauth_clients')
        .values({
          client_id: token.prefix,
          hash: token.hash,
          scopes: JSON.stringify(client.scopes),
          tags: JSON.stringify(client.tags),
          description: client.description,
          created_by: client.createdBy,
          created_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow(),
    );
    return { client: toClient(row), secret };
  }

  async listClients(): Promise<OAuthClient[]> {
    return (await this.#db.selectFrom('oauth_clients').selectAll().orderBy('id').execute()).map(toClient);
  }

  async findClient(clientId: string): Promise<OAuthClient | undefined> {
    const row = await this.#db
      .selectFrom('oauth_clients')
      .selectAll()
      .where('client_id', '=', clientId.toLowerCase())
      .executeTakeFirst();
    return row && toClient(row);
  }

  /** Deletes the client and, with it, every token it minted. */
  async deleteClient(clientId: string): Promise<void> {
    const result = await this.#db
      .deleteFrom('oauth_clients')
      .where('client_id', '=', clientId.toLowerCase())
      .executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) {
      throw new WeftError('OAUTH_CLIENT_NOT_FOUND', `there is no OAuth client with id ${clientId}`);
    }
  }

  /** The client a presented secret belongs to; undefined when it is malformed, unknown or wrong. */
  authenticateClient(secret: string): Promise<OAuthClient | undefined> {
    return verifyPresented('client', secret, async (prefix) => {
      const row = await this.#db
        .selectFrom('oauth_clients')
        .selectAll()
        .where('client_id', '=', prefix)
        .executeTakeFirst();
      return row && { record: toClient(row), hash: row.hash };
    });
  }

  /**
   * Mints an access token for the client. Expired tokens of every client are removed on the way, so
   * the table holds only live tokens (at most one hour's worth).
   */
  async mintToken(
    client: OAuthClient,
    token: NewOAuthToken,
    now = new Date(),
  ): Promise<{ token: OAuthToken; text: string }> {
    await this.#db.deleteFrom('oauth_tokens').where('expires_at', '<=', now).execute();
    const [row, text] = await insertMinted('oauth', (minted) =>
      this.#db
        .insertInto('oauth_tokens')
        .values({
          prefix: minted.prefix,
          hash: minted.hash,
          client_id: client.id,
          scopes: JSON.stringify(token.scopes),
          tags: JSON.stringify(token.tags),
          expires_at: token.expiresAt,
          created_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow(),
    );
    return {
      token: {
        id: row.id,
        prefix: row.prefix,
        clientId: client.clientId,
        scopes: fromJson<string[]>(row.scopes),
        tags: fromJson<string[]>(row.tags),
        expiresAt: toDate(row.expires_at),
        createdAt: toDate(row.created_at),
      },
      text,
    };
  }

  /** The unexpired token a bearer text belongs to (its client still existing); undefined otherwise. */
  async authenticateToken(text: string, now = new Date()): Promise<OAuthToken | undefined> {
    const token = await verifyPresented('oauth', text, async (prefix) => {
      const row = await this.#db
        .selectFrom('oauth_tokens')
        .innerJoin('oauth_clients', 'oauth_clients.id', 'oauth_tokens.client_id')
        .select([
          'oauth_tokens.id as id',
          'oauth_tokens.prefix as prefix',
          'oauth_tokens.hash as hash',
          'oauth_tokens.scopes as scopes',
          'oauth_tokens.tags as tags',
          'oauth_tokens.expires_at as expires_at',
          'oauth_tokens.created_at as created_at',
          'oauth_clients.client_id as client_id',
        ])
        .where('oauth_tokens.prefix', '=', prefix)
        .executeTakeFirst();
      if (row === undefined) return undefined;
      const record: OAuthToken = {
        id: row.id,
        prefix: row.prefix,
        clientId: row.client_id,
        scopes: fromJson<string[]>(row.scopes),
        tags: fromJson<string[]>(row.tags),
        expiresAt: toDate(row.expires_at),
        createdAt: toDate(row.created_at),
      };
      return { record, hash: row.hash };
    });
    return token !== undefined && token.expiresAt > now ? token : undefined;
  }
}
