/**
 * How a service stops (watch, schedule): running work gets a grace period, which a second
 * Ctrl-C cuts short; then it is aborted and gets SETTLE_MS more. No wait is unbounded: what
 * has not settled by then is left to crash recovery at the next start.
 */

/** How long aborted work may take to wind down (report, worktree removal) before stop() gives up on it. */
export const SETTLE_MS = 10_000;

/** `what`, but never longer than `ms`. */
export function bounded(what: Promise<unknown>, ms: number): Promise<unknown> {
  return Promise.race([what, new Promise<void>((resolve) => setTimeout(resolve, ms).unref())]);
}

/** `hurried` resolves once `hurry()` is called (stop({ now: true }), a second signal). */
export function hurrySwitch(): { hurry: () => void; hurried: Promise<void> } {
  let hurry: () => void = () => undefined;
  const hurried = new Promise<void>((resolve) => (hurry = resolve));
  return { hurry, hurried };
}

/** Waits for `work()` up to `graceMs` (or until `hurried`), calls `abort`, then waits up to SETTLE_MS more. */
export async function windDown(work: () => Promise<unknown>, graceMs: number, hurried: Promise<void>, abort: () => void): Promise<void> {
  if (graceMs > 0) await Promise.race([bounded(work(), graceMs), hurried]);
  abort();
  await bounded(work(), SETTLE_MS);
}
