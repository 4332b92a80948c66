/**
 * Runs async tasks one at a time, in submission order. Used where a read-decide-write sequence must not
 * interleave with another one (e.g. two registrations picking the same free address or name).
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    // The chain continues whether the task failed or not; the caller sees the failure through `result`.
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
