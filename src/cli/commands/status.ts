/** `meta-agent status`: counts per folder and the pending patches. */
import type { Command } from 'commander';
import { workspaceStatus } from '../../ui/terminal.ts';
import type { CliContext } from '../context.ts';
import { pendingLine, printJson } from '../output.ts';

export function registerStatus(program: Command, cli: CliContext): void {
  program
    .command('status')
    .description('counts per folder and the pending patches (age, risk, files)')
    .option('--json', 'machine-readable')
    .action(async (opts: { json?: boolean }) => {
      const { io } = cli;
      const status = await workspaceStatus(await cli.settings());
      if (opts.json) return printJson(io, status);
      io.out(
        Object.entries(status.counts)
          .map(([k, v]) => `${k}: ${v}`)
          .join('   '),
      );
      if (status.pending.length === 0) io.out('no pending patches');
      for (const p of status.pending) io.out(pendingLine(p));
    });
}
