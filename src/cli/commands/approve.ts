/** `meta-agent approve`: a pending patch into patches/approved/; with --now, the gate runs here. */
import type { Command } from 'commander';
import { approvePatch } from '../../gate/decide.ts';
import { processApprovedPatch } from '../../gate/gate.ts';
import { gateLine } from '../../ui/terminal.ts';
import { displayPath } from '../../workspace/layout.ts';
import type { CliContext } from '../context.ts';

export function registerApprove(program: Command, cli: CliContext): void {
  program
    .command('approve')
    .description('approve a pending patch: move it into patches/approved/ (as Explorer would); the gate tests and applies it')
    .argument('<id>')
    .option('--now', 'run the gate in this process instead of leaving it to a running "watch"')
    .action(async (id: string, opts: { now?: boolean }) => {
      const { io } = cli;
      const settings = await cli.settings();
      const moved = await approvePatch(settings, id);
      io.out(`approved: ${displayPath(settings.layout, moved)}`);
      if (!opts.now) return io.out('the gate runs it when "meta-agent watch" is running (or use --now)');
      const result = await processApprovedPatch(settings, moved, cli.makeLog(settings));
      io.out(gateLine(settings, result));
      if (result.decision === 'rejected') cli.exitCode = 1;
    });
}
