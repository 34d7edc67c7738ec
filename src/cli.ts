/**
 * The `meta-agent` command: a thin layer over the library API. Exit codes: 0 ok,
 * 1 a task ran and failed, 2 bad input or configuration.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { injectFileFault } from './workspace/files.ts';
import { installClockSkew, overrideHostName, setFaultPoints } from './workspace/faults.ts';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { exitCodeFor, MetaAgentError, toErrorInfo } from './contract/errors.ts';
import { parseTask, TASK_TYPES } from './contract/task.ts';
import { createLogger, silentLogger, type Logger, type LoggerOptions } from './log.ts';
import { prunePool } from './run/worktreePool.ts';
import { createTask } from './queue/createTask.ts';
import { runTask, type RunTaskResult } from './run/runTask.ts';
import { runStages } from './run/stages.ts';
import { startWatching } from './queue/watch.ts';
import { startWorker } from './queue/bullmq/worker.ts';
import { startUi } from './ui/server.ts';
import { uiToken } from './ui/token.ts';
import { runSupervisorCycle } from './supervisor/cycle.ts';
import { localTime, nextRuns } from './supervisor/schedule.ts';
import { printSchedule, writeScheduleTasks } from './supervisor/osSchedule.ts';
import { startSchedulerService } from './supervisor/service.ts';
import { diagnose, findingLine, runDoctor, verdictLine } from './service/doctor.ts';
import { installService, printService, serviceKind, serviceStatus, uninstallService, type ServiceKind } from './service/osService.ts';
import { printable, progressStream } from './service/progress.ts';
import { approvePatch, rejectPatch } from './gate/decide.ts';
import { processApprovedPatch } from './gate/gate.ts';
import { gateLine, review, workspaceStatus, formatAge } from './ui/terminal.ts';
import { makeRedactor, type Redactor } from './safety/redact.ts';
import { loadSettings, projectFor, resolveRoot, type Settings } from './workspace/config.ts';
import { initWorkspace, PACKAGE_ROOT } from './workspace/init.ts';
import { findFailedTask, retryFailedTask } from './queue/retry.ts';
import { isDirectlyIn } from './queue/folders.ts';
import { pendingPatchRefusal } from './run/report.ts';
import { fillTemplate, loadTemplate } from './workspace/templates.ts';
import { displayPath } from './workspace/layout.ts';

interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

const defaultIo: Io = { out: (t) => process.stdout.write(t + '\n'), err: (t) => process.stderr.write(t + '\n') };

/**
 * Fault injection for the soak test: while the file named by META_AGENT_FAULT_ENOSPC exists,
 * every file write of the pipeline fails with ENOSPC, as on a full disk.
 */
function installFaultHooks(env: NodeJS.ProcessEnv): void {
  // Test-only: kill -9 at a named point, and a host name that plays another machine (faults.ts).
  setFaultPoints(env.META_AGENT_FAULT);
  overrideHostName(env.META_AGENT_FAULT_HOSTNAME);
  installClockSkew(env.META_AGENT_FAULT_CLOCK_SKEW_FILE);
  const flag = env.META_AGENT_FAULT_ENOSPC;
  if (!flag) return;
  injectFileFault((file) => {
    if (existsSync(flag)) throw Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC', path: file });
  });
}

/**
 * The signals that stop a command like Ctrl-C does. SIGTERM never arrives on Windows: there
 * closing the console window or logging off sends SIGHUP, Ctrl-Break sends SIGBREAK (Node
 * maps both), so each of them winds down cleanly (End Task and `schtasks /End` are a hard
 * kill, which the crash recovery at the next start handles).
 */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const satisfies readonly NodeJS.Signals[];

/**
 * Stop-signal handling (STOP_SIGNALS). `process.on`, not `once`: execa loads signal-exit while a child
 * runs, and a `once` listener removed before it fires makes signal-exit re-raise the
 * signal, killing the process in the middle of its shutdown. The first signal calls
 * `handler`, a second one `again` (if given); more are ignored.
 * Returns the function that removes the handlers.
 */
