/** Request bodies on the HTTP/2-over-Noise plane: bounded before buffering, parsed as JSON. */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';

/** Headscale and Tailscale's test server cap control request bodies at 1 MiB; so do we. */
export const MAX_CONTROL_BODY_BYTES = 1024 * 1024;

export class BodyError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = 'BodyError';
    this.status = status;
  }
}

/** How long a client may take to send one request body. */
export const BODY_TIMEOUT_MS = 30_000;

/**
 * Bytes of request bodies one connection may have buffered at once, across its concurrent streams: a
 * client that opens many streams and trickles large bodies must not make the server hold 100 MiB.
 */
export const CONNECTION_BODY_BUDGET_BYTES = 4 * 1024 * 1024;

/** Per-connection accounting of buffered body bytes. */
export class BodyBudget {
  used = 0;
  readonly limit: number;

  constructor(limit = CONNECTION_BODY_BUDGET_BYTES) {
    this.limit = limit;
  }
}

/**
 * Reads the whole body, refusing (by the announced length, or as bytes arrive) anything over the limit,
 * bodies that take longer than BODY_TIMEOUT_MS, and bytes beyond the connection's budget.
 */
export function readBody(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  budget: BodyBudget,
  limit = MAX_CONTROL_BODY_BYTES,
): Promise<Buffer> {
  const announced = Number(headers['content-length'] ?? 0);
  if (announced > limit) {
    return Promise.reject(
      new BodyError(413, `request body of ${announced} bytes is over the ${limit}-byte limit`),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (error?: BodyError) => {
      clearTimeout(timer);
      budget.used -= size;
      // A long poll's stream lives for hours: listeners left on it would keep this body alive.
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('aborted', onAborted);
      stream.off('close', onClose);
      if (error === undefined) return resolve(Buffer.concat(chunks, size));
      chunks.length = 0;
      stream.pause();
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > limit)
        return finish(new BodyError(413, `request body is over the ${limit}-byte limit`));
      if (budget.used + chunk.length > budget.limit) {
        return finish(new BodyError(503, 'too many request bodies in flight on this connection'));
      }
      size += chunk.length;
      budget.used += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = () => finish();
    const onError = () => finish(new BodyError(400, 'the request stream failed'));
    const onAborted = () => finish(new BodyError(400, 'the client aborted the request'));
    const onClose = () => finish(new BodyError(400, 'the stream closed before the body was complete'));
    const timer = setTimeout(
      () => finish(new BodyError(408, `request body not received within ${BODY_TIMEOUT_MS / 1000} s`)),
      BODY_TIMEOUT_MS,
    );
    // The stream keeps the process alive while it is open; the deadline alone must not (a stop would
    // otherwise wait for it). A stream closed under the read (its session destroyed) ends the read too.
    timer.unref();
    stream.on('data', onData);
    stream.on('close', onClose);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('aborted', onAborted);
  });
}

/** Reads and parses a JSON body; malformed JSON is a 400 with the parser's reason. */
export async function readJson(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  budget: BodyBudget,
): Promise<unknown> {
  const body = await readBody(stream, headers, budget);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new BodyError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
}
