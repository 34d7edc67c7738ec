/**
 * The supervisor's own records (the schedule's state, a cycle's journal, its tasks and its
 * report) are small, and a disk that is full or failing for a moment must not lose a night's
 * cycle: such a write is retried for a few seconds before its error is let through.
 */
const TRANSIENT = new Set(['ENOSPC', 'EIO', 'EDQUOT']);

export async function retryWrite<T>(write: () => Promise<T>, totalMs = 10_000): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2000)) {
    try {
      return await write();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (!code || !TRANSIENT.has(code) || Date.now() + delayMs > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