function onStopSignal(handler: () => void, again?: () => void): () => void {
  let count = 0;
  const listener = () => {
    count++;
    if (count === 1) handler();
    else if (count === 2) again?.();
  };
  for (const name of STOP_SIGNALS) process.on(name, listener);
  return () => {
    for (const name of STOP_SIGNALS) process.off(name, listener);
  };
}

/**
 * Runs until a stop signal (STOP_SIGNALS), then awaits `stop`; a second signal calls `stop({ now: true })`
 * (no grace period). A failing stop still ends the wait (and is reported).
 */
function untilStopSignal(stop: (options: { now: boolean }) => Promise<unknown>, io: Io, message: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const run = (now: boolean) =>
      void stop({ now }).then(
        () => resolve(),
        (error: unknown) => {
          io.err(`meta-agent: stopping failed: ${toErrorInfo(error).message}`);
          resolve();
        },
      );
    onStopSignal(
      () => {
        io.err(message);
        run(false);
      },
      () => {
        io.err('stopping now: running tasks go back to inbox/');
        run(true);
      },
    );
  });
}

export async function main(argv: string[], io: Io = defaultIo): Promise<number> {
  installFaultHooks(process.env);
  consoleMode = process.env.META_AGENT_LOG ?? (argv.includes('--verbose') ? 'pretty' : 'progress');
  let exitCode = 0;
  const program = new Command('meta-agent')
    .description('Overnight code maintenance with an LLM coding agent, through a folder queue and a human approval gate.')
    .version(packageVersion(), '--version', 'print the version and exit')
    .option('--root <dir>', 'workspace folder (default: $META_AGENT_ROOT, then the current folder)')
    .option('--verbose', 'show the log itself on the console (pino), not the progress lines (also: META_AGENT_LOG=pretty)')
    // Every subcommand's help shows --root too (it may come before or after the subcommand).
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  const root = () => resolveRoot(program.opts<{ root?: string }>().root);

  program
    .command('init')
    .description('create the workspace layout, a commented meta-agent.yaml and the task templates')
    .option('--repo <path>', 'the target git repository: checked, and the config written for it (branch, test command); default: a demo repo made from the bundled example bot')
    .option('--project <name>', 'project name in the config', 'demo')
    .action(async (opts: { repo?: string; project: string }) => {
      const result = await initWorkspace(root(), { ...(opts.repo ? { repo: path.resolve(opts.repo) } : {}), project: opts.project });
      io.out(`workspace ready at ${result.layout.root}${result.created.length ? ` (created ${result.created.length} entries)` : ' (nothing to create)'}`);
      if (result.facts && !result.created.includes(result.layout.config)) io.out('meta-agent.yaml was there already and is left as it is');
      else if (result.facts) {
        const f = result.facts;
        io.out(`project ${opts.project}: ${opts.repo}, branch ${f.branch ?? '(detached HEAD: set "branch" in meta-agent.yaml)'}`);
        io.out(f.test ? `  test: ${f.test} (${f.testReason}); check it in meta-agent.yaml` : '  test: none detected: set projects.' + opts.project + '.test in meta-agent.yaml, or patches are proposed untested');
      }
      io.out(`next: meta-agent new --project ${opts.project} --objective "..."   then   meta-agent run --task-id <id>`);
    });

  program
    .command('new')
    .description('create a task file in inbox/ (from the type\'s template)')
    .requiredOption('--project <name>', 'a project of meta-agent.yaml')
    .requiredOption('--objective <text>', 'what the agent should achieve')
    .addOption(new Option('--type <type>', 'task type').choices([...TASK_TYPES]))
    .option('--template <name>', 'start from templates/<name>.md (default: the type\'s template)')
    .option('--scope <globs...>', 'files that may change (default: the template\'s); "none" for report only')
    .option('--task <text...>', 'sub-tasks')
    .option('--output <text>', 'expected output')
    .option('--name <name>', 'file name (default: <type>-<timestamp>)')
    .action(async (opts: { project: string; objective: string; type?: (typeof TASK_TYPES)[number]; template?: string; scope?: string[]; task?: string[]; output?: string; name?: string }) => {
      const settings = await loadSettings(root());
      const template = await loadTemplate(settings, opts.template ?? opts.type ?? 'custom');
      const type = opts.type ?? template.type;
      const scope = opts.scope ? (opts.scope.length === 1 && opts.scope[0] === 'none' ? [] : opts.scope) : template.scope;
      const name = opts.name ?? `${type}-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '')}`;
      const { path: file, task } = await createTask(
        settings,
        name,
        {
          project: opts.project,
          type,
          objective: opts.objective,
          scope,
          tasks: opts.task ?? template.tasks,
          output: opts.output ?? template.output,
          body: fillTemplate(template.body, { objective: opts.objective, project: opts.project }),
        },
        'cli',
      );
      io.out(`created ${displayPath(settings.layout, file)} (id ${task.id})`);
    });

  program
    .command('run')
    .description('run one task (or the stages of a stages.yaml) and write its report and patch')
    .option('--task <file>', 'a task file; inside inbox/ it is claimed and moved to done/ or failed/, elsewhere it is left where it is')
    .option('--task-id <id>', 'a task in inbox/, done/ (run again) or failed/ (moved back into inbox/ and retried)')
    .option('--force', 'run even if a patch of this task waits for review; the new patch is filed beside it as <id>.<run_id>.patch')
    .option('--stages <file>', 'run the stages of a stages.yaml in order (the file is never written)')
    .option('--keep-going', 'with --stages: go on after a failed stage')
    .option('--json', 'print the whole result as JSON')
    .action(async (opts: { task?: string; taskId?: string; stages?: string; keepGoing?: boolean; json?: boolean; force?: boolean }) => {
      const chosen = [opts.task, opts.taskId, opts.stages].filter(Boolean).length;
      if (chosen !== 1) throw new MetaAgentError('input', 'give exactly one of --task FILE, --task-id ID, --stages FILE', { field: 'run' });
      const settings = await loadSettings(root());
      const say = opts.json ? io.err : io.out;
      const taskFile = opts.stages ? null : await taskToRun(settings, opts.task ? { file: path.resolve(opts.task) } : { id: opts.taskId! }, Boolean(opts.force), say);
      const log = makeLog(settings, opts.json);
      const controller = new AbortController();
      const hurry = new AbortController();
      const offSignal = onStopSignal(
        () => {
          io.err('stopping: the run is being wound down (the task goes back to inbox/; if it changed files, they are saved as an incomplete patch and checked: Ctrl-C again to skip the checks)...');
          controller.abort();
        },
        () => hurry.abort(),
      );
      try {
        const base = { settings, log, signal: controller.signal, hurry: hurry.signal };
        const results = opts.stages
          ? await runStages(path.resolve(opts.stages), { ...base, keepGoing: Boolean(opts.keepGoing) })
          : [await runTask(taskFile!, base)];
        if (opts.json) io.out(JSON.stringify(results.length === 1 ? results[0] : results, null, 2));
        else for (const r of results) io.out(summaryLine(settings, r));
        const failed = results.find((r) => r.status !== 'ok');
        exitCode = failed ? (failed.report.error ? exitCodeFor(failed.report.error.kind) : 1) : 0;
      } finally {
        offSignal();
        log.flush();
      }
    });

  program
    .command('validate')
    .description('check task files against the contract and the workspace\'s config (one line per file; exit 2 if any fails)')
    .argument('<files...>')
    .option('--json', 'print the parsed tasks as JSON (to stdout; the verdicts go to stderr)')
    .action(async (files: string[], opts: { json?: boolean }) => {
      // Without a workspace (a program checking what it writes), the contract alone is checked.
      const settings = await loadSettings(root()).catch((error: unknown) => {
        if (!(error instanceof MetaAgentError && error.kind === 'config' && !existsSync(path.join(root(), 'meta-agent.yaml')))) throw error;
        io.err(`(no meta-agent.yaml in ${root()}: projects are not checked; use --root)`);
        return null;
      });
      const parsed: unknown[] = [];
      for (const file of files) {
        try {
          const task = await validateTaskFile(settings, file);
          parsed.push(task);
          (opts.json ? io.err : io.out)(`${file}: ok (id ${task.id}, project ${task.project}, type ${task.type}, scope ${task.scope.length ? task.scope.join(' ') : 'none (report only)'})`);
        } catch (error) {
          io.err(`${file}: ${toErrorInfo(error).message.replace(`${path.basename(file)}: `, '')}`);
          exitCode = 2;
        }
      }
      if (opts.json) io.out(JSON.stringify(parsed, null, 2));
    });

  program
    .command('retry')
    .description('move a failed task back into inbox/ and remove its error note; "watch" runs it again')
    .argument('<id>', 'the task id (its file name in failed/, with or without .md)')
    .option('--force', 'retry even if a patch of this task (e.g. a stopped run\'s incomplete one) waits for review; the new patch is filed beside it')
    .action(async (id: string, opts: { force?: boolean }) => {
      const settings = await loadSettings(root());
      const { to } = await retryFailedTask(settings.layout, id, { force: Boolean(opts.force) });
      io.out(`moved failed/${path.basename(to)} back into inbox/ (its error note is removed); "meta-agent watch" runs it, or: meta-agent run --task-id ${path.basename(to, '.md')}`);
    });

  program
    .command('ui')
    .description('the dashboard: a local web page over the same folders (prints its URL with the access token)')
    .option('--port <n>', 'port (default: ui.port in meta-agent.yaml, else a free one)')
    .option('--host <host>', 'address to listen on (default: ui.host, else 127.0.0.1; anything else exposes it to the network)')
    .option('--rotate-token', 'make a new access token (.meta-agent/ui-token): old bookmarks and open tabs stop working')
    .action(async (opts: { port?: string; host?: string; rotateToken?: boolean }) => {
      const settings = await loadSettings(root());
      const log = makeLog(settings);
      const token = await uiToken(settings.layout, { rotate: opts.rotateToken === true });
      if (opts.rotateToken) io.out('made a new dashboard token; old bookmarks no longer work');
      const ui = await startUi({ settings, log, token, port: opts.port ? Number(opts.port) : settings.config.ui.port, host: opts.host ?? settings.config.ui.host });
      io.out(`dashboard: ${ui.url}`);
      await untilStopSignal(() => ui.close(), io, 'stopping the dashboard...');
    });

  program
    .command('watch')
    .description('the service: run every task dropped into inbox/ (Ctrl-C to stop)')
    .option('--poll', 'poll the folder instead of OS events (network folders)')
    .option('--ui', 'serve the dashboard too (see "meta-agent ui")')
    .option('--port <n>', 'dashboard port, with --ui')
    .action(async (opts: { poll?: boolean; ui?: boolean; port?: string }) => {
      const settings = await loadSettings(root());
      const health = await diagnose(settings);
      for (const finding of health.findings) io.err(findingLine(finding));
      if (!health.ok) {
        io.err(verdictLine(health, true));
        exitCode = 2;
        return;
      }
      io.out(verdictLine(health, true));
      const log = makeLog(settings);
      const ui = opts.ui ? await startUi({ settings, log, port: opts.port ? Number(opts.port) : settings.config.ui.port }) : null;
      if (ui) io.out(`dashboard: ${ui.url}`);
      const supervisorLog = makeLog(settings, false, 'supervisor');
      const watcher = startWatching({ settings, log, supervisorLog, ...(opts.poll ? { usePolling: true } : {}), onResult: (r) => io.out(summaryLine(settings, r)) });
      // Signals are taken from here on: the first scan at start may already claim tasks.
      const stopped = untilStopSignal((how) => watcher.stop(how).then(() => ui?.close()), io, 'stopping: no new claims; running work gets the grace period, then goes back to inbox/ (Ctrl-C again: at once)...');
      await watcher.ready;
      io.out(`watching ${displayPath(settings.layout, settings.layout.inbox) || settings.layout.inbox}/ in ${settings.layout.root}; drop task .md files there (Ctrl-C to stop)`);
      await stopped;
      log.flush();
    });

  const service = program.command('service').description('run "watch" as this machine\'s service: a Task Scheduler task on Windows, a systemd user unit on Linux');
  service
    .command('install')
    .description('install (or replace) and start the service: it starts at logon (Windows) or with your user session (Linux), restarts on failure, has no time limit')
    .option('--print', 'show the task XML / unit file and the commands, and install nothing')
    .addOption(new Option('--for <os>', 'with --print: show it for another system').choices(['windows', 'linux']))
    .option('--when-logged-off', 'Windows: start at boot and run whether or not you are logged on (no password stored; network shares are out of reach)')
    .option('--name <name>', 'the task / unit name', 'meta-agent')
    .action(async (opts: { print?: boolean; for?: ServiceKind; whenLoggedOff?: boolean; name: string }) => {
      const settings = await loadSettings(root());
      const options = { name: opts.name, whenLoggedOff: Boolean(opts.whenLoggedOff), ...(opts.for ? { kind: opts.for } : {}) };
      if (opts.print) return io.out(printService(settings, options).trimEnd());
      if (opts.for && opts.for !== serviceKind()) throw new MetaAgentError('input', `--for ${opts.for} works only with --print (this is ${process.platform})`, { field: 'service install' });
      for (const line of await installService(settings, options)) io.out(line);
    });
  service
    .command('uninstall')
    .description('stop the service and remove it')
    .option('--name <name>', 'the task / unit name', 'meta-agent')
    .action(async (opts: { name: string }) => {
      const settings = await loadSettings(root());
      for (const line of await uninstallService(settings, { name: opts.name })) io.out(line);
    });
  service
    .command('status')
    .description('what the system says about the service (exit 1 when it is not installed)')
    .option('--name <name>', 'the task / unit name', 'meta-agent')
    .action(async (opts: { name: string }) => {
      const settings = await loadSettings(root());
      const status = await serviceStatus(settings, { name: opts.name });
      io.out(status.text);
      if (!status.installed) exitCode = 1;
    });

  program
    .command('worker')
    .description('run tasks a folder host queued (execution.engine: bullmq); start any number, on any machine (docs/scale-out.md)')
    .option('--concurrency <n>', 'jobs at once (default: limits.concurrency)')
    .option('--queue <q>', 'the queue to take jobs from (default: execution.queue; see execution.routes)')
    .action(async (opts: { concurrency?: string; queue?: string }) => {
      const settings = await loadSettings(root());
      const concurrency = opts.concurrency === undefined ? undefined : Number(opts.concurrency);
      if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency > 0)) throw new MetaAgentError('input', '--concurrency must be a positive whole number', { field: '--concurrency' });
      if (opts.queue !== undefined && !/^[A-Za-z0-9._-]+$/.test(opts.queue)) throw new MetaAgentError('input', '--queue: letters, digits, ".", "_" and "-" only', { field: '--queue' });
      const log = makeLog(settings, false, 'worker');
      const worker = await startWorker({ settings, log, ...(concurrency ? { concurrency } : {}), ...(opts.queue ? { queue: opts.queue } : {}) });
      const stopped = untilStopSignal(() => worker.stop(), io, 'stopping: running jobs are stopped and go back to the queue...');
      await worker.ready;
      io.out(`worker: taking jobs from queue ${opts.queue ?? settings.config.execution.queue} (Ctrl-C to stop)`);
      await stopped;
      log.flush();
    });

  program
    .command('doctor')
    .description('check the workspace before a night: config, repos and branches, check programs, model, sandbox, disk (exit 2 on errors)')
    .option('--json', 'machine-readable')
    .option('--fix', 'also remove the reusable worktrees (pool slots) no run is using; the next runs make them afresh')
    .action(async (opts: { json?: boolean; fix?: boolean }) => {
      const report = await runDoctor(root());
      if (opts.json) io.out(JSON.stringify(report, null, 2));
      else {
        for (const finding of report.findings) io.out(findingLine(finding));
        io.out(verdictLine(report));
      }
      if (!report.ok) exitCode = 2;
      if (opts.fix && report.ok) {
        const removed = await prunePool(await loadSettings(root()), silentLogger(), { all: true });
        if (!opts.json) io.out(`doctor --fix: removed ${removed.length} pooled worktree(s)`);
      }
    });

  program
    .command('supervise')
    .description('one supervisor cycle: plan 1-3 tasks for a goal, run them, write one summary (reports/cycles/)')
    .requiredOption('--goal <goal>', 'e.g. daily_maintenance, weekly_retrain, or any goal in words (planned by the LLM)')
    .option('--project <name>', 'the project (default: the only configured one)')
    .addOption(new Option('--mode <mode>', 'cycle mode').choices(['daily', 'weekly']).default('daily'))
    .option('--json', 'print the cycle report as JSON')
    .action(async (opts: { goal: string; project?: string; mode: 'daily' | 'weekly'; json?: boolean }) => {
      const settings = await loadSettings(root());
      const log = makeLog(settings, opts.json, 'supervisor');
      const controller = new AbortController();
      const offSignal = onStopSignal(() => controller.abort());
      try {
        const report = await runSupervisorCycle(settings, opts.goal, opts.mode, { log, signal: controller.signal, ...(opts.project ? { project: opts.project } : {}) });
        if (opts.json) io.out(JSON.stringify(report, null, 2));
        else {
          io.out(`${report.cycle_id}: ${report.status.toUpperCase()}: ${report.summary}`);
          for (const c of report.candidates) io.out(`  ${c.task_id} (risk ${c.risk_level}): ${c.files.join(', ')}\n    ${c.approve}`);
          io.out(`  summary: reports/cycles/${report.cycle_id}.md`);
        }
        exitCode = report.status === 'error' ? (report.error ? exitCodeFor(report.error.kind) : 1) : 0;
      } finally {
        offSignal();
        log.flush();
      }
    });

  program
    .command('schedule')
    .description('run the supervisor schedule in the foreground, or print it for cron, systemd or Windows')
    .addOption(new Option('--print <kind>', 'print instead of running').choices(['cron', 'systemd', 'windows']))
    .option('--next <n>', 'print the next N run times of each job and exit')
    .action(async (opts: { print?: 'cron' | 'systemd' | 'windows'; next?: string }) => {
      const settings = await loadSettings(root());
      if (opts.print === 'windows') await writeScheduleTasks(settings);
      if (opts.print) return io.out(printSchedule(settings, opts.print).trimEnd());
      const { supervisor } = settings.config;
      if (opts.next) {
        for (const job of supervisor.schedule) {
          io.out(`${job.goal} (${job.cron}, ${supervisor.timezone}):`);
          for (const d of nextRuns(job.cron, supervisor.timezone, new Date(), Number(opts.next))) io.out(`  ${localTime(d, supervisor.timezone).key.replace('T', ' ')}  (${d.toISOString()})`);
        }
        return;
      }
      const log = makeLog(settings, false, 'supervisor');
      const service = startSchedulerService(settings, log);
      if (!service) throw new MetaAgentError('config', 'no jobs in supervisor.schedule', { file: 'meta-agent.yaml', field: 'supervisor.schedule' });
      // Signals are taken from here on: a catch-up cycle at start is stoppable too.
      const stopped = untilStopSignal((how) => service.stop(how), io, 'stopping: no new cycles; a running one gets the grace period (Ctrl-C again: at once)...');
      await service.scheduler.start();
      io.out(`scheduler running (${supervisor.schedule.length} job(s), ${supervisor.timezone}); Ctrl-C to stop`);
      await stopped;
      log.flush();
    });

  program
    .command('status')
    .description('counts per folder and the pending patches (age, risk, files)')
    .option('--json', 'machine-readable')
    .action(async (opts: { json?: boolean }) => {
      const settings = await loadSettings(root());
      const status = await workspaceStatus(settings);
      if (opts.json) return io.out(JSON.stringify(status, null, 2));
      io.out(Object.entries(status.counts).map(([k, v]) => `${k}: ${v}`).join('   '));
      if (status.pending.length === 0) io.out('no pending patches');
      for (const p of status.pending) io.out(`${p.id}${p.regressions.length ? `  ${p.regressions.length} REGRESSION${p.regressions.length === 1 ? '' : 'S'}` : ''}${p.incomplete ? '  INCOMPLETE' : ''}  risk ${p.risk_level ?? '?'}  ${formatAge(p.age_s)} old  ${printable(p.files.join(', '))}\n    ${printable(p.summary.split('\n')[0] ?? '')}`);
    });

  program
    .command('approve')
    .description('approve a pending patch: move it into patches/approved/ (as Explorer would); the gate tests and applies it')
    .argument('<id>')
    .option('--now', 'run the gate in this process instead of leaving it to a running "watch"')
    .action(async (id: string, opts: { now?: boolean }) => {
      const settings = await loadSettings(root());
      const moved = await approvePatch(settings, id);
      io.out(`approved: ${displayPath(settings.layout, moved)}`);
      if (!opts.now) return io.out('the gate runs it when "meta-agent watch" is running (or use --now)');
      const result = await processApprovedPatch(settings, moved, makeLog(settings));
      io.out(gateLine(settings, result));
      if (result.decision === 'rejected') exitCode = 1;
    });

  program
    .command('reject')
    .description('reject a pending patch with a reason: move it into patches/rejected/ and record it in the report')
    .argument('<id>')
    .requiredOption('--reason <text>', 'why (kept, so the same idea is not proposed again)')
    .action(async (id: string, opts: { reason: string }) => {
      const settings = await loadSettings(root());
      const moved = await rejectPatch(settings, id, opts.reason);
      io.out(`rejected: ${displayPath(settings.layout, moved)}`);
    });

  program
    .command('review')
    .description('go through pending patches: diff and summary, then approve, reject or skip each')
    .option('--now', 'run the gate right after each approval')
    .action(async (opts: { now?: boolean }) => {
      const settings = await loadSettings(root());
      exitCode = await review(settings, { io, now: Boolean(opts.now), log: makeLog(settings, true) });
    });

  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const info = toErrorInfo(error);
    io.err(`meta-agent: ${info.message}`);
    return exitCodeFor(info.kind);
  }
  return exitCode;
}

