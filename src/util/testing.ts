/** Helpers shared by protocol tests (not used by production code). */

/**
 * Runs `fn`, asserting it throws an `ErrorClass` whose `code` is `code`; returns the error for further
 * checks. Protocol errors (NoiseError, DerpError) carry stable codes that tests pin down.
 */
export function expectCodedError<E extends Error & { code: string }>(
  ErrorClass: abstract new (...args: never[]) => E,
  code: E['code'],
  fn: () => unknown,
): E {
  try {
    fn();
  } catch (err) {
    if (err instanceof ErrorClass && err.code === code) return err;
    throw new Error(`expected ${ErrorClass.name} ${code}, got ${String(err)}`);
  }
  throw new Error(`expected ${ErrorClass.name} ${code}, nothing was thrown`);
}

/** Cuts `data` at the given fractional positions (0..1), as a stream might deliver it. */
export function cutAt(data: Buffer, points: number[]): Buffer[] {
  const offsets = [...new Set(points.map((p) => Math.floor(p * data.length)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let start = 0;
  for (const offset of offsets) {
    pieces.push(data.subarray(start, offset));
    start = offset;
  }
  pieces.push(data.subarray(start));
  return pieces;
}
