/** The Tailscale control protocol's wire types, and decoders for what clients send. */
export * from './capver.ts';
export { DerpMapError, isCertPin, mergeDerpMaps, parseDerpMap, withoutCertPins } from './derpmap.ts';
export { MAX_LIST_ENTRIES, parseMapRequest, parseRegisterRequest, WireError } from './requests.ts';
export type * from './types.ts';