function makeLog(settings: Settings, quiet?: boolean, prefix?: string): Logger {
  const redact = makeRedactor(settings.env, settings.llm.apiKey ? [settings.llm.apiKey] : []);
  return createLogger({ logsDir: settings.layout.logs, ...(prefix ? { prefix } : {}), ...(quiet ? { console: 'none' as const } : consoleOf(redact)), redact });
}

/** What the console shows of the log: progress lines, or pino itself (META_AGENT_LOG=pretty|json|none, or --verbose). */
let consoleMode = 'progress';
function consoleOf(redact: Redactor): Pick<LoggerOptions, 'console' | 'consoleStream'> {
  if (consoleMode === 'pretty' || consoleMode === 'json' || consoleMode === 'none') return { console: consoleMode };
  return { consoleStream: progressStream({ redact }) };
}

/**
 * The file `run` runs: by id from inbox/, done/ or failed/ (saying which), or a path. A task
 * in failed/ goes back into inbox/ first (its error note removed), so it ends in done/ or
 * failed/ like any run. Refuses while a patch of the task waits for review, unless forced.
 */
async function taskToRun(settings: Settings, what: { id: string } | { file: string }, force: boolean, say: (text: string) => void): Promise<string> {
  const { layout } = settings;
  let file: string;
  if ('id' in what) {
    const name = what.id.endsWith('.md') ? what.id : `${what.id}.md`;
    if (path.basename(name) !== name) throw new MetaAgentError('input', 'a task id has no path separators', { field: '--task-id' });
    const found = await firstExisting([path.join(layout.inbox, name), path.join(layout.done, name), await findFailedTask(layout, name)]);
    if (!found) throw new MetaAgentError('input', `no task "${what.id}" in inbox/, done/ or failed/`, { field: '--task-id' });
    file = found;
    say(`taking ${name} from ${path.basename(path.dirname(file))}/`);
  } else {
    file = what.file;
    const stat = await fs.stat(file).catch(() => null);
    if (!stat) throw new MetaAgentError('input', `no such file: ${file}`, { field: '--task' });
    if (!stat.isFile()) throw new MetaAgentError('input', `${file} is a folder, not a task file`, { field: '--task' });
  }
  if (!force) {
    // A task that does not parse is reported by the run itself.
    const id = await fs.readFile(file).then((text) => parseTask(text, path.basename(file)).id).catch(() => null);
    const refusal = id ? await pendingPatchRefusal(layout, id) : null;
    if (refusal) throw refusal;
  }
  if (isDirectlyIn(layout.failed, file)) {
    // Pending patches were checked above (by the task's id), unless forced.
    const { to } = await retryFailedTask(layout, path.basename(file), { force: true });
    say(`moved failed/${path.basename(file)} back into inbox/ to run it (its error note is removed)`);
    return to;
  }
  return file;
}

