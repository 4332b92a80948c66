/** API keys: bearer secrets for the REST API and the remote CLI (`--api-key`). */
import type { Kysely, Selectable } from 'kysely';
import { WeftError } from '../../types/errors.ts';
import { type ApiKey, toDate, toDateOrNull } from '../records.ts';
import type { ApiKeysTable, Database } from '../schema.ts';
import { API_KEY_NAMING, insertMinted, resolveByPrefix, verifyPresented } from './secret-keys.ts';

/** Writing last_seen on every request would turn reads into writes; once a minute is enough to audit. */
const LAST_SEEN_GRANULARITY_MS = 60_000;

function toApiKey(row: Selectable<ApiKeysTable>): ApiKey {
  return {
    id: row.id,
    prefix: row.prefix,
    userId: row.user_id,
    expiration: toDate(row.expiration),
    lastSeen: toDateOrNull(row.last_seen),
    createdAt: toDate(row.created_at),
  };
}

export class ApiKeyRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(
    expiration: Date,
    now = new Date(),
    userId: number | null = null,
  ): Promise<{ key: ApiKey; text: string }> {
    const [row, text] = await insertMinted('api', (token) =>
      this.#db
        .insertInto('api_keys')
        .values({
          prefix: token.prefix,
          hash: token.hash,
          user_id: userId,
          expiration,
          last_seen: null,
          created_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow(),
    );
    return { key: toApiKey(row), text };
  }

  async list(): Promise<ApiKey[]> {
    return (await this.#db.selectFrom('api_keys').selectAll().orderBy('id').execute()).map(toApiKey);
  }

  resolve(typed: string): Promise<ApiKey> {
    return resolveByPrefix(API_KEY_NAMING, typed, async (hexStart) => {
      const rows = await this.#db
        .selectFrom('api_keys')
        .selectAll()
        .where('prefix', 'like', `${hexStart}%`)
        .orderBy('id')
        .execute();
      return rows.map(toApiKey);
    });
  }

  async expire(id: number, now = new Date()): Promise<ApiKey> {
    const row = await this.#db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new WeftError('APIKEY_NOT_FOUND', `there is no API key with id ${id}`);
    if (toDate(row.expiration) <= now) {
      throw new WeftError('APIKEY_EXPIRED', `API key weft-api-${row.prefix} has already expired`);
    }
    const updated = await this.#db
      .updateTable('api_keys')
      .set({ expiration: now })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return toApiKey(updated);
  }

  /** The unexpired key a bearer secret belongs to, recording that it was used; undefined otherwise. */
  async authenticate(text: string, now = new Date()): Promise<ApiKey | undefined> {
    const key = await verifyPresented('api', text, async (prefix) => {
      const row = await this.#db
        .selectFrom('api_keys')
        .selectAll()
        .where('prefix', '=', prefix)
        .executeTakeFirst();
      return row && { record: toApiKey(row), hash: row.hash };
    });
    if (!key || key.expiration <= now) return undefined;
    if (!key.lastSeen || now.getTime() - key.lastSeen.getTime() >= LAST_SEEN_GRANULARITY_MS) {
      await this.#db.updateTable('api_keys').set({ last_seen: now }).where('id', '=', key.id).execute();
      key.lastSeen = now;
    }
    return key;
  }
}
