/** CLI-side failures: a usage mistake (exit 2) or anything else worth one sentence (exit 1). */

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A command that cannot do its work (a file it cannot read, …): one sentence, exit 1. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
