/**
 * The one ordered list of schema migrations, run on both SQLite and PostgreSQL.
 *
 * Each migration is written once and asks `ColumnTypes` for the dialect's spelling of ids, timestamps,
 * booleans and JSON. Names sort in run order (Kysely's Migrator sorts by name). Never edit a migration
 * that has shipped; add a new one.
 *
 * Migrations run at start-up under a lock: PostgreSQL takes Kysely's advisory lock; SQLite runs them in
 * one BEGIN IMMEDIATE transaction, which holds the file's write lock (see sqlite.ts).
 */
import { type ColumnDataType, type ColumnDefinitionBuilder, type Kysely, sql } from 'kysely';
import { type Migration, Migrator } from 'kysely/migration';
import type { Database } from './schema.ts';

export type Dialect = 'sqlite' | 'postgres';

interface ColumnTypes {
  id: (col: ColumnDefinitionBuilder) => ColumnDefinitionBuilder;
  idType: ColumnDataType;
  reference: ColumnDataType;
  timestamp: ColumnDataType;
  bool: ColumnDataType;
  json: ColumnDataType;
}

function columnTypes(dialect: Dialect): ColumnTypes {
  if (dialect === 'sqlite') {
    return {
      idType: 'integer',
      id: (col) => col.primaryKey().autoIncrement().notNull(),
      reference: 'integer',
      timestamp: 'text',
      bool: 'integer',
      json: 'text',
    };
  }
  return {
    idType: 'bigint',
    id: (col) => col.primaryKey().generatedByDefaultAsIdentity(),
    reference: 'bigint',
    timestamp: 'timestamptz',
    bool: 'boolean',
    json: 'jsonb',
  };
}

type MigrationStep = (db: Kysely<unknown>, t: ColumnTypes) => Promise<void>;

