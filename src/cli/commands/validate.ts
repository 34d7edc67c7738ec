/** `meta-agent validate`: task files checked against the contract and the workspace's config. */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import { parseTask } from '../../contract/task.ts';
import { projectFor, type Settings } from '../../workspace/config.ts';
import type { CliContext } from '../context.ts';
import { printJson } from '../output.ts';

export function registerValidate(program: Command, cli: CliContext): void {
  program
    .command('validate')
    .description("check task files against the contract and the workspace's config (one line per file; exit 2 if any fails)")
    .argument('<files...>')
    .option('--json', 'print the parsed tasks as JSON (to stdout; the verdicts go to stderr)')
    .action((files: string[], opts: { json?: boolean }) => validate(cli, files, Boolean(opts.json)));
}

async function validate(cli: CliContext, files: string[], json: boolean): Promise<void> {
  const { io } = cli;
  const settings = await settingsIfAny(cli);
  const parsed: unknown[] = [];
  for (const file of files) {
    try {
      const task = await validateTaskFile(settings, file);
      parsed.push(task);
      (json ? io.err : io.out)(
        `${file}: ok (id ${task.id}, project ${task.project}, type ${task.type}, scope ${task.scope.length ? task.scope.join(' ') : 'none (report only)'})`,
      );
    } catch (error) {
      io.err(`${file}: ${toErrorInfo(error).message.replace(`${path.basename(file)}: `, '')}`);
      cli.exitCode = 2;
    }
  }
  if (json) printJson(io, parsed);
}

/** Without a workspace (a program checking what it writes), the contract alone is checked: null. */
function settingsIfAny(cli: CliContext): Promise<Settings | null> {
  return cli.settings().catch((error: unknown) => {
    if (!(error instanceof MetaAgentError && error.kind === 'config' && !existsSync(path.join(cli.root(), 'meta-agent.yaml')))) throw error;
    cli.io.err(`(no meta-agent.yaml in ${cli.root()}: projects are not checked; use --root)`);
    return null;
  });
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
