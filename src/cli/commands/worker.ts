/** `meta-agent worker`: runs the jobs a folder host queued (execution.engine: bullmq), until a stop signal. */
import type { Command } from 'commander';
import { MetaAgentError } from '../../contract/errors.ts';
import type { CliContext } from '../context.ts';
import { untilStopSignal } from '../signals.ts';

export function registerWorker(program: Command, cli: CliContext): void {
  program
    .command('worker')
    .description('run tasks a folder host queued (execution.engine: bullmq); start any number, on any machine (docs/scale-out.md)')
    .option('--concurrency <n>', 'jobs at once (default: limits.concurrency)')
    .option('--queue <q>', 'the queue to take jobs from (default: execution.queue; see execution.routes)')
    .action(async (opts: { concurrency?: string; queue?: string }) => {
      const settings = await cli.settings();
      const concurrency = opts.concurrency === undefined ? undefined : Number(opts.concurrency);
      if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency > 0))
        throw new MetaAgentError('input', '--concurrency must be a positive whole number', { field: '--concurrency' });
      if (opts.queue !== undefined && !/^[A-Za-z0-9._-]+$/.test(opts.queue))
        throw new MetaAgentError('input', '--queue: letters, digits, ".", "_" and "-" only', { field: '--queue' });
      const log = cli.makeLog(settings, false, 'worker');
      // Loaded when asked for: BullMQ is ~30 MB the other commands do not carry.
      const { startWorker } = await import('../../service/bullmq/worker.ts');
      const worker = await startWorker({ settings, log, ...(concurrency ? { concurrency } : {}), ...(opts.queue ? { queue: opts.queue } : {}) });
      const stopped = untilStopSignal(() => worker.stop(), cli.io, 'stopping: running jobs are stopped and go back to the queue...');
      await worker.ready;
      cli.io.out(`worker: taking jobs from queue ${opts.queue ?? settings.config.execution.queue} (Ctrl-C to stop)`);
      await stopped;
      log.flush();
    });
}
