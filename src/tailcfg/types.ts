/**
 * The JSON shapes of the Tailscale control protocol (Go package `tailcfg`), as the official client
 * sends and expects them.
 *
 * Field names are the Go field names (PascalCase) because Go's encoding/json writes those; the few
 * explicit JSON tags (`legacyPublicKey`, `nodeKeyChallenge`, `DERP`, `omitDefaultRegions`, `sshHostKeys`,
 * the lowercase SSH policy tree) are spelled as on the wire. An optional field here is one Go marks
 * `omitempty` or one the client treats as "unchanged" when absent: leave it out rather than sending a
 * zero value, because several MapResponse fields mean something different when present (§6.6).
 *
 * Two directions, two conventions:
 * - What the server *sends* (MapResponse, Node, RegisterResponse, DERPMap …) is typed exactly as it is
 *   serialised: times are RFC 3339 strings, `[]byte` fields are base64 strings.
 * - What the server *receives* (RegisterRequest, MapRequest) is typed as `requests.ts` delivers it after
 *   validation: all-zero keys and Go's zero time become undefined, times become `Date`s, booleans Go
 *   would default to false are always present.
 */
import type { DiscoPublic, MachinePublic, NodePublic } from '../types/keys.ts';

/** RFC 3339 text as Go writes a `time.Time` (`2026-08-22T11:48:56.123456789Z`). */
export type Time = string;
/** Node, user and login IDs are JSON numbers, > 0 and kept ≤ 2^53−1 so JavaScript clients stay exact. */
export type NodeID = number;
export type UserID = number;
export type LoginID = number;
export type DERPRegionID = number;
/** Any stable unique string; the client only compares it. */
export type StableNodeID = string;
export type CapabilityVersion = number;
/** `netip.Prefix` text: `100.64.0.1/32`, `fd7a:115c:a1e0::1/128`. */
export type Prefix = string;
/** `netip.AddrPort` text: `192.0.2.1:41641`, `[2001:db8::1]:41641`. */
export type AddrPort = string;
/** Standard base64 with padding, as Go encodes `[]byte`. */
export type Base64 = string;

/**
 * Capability name → arguments (raw JSON values). An empty array or null means "present, no arguments":
 * `{"https://tailscale.com/cap/ssh": [], "default-auto-update": [true]}`.
 */
export type CapMap = Record<string, unknown[] | null>;

// ---------------------------------------------------------------------------------------------------
// Discovery and the Noise early payload

/** Answer to `GET /key?v=<capver>`; `legacyPublicKey` is the zero key for every Noise-capable client. */
export interface OverTLSPublicKeyResponse {
  legacyPublicKey: MachinePublic;
  publicKey: MachinePublic;
}

/** Sent by the server inside Noise before HTTP/2 starts. */
export interface EarlyNoise {
  /** A `chalpub:` key; a random per-connection challenge public key. */
  nodeKeyChallenge: string;
}

// ---------------------------------------------------------------------------------------------------
// Registration

export interface User {
  ID: UserID;
  DisplayName: string;
  ProfilePicURL?: string;
  Created?: Time;
}

export interface Login {
  ID: LoginID;
  /** "google", "github", "oidc", … */
  Provider: string;
  /** An e-mail address or e-mail-ish name; shown by `tailscale status`. */
  LoginName: string;
  DisplayName: string;
  ProfilePicURL?: string;
}

/** The copy of golang.org/x/oauth2.Token that pre-1.66 Android clients send (snake_case JSON tags). */
export interface Oauth2Token {
  access_token: string;
  token_type?: string;
  refresh_token?: string;
  expiry?: Date;
}

export interface RegisterRequestAuth {
  AuthKey?: string;
  Oauth2Token?: Oauth2Token;
}

