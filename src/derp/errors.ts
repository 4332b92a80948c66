/**
 * Why a DERP connection was dropped. DERP has no error frame: the server logs `code` (stable, for
 * metrics and tests) with `message` (for people) and closes the connection.
 */
export type DerpErrorCode =
  /** A frame announces more bytes than its type allows. */
  | 'oversize'
  /** A frame's length does not fit its layout (e.g. NotePreferred not 1 byte). */
  | 'bad-length'
  /** A frame that is not allowed at this point (e.g. data before ClientInfo). */
  | 'bad-type'
  /** The ServerKey frame does not start with the DERP magic. */
  | 'bad-magic'
  /** A NaCl box that does not open, or JSON inside it that does not parse. */
  | 'bad-info'
  /** A mesh-only frame from a client without the mesh key. */
  | 'not-mesh'
  /** The admission check refused the client's node key. */
  | 'refused'
  /** The peer did not send the next handshake frame in time, or a write did not drain in time. */
  | 'timeout'
  /** The peer closed the connection. */
  | 'closed';

export class DerpError extends Error {
  readonly code: DerpErrorCode;
  constructor(code: DerpErrorCode, message: string) {
    super(message);
    this.name = 'DerpError';
    this.code = code;
  }
}
