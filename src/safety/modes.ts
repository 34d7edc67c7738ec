/**
 * What a change may do to git file modes. A path check is not enough: a symlink whose
 * target changes (git writes that as only `index a..b 120000`) makes the user's checkout
 * point anywhere, a gitlink (`160000`) swaps a whole submodule, and an executable bit
 * turns a data file into something a hook or a cron job may run. So: symlinks and gitlinks
 * are never changed by a patch (a person does that by hand), and a file may become
 * executable only when `patch.executable` names it.
 */
import type { PathMatcher } from './globs.ts';

export const SYMLINK = '120000';
export const GITLINK = '160000';
export const EXECUTABLE = '100755';
export const REGULAR = '100644';

/** One file's modes before and after a change; null: the file is not there on that side. */
export interface ModeChange {
  path: string;
  oldMode: string | null;
  newMode: string | null;
}

/** The reasons a set of mode changes is not allowed (empty: allowed). */
export function modeProblems(changes: readonly ModeChange[], executable: PathMatcher): string[] {
  const problems: string[] = [];
  for (const { path, oldMode, newMode } of changes) {
    const problem = modeProblem(path, oldMode, newMode, executable);
    if (problem) problems.push(problem);
  }
  return [...new Set(problems)];
}

function modeProblem(path: string, oldMode: string | null, newMode: string | null, executable: PathMatcher): string | null {
  if (oldMode === GITLINK || newMode === GITLINK) {
    return `the patch ${oldMode === null ? 'adds' : newMode === null ? 'removes' : 'changes'} the submodule (gitlink) "${path}"; a patch never changes submodules`;
  }
  if (oldMode === SYMLINK || newMode === SYMLINK) {
    const what =
      oldMode === null
        ? 'adds the symlink'
        : newMode === null
          ? 'removes the symlink'
          : oldMode === newMode
            ? 'retargets the symlink'
            : oldMode === SYMLINK
              ? 'replaces the symlink'
              : 'turns into a symlink';
    return `the patch ${what} "${path}"; a patch never adds or changes symlinks`;
  }
  for (const mode of [oldMode, newMode]) {
    if (mode !== null && mode !== REGULAR && mode !== EXECUTABLE) return `"${path}" has the unexpected mode ${mode}`;
  }
  if (newMode === EXECUTABLE && oldMode !== EXECUTABLE && !executable(path)) {
    return `the patch makes "${path}" executable (mode ${EXECUTABLE}); only files matching patch.executable in meta-agent.yaml may become executable`;
  }
  return null;
}
