/** `meta-agent reject`: a pending patch into patches/rejected/, with the reason. */
import type { Command } from 'commander';
import { rejectPatch } from '../../gate/decide.ts';
import { displayPath } from '../../workspace/layout.ts';
import type { CliContext } from '../context.ts';

export function registerReject(program: Command, cli: CliContext): void {
  program
    .command('reject')
    .description('reject a pending patch with a reason: move it into patches/rejected/ and record it in the report')
    .argument('<id>')
    .requiredOption('--reason <text>', 'why (kept, so the same idea is not proposed again)')
    .action(async (id: string, opts: { reason: string }) => {
      const settings = await cli.settings();
      const moved = await rejectPatch(settings, id, opts.reason);
      cli.io.out(`rejected: ${displayPath(settings.layout, moved)}`);
    });
}
