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

/** Reads the whole body, refusing (by the announced length, or as bytes arrive) anything over the limit. */
export function readBody(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
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
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        stream.off('data', onData);
        stream.pause();
        reject(new BodyError(413, `request body is over the ${limit}-byte limit`));
        return;
      }
      chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.once('end', () => resolve(Buffer.concat(chunks, size)));
    stream.once('error', reject);
    stream.once('aborted', () => reject(new BodyError(400, 'the client aborted the request')));
  });
}

/** Reads and parses a JSON body; malformed JSON is a 400 with the parser's reason. */
export async function readJson(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<unknown> {
  const body = await readBody(stream, headers);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new BodyError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
}
