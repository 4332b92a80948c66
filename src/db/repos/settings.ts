/**
 * Run-time settings: one JSON document per key (e.g. `dns`), replaced whole by `put`. They hold what an
 * admin changed through the API, so a restart keeps it even though the config file still says otherwise.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../schema.ts';

export class SettingsRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** The parsed value stored under `key`, or undefined when it was never set. */
  async get(key: string): Promise<unknown> {
    const row = await this.#db
      .selectFrom('settings')
      .select('value')
      .where('key', '=', key)
      .executeTakeFirst();
    return row === undefined ? undefined : (JSON.parse(row.value) as unknown);
  }

  /** Stores `value` (as JSON) under `key`, replacing what was there. */
  async put(key: string, value: unknown, now = new Date()): Promise<void> {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`the setting ${key} has no JSON form`);
    await this.#db
      .insertInto('settings')
      .values({ key, value: text, updated_at: now })
      .onConflict((conflict) => conflict.column('key').doUpdateSet({ value: text, updated_at: now }))
      .execute();
  }
}
