/**
 * Validating decoders for the two requests every client sends over Noise: `RegisterRequest`
 * (`POST /machine/register`) and `MapRequest` (`POST /machine/map`).
 *
 * They accept what Go's decoder accepts from any supported client (unknown fields ignored, absent or
 * null fields left at their zero value, field names matched case-insensitively) and normalise the
 * protocol's "zero means absent" conventions so handlers never see them: all-zero keys and Go's zero
 * time become undefined, times become Dates, endpoints and prefixes come back in canonical text.
 * Anything Go would refuse, or that would make the server keep unbounded state, is a `WireError` whose
 * message names the field.
 */
import { z } from 'zod';
import { DiscoPublic, NodePublic } from '../types/keys.ts';
import {
  cappedArray,
  decode,
  goBytes,
  goEndpoint,
  goInt,
  goLooseStruct,
  goMap,
  goPrefix,
  goStruct,
  goTime,
  publicKey,
  WireError,
} from './decode.ts';
import type { Hostinfo, MapRequest, RegisterRequest } from './types.ts';

export { WireError };

/** Longest list accepted in any request field (endpoints, routes, tags, …). */
export const MAX_LIST_ENTRIES = 1000;

const INT32_MAX = 2 ** 31 - 1;

const text = z.string().optional();
const flag = z.boolean().optional();
/** `opt.Bool`: true, false or null (null is dropped like any null field). */
const optBool = z.boolean().optional();
const list = <T extends z.ZodType>(item: T) => cappedArray(item, MAX_LIST_ENTRIES).optional();

const netInfoSchema = goLooseStruct({
  MappingVariesByDestIP: optBool,
  HairPinning: optBool,
  WorkingIPv6: optBool,
  OSHasIPv6: optBool,
  WorkingUDP: optBool,
  WorkingICMPv4: optBool,
  HavePortMap: flag,
  UPnP: optBool,
  PMP: optBool,
  PCP: optBool,
  PreferredDERP: goInt(0, INT32_MAX).optional(),
  LinkType: text,
  DERPLatency: goMap(z.number()).optional(),
  FirewallMode: text,
});

const serviceSchema = goStruct({
  Proto: z.string().default(''),
  Port: goInt(0, 65535).default(0),
  Description: text,
});

const locationSchema = goStruct({
  Country: text,
  CountryCode: text,
  City: text,
  CityCode: text,
  Latitude: z.number().optional(),
  Longitude: z.number().optional(),
  Priority: goInt(-INT32_MAX, INT32_MAX).optional(),
});

/** Typed checks for the fields the server reads or shows; every other key is kept as sent. */
const hostinfoSchema = goLooseStruct({
  IPNVersion: text,
  FrontendLogID: text,
  BackendLogID: text,
  OS: text,
  OSVersion: text,
  Container: optBool,
  Env: text,
  Distro: text,
  DistroVersion: text,
  DistroCodeName: text,
  App: text,
  Desktop: optBool,
  Package: text,
  DeviceModel: text,
  PushDeviceToken: text,
  Hostname: text,
  ShieldsUp: flag,
  ShareeNode: flag,
  NoLogsNoSupport: flag,
  WireIngress: flag,
  IngressEnabled: flag,
  AllowsUpdate: flag,
  Machine: text,
  GoArch: text,
  GoArchVar: text,
  GoVersion: text,
  RoutableIPs: list(goPrefix()),
  RequestTags: list(z.string()),
  WoLMACs: list(z.string()),
  Services: list(serviceSchema),
  NetInfo: netInfoSchema.optional(),
  sshHostKeys: list(z.string()),
  Cloud: text,
  Userspace: optBool,
  UserspaceRouter: optBool,
  AppConnector: optBool,
  ServicesHash: text,
  ExitNodeID: text,
  Location: locationSchema.optional(),
  StateEncrypted: optBool,
});

const version = goInt(1, Number.MAX_SAFE_INTEGER);

/** Tailnet-lock key: `nlpub:` (or the CLI's `tlpub:`) and 64 hex digits, returned as `nlpub:<lowercase>`. */
const nlKey = z.string().transform((value, ctx): string | undefined => {
  if (value === '') return undefined;
  const match = /^(?:nlpub|tlpub):([0-9a-fA-F]{64})$/.exec(value);
  if (match?.[1] === undefined) {
    ctx.addIssue({ code: 'custom', message: 'expected "nlpub:" followed by 64 hex digits' });
    return z.NEVER;
  }
  return /^0+$/.test(match[1]) ? undefined : `nlpub:${match[1].toLowerCase()}`;
});

