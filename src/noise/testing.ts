/** Helpers shared by the noise tests (not used by production code). */
import { expectCodedError } from '../util/testing.ts';
import { NoiseError, type NoiseErrorCode } from './errors.ts';

/** Runs `fn`, asserting it throws a NoiseError with `code`; returns the error for further checks. */
export function expectNoiseError(code: NoiseErrorCode, fn: () => unknown): NoiseError {
  return expectCodedError(NoiseError, code, fn);
}

/** Bytes `start`, `start + 1`, … (32 of them): the private keys of the known-answer vectors. */
export function sequentialKey(start: number): Buffer {
  return Buffer.from(Array.from({ length: 32 }, (_, i) => start + i));
}

export const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
