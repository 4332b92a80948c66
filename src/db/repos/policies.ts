/** Policy versions (policy.mode: database): append-only, the newest row is in force. */
import type { Kysely, Selectable } from 'kysely';
import { type PolicyVersion, toDate } from '../records.ts';
import type { Database, PoliciesTable } from '../schema.ts';

function toPolicyVersion(row: Selectable<PoliciesTable>): PolicyVersion {
  return { id: row.id, data: row.data, author: row.author, createdAt: toDate(row.created_at) };
}

export class PolicyRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async current(): Promise<PolicyVersion | undefined> {
    const row = await this.#db
      .selectFrom('policies')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row && toPolicyVersion(row);
  }

  async append(data: string, author: string | null, now = new Date()): Promise<PolicyVersion> {
    const row = await this.#db
      .insertInto('policies')
      .values({ data, author, created_at: now })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toPolicyVersion(row);
  }

  async history(limit = 20): Promise<PolicyVersion[]> {
    const rows = await this.#db
      .selectFrom('policies')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toPolicyVersion);
  }
}
