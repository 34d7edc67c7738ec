/** `meta-agent review`: the pending patches one by one, to approve, reject or skip. */
import type { Command } from 'commander';
import { review } from '../../ui/terminal.ts';
import type { CliContext } from '../context.ts';

export function registerReview(program: Command, cli: CliContext): void {
  program
    .command('review')
    .description('go through pending patches: diff and summary, then approve, reject or skip each')
    .option('--now', 'run the gate right after each approval')
    .action(async (opts: { now?: boolean }) => {
      const settings = await cli.settings();
      cli.exitCode = await review(settings, { io: cli.io, now: Boolean(opts.now), log: cli.makeLog(settings, true) });
    });
}
