/**
 * DERP maps from files and URLs: validation and merging.
 *
 * A map is JSON (or YAML turned into the same structure) with Go's field names; like Go's decoder the
 * names are matched case-insensitively, so both Tailscale's published map (`RegionID`, `HostName`) and
 * Headscale-style YAML (`regionid`, `hostname`) load. Validation is stricter than the client's, because
 * a map that loads but cannot work (a region without nodes, a node without a host) only shows up much
 * later as peers that never connect.
 */
import { z } from 'zod';
import { decode, goAddr, goInt, goMap, goStruct } from './decode.ts';
import type { DERPMap, DERPRegion } from './types.ts';

/** A DERP map that cannot be used; `source` is the file or URL it came from, `path` the bad field. */
export class DerpMapError extends Error {
  readonly source: string;
  readonly path: string;

  constructor(source: string, path: string, reason: string) {
    super(`DERP map ${source}: ${path === '' ? '' : `${path}: `}${reason}`);
    this.name = 'DerpMapError';
    this.source = source;
    this.path = path;
  }
}

const INT32_MAX = 2 ** 31 - 1;
const REGION_ID_KEY = /^[1-9][0-9]*$/;

const nonEmpty = z.string().min(1, { error: 'must not be empty' });
const flag = z.boolean().optional();

/** An address for one family, or "none" to say the node has none (so the client does not look it up). */
function familyAddress(family: 4 | 6) {
  return z.union([z.literal(''), z.literal('none'), goAddr()]).check((ctx) => {
    const value = ctx.value;
    if (value === '' || value === 'none') return;
    if (value.includes(':') !== (family === 6)) {
      ctx.issues.push({
        code: 'custom',
        input: value,
        message: `expected an IPv${family} address or "none"`,
      });
    }
  });
}

const nodeSchema = goStruct({
  Name: nonEmpty,
  RegionID: goInt(1, INT32_MAX),
  HostName: nonEmpty,
  CertName: z.string().optional(),
  IPv4: familyAddress(4).optional(),
  IPv6: familyAddress(6).optional(),
  STUNPort: goInt(-1, 65535).optional(),
  STUNOnly: flag,
  DERPPort: goInt(0, 65535).optional(),
  InsecureForTests: flag,
  STUNTestIP: goAddr().optional(),
  CanPort80: flag,
});

const regionSchema = goStruct({
  RegionID: goInt(1, INT32_MAX),
  RegionCode: z.string().default(''),
  RegionName: z.string().default(''),
  Latitude: z.number().optional(),
  Longitude: z.number().optional(),
  Avoid: flag,
  NoMeasureNoHome: flag,
  Nodes: z.array(nodeSchema).min(1, { error: 'a region needs at least one node' }),
}).superRefine((region, ctx) => {
  region.Nodes.forEach((node, index) => {
    if (node.RegionID !== region.RegionID) {
      ctx.addIssue({
        code: 'custom',
        path: ['Nodes', index, 'RegionID'],
        message: `is ${node.RegionID} but the node is listed in region ${region.RegionID}`,
      });
    }
  });
});

const derpMapSchema = goStruct({
  HomeParams: goStruct({ RegionScore: goMap(z.number().positive()).optional() }).optional(),
  Regions: goMap(regionSchema.nullable()),
  omitDefaultRegions: flag,
}).superRefine((map, ctx) => {
  for (const [key, region] of Object.entries(map.Regions)) {
    if (!REGION_ID_KEY.test(key)) {
      ctx.addIssue({ code: 'custom', path: ['Regions', key], message: 'region keys are decimal region IDs' });
    } else if (region !== null && region.RegionID !== Number(key)) {
      ctx.addIssue({
        code: 'custom',
        path: ['Regions', key, 'RegionID'],
        message: `is ${region.RegionID} but the region is listed under "${key}"`,
      });
    }
  }
  for (const key of Object.keys(map.HomeParams?.RegionScore ?? {})) {
    if (!REGION_ID_KEY.test(key)) {
      ctx.addIssue({
        code: 'custom',
        path: ['HomeParams', 'RegionScore', key],
        message: 'keys are decimal region IDs',
      });
    }
  }
});

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as T;
}

/**
 * Validates a DERP map. `source` (a path or URL) only appears in error messages. A `null` region is
 * kept: it tells `mergeDerpMaps` to delete that region from the maps before it.
 */
export function parseDerpMap(json: unknown, source: string): DERPMap {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new DerpMapError(source, '', 'expected an object with "Regions"');
  }
  const result = decode(derpMapSchema, json);
  if (!result.ok) throw new DerpMapError(source, result.path, result.reason);
  const map = result.value;
  const regions: Record<string, DERPRegion | null> = {};
  for (const [key, region] of Object.entries(map.Regions)) {
    regions[key] =
      region === null
        ? null
        : withoutUndefined({ ...region, Nodes: region.Nodes.map((node) => withoutUndefined(node)) });
  }
  return withoutUndefined({
    HomeParams:
      map.HomeParams === undefined
        ? undefined
        : withoutUndefined({ RegionScore: map.HomeParams.RegionScore }),
    Regions: regions,
    omitDefaultRegions: map.omitDefaultRegions,
  });
}

/**
 * Combines maps in order, as Headscale does with its `derp.urls` and `derp.paths`: a later map replaces
 * whole regions with the same ID, a `null` region removes it, and the result has no null entries.
 * HomeParams and omitDefaultRegions come from the last map that sets them. Inputs are not modified.
 */
export function mergeDerpMaps(maps: readonly DERPMap[]): DERPMap {
  const regions: Record<string, DERPRegion | null> = {};
  let homeParams: DERPMap['HomeParams'];
  let omitDefaultRegions: boolean | undefined;
  for (const map of maps) {
    for (const [key, region] of Object.entries(map.Regions)) regions[key] = region;
    if (map.HomeParams !== undefined) homeParams = map.HomeParams;
    if (map.omitDefaultRegions !== undefined) omitDefaultRegions = map.omitDefaultRegions;
  }
  for (const [key, region] of Object.entries(regions)) if (region === null) delete regions[key];
  return structuredClone(withoutUndefined({ HomeParams: homeParams, Regions: regions, omitDefaultRegions }));
}

/** Whether a CertName pins a certificate by hash instead of naming the expected host. */
export function isCertPin(certName: string | undefined): boolean {
  return certName?.startsWith('sha256-raw:') === true;
}

/**
 * The map for clients that predate certificate pins: pinned nodes lose their CertName, so those clients
 * verify the certificate against their trust store by HostName (as they must already do for an https
 * control URL on the same listener) instead of failing on a "host name" they cannot match.
 */
export function withoutCertPins(map: DERPMap): DERPMap {
  const regions: DERPMap['Regions'] = {};
  for (const [id, region] of Object.entries(map.Regions)) {
    regions[id] =
      region === null
        ? null
        : {
            ...region,
            Nodes: region.Nodes.map((node) => {
              if (!isCertPin(node.CertName)) return node;
              const { CertName: _pin, ...rest } = node;
              return rest;
            }),
          };
  }
  return { ...map, Regions: regions };
}
