/** A failure to start, said in one sentence fit for an admin (the cause is kept for the log). */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
