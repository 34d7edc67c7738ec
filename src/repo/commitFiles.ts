/**
 * The files of a commit, asked of git once per repo and commit, not once per task: a run
 * starts in a clean checkout of its base commit (a reset pool slot or a fresh worktree), so
 * the repo map of its prompt is this list. A few commits are kept (the branch moves
 * rarely); a 50,000-file list is a few MB.
 */
import path from 'node:path';
import { git } from './git.ts';

const KEEP = 4;
const cache = new Map<string, Promise<string[]>>();

/** Every file path in `commit` (repo-relative, "/" separated, sorted), from `git ls-tree -r`. */
export function filesAtCommit(repo: string, commit: string): Promise<string[]> {
  const key = `${path.resolve(repo)}\0${commit}`;
  const hit = cache.get(key);
  if (hit) {
    // Most recently used last: the first key is the one dropped.
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const listed = git(repo, ['ls-tree', '-r', '--name-only', '-z', '--full-tree', commit]).then((out) => out.split('\0').filter(Boolean).sort());
  cache.set(key, listed);
  // A failed ask is not kept: the next run asks again.
  listed.catch(() => cache.delete(key));
  while (cache.size > KEEP) cache.delete(cache.keys().next().value!);
  return listed;
}
