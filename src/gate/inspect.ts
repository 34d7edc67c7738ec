/**
 * What a patch touches, read from the patch text itself (not from its sidecar, which a
 * person could have left stale): every path in its headers, and the modes it sets.
 * A human may edit a patch; it still may not reach outside the scope or the repo.
 */
import type { PathMatcher } from '../safety/globs.ts';

export interface PatchInspection {
  files: string[];
  problems: string[];
}

const HEADER_PATH = /^(?:diff --git |--- |\+\+\+ |rename from |rename to |copy from |copy to )(.*)$/;

export function inspectPatch(text: string, rules: { inScope: PathMatcher; denied: PathMatcher }): PatchInspection {
  const files = new Set<string>();
  const problems: string[] = [];
  const lines = text.split(/\r?\n/);
  // Lines left in the current hunk, from its @@ header: hunk lines are content, never headers.
  let oldLeft = 0;
  let newLeft = 0;
  for (const line of lines) {
    if (oldLeft > 0 || newLeft > 0) {
      const c = line[0];
      if (c === ' ' || line === '') (oldLeft--, newLeft--);
      else if (c === '-') oldLeft--;
      else if (c === '+') newLeft--;
      continue;
    }
    const hunk = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
    if (hunk) {
      oldLeft = hunk[1] === undefined ? 1 : Number(hunk[1]);
      newLeft = hunk[2] === undefined ? 1 : Number(hunk[2]);
      continue;
    }
    if (/^(new file mode|new mode|old mode|deleted file mode) 120000/.test(line)) problems.push('the patch adds or changes a symlink');
    if (/^(new file mode|new mode) 160000/.test(line)) problems.push('the patch adds a submodule');
    const header = HEADER_PATH.exec(line);
    if (!header) continue;
    const value = header[1]!;
    const paths = line.startsWith('diff --git ') ? splitDiffGit(value) : [stripPrefix(unquote(value.replace(/\t.*$/, '')))];
    for (const p of paths) {
      if (p === null || p === '/dev/null') continue;
      files.add(p);
    }
  }
  for (const file of files) {
    const problem = pathProblem(file, rules);
    if (problem) problems.push(problem);
  }
  if (files.size === 0) problems.push('the patch touches no files (is it a patch at all?)');
  return { files: [...files].sort(), problems: [...new Set(problems)] };
}

function pathProblem(file: string, rules: { inScope: PathMatcher; denied: PathMatcher }): string | null {
  if (file.startsWith('/') || /^[A-Za-z]:/.test(file) || file.startsWith('\\')) return `absolute path "${file}"`;
  const segments = file.split(/[\\/]/);
  if (segments.includes('..')) return `path "${file}" contains ".."`;
  if (segments.some((s) => s.toLowerCase() === '.git')) return `path "${file}" is inside .git/`;
  if (rules.denied(file)) return `"${file}" is on the deny list`;
  if (!rules.inScope(file)) return `"${file}" is outside the task's scope`;
  return null;
}

/** `a/x b/y` (possibly quoted) -> ["x", "y"]. */
function splitDiffGit(value: string): Array<string | null> {
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