const initialSchema: MigrationStep = async (db, t) => {
  await db.schema
    .createTable('users')
    .addColumn('id', t.idType, t.id)
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('display_name', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('email', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('provider', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('provider_id', 'text', (c) => c.unique())
    .addColumn('profile_pic_url', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .addColumn('updated_at', t.timestamp, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('pre_auth_keys')
    .addColumn('id', t.idType, t.id)
    .addColumn('prefix', 'text', (c) => c.notNull().unique())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('user_id', t.reference, (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('reusable', t.bool, (c) => c.notNull())
    .addColumn('ephemeral', t.bool, (c) => c.notNull())
    .addColumn('used', t.bool, (c) => c.notNull())
    .addColumn('tags', t.json, (c) => c.notNull())
    .addColumn('expiration', t.timestamp, (c) => c.notNull())
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('pre_auth_keys_user_id').on('pre_auth_keys').column('user_id').execute();

  await db.schema
    .createTable('nodes')
    .addColumn('id', t.idType, t.id)
    .addColumn('machine_key', 'text', (c) => c.notNull())
    .addColumn('node_key', 'text', (c) => c.notNull().unique())
    .addColumn('disco_key', 'text', (c) => c.notNull())
    .addColumn('ipv4', 'text', (c) => c.unique())
    .addColumn('ipv6', 'text', (c) => c.unique())
    .addColumn('hostname', 'text', (c) => c.notNull())
    .addColumn('given_name', 'text', (c) => c.notNull().unique())
    // RESTRICT: a user who still owns nodes cannot be deleted by accident.
    .addColumn('user_id', t.reference, (c) => c.references('users.id').onDelete('restrict'))
    .addColumn('tags', t.json, (c) => c.notNull())
    .addColumn('register_method', 'text', (c) => c.notNull())
    .addColumn('auth_key_id', t.reference, (c) => c.references('pre_auth_keys.id').onDelete('set null'))
    .addColumn('ephemeral', t.bool, (c) => c.notNull())
    .addColumn('expiry', t.timestamp)
    .addColumn('last_seen', t.timestamp)
    .addColumn('endpoints', t.json, (c) => c.notNull())
    .addColumn('hostinfo', t.json, (c) => c.notNull())
    .addColumn('approved_routes', t.json, (c) => c.notNull())
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .addColumn('updated_at', t.timestamp, (c) => c.notNull())
    .execute();
  // Not unique: the same machine can be registered once per user (Headscale's identity is machine + user).
  await db.schema.createIndex('nodes_machine_key').on('nodes').column('machine_key').execute();
  await db.schema.createIndex('nodes_user_id').on('nodes').column('user_id').execute();
  await db.schema.createIndex('nodes_auth_key_id').on('nodes').column('auth_key_id').execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', t.idType, t.id)
    .addColumn('prefix', 'text', (c) => c.notNull().unique())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('expiration', t.timestamp, (c) => c.notNull())
    .addColumn('last_seen', t.timestamp)
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .execute();

  // Every policy change appends a row; the newest row is the policy in force (policy.mode: database).
  await db.schema
    .createTable('policies')
    .addColumn('id', t.idType, t.id)
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .execute();
};

/** Who set each policy version (an API key prefix, `local admin`, …); older rows have none. */
const policyAuthor: MigrationStep = async (db) => {
  await db.schema.alterTable('policies').addColumn('author', 'text').execute();
};

/**
 * Tailnet-wide settings an admin changes at run time (e.g. `dns`), one JSON document per key. Stored as
 * text in both dialects: the value is read back exactly as written, with no jsonb key reordering.
 */
const settings: MigrationStep = async (db, t) => {
  await db.schema
    .createTable('settings')
    // NOT NULL spelled out: SQLite lets a non-integer primary key hold NULL otherwise.
    .addColumn('key', 'text', (c) => c.primaryKey().notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('updated_at', t.timestamp, (c) => c.notNull())
    .execute();
};

/**
 * OAuth clients (Tailscale's `keyType: "client"` keys) and the access tokens they mint, plus the
 * description API v2 gives pre-auth keys. Secrets and
 * tokens are stored only as hashes; tokens live in the database (not in memory) so that every replica
 * accepts a token any replica issued. Deleting a client deletes its tokens with it.
 */
const oauthClients: MigrationStep = async (db, t) => {
  await db.schema
    .createTable('oauth_clients')
    .addColumn('id', t.idType, t.id)
    .addColumn('client_id', 'text', (c) => c.notNull().unique())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('scopes', t.json, (c) => c.notNull())
    .addColumn('tags', t.json, (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('created_by', 'text')
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('oauth_tokens')
    .addColumn('id', t.idType, t.id)
    .addColumn('prefix', 'text', (c) => c.notNull().unique())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('client_id', t.reference, (c) =>
      c.notNull().references('oauth_clients.id').onDelete('cascade'),
    )
    .addColumn('scopes', t.json, (c) => c.notNull())
    .addColumn('tags', t.json, (c) => c.notNull())
    .addColumn('expires_at', t.timestamp, (c) => c.notNull())
    .addColumn('created_at', t.timestamp, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('oauth_tokens_client_id').on('oauth_tokens').column('client_id').execute();
  await db.schema.createIndex('oauth_tokens_expires_at').on('oauth_tokens').column('expires_at').execute();

  // API v2 keys carry a description (Terraform's tailnet_key reads it back), so pre-auth keys keep one.
  await db.schema
    .alterTable('pre_auth_keys')
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    .execute();
};

/**
 * Device approval (`node.device_approval`): whether an admin let each node in (nodes that exist
 * already were in, so they stay authorized), and pre-auth keys that let their nodes in at once
 * (Tailscale's `preauthorized` key capability).
 */
const deviceApproval: MigrationStep = async (db, t) => {
  await db.schema
    .alterTable('nodes')
    .addColumn('authorized', t.bool, (c) => c.notNull().defaultTo(true))
    .execute();
  await db.schema
    .alterTable('pre_auth_keys')
    .addColumn('preauthorized', t.bool, (c) => c.notNull().defaultTo(false))
    .execute();
};

/**
 * The `groups` claim of OIDC users (JSON array of strings; `[]` for everyone else), kept only with
 * `oidc.policy_groups`: the policy then counts them as members of the groups it declares.
 */
const userGroups: MigrationStep = async (db) => {
  await db.schema
    .alterTable('users')
    .addColumn('groups', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();
};

/** Ordered by name; append only. */
/** API keys may belong to a user: auth keys they mint without tags (API v2) are that user's. */
const apiKeyOwner: MigrationStep = async (db, t) => {
  await db.schema
    .alterTable('api_keys')
    .addColumn('user_id', t.reference, (c) => c.references('users.id').onDelete('set null'))
    .execute();
};

const MIGRATIONS: ReadonlyArray<[name: string, up: MigrationStep]> = [
  ['0001_initial_schema', initialSchema],
  ['0002_policy_author', policyAuthor],
  ['0003_settings', settings],
  ['0004_device_approval', deviceApproval],
  ['0005_user_groups', userGroups],
  ['0006_oauth_clients', oauthClients],
  ['0007_api_key_owner', apiKeyOwner],
];

export const MIGRATION_NAMES: readonly string[] = MIGRATIONS.map(([name]) => name);

function migrationsFor(dialect: Dialect): Record<string, Migration> {
  const types = columnTypes(dialect);
  return Object.fromEntries(
    MIGRATIONS.map(([name, up]) => [name, { up: (db: Kysely<unknown>) => up(db, types) }]),
  );
}

export class MigrationError extends Error {
  constructor(migration: string | undefined, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`database migration ${migration ?? '(setup)'} failed: ${reason}`, { cause });
    this.name = 'MigrationError';
  }
}

/**
 * Applies every pending migration; returns the names applied by this call. A database migrated by a
 * newer weft (unknown migrations recorded) is refused rather than silently run against.
 */
export async function migrateToLatest(db: Kysely<Database>, dialect: Dialect): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrationsFor(dialect) },
  });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error) {
    const failed = results.find((r) => r.status === 'Error');
    throw new MigrationError(failed?.migrationName, error);
  }
  return results.filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Used by tests: the names of tables and their columns, to compare both dialects' schemas. */
export async function describeSchema(db: Kysely<Database>): Promise<Record<string, string[]>> {
  const tables = await db.introspection.getTables();
  const out: Record<string, string[]> = {};
  for (const table of tables.sort((a, b) => a.name.localeCompare(b.name))) {
    out[table.name] = table.columns.map((c) => `${c.name}${c.isNullable ? '?' : ''}`).sort();
  }
  return out;
}

/** A trivial statement that touches a real table, so a missing or unreadable database fails it. */
export async function pingDatabase(db: Kysely<Database>): Promise<void> {
  await sql`select 1 from users limit 1`.execute(db);
}