/** `POST /machine/register`, as `parseRegisterRequest` returns it. */
export interface RegisterRequest {
  Version: CapabilityVersion;
  /** Absent when the client sent the zero key. */
  NodeKey?: NodePublic;
  /** The key the client rotated away from; absent (zero on the wire) if it never rotated. */
  OldNodeKey?: NodePublic;
  /** Tailnet-lock public key in canonical `nlpub:` form. */
  NLKey?: string;
  Auth?: RegisterRequestAuth;
  /** Requested key expiry; absent for Go's zero time. A time in the past with the current key = logout. */
  Expiry?: Date;
  /** The AuthURL being waited on, or "" when not following up. */
  Followup: string;
  Hostinfo?: Hostinfo;
  Ephemeral: boolean;
  NodeKeySignature?: Base64;
  /** "signature-v2" etc.; Windows device-certificate signing only. */
  SignatureType?: string;
  Timestamp?: Date;
  DeviceCert?: Base64;
  Signature?: Base64;
  /** Tailnet hint; a "required:" prefix means the client must join that tailnet. */
  Tailnet?: string;
}

export interface RegisterResponse {
  /** Required on success; the client ignores it (and Login) when Error is set. */
  User?: User;
  Login?: Login;
  /** The client generates a new node key and registers again at once. */
  NodeKeyExpired?: boolean;
  /** Only logged by the client; `Node.MachineAuthorized` in the map is what counts. */
  MachineAuthorized?: boolean;
  /** Non-empty = login not complete; the user must visit this URL. */
  AuthURL?: string;
  /** Tailnet-lock re-sign request; never send unless tailnet lock is implemented. */
  NodeKeySignature?: Base64 | null;
  /** Non-empty = failure shown to the user; every other field is ignored. */
  Error?: string;
}

// ---------------------------------------------------------------------------------------------------
// Host description

export interface NetInfo {
  MappingVariesByDestIP?: boolean | null;
  HairPinning?: boolean | null;
  WorkingIPv6?: boolean | null;
  OSHasIPv6?: boolean | null;
  WorkingUDP?: boolean | null;
  WorkingICMPv4?: boolean | null;
  HavePortMap?: boolean;
  UPnP?: boolean | null;
  PMP?: boolean | null;
  PCP?: boolean | null;
  /** Home DERP region; 0 = unknown. */
  PreferredDERP?: number;
  LinkType?: string;
  /** "<regionID>-v4" / "-v6" → seconds. */
  DERPLatency?: Record<string, number>;
  FirewallMode?: string;
  [key: string]: unknown;
}

export interface Service {
  Proto: string;
  Port: number;
  Description?: string;
}

export interface Location {
  Country?: string;
  CountryCode?: string;
  City?: string;
  CityCode?: string;
  Latitude?: number;
  Longitude?: number;
  Priority?: number;
}

/**
 * What the client says about itself. The commonly used fields are typed; the client adds fields often,
 * so every other key is kept as sent and handed back to peers unchanged.
 */
