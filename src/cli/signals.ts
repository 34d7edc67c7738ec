/** How a command stops: on the signals Ctrl-C, a service manager or Windows send. */
import { toErrorInfo } from '../contract/errors.ts';
import type { Io } from './context.ts';

/**
 * The signals that stop a command like Ctrl-C does. SIGTERM never arrives on Windows: there
 * closing the console window or logging off sends SIGHUP, Ctrl-Break sends SIGBREAK (Node
 * maps both), so each of them winds down cleanly (End Task and `schtasks /End` are a hard
 * kill, which the crash recovery at the next start handles).
 */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const satisfies readonly NodeJS.Signals[];

/**
 * Stop-signal handling (STOP_SIGNALS). `process.on`, not `once`: execa loads signal-exit while a child
 * runs, and a `once` listener removed before it fires makes signal-exit re-raise the
 * signal, killing the process in the middle of its shutdown. The first signal calls
 * `handler`, a second one `again` (if given); more are ignored.
 * Returns the function that removes the handlers.
 */
export function onStopSignal(handler: () => void, again?: () => void): () => void {
  let count = 0;
  const listener = () => {
    count++;
    if (count === 1) handler();
    else if (count === 2) again?.();
  };
  for (const name of STOP_SIGNALS) process.on(name, listener);
  return () => {
    for (const name of STOP_SIGNALS) process.off(name, listener);
  };
}

/**
 * Runs until a stop signal (STOP_SIGNALS), then awaits `stop`; a second signal calls `stop({ now: true })`
 * (no grace period). A failing stop still ends the wait (and is reported).
 */
export function untilStopSignal(stop: (options: { now: boolean }) => Promise<unknown>, io: Io, message: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const run = (now: boolean) =>
      void stop({ now }).then(
        () => resolve(),
        (error: unknown) => {
          io.err(`meta-agent: stopping failed: ${toErrorInfo(error).message}`);
          resolve();
        },
      );
    onStopSignal(
      () => {
        io.err(message);
        run(false);
      },
      () => {
        io.err('stopping now: running tasks go back to inbox/');
        run(true);
      },
    );
  });
}
