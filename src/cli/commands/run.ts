/** `meta-agent run`: one task (or the stages of a stages.yaml), in this process; prints its result. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { exitCodeFor, MetaAgentError } from '../../contract/errors.ts';
import { parseTask } from '../../contract/task.ts';
import { isDirectlyIn } from '../../queue/folders.ts';
import { findFailedTask, retryFailedTask } from '../../queue/retry.ts';
import { pendingPatchRefusal } from '../../run/report.ts';
import { runTask } from '../../run/runTask.ts';
import { runStages } from '../../run/stages.ts';
import type { Settings } from '../../workspace/config.ts';
import type { CliContext } from '../context.ts';
import { printJson, summaryLine } from '../output.ts';
import { onStopSignal } from '../signals.ts';

interface RunOptions {
  task?: string;
  taskId?: string;
  stages?: string;
  keepGoing?: boolean;
  json?: boolean;
  force?: boolean;
}

export function registerRun(program: Command, cli: CliContext): void {
  program
    .command('run')
    .description('run one task (or the stages of a stages.yaml) and write its report and patch')
    .option('--task <file>', 'a task file; inside inbox/ it is claimed and moved to done/ or failed/, elsewhere it is left where it is')
    .option('--task-id <id>', 'a task in inbox/, done/ (run again) or failed/ (moved back into inbox/ and retried)')
    .option('--force', 'run even if a patch of this task waits for review; the new patch is filed beside it as <id>.<run_id>.patch')
    .option('--stages <file>', 'run the stages of a stages.yaml in order (the file is never written)')
    .option('--keep-going', 'with --stages: go on after a failed stage')
    .option('--json', 'print the whole result as JSON')
    .action((opts: RunOptions) => run(cli, opts));
}

async function run(cli: CliContext, opts: RunOptions): Promise<void> {
  const { io } = cli;
  const chosen = [opts.task, opts.taskId, opts.stages].filter(Boolean).length;
  if (chosen !== 1) throw new MetaAgentError('input', 'give exactly one of --task FILE, --task-id ID, --stages FILE', { field: 'run' });
  const settings = await cli.settings();
  const say = opts.json ? io.err : io.out;
  const taskFile = opts.stages
    ? null
    : await taskToRun(settings, opts.task ? { file: path.resolve(opts.task) } : { id: opts.taskId! }, Boolean(opts.force), say);
  const log = cli.makeLog(settings, opts.json);
  const controller = new AbortController();
  const hurry = new AbortController();
  const offSignal = onStopSignal(
    () => {
      io.err(
        'stopping: the run is being wound down (the task goes back to inbox/; if it changed files, they are saved as an incomplete patch and checked: Ctrl-C again to skip the checks)...',
      );
      controller.abort();
    },
    () => hurry.abort(),
  );
  try {
    const base = { settings, log, signal: controller.signal, hurry: hurry.signal };
    const results = opts.stages
      ? await runStages(path.resolve(opts.stages), { ...base, keepGoing: Boolean(opts.keepGoing) })
      : [await runTask(taskFile!, base)];
    if (opts.json) printJson(io, results.length === 1 ? results[0] : results);
    else for (const r of results) io.out(summaryLine(settings, r));
    const failed = results.find((r) => r.status !== 'ok');
    cli.exitCode = failed ? (failed.report.error ? exitCodeFor(failed.report.error.kind) : 1) : 0;
  } finally {
    offSignal();
    log.flush();
  }
}

/**
 * The file `run` runs: by id from inbox/, done/ or failed/ (saying which), or a path. A task
 * in failed/ goes back into inbox/ first (its error note removed), so it ends in done/ or
 * failed/ like any run. Refuses while a patch of the task waits for review, unless forced.
 */
async function taskToRun(settings: Settings, what: { id: string } | { file: string }, force: boolean, say: (text: string) => void): Promise<string> {
  const { layout } = settings;
  const file = 'id' in what ? await taskById(settings, what.id, say) : await taskFileAt(what.file);
  if (!force) {
    // A task that does not parse is reported by the run itself.
    const id = await fs
      .readFile(file)
      .then((text) => parseTask(text, path.basename(file)).id)
      .catch(() => null);
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

/** `--task-id`: the task's file in inbox/, done/ or failed/, in that order. */
async function taskById(settings: Settings, id: string, say: (text: string) => void): Promise<string> {
  const { layout } = settings;
  const name = id.endsWith('.md') ? id : `${id}.md`;
  if (path.basename(name) !== name) throw new MetaAgentError('input', 'a task id has no path separators', { field: '--task-id' });
  const found = await firstExisting([path.join(layout.inbox, name), path.join(layout.done, name), await findFailedTask(layout, name)]);
  if (!found) throw new MetaAgentError('input', `no task "${id}" in inbox/, done/ or failed/`, { field: '--task-id' });
  say(`taking ${name} from ${path.basename(path.dirname(found))}/`);
  return found;
}

/** `--task`: the path, which must be a file. */
async function taskFileAt(file: string): Promise<string> {
  const stat = await fs.stat(file).catch(() => null);
  if (!stat) throw new MetaAgentError('input', `no such file: ${file}`, { field: '--task' });
  if (!stat.isFile()) throw new MetaAgentError('input', `${file} is a folder, not a task file`, { field: '--task' });
  return file;
}

async function firstExisting(files: Array<string | null>): Promise<string | null> {
  for (const file of files)
    if (
      file &&
      (await fs.stat(file).then(
        (s) => s.isFile(),
        () => false,
      ))
    )
      return file;
  return null;
}
