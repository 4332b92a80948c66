/** Users: the people (or OIDC identities) that own nodes and pre-auth keys. */
import type { Kysely, Selectable } from 'kysely';
import { WeftError } from '../../types/errors.ts';
import { isForeignKeyViolation, isUniqueViolation } from '../errors.ts';
import { toDate, type User } from '../records.ts';
import type { Database, UsersTable } from '../schema.ts';

export interface NewUser {
  name: string;
  displayName?: string;
  email?: string;
  provider?: string;
  providerId?: string | null;
  profilePicUrl?: string;
}

/** Fields an identity provider owns; absent ones stay as they are. */
export interface ProfileUpdate {
  name?: string;
  displayName?: string;
  email?: string;
  profilePicUrl?: string;
}

export interface UserFilter {
  id?: number;
  name?: string;
  email?: string;
}

function toUser(row: Selectable<UsersTable>): User {
  return {
    id: row.id,
    name: row.name,
    displayName: row.display_name,
    email: row.email,
    provider: row.provider,
    providerId: row.provider_id,
    profilePicUrl: row.profile_pic_url,
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
    groups: parseGroups(row.groups),
  };
}

/** The stored JSON array; anything else (hand-edited rows) counts as no groups. */
function parseGroups(text: string): string[] {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((g): g is string => typeof g === 'string') : [];
  } catch {
    return [];
  }
}

function userExists(name: string, cause?: unknown): WeftError {
  return new WeftError('USER_EXISTS', `a user named "${name}" already exists`, { cause });
}

export class UserRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(user: NewUser, now = new Date()): Promise<User> {
    if (await this.findByName(user.name)) throw userExists(user.name);
    try {
      const row = await this.#db
        .insertInto('users')
        .values({
          name: user.name,
          display_name: user.displayName ?? '',
          email: user.email ?? '',
          provider: user.provider ?? '',
          provider_id: user.providerId ?? null,
          profile_pic_url: user.profilePicUrl ?? '',
          created_at: now,
          updated_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      return toUser(row);
    } catch (err) {
      if (isUniqueViolation(err)) throw userExists(user.name, err);
      throw err;
    }
  }

  async list(filter: UserFilter = {}): Promise<User[]> {
    let query = this.#db.selectFrom('users').selectAll().orderBy('id');
    if (filter.id !== undefined) query = query.where('id', '=', filter.id);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    if (filter.email !== undefined) query = query.where('email', '=', filter.email);
    return (await query.execute()).map(toUser);
  }

  async findById(id: number): Promise<User | undefined> {
    const row = await this.#db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUser(row);
  }

  async findByName(name: string): Promise<User | undefined> {
    const row = await this.#db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    return row && toUser(row);
  }

  /** The user an identity provider's subject belongs to (`<issuer>/<sub>`), if any. */
  async findByProviderId(providerId: string): Promise<User | undefined> {
    const row = await this.#db
      .selectFrom('users')
      .selectAll()
      .where('provider_id', '=', providerId)
      .executeTakeFirst();
    return row && toUser(row);
  }

  /**
   * Refreshes what an identity provider says about a user at each login. A new `name` that another
   * user already holds is refused with USER_EXISTS, like a rename.
   */
  async updateProfile(id: number, profile: ProfileUpdate, now = new Date()): Promise<User> {
    const user = await this.getById(id);
    if (profile.name !== undefined && profile.name !== user.name && (await this.findByName(profile.name))) {
      throw userExists(profile.name);
    }
    try {
      const row = await this.#db
        .updateTable('users')
        .set({
          ...(profile.name !== undefined ? { name: profile.name } : {}),
          ...(profile.displayName !== undefined ? { display_name: profile.displayName } : {}),
          ...(profile.email !== undefined ? { email: profile.email } : {}),
          ...(profile.profilePicUrl !== undefined ? { profile_pic_url: profile.profilePicUrl } : {}),
          updated_at: now,
        })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return toUser(row);
    } catch (err) {
      if (isUniqueViolation(err)) throw userExists(profile.name ?? user.name, err);
      throw err;
    }
  }

  /** Replaces the identity provider's groups of a user (oidc.policy_groups). */
  async setGroups(id: number, groups: readonly string[], now = new Date()): Promise<void> {
    await this.#db
      .updateTable('users')
      .set({ groups: JSON.stringify(groups), updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  /** Forgets every stored group (oidc.policy_groups is off): returns how many users had some. */
  async clearGroups(): Promise<number> {
    const result = await this.#db
      .updateTable('users')
      .set({ groups: '[]' })
      .where('groups', '<>', '[]')
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async getById(id: number): Promise<User> {
    const user = await this.findById(id);
    if (!user) throw new WeftError('USER_NOT_FOUND', `there is no user with id ${id}`);
    return user;
  }

  async getByName(name: string): Promise<User> {
    const user = await this.findByName(name);
    if (!user) throw new WeftError('USER_NOT_FOUND', `there is no user named "${name}"`);
    return user;
  }

  async rename(id: number, newName: string, now = new Date()): Promise<User> {
    const user = await this.getById(id);
    if (user.name === newName) return user;
    if (await this.findByName(newName)) throw userExists(newName);
    try {
      const row = await this.#db
        .updateTable('users')
        .set({ name: newName, updated_at: now })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return toUser(row);
    } catch (err) {
      if (isUniqueViolation(err)) throw userExists(newName, err);
      throw err;
    }
  }

  /** Deletes a user and their pre-auth keys; refuses while the user still owns nodes. */
  async delete(id: number): Promise<void> {
    const user = await this.getById(id);
    const { count } = await this.#db
      .selectFrom('nodes')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('user_id', '=', id)
      .executeTakeFirstOrThrow();
    if (Number(count) > 0) throw userHasNodes(user.name, Number(count));
    try {
      await this.#db.deleteFrom('users').where('id', '=', id).execute();
    } catch (err) {
      // A node registered between the count and the delete: the foreign key refuses, say so plainly.
      if (isForeignKeyViolation(err)) throw userHasNodes(user.name, undefined, err);
      throw err;
    }
  }
}

function userHasNodes(name: string, count: number | undefined, cause?: unknown): WeftError {
  const owned = count === undefined ? 'nodes' : count === 1 ? '1 node' : `${count} nodes`;
  return new WeftError(
    'USER_HAS_NODES',
    `user "${name}" still owns ${owned}; delete or reassign them first (weft nodes list --user ${name})`,
    { cause },
  );
}