async function firstExisting(files: Array<string | null>): Promise<string | null> {
  for (const file of files) if (file && (await fs.stat(file).then((s) => s.isFile(), () => false))) return file;
  return null;
}

/**
 * `validate`: the task as `watch` and `run` would see it: a `.md` file (watch leaves other
 * files where they are), that exists, that parses, for a project of meta-agent.yaml.
 */
async function validateTaskFile(settings: Settings | null, file: string): Promise<ReturnType<typeof parseTask>> {
  const name = path.basename(file);
  const stat = await fs.stat(file).catch(() => null);
  if (!stat) throw new MetaAgentError('input', 'no such file');
  if (!stat.isFile()) throw new MetaAgentError('input', 'is a folder, not a task file');
  if (!name.toLowerCase().endsWith('.md')) throw new MetaAgentError('input', 'not a .md file: "watch" leaves it in inbox/ and never runs it; rename it to .md');
  const task = parseTask(await fs.readFile(file), name);
  if (settings) projectFor(settings, task.project, name);
  return task;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function summaryLine(settings: Settings, r: RunTaskResult): string {
  const rep = r.report;
  const parts = [
    `${r.task_id}: ${r.status.toUpperCase()} (${r.outcome})${rep.incomplete ? ' INCOMPLETE: the work so far is saved as a patch' : ''}${rep.regressions.length ? ` WITH ${rep.regressions.length} REGRESSION${rep.regressions.length === 1 ? '' : 'S'}: ${rep.regressions.map((g) => g.test ?? (g.check === 'tests' ? 'the tests' : 'the dry run')).join(', ')}` : ''}`,
    rep.summary && !rep.error ? `  ${rep.summary.split('\n')[0]}` : '',
    rep.error ? `  error (${rep.error.kind}): ${rep.error.message}` : '',
    rep.changed_files.length ? `  changed: ${rep.changed_files.join(', ')}` : '',
    rep.tests ? `  tests: ${rep.tests.passed ? 'passed' : 'FAILED'}${rep.dry_run ? `, dry run: ${rep.dry_run.passed ? 'passed' : 'FAILED'}` : ''}` : '',
    `  risk: ${rep.risk_level}; tokens: ${rep.usage.prompt_tokens + rep.usage.completion_tokens}${rep.usage.cost_usd !== null ? ` ($${rep.usage.cost_usd.toFixed(4)})` : ''}`,
    `  report: ${displayPath(settings.layout, r.report_md_path)}`,
    r.patch_path ? `  patch: ${displayPath(settings.layout, r.patch_path)}${rep.incomplete ? ' (incomplete)' : ''} (approve: move it into patches/approved/)` : '',
    r.patch_path && path.basename(r.patch_path) !== `${r.task_id}.patch` ? '  (filed beside an earlier patch of this task that still waits for review; decide on each)' : '',
  ];
  return parts.filter(Boolean).join('\n');
}
