/** `meta-agent watch`: the service (inbox watcher, gate, scheduler; the dashboard with --ui), until a stop signal. */
import type { Command } from 'commander';
import { startWatching } from '../../service/watch.ts';
import { diagnose, findingLine, verdictLine } from '../../service/doctor.ts';
import { startUi } from '../../ui/server.ts';
import type { Settings } from '../../workspace/config.ts';
import { displayPath } from '../../workspace/layout.ts';
import type { CliContext } from '../context.ts';
import { summaryLine } from '../output.ts';
import { untilStopSignal } from '../signals.ts';

interface WatchOptions {
  poll?: boolean;
  ui?: boolean;
  port?: string;
}

export function registerWatch(program: Command, cli: CliContext): void {
  program
    .command('watch')
    .description('the service: run every task dropped into inbox/ (Ctrl-C to stop)')
    .option('--poll', 'poll the folder instead of OS events (network folders)')
    .option('--ui', 'serve the dashboard too (see "meta-agent ui")')
    .option('--port <n>', 'dashboard port, with --ui')
    .action((opts: WatchOptions) => watch(cli, opts));
}

async function watch(cli: CliContext, opts: WatchOptions): Promise<void> {
  const { io } = cli;
  const settings = await cli.settings();
  if (!(await healthy(cli, settings))) return;
  const log = cli.makeLog(settings);
  const ui = opts.ui ? await startUi({ settings, log, port: opts.port ? Number(opts.port) : settings.config.ui.port }) : null;
  if (ui) io.out(`dashboard: ${ui.url}`);
  const supervisorLog = cli.makeLog(settings, false, 'supervisor');
  const watcher = startWatching({
    settings,
    log,
    supervisorLog,
    ...(opts.poll ? { usePolling: true } : {}),
    onResult: (r) => io.out(summaryLine(settings, r)),
  });
  // Signals are taken from here on: the first scan at start may already claim tasks.
  const stopped = untilStopSignal(
    (how) => watcher.stop(how).then(() => ui?.close()),
    io,
    'stopping: no new claims; running work gets the grace period, then goes back to inbox/ (Ctrl-C again: at once)...',
  );
  await watcher.ready;
  io.out(
    `watching ${displayPath(settings.layout, settings.layout.inbox) || settings.layout.inbox}/ in ${settings.layout.root}; drop task .md files there (Ctrl-C to stop)`,
  );
  await stopped;
  log.flush();
}

/** The doctor's checks before the service starts: findings to stderr; not healthy is exit 2. */
async function healthy(cli: CliContext, settings: Settings): Promise<boolean> {
  // Redis unreachable is a warning here: the folder host waits for it (docs/scale-out.md).
  const health = await diagnose(settings, {}, true);
  for (const finding of health.findings) cli.io.err(findingLine(finding));
  if (!health.ok) {
    cli.io.err(verdictLine(health, true));
    cli.exitCode = 2;
    return false;
  }
  cli.io.out(verdictLine(health, true));
  return true;
}
