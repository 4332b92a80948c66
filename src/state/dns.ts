/**
 * The tailnet's DNS settings that admins may change while weft runs: resolvers, split DNS, search
 * domains and extra records. `dns.base_domain` and `dns.magic_dns` stay config-only, since node names
 * (and every peer a client holds) hang on them.
 *
 * The config's `dns.*` values are only the starting point. The first change made through the API is
 * stored (settings key `dns`) and from then on the stored value wins, also at later starts, so that a
 * restart never silently undoes what an admin set. A change is checked by the config's own rules
 * first; one that fails is refused with the field and the reason and changes nothing.
 */
import { type DnsConfig, dnsSettingsSchema } from '../config/index.ts';
import type { Logger } from '../observe/logger.ts';
import { WeftError } from '../types/errors.ts';
import { etagMatches, strongEtag } from '../util/etag.ts';
import { SerialQueue } from '../util/serial.ts';

/** The editable part of the DNS configuration. */
export interface DnsSettings {
  nameservers: {
    /** Resolvers for every query: IP addresses or https:// DoH URLs, in preference order. */
    global: string[];
    /** Split DNS: domain → its resolvers. */
    split: Record<string, string[]>;
  };
  searchDomains: string[];
  /** A/AAAA records answered by every client's resolver (100.100.100.100). */
  extraRecords: DnsRecord[];
}

export interface DnsRecord {
  name: string;
  type: 'A' | 'AAAA';
  value: string;
}

/** The settings key under which changed DNS settings are stored. */
export const DNS_SETTINGS_KEY = 'dns';

export type DnsListener = (settings: DnsSettings) => void;

/** Where changed settings are kept (the `settings` table; a map in unit tests). */
export interface SettingsStorage {
  get(key: string): Promise<unknown>;
  put(key: string, value: unknown, now?: Date): Promise<void>;
}

export interface DnsSettingsStoreOptions {
  config: DnsConfig;
  storage: SettingsStorage;
  log: Logger;
  now?: () => Date;
}

/** The config's `dns.*` values as settings. */
export function settingsFromConfig(dns: DnsConfig): DnsSettings {
  return {
    nameservers: { global: [...dns.nameservers.global], split: { ...dns.nameservers.split } },
    searchDomains: [...dns.search_domains],
    extraRecords: dns.extra_records.map((record) => ({ ...record })),
  };
}

/**
 * `value` as DnsSettings, checked by the config's rules; otherwise a BAD_REQUEST naming the first
 * problems (field path and reason), e.g. `extraRecords.0.value: a type A record needs an IPv4 address`.
 */
export function parseDnsSettings(value: unknown): DnsSettings {
  const result = dnsSettingsSchema.safeParse(value);
  if (result.success) return result.data;
  const reasons = result.error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    // A bad split DNS domain is a bad map key, whose reason zod keeps inside.
    const message =
      issue.code === 'invalid_key'
        ? issue.issues.map((inner) => `bad key: ${inner.message}`).join('; ')
        : issue.message;
    return `${where}${message}`;
  });
  throw new WeftError('BAD_REQUEST', `invalid DNS settings: ${reasons.join('; ')}`);
}

export class DnsSettingsStore {
  readonly #options: DnsSettingsStoreOptions;
  readonly #listeners = new Set<DnsListener>();
  /** Updates run one at a time, so the stored value and `current` end in the same order. */
  readonly #queue = new SerialQueue();
  #current: DnsSettings;

  private constructor(options: DnsSettingsStoreOptions, current: DnsSettings) {
    this.#options = options;
    this.#current = current;
  }

  /** The stored settings if an admin ever changed them, else the config's. */
  static async open(options: DnsSettingsStoreOptions): Promise<DnsSettingsStore> {
    return new DnsSettingsStore(options, await initialSettings(options));
  }

  get current(): DnsSettings {
    return this.#current;
  }

  /** The ETag of the settings in force: a read-modify-write sends it back as If-Match. */
  get etag(): string {
    return strongEtag(JSON.stringify(this.#current));
  }

  /** Config-only: whether nodes get MagicDNS names. */
  get magicDns(): boolean {
    return this.#options.config.magic_dns;
  }

  /** Config-only: the MagicDNS suffix. */
  get baseDomain(): string {
    return this.#options.config.base_domain;
  }

  subscribe(listener: DnsListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Checks `next`, stores it and makes it current; listeners hear of it only when it differs. A value
   * that fails the checks (or cannot be stored) throws and leaves everything as it was.
   */
  async update(next: unknown, ifMatch?: string): Promise<DnsSettings> {
    const settings = parseDnsSettings(next);
    return this.#queue.run(() => {
      // Checked in the queue, against the settings this write would replace.
      if (ifMatch !== undefined && !etagMatches(ifMatch, this.etag)) {
        throw new WeftError(
          'DNS_CHANGED',
          `the DNS settings changed since they were read (If-Match ${ifMatch.slice(0, 80)}, now ${this.etag}); read them again`,
        );
      }
      return this.#store(settings);
    });
  }

  /**
   * A read-modify-write: `change` gets (a copy of) the settings in force when this update's turn in the
   * queue comes, and its result is checked and stored as by `update`. Concurrent changes to different
   * parts (one split DNS domain each, as Terraform applies them) therefore all land; computing the
   * value from `current` before calling `update` would let the last write drop the others.
   */
  async modify(change: (current: DnsSettings) => unknown): Promise<DnsSettings> {
    return this.#queue.run(() => this.#store(parseDnsSettings(change(structuredClone(this.#current)))));
  }

  /** Runs in the queue: stores `settings`, then makes them current and tells listeners. */
  async #store(settings: DnsSettings): Promise<DnsSettings> {
    await this.#options.storage.put(DNS_SETTINGS_KEY, settings, this.#options.now?.() ?? new Date());
    const changed = JSON.stringify(settings) !== JSON.stringify(this.#current);
    this.#current = settings;
    if (changed) {
      this.#options.log.info({ dns: settings }, 'DNS settings updated');
      this.#notify(settings);
    }
    return settings;
  }

  #notify(settings: DnsSettings): void {
    for (const listener of this.#listeners) {
      try {
        listener(settings);
      } catch (err) {
        this.#options.log.error({ err }, 'a DNS settings listener failed');
      }
    }
  }
}

async function initialSettings({ config, storage, log }: DnsSettingsStoreOptions): Promise<DnsSettings> {
  const stored = await storage.get(DNS_SETTINGS_KEY);
  if (stored === undefined) return settingsFromConfig(config);
  try {
    const settings = parseDnsSettings(stored);
    log.info('DNS settings changed through the API are in force; dns.* in the config only sets the defaults');
    return settings;
  } catch (err) {
    if (!(err instanceof WeftError)) throw err;
    // Refusing to start would leave no API to repair them with; the config's values are a safe floor.
    log.error(
      { problem: err.message },
      'the stored DNS settings are invalid; using dns.* from the config until they are set again',
    );
    return settingsFromConfig(config);
  }
}
