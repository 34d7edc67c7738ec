/**
 * A `meta-agent worker` with the no-op engine, for bench/scaleout.ts:
 *   node --import tsx bench/noop-worker.ts <worker workspace root>
 * REDIS_URL in the environment; SIGTERM stops it.
 */
import { silentLogger } from '../src/log.ts';
import { startWorker } from '../src/service/bullmq/worker.ts';
import { loadSettings } from '../src/workspace/config.ts';
import { benchEnv, NoopEngine } from './lib.ts';

const root = process.argv[2];
if (!root) {
  process.stderr.write('usage: node --import tsx bench/noop-worker.ts <root>\n');
  process.exit(2);
}
const settings = await loadSettings(root, benchEnv());
const worker = await startWorker({ settings, log: silentLogger(), concurrency: 1, engine: new NoopEngine() });
await worker.ready;
process.once('SIGTERM', () => void worker.stop().then(() => process.exit(0)));
