/**
 * The DERP map clients receive, assembled at start from `derp.urls` (JSON maps fetched over HTTP),
 * `derp.paths` (local JSON or YAML files) and the embedded relay's own region, later ones overriding
 * earlier regions with the same id (so the embedded region wins, as in Headscale).
 * A file that cannot be read or parsed stops start-up with its name; an unreachable URL only warns,
 * so a temporarily unreachable map host does not keep the control plane down.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { Config, DerpConfig } from '../config/index.ts';
import type { Logger } from '../observe/logger.ts';
import {
  type DERPMap,
  type DERPNode,
  type DERPRegion,
  mergeDerpMaps,
  parseDerpMap,
} from '../tailcfg/index.ts';
import { parseIp } from '../util/ip.ts';
import { StartupError } from './errors.ts';

const FETCH_TIMEOUT_MS = 10_000;

async function readDerpFile(path: string): Promise<DERPMap> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new StartupError(`cannot read the DERP map ${path} (derp.paths): ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    // YAML is a superset of JSON, so one parser reads both kinds of file.
    return parseDerpMap(parseYaml(text), path);
  } catch (err) {
    throw new StartupError(`the DERP map ${path} (derp.paths) is invalid: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

async function fetchDerpMap(url: string, log: Logger): Promise<DERPMap | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return parseDerpMap(await response.json(), url);
  } catch (err) {
    log.warn(
      { url, err: (err as Error).message },
      'could not load a DERP map from derp.urls; continuing without it',
    );
    return undefined;
  }
}

export async function loadDerpMap(derp: DerpConfig, log: Logger, embedded?: DERPRegion): Promise<DERPMap> {
  const fromUrls = await Promise.all(derp.urls.map((url) => fetchDerpMap(url, log)));
  const fromFiles = await Promise.all(derp.paths.map(readDerpFile));
  const own: DERPMap[] = embedded === undefined ? [] : [{ Regions: { [embedded.RegionID]: embedded } }];
  const map = mergeDerpMaps([...fromUrls.filter((m): m is DERPMap => m !== undefined), ...fromFiles, ...own]);
  if (Object.keys(map.Regions ?? {}).length === 0) {
    log.warn(
      'the DERP map is empty (set derp.paths or derp.urls): clients cannot relay traffic and `tailscale up` waits for a live peer',
    );
  }
  return map;
}

export interface EmbeddedRegionFacts {
  /** The bound STUN port, or undefined when STUN is off. */
  stunPort: number | undefined;
  /** `sha256-raw:<hex>` when the listener's certificate is self-signed (clients pin it instead of a CA). */
  certName?: string;
}

/**
 * The embedded relay's region: one node at the host and port of server_url (what clients already reach),
 * plain-HTTP DERP when server_url is http:// (clients then need TS_DEBUG_USE_DERP_HTTP=1).
 */
export function embeddedRegion(
  config: Pick<Config, 'server_url' | 'derp'>,
  facts: EmbeddedRegionFacts,
): DERPRegion {
  const { region_id, region_code, region_name, ipv4, ipv6 } = config.derp.server;
  const url = new URL(config.server_url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const hostIp = parseIp(host);
  const v4 = ipv4 ?? (hostIp?.family === 4 ? host : undefined);
  const v6 = ipv6 ?? (hostIp?.family === 6 ? host : undefined);
  const defaultPort = url.protocol === 'https:' ? 443 : 80;
  const node: DERPNode = {
    Name: `${region_id}a`,
    RegionID: region_id,
    HostName: host,
    // With one family known, "none" for the other spares clients a DNS lookup that cannot help.
    ...(v4 !== undefined ? { IPv4: v4 } : v6 !== undefined ? { IPv4: 'none' } : {}),
    ...(v6 !== undefined ? { IPv6: v6 } : v4 !== undefined ? { IPv6: 'none' } : {}),
    STUNPort: facts.stunPort ?? -1,
    DERPPort: url.port === '' ? defaultPort : Number(url.port),
    ...(facts.certName !== undefined ? { CertName: facts.certName } : {}),
  };
  return { RegionID: region_id, RegionCode: region_code, RegionName: region_name, Nodes: [node] };
}
