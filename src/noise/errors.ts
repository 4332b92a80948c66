/**
 * Why a Noise handshake or record stream was refused. The server logs `code` (stable, for metrics and
 * tests) and `message` (for people) when it drops a connection, so both must say what was wrong with
 * the peer's bytes without echoing secrets.
 */
export type NoiseErrorCode =
  /** Fewer bytes than the message layout needs. */
  | 'short'
  /** Message type byte is not the one expected at this point (1 initiation, 2 response, 4 record). */
  | 'bad-type'
  /** A length field disagrees with the layout, or a message is longer than its layout. */
  | 'bad-length'
  /** AEAD authentication failed: wrong keys, tampered bytes, or records out of order. */
  | 'decrypt'
  /** An X25519 result was all zeros: the peer sent a low-order public key. */
  | 'low-order'
  /** A record or early payload announces more bytes than the protocol allows. */
  | 'oversize'
  /** A key argument is not 32 bytes. */
  | 'bad-key'
  /** The server answered the initiation with an error message (type 3) instead of a response. */
  | 'server-error'
  /** An early payload that is not valid JSON. */
  | 'bad-payload'
  /** The 64-bit record counter would wrap; the connection must be replaced. */
  | 'exhausted';

export class NoiseError extends Error {
  readonly code: NoiseErrorCode;
  constructor(code: NoiseErrorCode, message: string) {
    super(message);
    this.name = 'NoiseError';
    this.code = code;
  }
}
