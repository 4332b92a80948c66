/** Tailnet addresses and node names. */

export {
  formatIp,
  formatPrefix,
  type IpFamily,
  type IpPrefix,
  type IpValue,
  parseIp,
  parsePrefix,
} from '../util/ip.ts';
export {
  AddressAllocator,
  type AllocatedAddresses,
  type AllocatorOptions,
  type AllocatorPrefixes,
} from './allocator.ts';
export {
  isAutoDerivedGivenName,
  labelProblem,
  MAX_LABEL_LENGTH,
  sanitizeHostname,
  sanitizeLabel,
  trimCommonSuffixes,
  uniqueGivenName,
} from './dnsname.ts';
