/**
 * A worker's clone of each project's remote (`projects.<p>.remote`, else its `repo` path),
 * fetched before every job, one fetch at a time per project. Jobs get worktrees of it.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { MetaAgentError, toErrorInfo } from '../../contract/errors.ts';
import type { Project, Settings } from '../../workspace/config.ts';
import { gitArgs } from '../../workspace/gitArgs.ts';
import type { Layout } from '../../workspace/layout.ts';

const GIT_TIMEOUT_MS = 300_000;

export class Mirrors {
  private readonly busy = new Map<string, Promise<unknown>>();
  constructor(
    private readonly dir: string,
    private readonly settings: Settings,
  ) {}

  /** The project as a job sees it: its repository is the mirror, fetched just now. */
  async ready(project: Project): Promise<Project> {
    const mirror = path.join(this.dir, project.name);
    const previous = this.busy.get(project.name) ?? Promise.resolve();
    const update = previous.catch(() => undefined).then(() => this.update(project, mirror));
    this.busy.set(project.name, update);
    await update;
    return { ...project, repoPath: mirror, initFromPath: undefined, link: [] } as Project;
  }

  private async update(project: Project, mirror: string): Promise<void> {
    const remote = remoteOf(project, this.settings.layout);
    const run = (args: string[], cwd?: string) => execa('git', gitArgs(args), { cwd, timeout: GIT_TIMEOUT_MS, reject: true });
    try {
      if (
        await fs.stat(mirror).then(
          () => false,
          () => true,
        )
      ) {
        await fs.mkdir(this.dir, { recursive: true });
        // Not bare (runTask wants a work tree repo), never checked out: only its worktrees are.
        await run(['clone', '--no-checkout', '--quiet', remote, mirror]);
      }
      await run(['fetch', '--prune', '--quiet', '--update-head-ok', 'origin', '+refs/heads/*:refs/heads/*'], mirror);
      // Each job's worktree lives in a temp workspace removed after it: forget those registrations.
      await run(['worktree', 'prune'], mirror);
    } catch (error) {
      const detail = String((error as { stderr?: string }).stderr || toErrorInfo(error).message)
        .trim()
        .split('\n')
        .slice(-2)
        .join(' ');
      throw new MetaAgentError('git', `could not fetch project ${project.name} from ${remote}: ${detail}`, {
        file: 'meta-agent.yaml',
        field: `projects.${project.name}.remote`,
      });
    }
  }
}

/** A URL as it is; a path relative to the worker's workspace root. */
function remoteOf(project: Project, layout: Layout): string {
  const remote = project.remote;
  if (!remote) return project.repoPath;
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(remote) || /^[^/\\]+@[^:]+:/.test(remote) ? remote : path.resolve(layout.root, remote);
}
