/** `meta-agent schedule`: the supervisor schedule in the foreground, its next run times, or printed for the OS. */
import { Option, type Command } from 'commander';
import { MetaAgentError } from '../../contract/errors.ts';
import { printSchedule, writeScheduleTasks } from '../../supervisor/osSchedule.ts';
import { localTime, nextRuns } from '../../supervisor/schedule.ts';
import { startSchedulerService } from '../../supervisor/service.ts';
import type { Settings } from '../../workspace/config.ts';
import type { CliContext } from '../context.ts';
import { untilStopSignal } from '../signals.ts';

interface ScheduleOptions {
  print?: 'cron' | 'systemd' | 'windows';
  next?: string;
}

export function registerSchedule(program: Command, cli: CliContext): void {
  program
    .command('schedule')
    .description('run the supervisor schedule in the foreground, or print it for cron, systemd or Windows')
    .addOption(new Option('--print <kind>', 'print instead of running').choices(['cron', 'systemd', 'windows']))
    .option('--next <n>', 'print the next N run times of each job and exit')
    .action(async (opts: ScheduleOptions) => {
      const settings = await cli.settings();
      if (opts.print === 'windows') await writeScheduleTasks(settings);
      if (opts.print) return cli.io.out(printSchedule(settings, opts.print).trimEnd());
      if (opts.next) return printNextRuns(cli, settings, Number(opts.next));
      await runScheduler(cli, settings);
    });
}

/** `--next N`: each job's next N run times, local (the schedule's time zone) and UTC. */
function printNextRuns(cli: CliContext, settings: Settings, count: number): void {
  const { supervisor } = settings.config;
  for (const job of supervisor.schedule) {
    cli.io.out(`${job.goal} (${job.cron}, ${supervisor.timezone}):`);
    for (const d of nextRuns(job.cron, supervisor.timezone, new Date(), count))
      cli.io.out(`  ${localTime(d, supervisor.timezone).key.replace('T', ' ')}  (${d.toISOString()})`);
  }
}

async function runScheduler(cli: CliContext, settings: Settings): Promise<void> {
  const { supervisor } = settings.config;
  const log = cli.makeLog(settings, false, 'supervisor');
  const service = startSchedulerService(settings, log);
  if (!service) throw new MetaAgentError('config', 'no jobs in supervisor.schedule', { file: 'meta-agent.yaml', field: 'supervisor.schedule' });
  // Signals are taken from here on: a catch-up cycle at start is stoppable too.
  const stopped = untilStopSignal(
    (how) => service.stop(how),
    cli.io,
    'stopping: no new cycles; a running one gets the grace period (Ctrl-C again: at once)...',
  );
  await service.scheduler.start();
  cli.io.out(`scheduler running (${supervisor.schedule.length} job(s), ${supervisor.timezone}); Ctrl-C to stop`);
  await stopped;
  log.flush();
}
