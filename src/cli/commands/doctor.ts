/** `meta-agent doctor`: the workspace checked before a night; `--fix` also empties the worktree pool. */
import type { Command } from 'commander';
import { silentLogger } from '../../log.ts';
import { prunePool } from '../../repo/worktreePool.ts';
import { findingLine, runDoctor, verdictLine } from '../../service/doctor.ts';
import type { CliContext } from '../context.ts';
import { printJson } from '../output.ts';

export function registerDoctor(program: Command, cli: CliContext): void {
  program
    .command('doctor')
    .description(
      'check the workspace before a night: config, repos and branches, check programs, model, sandbox, disk, Redis with execution.engine bullmq (exit 2 on errors)',
    )
    .option('--json', 'machine-readable')
    .option('--fix', 'also remove the reusable worktrees (pool slots) no run is using; the next runs make them afresh')
    .action(async (opts: { json?: boolean; fix?: boolean }) => {
      const { io } = cli;
      const report = await runDoctor(cli.root());
      if (opts.json) printJson(io, report);
      else {
        for (const finding of report.findings) io.out(findingLine(finding));
        io.out(verdictLine(report));
      }
      if (!report.ok) cli.exitCode = 2;
      if (opts.fix && report.ok) {
        const removed = await prunePool(await cli.settings(), silentLogger(), { all: true });
        if (!opts.json) io.out(`doctor --fix: removed ${removed.length} pooled worktree(s)`);
      }
    });
}
