/**
 * The DERP handshake's sealed JSON frames.
 *
 *   server → ServerKey   magic · server key                         (sent first, before reading anything)
 *   client → ClientInfo  client key · nonce · box(client → server, {"version":2,"CanAckPings":true,…})
 *   server → ServerInfo  nonce · box(server → client, {"version":2})
 *
 * ClientInfo is sealed with the client's node key, so opening it proves the client holds the private
 * half of the key it claims; that key is what the server routes by and what admission checks. JSON keys
 * are matched case-insensitively, as Go's decoder does (Go emits `version`, `meshKey`, `CanAckPings`).
 * ServerInfo carries only the version: token-bucket fields would make clients silently drop their own
 * packets.
 */
import { boxOpen, boxSeal } from '../crypto/nacl-box.ts';
import { NodePublic, type PrivateKey } from '../types/keys.ts';
import { DerpError } from './errors.ts';
import { encodeFrame, FrameType, KEY_LENGTH, MAGIC, NONCE_LENGTH, PROTOCOL_VERSION } from './wire.ts';

const BOX_OVERHEAD = 16;

export interface ClientInfo {
  version: number;
  /** 64 hex digits when the client is a mesh peer of this region. */
  meshKey?: string;
  canAckPings: boolean;
  isProber: boolean;
  appName?: string;
}

export interface OpenedClientInfo {
  key: NodePublic;
  /** The client key's 32 raw bytes, as frames carry it. */
  rawKey: Buffer;
  info: ClientInfo;
}

/** Reads ClientInfo JSON like Go does: unknown fields ignored, field names in any case. */
export function parseClientInfoJson(text: string): ClientInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DerpError('bad-info', 'ClientInfo is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new DerpError('bad-info', 'ClientInfo is not a JSON object');
  }
  const fields = new Map(Object.entries(parsed).map(([name, value]) => [name.toLowerCase(), value]));
  const field = <T>(name: string, type: string, fallback: T): T => {
    const value = fields.get(name);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== type) throw new DerpError('bad-info', `ClientInfo field ${name} must be a ${type}`);
    return value as T;
  };
  const meshKey = field<string | undefined>('meshkey', 'string', undefined);
  const appName = field<string | undefined>('appname', 'string', undefined);
  return {
    version: field('version', 'number', 0),
    canAckPings: field('canackpings', 'boolean', false),
    isProber: field('isprober', 'boolean', false),
    ...(meshKey !== undefined && meshKey !== '' ? { meshKey } : {}),
    ...(appName !== undefined && appName !== '' ? { appName } : {}),
  };
}

/** Opens a ClientInfo payload sent to `serverKey`. Throws DerpError when it is malformed or forged. */
export function openClientInfo(payload: Buffer, serverKey: PrivateKey<'nodekey'>): OpenedClientInfo {
  if (payload.length < KEY_LENGTH + NONCE_LENGTH + BOX_OVERHEAD) {
    throw new DerpError('bad-length', `ClientInfo of ${payload.length} bytes is too short`);
  }
  const rawKey = Buffer.from(payload.subarray(0, KEY_LENGTH));
  const opened = tryBoxOpen(payload.subarray(KEY_LENGTH), rawKey, serverKey);
  if (opened === undefined) {
    throw new DerpError('bad-info', 'ClientInfo does not open with the claimed client key');
  }
  return { key: NodePublic.fromRaw(rawKey), rawKey, info: parseClientInfoJson(opened.toString('utf8')) };
}

/** boxOpen, except that a low-order peer key (OpenSSL refuses the all-zero X25519 result) just fails to open. */
function tryBoxOpen(
  sealed: Uint8Array,
  peerPublic: Uint8Array,
  myPrivate: PrivateKey<'nodekey'>,
): Buffer | undefined {
  try {
    return boxOpen(sealed, peerPublic, myPrivate);
  } catch {
    return undefined;
  }
}

export function serverInfoFrame(clientRawKey: Uint8Array, serverKey: PrivateKey<'nodekey'>): Buffer {
  const body = Buffer.from(JSON.stringify({ version: PROTOCOL_VERSION }));
  return encodeFrame(FrameType.ServerInfo, boxSeal(body, clientRawKey, serverKey));
}

// Client side, for weft's own DERP client (mesh links, tests, benchmarks).

/** The server key from a ServerKey payload; extra trailing bytes are allowed for future versions. */
export function parseServerKey(payload: Buffer): Buffer {
  if (payload.length < MAGIC.length + KEY_LENGTH) {
    throw new DerpError('bad-length', `ServerKey of ${payload.length} bytes is too short`);
  }
  if (!payload.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new DerpError('bad-magic', 'ServerKey does not start with the DERP magic');
  }
  return Buffer.from(payload.subarray(MAGIC.length, MAGIC.length + KEY_LENGTH));
}

export function clientInfoFrame(
  serverRawKey: Uint8Array,
  clientKey: PrivateKey<'nodekey'>,
  info: { meshKey?: string; isProber?: boolean } = {},
): Buffer {
  const body = Buffer.from(
    JSON.stringify({
      version: PROTOCOL_VERSION,
      ...(info.meshKey !== undefined ? { meshKey: info.meshKey } : {}),
      CanAckPings: true,
      ...(info.isProber === true ? { IsProber: true } : {}),
    }),
  );
  return encodeFrame(
    FrameType.ClientInfo,
    NodePublic.toRaw(clientKey.publicKey),
    boxSeal(body, serverRawKey, clientKey),
  );
}

/** Opens ServerInfo and returns its JSON; throws DerpError if it is not from the server we expect. */
export function openServerInfo(
  payload: Buffer,
  serverRawKey: Uint8Array,
  clientKey: PrivateKey<'nodekey'>,
): Record<string, unknown> {
  const opened = tryBoxOpen(payload, serverRawKey, clientKey);
  if (opened === undefined) throw new DerpError('bad-info', 'ServerInfo does not open with the server key');
  try {
    return JSON.parse(opened.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new DerpError('bad-info', 'ServerInfo is not JSON');
  }
}
