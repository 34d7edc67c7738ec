/** `meta-agent supervise`: one supervisor cycle (plan, run, summarise), in this process. */
import { Option, type Command } from 'commander';
import { exitCodeFor } from '../../contract/errors.ts';
import { runSupervisorCycle } from '../../supervisor/cycle.ts';
import type { CliContext } from '../context.ts';
import { printJson } from '../output.ts';
import { onStopSignal } from '../signals.ts';

interface SuperviseOptions {
  goal: string;
  project?: string;
  mode: 'daily' | 'weekly';
  json?: boolean;
}

export function registerSupervise(program: Command, cli: CliContext): void {
  program
    .command('supervise')
    .description('one supervisor cycle: plan 1-3 tasks for a goal, run them, write one summary (reports/cycles/)')
    .requiredOption('--goal <goal>', 'e.g. daily_maintenance, weekly_retrain, or any goal in words (planned by the LLM)')
    .option('--project <name>', 'the project (default: the only configured one)')
    .addOption(new Option('--mode <mode>', 'cycle mode').choices(['daily', 'weekly']).default('daily'))
    .option('--json', 'print the cycle report as JSON')
    .action((opts: SuperviseOptions) => supervise(cli, opts));
}

async function supervise(cli: CliContext, opts: SuperviseOptions): Promise<void> {
  const { io } = cli;
  const settings = await cli.settings();
  const log = cli.makeLog(settings, opts.json, 'supervisor');
  const controller = new AbortController();
  const offSignal = onStopSignal(() => controller.abort());
  try {
    const report = await runSupervisorCycle(settings, opts.goal, opts.mode, {
      log,
      signal: controller.signal,
      ...(opts.project ? { project: opts.project } : {}),
    });
    if (opts.json) printJson(io, report);
    else {
      io.out(`${report.cycle_id}: ${report.status.toUpperCase()}: ${report.summary}`);
      for (const c of report.candidates) io.out(`  ${c.task_id} (risk ${c.risk_level}): ${c.files.join(', ')}\n    ${c.approve}`);
      io.out(`  summary: reports/cycles/${report.cycle_id}.md`);
    }
    cli.exitCode = report.status === 'error' ? (report.error ? exitCodeFor(report.error.kind) : 1) : 0;
  } finally {
    offSignal();
    log.flush();
  }
}
