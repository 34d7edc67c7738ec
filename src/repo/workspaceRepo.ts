/** The target repository of a project and the disposable worktrees made from it. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { MetaAgentError } from '../contract/errors.ts';
import type { Project } from '../workspace/config.ts';
import { exists } from '../workspace/files.ts';
import { makeLink } from '../workspace/links.ts';
import { ALWAYS_EXCLUDED, addWorktree, type DiffSource, indexStamp, initRepoFrom, isGitRepo, removeWorktree, resolveBranch } from './git.ts';

/** Repos already found to be git repositories: asked once per process, not once per task. */
const knownRepos = new Set<string>();

/** Makes sure the project's repo exists (creating the demo repo on first use). */
export async function ensureRepo(project: Project): Promise<void> {
  if (knownRepos.has(project.repoPath) && (await exists(project.repoPath))) return;
  if (!(await exists(project.repoPath))) {
    if (!project.initFromPath) {
      throw new MetaAgentError('config', `repo ${project.repoPath} does not exist`, { file: 'meta-agent.yaml', field: `projects.${project.name}.repo` });
    }
    await initRepoFrom(project.initFromPath, project.repoPath, project.branch ?? 'main');
  }
  if (!(await isGitRepo(project.repoPath))) {
    throw new MetaAgentError('config', `${project.repoPath} is not a git repository`, { file: 'meta-agent.yaml', field: `projects.${project.name}.repo` });
  }
  knownRepos.add(project.repoPath);
}

export interface Worktree extends DiffSource {
  branch: string;
  remove(): Promise<void>;
}

/** `git worktree add --detach` at the branch head (or `commit`), with the `link` paths made available. */
export async function openWorktree(project: Project, worktreesDir: string, name: string, commit?: string): Promise<Worktree> {
  const { branch, commit: head } = await resolveBranch(project.repoPath, project.branch);
  const baseCommit = commit ?? head;
  const dir = path.join(worktreesDir, name);
  const excludesFile = path.join(worktreesDir, `${name}.exclude`);
  await fs.mkdir(worktreesDir, { recursive: true });
  await addWorktree(project.repoPath, dir, baseCommit);
  const linked: string[] = [];
  const remove = async () => {
    await removeWorktree(project.repoPath, dir, linked);
    await fs.rm(excludesFile, { force: true });
  };
  try {
    await linkPaths(project, dir, linked);
    await fs.writeFile(excludesFile, `${[...ALWAYS_EXCLUDED, ...linked.map((l) => `/${l}`)].join('\n')}\n`);
    return { dir, branch, baseCommit, excludesFile, baseIndex: await indexStamp(dir), remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/**
 * Git-ignored paths of the repo (a .venv, a data/ folder) appear in the worktree as links to
 * the originals (links.ts). Only paths absent from the worktree are linked. Each is added to
 * `linked` as soon as it exists, so a failure halfway still removes the ones made.
 */
export async function linkPaths(project: Project, dir: string, linked: string[] = []): Promise<string[]> {
  for (const entry of project.link) {
    const rel = path.normalize(entry.replace(/[\\/]+$/, ''));
    if (path.isAbsolute(rel) || rel.split(path.sep).includes('..')) {
      throw new MetaAgentError('config', `link "${entry}" must be a path inside the repo`, { file: 'meta-agent.yaml', field: `projects.${project.name}.link` });
    }
    const source = path.join(project.repoPath, rel);
    const target = path.join(dir, rel);
    const stat = await fs.stat(source).catch(() => null);
    if (!stat || (await exists(target))) continue;
    await fs.mkdir(path.dirname(target), { recursive: true });
    await makeLink(source, target);
    linked.push(rel.split(path.sep).join('/'));
  }
  return linked;
}