export interface Hostinfo {
  IPNVersion?: string;
  FrontendLogID?: string;
  BackendLogID?: string;
  OS?: string;
  OSVersion?: string;
  Container?: boolean | null;
  Env?: string;
  Distro?: string;
  DistroVersion?: string;
  DistroCodeName?: string;
  App?: string;
  Desktop?: boolean | null;
  Package?: string;
  DeviceModel?: string;
  PushDeviceToken?: string;
  /** The raw OS host name (or `--hostname`); may contain anything, see netaddr/dnsname.ts. */
  Hostname?: string;
  ShieldsUp?: boolean;
  ShareeNode?: boolean;
  NoLogsNoSupport?: boolean;
  WireIngress?: boolean;
  IngressEnabled?: boolean;
  AllowsUpdate?: boolean;
  Machine?: string;
  GoArch?: string;
  GoArchVar?: string;
  GoVersion?: string;
  /** Subnet routes and exit-node routes (0.0.0.0/0, ::/0) the node offers. */
  RoutableIPs?: Prefix[];
  /** Tags the node asks for (`--advertise-tags`). */
  RequestTags?: string[];
  WoLMACs?: string[];
  Services?: Service[];
  NetInfo?: NetInfo;
  sshHostKeys?: string[];
  Cloud?: string;
  Userspace?: boolean | null;
  UserspaceRouter?: boolean | null;
  AppConnector?: boolean | null;
  ServicesHash?: string;
  ExitNodeID?: StableNodeID;
  Location?: Location;
  StateEncrypted?: boolean | null;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------------
// Map polling

/** `POST /machine/map`, as `parseMapRequest` returns it. */
export interface MapRequest {
  Version: CapabilityVersion;
  /** "zstd" from every supported client; "" = uncompressed. */
  Compress: string;
  KeepAlive: boolean;
  NodeKey?: NodePublic;
  DiscoKey?: DiscoPublic;
  /** `hwattestpub:` text; absent when the client has none. */
  HardwareAttestationKey?: string;
  HardwareAttestationKeySignature?: Base64;
  HardwareAttestationKeySignatureTimestamp?: Date;
  /** true = the long poll; false with OmitPeers = a lite update. */
  Stream: boolean;
  Hostinfo?: Hostinfo;
  MapSessionHandle?: string;
  MapSessionSeq?: number;
  /**
   * UDP endpoints in canonical `ip:port` text, IPv6 link-local and zoned ones removed. Absent when the
   * client sent none; `EndpointTypes` stays index-aligned with it.
   */
  Endpoints?: AddrPort[];
  /** 0 unknown, 1 local, 2 STUN, 3 port-mapped, 4 STUN with local port, 5 explicitly configured. */
  EndpointTypes?: number[];
  TKAHead?: string;
  ReadOnly: boolean;
  OmitPeers: boolean;
  DebugFlags?: string[];
  ConnectionHandleForTest?: string;
}

export interface PingRequest {
  /** Unique per request: the client runs each URL once. */
  URL: string;
  URLIsNoise?: boolean;
  Log?: boolean;
  /** "disco", "TSMP", "ICMP", "peerapi" (comma separated), or "c2n". */
  Types?: string;
  IP?: string;
  Payload?: Base64;
}

export interface Debug {
  SleepSeconds?: number;
  DisableLogTail?: boolean;
  /** The client process exits with this code. */
  Exit?: number;
}

export interface DisplayMessageAction {
  URL: string;
  Label: string;
}

export interface DisplayMessage {
  Title: string;
  Text: string;
  Severity: 'high' | 'medium' | 'low';
  ImpactsConnectivity?: boolean;
  PrimaryAction?: DisplayMessageAction;
}

export interface ClientVersion {
  RunningLatest?: boolean;
  LatestVersion?: string;
  UrgentSecurityUpdate?: boolean;
  Notify?: boolean;
  NotifyURL?: string;
  NotifyText?: string;
}

export interface ControlIPCandidate {
  IP?: string;
  ACEHost?: string;
  DialStartDelaySec?: number;
  DialTimeoutSec?: number;
  Priority?: number;
}

export interface ControlDialPlan {
  Candidates: ControlIPCandidate[] | null;
}

/** A node as control describes it, for the self node (`MapResponse.Node`) and for peers. */
export interface Node {
  ID: NodeID;
  StableID: StableNodeID;
  /** FQDN with a trailing dot: `laptop.tail.example.net.`. */
  Name: string;
  /** Owner; tagged nodes use a dedicated "tagged devices" user. Must have a `UserProfiles` entry. */
  User: UserID;
  Sharer?: UserID;
  Key: NodePublic;
  /** Absent or Go's zero time = never expires. */
  KeyExpiry?: Time;
  KeySignature?: Base64;
  Machine: MachinePublic;
  /** Required for peers: one without a disco key is unreachable (magicsock skips it). */
  DiscoKey?: DiscoPublic;
  /** `/32` and `/128` host prefixes, IPv4 first. */
  Addresses: Prefix[];
  /** Addresses plus routed prefixes; null/absent means "same as Addresses" for capver ≥ 112. */
  AllowedIPs?: Prefix[] | null;
  Endpoints?: AddrPort[];
  /** Pre-111 home DERP encoding `127.3.3.40:<region>`; every supported client reads HomeDERP instead. */
  DERP?: string;
  /** Home DERP region; 0/absent = unknown. */
  HomeDERP?: DERPRegionID;
  /** Shown by `tailscale status` and used for display names. */
  Hostinfo?: Hostinfo;
  Created: Time;
  /** The node's own capability version. */
  Cap?: CapabilityVersion;
  Tags?: string[];
  PrimaryRoutes?: Prefix[];
  LastSeen?: Time;
  Online?: boolean;
  /** The self node must be true, or the client waits in NeedsMachineAuth. */
  MachineAuthorized?: boolean;
  /** Deprecated list form of CapMap; the client folds it into CapMap. */
  Capabilities?: string[];
  CapMap?: CapMap;
  UnsignedPeerAPIOnly?: boolean;
  DataPlaneAuditLogID?: string;
  Expired?: boolean;
  SelfNodeV4MasqAddrForThisPeer?: string;
  SelfNodeV6MasqAddrForThisPeer?: string;
  IsWireGuardOnly?: boolean;
  IsJailed?: boolean;
  ExitNodeDNSResolvers?: DNSResolver[];
}

/**
 * A partial update to a peer. Every field but NodeID is "absent = unchanged"; only these node fields can
 * change this way, anything else needs the whole node in `PeersChanged`.
 */
export interface PeerChange {
  NodeID: NodeID;
  /** New home DERP region. */
  DERPRegion?: DERPRegionID;
  Cap?: CapabilityVersion;
  /** Replaces the whole map; `{}` clears it. */
  CapMap?: CapMap;
  /** New endpoints; cannot clear them (send the full node for that). */
  Endpoints?: AddrPort[];
  Key?: NodePublic;
  KeySignature?: Base64;
  DiscoKey?: DiscoPublic;
  Online?: boolean;
  LastSeen?: Time;
  KeyExpiry?: Time;
}

export interface UserProfile {
  ID: UserID;
  LoginName: string;
  DisplayName: string;
  ProfilePicURL?: string;
}

/**
 * One message of the map stream. After the first message every field means "unchanged" when absent;
 * see control-protocol.md §6.6 for the null-versus-empty rules of Peers, PacketFilter and Health.
 */
export interface MapResponse {
  MapSessionHandle?: string;
  Seq?: number;
  /** An otherwise empty keep-alive; the client ignores all but PingRequest, ControlTime, PopBrowserURL. */
  KeepAlive?: boolean;
  PingRequest?: PingRequest;
  PopBrowserURL?: string;
  /** Required in the first message of a stream; replaces the whole self node. */
  Node?: Node;
  DERPMap?: DERPMap;
  /** Non-empty = the complete peer list (an empty array is read as "unchanged"), sorted by ID. */
  Peers?: Node[];
  /** Upserts by ID, sorted by ID. */
  PeersChanged?: Node[];
  PeersRemoved?: NodeID[];
  /** Applied after Peers/PeersChanged/PeersRemoved. */
  PeersChangedPatch?: PeerChange[];
  /** `{"<id>": true}` = seen now, `false` = clear LastSeen. */
  PeerSeenChange?: Record<string, boolean>;
  OnlineChange?: Record<string, boolean>;
  DNSConfig?: DNSConfig;
  /** Tailnet name; "" = unchanged. */
  Domain?: string;
  CollectServices?: boolean;
  /** Stored as the named chunk "base"; `[]` blocks all inbound traffic. */
  PacketFilter?: FilterRule[];
  /** Named chunks: `null` deletes one, `"*": null` clears all first. */
  PacketFilters?: Record<string, FilterRule[] | null>;
  /** Added or updated profiles only; never removed. */
  UserProfiles?: UserProfile[];
  /** Legacy problem list; `[]` clears. */
  Health?: string[];
  /** Patch map like PacketFilters. */
  DisplayMessages?: Record<string, DisplayMessage | null>;
  SSHPolicy?: SSHPolicy;
  /** Server clock; the client corrects its expiry decisions when it differs by more than a minute. */
  ControlTime?: Time;
  /** Tailnet-lock state; not implemented by weft, so never sent. */
  TKAInfo?: Record<string, unknown>;
  DomainDataPlaneAuditLogID?: string;
  Debug?: Debug;
  ControlDialPlan?: ControlDialPlan;
  ClientVersion?: ClientVersion;
  /** Go field DeprecatedDefaultAutoUpdate; the tailnet's default auto-update setting. */
  DefaultAutoUpdate?: boolean;
}

// ---------------------------------------------------------------------------------------------------
// DERP

export interface DERPHomeParams {
  /** Region ID (decimal string) → score multiplier for home-region selection. */
  RegionScore?: Record<string, number> | null;
}

export interface DERPNode {
  /** Unique within the map, e.g. "900a". */
  Name: string;
  RegionID: DERPRegionID;
  HostName: string;
  CertName?: string;
  /** Overrides DNS for HostName; "none" disables that family. */
  IPv4?: string;
  IPv6?: string;
  /** 0 = 3478, −1 = no STUN. */
  STUNPort?: number;
  STUNOnly?: boolean;
  /** 0 = 443. */
  DERPPort?: number;
  /** Skips TLS verification; honoured by release builds. */
  InsecureForTests?: boolean;
  STUNTestIP?: string;
  CanPort80?: boolean;
}

export interface DERPRegion {
  RegionID: DERPRegionID;
  RegionCode: string;
  RegionName: string;
  Latitude?: number;
  Longitude?: number;
  Avoid?: boolean;
  NoMeasureNoHome?: boolean;
  Nodes: DERPNode[];
}

export interface DERPMap {
  HomeParams?: DERPHomeParams;
  /**
   * Keyed by the decimal region ID. A null entry deletes that region: when merging maps here, and on
   * the client when sent in a delta.
   */
  Regions: Record<string, DERPRegion | null>;
  omitDefaultRegions?: boolean;
}

// ---------------------------------------------------------------------------------------------------
// DNS

/** `dnstype.Resolver`: an IP, `ip:port`, a DoH URL (`https://…`) or a DoT-style host. */
export interface DNSResolver {
  Addr?: string;
  BootstrapResolution?: string[];
  UseWithExitNode?: boolean;
}

export interface DNSRecord {
  /** FQDN; trailing dot optional. */
  Name: string;
  /** "" = A or AAAA depending on Value. */
  Type?: string;
  Value: string;
}

export interface DNSConfig {
  Resolvers?: DNSResolver[];
  /** Split DNS: suffix → resolvers; an empty list keeps the suffix on quad-100 (for ExtraRecords). */
  Routes?: Record<string, DNSResolver[] | null>;
  FallbackResolvers?: DNSResolver[];
  /** Search domains, FQDNs without trailing dot; the first is conventionally the base domain. */
  Domains?: string[];
  /** true = MagicDNS. */
  Proxied?: boolean;
  /** Deprecated (capver 9–13). */
  Nameservers?: string[];
  CertDomains?: string[];
  ExtraRecords?: DNSRecord[];
  ExitNodeFilteredSet?: string[];
}

// ---------------------------------------------------------------------------------------------------
// Packet filter

export interface PortRange {
  First: number;
  Last: number;
}

export interface NetPortRange {
  /** IP, CIDR, `a-b` range or "*". */
  IP: string;
  /** Deprecated CIDR bits (pre-capver 7). */
  Bits?: number;
  Ports: PortRange;
}

export interface CapGrant {
  Dsts: Prefix[];
  /** Deprecated list form. */
  Caps?: string[];
  CapMap?: CapMap;
}

export interface FilterRule {
  /** IP, CIDR, `a-b` range, "*" or `cap:<name>`. */
  SrcIPs: string[];
  SrcBits?: number[];
  /** Mutually exclusive with CapGrant. */
  DstPorts?: NetPortRange[];
  /** IP protocol numbers; empty = TCP, UDP and ICMP. */
  IPProto?: number[];
  CapGrant?: CapGrant[];
}

// ---------------------------------------------------------------------------------------------------
// Tailscale SSH (lowercase JSON names, from explicit Go tags)

export interface SSHPrincipal {
  node?: StableNodeID;
  nodeIP?: string;
  nodeCap?: string;
  userLogin?: string;
  any?: boolean;
}

export interface SSHRecorderFailureAction {
  RejectSessionWithMessage?: string;
  TerminateSessionWithMessage?: string;
  NotifyURL?: string;
}

export interface SSHAction {
  message?: string;
  reject?: boolean;
  accept?: boolean;
  /** Nanoseconds (Go time.Duration). */
  sessionDuration?: number;
  allowAgentForwarding?: boolean;
  holdAndDelegate?: string;
  allowLocalPortForwarding?: boolean;
  allowRemotePortForwarding?: boolean;
  recorders?: AddrPort[];
  onRecordingFailure?: SSHRecorderFailureAction;
}

export interface SSHRule {
  ruleExpires?: Time;
  principals: SSHPrincipal[];
  /** SSH user (or "*") → local user; "=" maps to the same name, "" means no match. */
  sshUsers: Record<string, string> | null;
  /** null or invalid = deny. */
  action: SSHAction | null;
  acceptEnv?: string[];
}

export interface SSHPolicy {
  /** First matching rule wins. */
  rules: SSHRule[];
}
