/**
 * What a patch touches, read from the patch text itself (not from its sidecar, which a
 * person could have left stale): every path in its headers, and the modes it sets.
 * A human may edit a patch; it still may not reach outside the scope or the repo, nor
 * add or change a symlink or a submodule, nor make a file executable outside the rules.
 * The text is the early check with a clear reason; the gate checks the modes again on the
 * applied tree (a patch without mode lines can still retarget an existing symlink).
 */
import type { PathMatcher } from '../safety/globs.ts';
import { modeProblems, REGULAR, type ModeChange } from '../safety/modes.ts';

export interface PatchInspection {
  files: string[];
  problems: string[];
}

export interface PatchRules {
  inScope: PathMatcher;
  denied: PathMatcher;
  /** Files that may become executable (`patch.executable`). */
  executable: PathMatcher;
}

const HEADER_PATH = /^(?:diff --git |--- |\+\+\+ |rename from |rename to |copy from |copy to )(.*)$/;
const MODE_LINE = /^(old mode|new mode|new file mode|deleted file mode) ([0-7]+)\s*$/;
/** `index <old>..<new> <mode>`: the mode is there when it did not change. */
const INDEX_LINE = /^index [0-9a-fA-F]+\.\.[0-9a-fA-F]+(?: ([0-7]+))?\s*$/;

/** One `diff --git` block's header: its path and the modes it states. */
interface Block {
  path: string;
  oldMode: string | null;
  newMode: string | null;
  added: boolean;
  deleted: boolean;
}

/** The lines left in the current hunk, from its @@ header: hunk lines are content, never headers. */
export class HunkLines {
  private oldLeft = 0;
  private newLeft = 0;

  get inside(): boolean {
    return this.oldLeft > 0 || this.newLeft > 0;
  }

  /** One content line of the hunk. */
  take(line: string): void {
    const c = line[0];
    if (c === ' ' || line === '') {
      this.oldLeft--;
      this.newLeft--;
    } else if (c === '-') this.oldLeft--;
    else if (c === '+') this.newLeft--;
  }

  /** Starts a hunk when `line` is its @@ header; false for any other line. */
  start(line: string): boolean {
    const header = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
    if (!header) return false;
    this.oldLeft = header[1] === undefined ? 1 : Number(header[1]);
    this.newLeft = header[2] === undefined ? 1 : Number(header[2]);
    return true;
  }
}

export function inspectPatch(text: string, rules: PatchRules): PatchInspection {
  const files = new Set<string>();
  const problems: string[] = [];
  const blocks: Block[] = [];
  const lines = text.split(/\r?\n/);
  const hunk = new HunkLines();
  let block: Block | null = null;
  for (const line of lines) {
    if (hunk.inside) {
      hunk.take(line);
      continue;
    }
    if (hunk.start(line)) continue;
    const mode = MODE_LINE.exec(line);
    if (mode && block) {
      const [, kind, value] = mode;
      if (kind === 'old mode') block.oldMode = value!;
      else if (kind === 'new mode') block.newMode = value!;
      else if (kind === 'new file mode') {
        block.added = true;
        block.newMode = value!;
      } else {
        block.deleted = true;
        block.oldMode = value!;
      }
      continue;
    }
    if (mode) problems.push(`a "${mode[1]}" line outside a "diff --git" header`);
    const index = INDEX_LINE.exec(line);
    if (index?.[1] && block) {
      block.oldMode ??= index[1];
      block.newMode ??= index[1];
      continue;
    }
    const header = HEADER_PATH.exec(line);
    if (!header) continue;
    const value = header[1]!;
    const paths = line.startsWith('diff --git ') ? splitDiffGit(value) : [stripPrefix(unquote(value.replace(/\t.*$/, '')))];
    if (line.startsWith('diff --git ')) {
      block = { path: paths[1] ?? paths[0] ?? '?', oldMode: null, newMode: null, added: false, deleted: false };
      blocks.push(block);
    }
    for (const p of paths) {
      if (p === null || p === '/dev/null') continue;
      files.add(p);
    }
  }
  for (const file of files) {
    const problem = pathProblem(file, rules);
    if (problem) problems.push(problem);
  }
  problems.push(...modeProblems(blocks.map(toModeChange), rules.executable));
  if (files.size === 0) problems.push('the patch touches no files (is it a patch at all?)');
  return { files: [...files].sort(), problems: [...new Set(problems)] };
}

/** A block without mode lines changes a regular file's content (the gate checks the applied tree's modes too). */
function toModeChange(b: Block): ModeChange {
  return {
    path: b.path,
    oldMode: b.added ? null : (b.oldMode ?? REGULAR),
    newMode: b.deleted ? null : (b.newMode ?? b.oldMode ?? REGULAR),
  };
}

function pathProblem(file: string, rules: PatchRules): string | null {
  if (file.startsWith('/') || /^[A-Za-z]:/.test(file) || file.startsWith('\\')) return `absolute path "${file}"`;
  const segments = file.split(/[\\/]/);
  if (segments.includes('..')) return `path "${file}" contains ".."`;
  if (segments.some((s) => s.toLowerCase() === '.git')) return `path "${file}" is inside .git/`;
  if (rules.denied(file)) return `"${file}" is on the deny list`;
  if (!rules.inScope(file)) return `"${file}" is outside the task's scope`;
  return null;
}

/** `a/x b/y` (possibly quoted) -> ["x", "y"]. */
export function splitDiffGit(value: string): Array<string | null> {
  if (value.startsWith('"')) {
    const m = /^("(?:[^"\\]|\\.)*")\s+(.*)$/.exec(value);
    return m ? [stripPrefix(unquote(m[1]!)), stripPrefix(unquote(m[2]!))] : [null];
  }
  // Unquoted: the two halves are equal-length when the file is not renamed.
  const half = value.indexOf(' b/');
  if (half === -1) return [null];
  return [stripPrefix(value.slice(0, half)), stripPrefix(value.slice(half + 1))];
}

function stripPrefix(p: string): string {
  return p === '/dev/null' ? p : p.replace(/^[ab]\//, '');
}

/** git's C-style quoting: "a/caf\303\251.py". */
function unquote(p: string): string {
  if (!p.startsWith('"') || !p.endsWith('"')) return p;
  const bytes: number[] = [];
  const body = p.slice(1, -1);
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      bytes.push(...Buffer.from(c));
      continue;
    }
    const next = body[++i]!;
    if (/[0-7]/.test(next)) {
      bytes.push(parseInt(body.slice(i, i + 3), 8));
      i += 2;
    } else bytes.push(({ n: 10, t: 9, '"': 34, '\\': 92 } as Record<string, number>)[next] ?? next.charCodeAt(0));
  }
  return Buffer.from(bytes).toString('utf8');
}
