/**
 * Capability versions: the single increasing integer a client sends instead of its release number
 * (Noise prologue, `/key?v=`, `RegisterRequest.Version`, `MapRequest.Version`).
 *
 * weft supports the same window as Headscale 0.29: v1.80 (capability version 113) and newer. Everything
 * the mapper sends assumes at least that, so the gates below that are ≤ 113 are always open; they are
 * named anyway so that code depending on them says why.
 */
import type { CapabilityVersion } from './types.ts';

/** v1.80 — the oldest client weft talks to (Headscale's minimum too). */
export const MIN_SUPPORTED_CAPABILITY_VERSION = 113;

/** Understands `MapResponse.PeerSeenChange`. */
export const CAPVER_PEER_SEEN_CHANGE = 10;
/** Understands `Node.Online` and `MapResponse.OnlineChange`. */
export const CAPVER_ONLINE_CHANGE = 16;
/** Can speak the Noise (ts2021) transport. */
export const CAPVER_NOISE = 28;
/** `PeersChangedPatch` with DERPRegion and Endpoints. */
export const CAPVER_PEERS_CHANGED_PATCH = 33;
/** `PeersChangedPatch` also carries Key, DiscoKey, Online, LastSeen, KeyExpiry. */
export const CAPVER_PEERS_CHANGED_PATCH_KEYS = 36;
/** Speaks Noise over any HTTPS port; `/key` answers older clients with an empty body. */
export const CAPVER_NOISE_ANY_PORT = 39;
/** Understands the Noise early payload (`EarlyNoise`). */
export const CAPVER_EARLY_NOISE = 49;
/** Honours `Node.Expired` and derives it from `KeyExpiry`. */
export const CAPVER_NODE_EXPIRED = 53;
/** Understands `Node.Cap`. */
export const CAPVER_NODE_CAP = 54;
/** Understands `DERPMap.HomeParams` and incremental DERP maps. */
export const CAPVER_DERP_HOME_PARAMS = 65;
/** A streaming map request is read-only; endpoint and Hostinfo updates come as lite requests. */
export const CAPVER_READ_ONLY_STREAM = 68;
/** Understands `CapMap` on nodes. */
export const CAPVER_NODE_CAP_MAP = 74;
/** Understands `MapResponse.PacketFilters` (named chunks). */
export const CAPVER_PACKET_FILTERS = 81;
/** `PeerChange.Capabilities` is ignored; only `CapMap` works. */
export const CAPVER_NO_PEER_CHANGE_CAPABILITIES = 89;
/** Reads `Node.HomeDERP`; older clients need `"DERP": "127.3.3.40:<region>"`. */
export const CAPVER_HOME_DERP = 111;
/** Reads `AllowedIPs: null` as "same as Addresses". */
export const CAPVER_NULL_ALLOWED_IPS = 112;
/**
 * Verifies a DERP node's certificate by `CertName: "sha256-raw:<hex>"` (a pinned self-signed certificate).
 * No capability version marks it: v1.80 (113) reads the pin as a host name and fails, v1.82.0 (115) has
 * it, as the derphttp sources of those releases show.
 */
export const CAPVER_DERP_CERT_PIN = 115;
/** Understands `MapResponse.DisplayMessages`. */
export const CAPVER_DISPLAY_MESSAGES = 117;
/** Renews its node key seamlessly by default. */
export const CAPVER_SEAMLESS_KEY_RENEWAL = 126;
/** Understands the `default-auto-update` node attribute. */
export const CAPVER_DEFAULT_AUTO_UPDATE = 131;
/** Honours HTTP 429 + Retry-After on `/machine/register`. */
export const CAPVER_REGISTER_RETRY_AFTER = 137;

/**
 * First capability version of each release line, oldest first (from the release tags; v1.74–v1.78 from
 * Headscale's generated table). A later patch release may send a higher number (v1.86.2 sends 123).
 */
const RELEASES: readonly (readonly [release: string, capver: CapabilityVersion])[] = [
  ['v1.74', 106],
  ['v1.76', 106],
  ['v1.78', 109],
  ['v1.80', 113],
  ['v1.82', 115],
  ['v1.84', 116],
  ['v1.86', 122],
  ['v1.88', 125],
  ['v1.90', 130],
  ['v1.92', 131],
  ['v1.94', 131],
  ['v1.96', 133],
  ['v1.98', 138],
  ['v1.100', 141],
  ['v1.102', 142],
];

/**
 * The release line a client sending `version` runs, for messages and logs: the newest release whose
 * number is at or below `version` (so 123, sent by v1.86.2, is "v1.86", and anything past the table is
 * the newest known release or a development build of it). When several releases share a number the
 * earliest is named, since the client is at least that. Undefined below the oldest known release.
 */
export function releaseForCapabilityVersion(version: CapabilityVersion): string | undefined {
  let best: readonly [string, CapabilityVersion] | undefined;
  for (const row of RELEASES) {
    if (row[1] > version) break;
    if (best === undefined || row[1] > best[1]) best = row;
  }
  return best?.[0];
}

/** The one sentence a too-old client (or its admin, in the logs) gets to see. */
export function unsupportedVersionMessage(version: CapabilityVersion): string {
  const release = releaseForCapabilityVersion(version);
  const client = release === undefined ? 'Tailscale client' : `Tailscale client ${release}`;
  const minimum = releaseForCapabilityVersion(MIN_SUPPORTED_CAPABILITY_VERSION);
  return (
    `unsupported ${client} (capability version ${version}): ` +
    `weft needs ${minimum} (capability version ${MIN_SUPPORTED_CAPABILITY_VERSION}) or newer`
  );
}

export function isSupportedCapabilityVersion(version: CapabilityVersion): boolean {
  return Number.isInteger(version) && version >= MIN_SUPPORTED_CAPABILITY_VERSION;
}
