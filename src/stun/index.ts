/** STUN: the Binding codec tailscaled's netcheck speaks and the UDP server that answers it. */
export {
  BINDING_REQUEST_SIZE,
  encodeBindingRequest,
  encodeBindingResponse,
  type MappedAddress,
  newTransactionId,
  parseBindingRequest,
  parseBindingResponse,
  TRANSACTION_ID_SIZE,
} from './codec.ts';
export {
  DEFAULT_MAX_TRACKED_SOURCES,
  DEFAULT_PER_SOURCE_BURST,
  DEFAULT_PER_SOURCE_RATE,
  StunListenError,
  type StunServer,
  type StunServerOptions,
  type StunStats,
  startStunServer,
} from './server.ts';
