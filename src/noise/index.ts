/** The ts2021 Noise transport: handshake, records, the connection stream and the early payload. */
export { NoiseConn, type NoiseConnOptions } from './conn.ts';
export {
  decodeEarlyPayloadBody,
  decodeEarlyPayloadHeader,
  EARLY_PAYLOAD_HEADER_SIZE,
  EARLY_PAYLOAD_MAGIC,
  type EarlyNoise,
  encodeEarlyPayload,
  MAX_EARLY_PAYLOAD_SIZE,
} from './early.ts';
export { NoiseError, type NoiseErrorCode } from './errors.ts';
export {
  encodeHandshakeError,
  INITIATION_SIZE,
  type InitiateOptions,
  type Initiation,
  initiate,
  initiationVersion,
  PROTOCOL_NAME,
  RESPONSE_SIZE,
  type RespondOptions,
  type RespondResult,
  respond,
  SERVER_HEADER_SIZE,
  serverMessageLength,
  type TransportKeys,
  tailscalePrologue,
} from './handshake.ts';
export { MAX_PLAINTEXT_SIZE, MAX_RECORD_SIZE, RecordReader, RecordSealer } from './records.ts';
