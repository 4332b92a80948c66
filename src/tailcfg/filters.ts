/**
 * Packet filters that do not depend on a policy.
 */
import type { FilterRule } from './types.ts';

/**
 * Every source may reach every port of every node. What a tailnet without an ACL policy gets (Tailscale's
 * default policy and Headscale's behaviour without one). Frozen because it is shared by every map.
 */
export const ALLOW_ALL_PACKET_FILTER: readonly FilterRule[] = Object.freeze([
  Object.freeze({
    SrcIPs: Object.freeze(['*']) as string[],
    DstPorts: Object.freeze([
      Object.freeze({ IP: '*', Ports: Object.freeze({ First: 0, Last: 65535 }) }),
    ]) as FilterRule['DstPorts'],
  }),
]);
