/**
 * The watch service with the no-op engine, in its own process (so that its event loop is
 * not the one that observes the claims). Started by bench/run.ts over IPC:
 *   node --import tsx bench/noop-service.ts <workspace root>
 * Messages to the parent: {type: 'ready'}, {type: 'result', task_id, status, outcome}.
 * On 'stop' (or SIGTERM) it stops the watcher and exits.
 */
import { startWatching } from '../src/service/watch.ts';
import { silentLogger } from '../src/log.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { benchEnv, NoopEngine } from './lib.ts';

const root = process.argv[2];
if (!root || !process.send) {
  process.stderr.write('usage: node --import tsx bench/noop-service.ts <root> (with an IPC channel)\n');
  process.exit(2);
}
const send = (message: unknown) => process.send?.(message);

const settings = await loadSettings(root, benchEnv());
const watcher = startWatching({
  settings,
  log: silentLogger(),
  engine: new NoopEngine(),
  usePolling: false,
  onResult: (r) => send({ type: 'result', task_id: r.task_id, status: r.status, outcome: r.outcome, error: r.report.error?.message ?? null }),
});
await watcher.ready;
send({ type: 'ready' });

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await watcher.stop();
  process.disconnect?.();
  process.exit(0);
};
process.on('message', (m) => {
  if ((m as { type?: string }).type === 'stop') void stop();
});
process.once('SIGTERM', () => void stop());
process.once('disconnect', () => void stop());
