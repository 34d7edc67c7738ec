/** `meta-agent retry`: a failed task back into inbox/. */
import path from 'node:path';
import type { Command } from 'commander';
import { retryFailedTask } from '../../queue/retry.ts';
import type { CliContext } from '../context.ts';

export function registerRetry(program: Command, cli: CliContext): void {
  program
    .command('retry')
    .description('move a failed task back into inbox/ and remove its error note; "watch" runs it again')
    .argument('<id>', 'the task id (its file name in failed/, with or without .md)')
    .option('--force', "retry even if a patch of this task (e.g. a stopped run's incomplete one) waits for review; the new patch is filed beside it")
    .action(async (id: string, opts: { force?: boolean }) => {
      const settings = await cli.settings();
      const { to } = await retryFailedTask(settings.layout, id, { force: Boolean(opts.force) });
      cli.io.out(
        `moved failed/${path.basename(to)} back into inbox/ (its error note is removed); "meta-agent watch" runs it, or: meta-agent run --task-id ${path.basename(to, '.md')}`,
      );
    });
}
