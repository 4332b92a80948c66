/**
 * The database as the rest of weft sees it: open (and migrate) either dialect, reach the repositories,
 * run several repository calls in one transaction, check health, close.
 */
import { Kysely } from 'kysely';
import { type Dialect, migrateToLatest, pingDatabase } from './migrations.ts';
import { createPostgresDialect } from './postgres.ts';
import { ApiKeyRepository } from './repos/apikeys.ts';
import { NodeRepository } from './repos/nodes.ts';
import { OAuthRepository } from './repos/oauth.ts';
import { PolicyRepository } from './repos/policies.ts';
import { PreAuthKeyRepository } from './repos/preauthkeys.ts';
import { SettingsRepository } from './repos/settings.ts';
import { UserRepository } from './repos/users.ts';
import type { Database } from './schema.ts';
import { createSqliteDialect } from './sqlite.ts';

export type DatabaseOptions = { type: 'sqlite'; path: string } | { type: 'postgres'; url: string };

/** The repositories over one connection or transaction. */
export class Repositories {
  readonly users: UserRepository;
  readonly nodes: NodeRepository;
  readonly preAuthKeys: PreAuthKeyRepository;
  readonly apiKeys: ApiKeyRepository;
  readonly policies: PolicyRepository;
  readonly settings: SettingsRepository;
  readonly oauth: OAuthRepository;

  constructor(db: Kysely<Database>) {
    this.users = new UserRepository(db);
    this.nodes = new NodeRepository(db);
    this.preAuthKeys = new PreAuthKeyRepository(db);
    this.apiKeys = new ApiKeyRepository(db);
    this.policies = new PolicyRepository(db);
    this.settings = new SettingsRepository(db);
    this.oauth = new OAuthRepository(db);
  }
}

export class Store extends Repositories {
  readonly dialect: Dialect;
  readonly kysely: Kysely<Database>;

  constructor(kysely: Kysely<Database>, dialect: Dialect) {
    super(kysely);
    this.kysely = kysely;
    this.dialect = dialect;
  }

  /** Runs `work` in one transaction; it commits when `work` resolves and rolls back when it throws. */
  transaction<T>(work: (repos: Repositories) => Promise<T>): Promise<T> {
    return this.kysely.transaction().execute((trx) => work(new Repositories(trx)));
  }

  /** Resolves when the database answers a query against a real table; rejects with the driver's error. */
  ping(): Promise<void> {
    return pingDatabase(this.kysely);
  }

  close(): Promise<void> {
    return this.kysely.destroy();
  }
}

export interface OpenOptions {
  /** Errors of idle PostgreSQL connections, which happen outside any request (e.g. a server restart). */
  onBackgroundError?: (err: Error) => void;
}

/** Opens the database and applies pending migrations; returns the migrations applied by this call too. */
export async function openStore(
  options: DatabaseOptions,
  open: OpenOptions = {},
): Promise<{ store: Store; applied: string[] }> {
  const dialect =
    options.type === 'sqlite'
      ? createSqliteDialect(options.path)
      : createPostgresDialect({ url: options.url, onIdleError: open.onBackgroundError ?? (() => {}) });
  const kysely = new Kysely<Database>({ dialect });
  try {
    const applied = await migrateToLatest(kysely, options.type);
    return { store: new Store(kysely, options.type), applied };
  } catch (err) {
    await kysely.destroy();
    throw err;
  }
}