/** Hardware attestation key: `hwattestpub:` and the hex of a public key; "" means none. */
const hardwareAttestationKey = z.string().transform((value, ctx): string | undefined => {
  if (value === '') return undefined;
  const match = /^hwattestpub:((?:[0-9a-fA-F]{2}){1,256})$/.exec(value);
  if (match?.[1] === undefined) {
    ctx.addIssue({ code: 'custom', message: 'expected "hwattestpub:" followed by hex digits' });
    return z.NEVER;
  }
  return `hwattestpub:${match[1].toLowerCase()}`;
});

const oauth2TokenSchema = goStruct({
  access_token: z.string().default(''),
  token_type: text,
  refresh_token: text,
  expiry: goTime().optional(),
});

const registerRequestSchema = goStruct({
  Version: version,
  NodeKey: publicKey(NodePublic).optional(),
  OldNodeKey: publicKey(NodePublic).optional(),
  NLKey: nlKey.optional(),
  Auth: goStruct({ AuthKey: text, Oauth2Token: oauth2TokenSchema.optional() }).optional(),
  Expiry: goTime().optional(),
  Followup: z.string().default(''),
  Hostinfo: hostinfoSchema.optional(),
  Ephemeral: z.boolean().default(false),
  NodeKeySignature: goBytes().optional(),
  SignatureType: text,
  Timestamp: goTime().optional(),
  DeviceCert: goBytes().optional(),
  Signature: goBytes().optional(),
  Tailnet: text,
});

const mapRequestSchema = goStruct({
  Version: version,
  Compress: z.string().default(''),
  KeepAlive: z.boolean().default(false),
  NodeKey: publicKey(NodePublic).optional(),
  DiscoKey: publicKey(DiscoPublic).optional(),
  HardwareAttestationKey: hardwareAttestationKey.optional(),
  HardwareAttestationKeySignature: goBytes().optional(),
  HardwareAttestationKeySignatureTimestamp: goTime().optional(),
  Stream: z.boolean().default(false),
  Hostinfo: hostinfoSchema.optional(),
  MapSessionHandle: text,
  MapSessionSeq: goInt(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER).optional(),
  Endpoints: list(goEndpoint()),
  EndpointTypes: list(goInt(-INT32_MAX - 1, INT32_MAX)),
  TKAHead: text,
  ReadOnly: z.boolean().default(false),
  OmitPeers: z.boolean().default(false),
  DebugFlags: list(z.string()),
  ConnectionHandleForTest: text,
});

/** Leaves out keys whose value is undefined, so "absent" has one representation. */
function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as T;
}

function run<T extends z.ZodType>(schema: T, json: unknown, what: string): z.output<T> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new WireError('', `a ${what} must be a JSON object`);
  }
  const result = decode(schema, json);
  if (!result.ok) throw new WireError(result.path, result.reason);
  return result.value;
}

/** Decodes the body of `POST /machine/register`. Throws `WireError`. */
export function parseRegisterRequest(json: unknown): RegisterRequest {
  const request = run(registerRequestSchema, json, 'register request');
  let auth: RegisterRequest['Auth'];
  if (request.Auth !== undefined) {
    auth = compact({
      AuthKey: request.Auth.AuthKey === '' ? undefined : request.Auth.AuthKey,
      Oauth2Token: request.Auth.Oauth2Token === undefined ? undefined : compact(request.Auth.Oauth2Token),
    });
  }
  return compact({
    ...request,
    Auth: auth,
    Hostinfo: request.Hostinfo as Hostinfo | undefined,
  });
}

/** Decodes the body of `POST /machine/map`. Throws `WireError`. */
export function parseMapRequest(json: unknown): MapRequest {
  const request = run(mapRequestSchema, json, 'map request');
  let endpoints: string[] | undefined;
  let endpointTypes = request.EndpointTypes;
  if (request.Endpoints !== undefined) {
    // Dropped endpoints leave a null behind so the parallel EndpointTypes can drop the same index.
    const kept = request.Endpoints.flatMap((endpoint, index) => (endpoint === null ? [] : [index]));
    endpoints = kept.map((index) => request.Endpoints?.[index] as string);
    if (endpointTypes !== undefined && kept.length !== request.Endpoints.length) {
      const types = endpointTypes;
      endpointTypes = kept.filter((index) => index < types.length).map((index) => types[index] as number);
    }
  }
  return compact({
    ...request,
    Endpoints: endpoints,
    EndpointTypes: endpointTypes,
    Hostinfo: request.Hostinfo as Hostinfo | undefined,
  });
}
