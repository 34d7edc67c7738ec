/** `meta-agent init`: the workspace layout, a commented meta-agent.yaml and the task templates. */
import path from 'node:path';
import type { Command } from 'commander';
import { initWorkspace } from '../../workspace/init.ts';
import type { CliContext } from '../context.ts';

export function registerInit(program: Command, cli: CliContext): void {
  program
    .command('init')
    .description('create the workspace layout, a commented meta-agent.yaml and the task templates')
    .option(
      '--repo <path>',
      'the target git repository: checked, and the config written for it (branch, test command); default: a demo repo made from the bundled example bot',
    )
    .option('--project <name>', 'project name in the config', 'demo')
    .action(async (opts: { repo?: string; project: string }) => {
      const { io } = cli;
      const result = await initWorkspace(cli.root(), { ...(opts.repo ? { repo: path.resolve(opts.repo) } : {}), project: opts.project });
      io.out(`workspace ready at ${result.layout.root}${result.created.length ? ` (created ${result.created.length} entries)` : ' (nothing to create)'}`);
      if (result.facts && !result.created.includes(result.layout.config)) io.out('meta-agent.yaml was there already and is left as it is');
      else if (result.facts) {
        const f = result.facts;
        io.out(`project ${opts.project}: ${opts.repo}, branch ${f.branch ?? '(detached HEAD: set "branch" in meta-agent.yaml)'}`);
        io.out(
          f.test
            ? `  test: ${f.test} (${f.testReason}); check it in meta-agent.yaml`
            : `  test: none detected: set projects.${opts.project}.test in meta-agent.yaml, or patches are proposed untested`,
        );
      }
      io.out(`next: meta-agent new --project ${opts.project} --objective "..."   then   meta-agent run --task-id <id>`);
    });
}
