/** Pre-auth keys: secrets that let `tailscale up --auth-key` register a node without a browser login. */
import type { Kysely, Selectable } from 'kysely';
import { WeftError } from '../../types/errors.ts';
import { fromJson, type PreAuthKey, toBool, toDate } from '../records.ts';
import type { Database, PreAuthKeysTable } from '../schema.ts';
import { insertMinted, PRE_AUTH_KEY_NAMING, resolveByPrefix, verifyPresented } from './secret-keys.ts';

export interface NewPreAuthKey {
  userId: number | null;
  reusable: boolean;
  ephemeral: boolean;
  tags: string[];
  expiration: Date;
  /** Free text (API v2 `description`). */
  description?: string;
  /** Nodes registered with this key skip device approval; default false. */
  preauthorized?: boolean;
}

/** Why a presented pre-auth key cannot register a node (the order of checks follows Headscale). */
export type PreAuthKeyRejection = 'invalid' | 'expired' | 'used';

/** Why a known key can register no node now: it expired, or it was single-use and is used up. */
export function whyUnusable(key: PreAuthKey, now: Date): 'expired' | 'used' | undefined {
  if (key.expiration <= now) return 'expired';
  if (key.used && !key.reusable) return 'used';
  return undefined;
}

/** A rejected key still comes back when it exists, so a caller can recognise a re-registration with it. */
export type PreAuthKeyCheck =
  | { ok: true; key: PreAuthKey }
  | { ok: false; reason: 'invalid' }
  | { ok: false; reason: 'expired' | 'used'; key: PreAuthKey };

function toPreAuthKey(row: Selectable<PreAuthKeysTable>): PreAuthKey {
  return {
    id: row.id,
    prefix: row.prefix,
    userId: row.user_id,
    reusable: toBool(row.reusable),
    ephemeral: toBool(row.ephemeral),
    used: toBool(row.used),
    tags: fromJson<string[]>(row.tags),
    expiration: toDate(row.expiration),
    createdAt: toDate(row.created_at),
    description: row.description,
    preauthorized: toBool(row.preauthorized),
  };
}

export class PreAuthKeyRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** Creates a key; the returned `text` is the only time the whole secret exists. */
  async create(key: NewPreAuthKey, now = new Date()): Promise<{ key: PreAuthKey; text: string }> {
    const [row, text] = await insertMinted('auth', (token) =>
      this.#db
        .insertInto('pre_auth_keys')
        .values({
          prefix: token.prefix,
          hash: token.hash,
          user_id: key.userId,
          reusable: key.reusable,
          ephemeral: key.ephemeral,
          used: false,
          tags: JSON.stringify(key.tags),
          expiration: key.expiration,
          created_at: now,
          ...(key.description === undefined ? {} : { description: key.description }),
          ...(key.preauthorized === undefined ? {} : { preauthorized: key.preauthorized }),
        })
        .returningAll()
        .executeTakeFirstOrThrow(),
    );
    return { key: toPreAuthKey(row), text };
  }

  async list(filter: { userId?: number } = {}): Promise<PreAuthKey[]> {
    let query = this.#db.selectFrom('pre_auth_keys').selectAll().orderBy('id');
    if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
    return (await query.execute()).map(toPreAuthKey);
  }

  async findById(id: number): Promise<PreAuthKey | undefined> {
    const row = await this.#db
      .selectFrom('pre_auth_keys')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row && toPreAuthKey(row);
  }

  /** The one key named by what an admin typed: the key itself, its `weft-auth-<prefix>` label or a hex start. */
  resolve(typed: string): Promise<PreAuthKey> {
    return resolveByPrefix(PRE_AUTH_KEY_NAMING, typed, async (hexStart) => {
      const rows = await this.#db
        .selectFrom('pre_auth_keys')
        .selectAll()
        .where('prefix', 'like', `${hexStart}%`)
        .orderBy('id')
        .execute();
      return rows.map(toPreAuthKey);
    });
  }

  /** Makes a key unusable from now on; an already expired key is an error so typos don't go unnoticed. */
  async expire(id: number, now = new Date()): Promise<PreAuthKey> {
    const key = await this.findById(id);
    if (!key) throw new WeftError('PREAUTHKEY_NOT_FOUND', `there is no pre-auth key with id ${id}`);
    if (key.expiration <= now) {
      throw new WeftError('PREAUTHKEY_EXPIRED', `pre-auth key weft-auth-${key.prefix} has already expired`);
    }
    const row = await this.#db
      .updateTable('pre_auth_keys')
      .set({ expiration: now })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return toPreAuthKey(row);
  }

  /** Removes the key (API v2 `DELETE /tailnet/-/keys/{id}`); nodes it registered stay, unlinked from it. */
  async delete(id: number): Promise<void> {
    const result = await this.#db.deleteFrom('pre_auth_keys').where('id', '=', id).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0)
      throw new WeftError('PREAUTHKEY_NOT_FOUND', `there is no pre-auth key with id ${id}`);
  }

  /** Checks a key presented by a registering client. Does not use it up; see `consume`. */
  async check(text: string, now = new Date()): Promise<PreAuthKeyCheck> {
    const key = await verifyPresented('auth', text, async (prefix) => {
      const row = await this.#db
        .selectFrom('pre_auth_keys')
        .selectAll()
        .where('prefix', '=', prefix)
        .executeTakeFirst();
      return row && { record: toPreAuthKey(row), hash: row.hash };
    });
    if (!key) return { ok: false, reason: 'invalid' };
    const unusable = whyUnusable(key, now);
    return unusable === undefined ? { ok: true, key } : { ok: false, reason: unusable, key };
  }

  /**
   * Uses the key for one registration. Atomic: of two registrations racing for a single-use key,
   * exactly one gets true. A reusable key is simply marked as used.
   */
  async consume(id: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('pre_auth_keys')
      .set({ used: true })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('reusable', '=', true), eb('used', '=', false)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }
}
