/**
 * The DERP map clients receive, assembled at start from `derp.paths` (local JSON or YAML files) and
 * `derp.urls` (JSON maps fetched over HTTP), later ones overriding earlier regions with the same id.
 * A file that cannot be read or parsed stops start-up with its name; an unreachable URL only warns,
 * so a temporarily unreachable map host does not keep the control plane down.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { DerpConfig } from '../config/index.ts';
import type { Logger } from '../observe/logger.ts';
import { type DERPMap, mergeDerpMaps, parseDerpMap } from '../tailcfg/index.ts';
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

export async function loadDerpMap(derp: DerpConfig, log: Logger): Promise<DERPMap> {
  const fromUrls = await Promise.all(derp.urls.map((url) => fetchDerpMap(url, log)));
  const fromFiles = await Promise.all(derp.paths.map(readDerpFile));
  const map = mergeDerpMaps([...fromUrls.filter((m): m is DERPMap => m !== undefined), ...fromFiles]);
  if (Object.keys(map.Regions ?? {}).length === 0) {
    log.warn(
      'the DERP map is empty (set derp.paths or derp.urls): clients cannot relay traffic and `tailscale up` waits for a live peer',
    );
  }
  return map;
}
