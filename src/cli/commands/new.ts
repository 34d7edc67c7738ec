/** `meta-agent new`: a task file in inbox/, from the type's template. */
import { Option, type Command } from 'commander';
import { TASK_TYPES } from '../../contract/task.ts';
import { createTask } from '../../queue/createTask.ts';
import { displayPath } from '../../workspace/layout.ts';
import { fillTemplate, loadTemplate } from '../../workspace/templates.ts';
import type { CliContext } from '../context.ts';

interface NewOptions {
  project: string;
  objective: string;
  type?: (typeof TASK_TYPES)[number];
  template?: string;
  scope?: string[];
  task?: string[];
  output?: string;
  name?: string;
}

export function registerNew(program: Command, cli: CliContext): void {
  program
    .command('new')
    .description("create a task file in inbox/ (from the type's template)")
    .requiredOption('--project <name>', 'a project of meta-agent.yaml')
    .requiredOption('--objective <text>', 'what the agent should achieve')
    .addOption(new Option('--type <type>', 'task type').choices([...TASK_TYPES]))
    .option('--template <name>', "start from templates/<name>.md (default: the type's template)")
    .option('--scope <globs...>', 'files that may change (default: the template\'s); "none" for report only')
    .option('--task <text...>', 'sub-tasks')
    .option('--output <text>', 'expected output')
    .option('--name <name>', 'file name (default: <type>-<timestamp>)')
    .action((opts: NewOptions) => newTask(cli, opts));
}

async function newTask(cli: CliContext, opts: NewOptions): Promise<void> {
  const settings = await cli.settings();
  const template = await loadTemplate(settings, opts.template ?? opts.type ?? 'custom');
  const type = opts.type ?? template.type;
  const scope = opts.scope ? (opts.scope.length === 1 && opts.scope[0] === 'none' ? [] : opts.scope) : template.scope;
  const name =
    opts.name ??
    `${type}-${new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, '')}`;
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
  cli.io.out(`created ${displayPath(settings.layout, file)} (id ${task.id})`);
}
