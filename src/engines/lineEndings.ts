/**
 * The line-ending style of what write_file writes. A model writes LF; in a repository that
 * stores CRLF (Windows projects with core.autocrlf=false) that would turn a one-line fix into
 * a whole-file diff. So:
 * - an existing file keeps its style: a line of the new text that is a line of the old one
 *   keeps that line's ending (in order), every other line gets the file's majority ending;
 *   a UTF-8 BOM the file had stays;
 * - a new file (and one without a line break so far) follows `.gitattributes` (`eol=crlf`/`eol=lf`) if set, else the majority of
 *   the checked-out files with the same extension, else of all files, else LF.
 */
import { execa } from 'execa';
import { gitArgs } from '../workspace/gitArgs.ts';

export type Eol = '\n' | '\r\n';

const BOM = '\uFEFF';

/** The ending most line breaks of `text` have; null when it has none. A tie is LF. */
export function dominantEol(text: string): Eol | null {
  const crlf = count(text, '\r\n');
  const all = count(text, '\n');
  if (all === 0) return null;
  return crlf * 2 > all ? '\r\n' : '\n';
}

function count(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + needle.length)) n++;
  return n;
}

/** `text` (any endings) with every line break `eol`. */
export function withEol(text: string, eol: Eol): string {
  return text.replace(/\r?\n/g, eol);
}

/** `after` written in the style of `before` (see the module comment); `fallback` for a file without line breaks so far. */
export function inStyleOf(before: string, after: string, fallback: Eol = '\n'): string {
  const eol = dominantEol(before) ?? fallback;
  const endings = new Map<string, Eol[]>();
  for (const m of before.matchAll(/([^\n]*?)(\r?\n)/g)) {
    const list = endings.get(m[1]!) ?? [];
    list.push(m[2] as Eol);
    endings.set(m[1]!, list);
  }
  let out = after.replace(/([^\n]*?)(\r?\n)/g, (_, line: string) => `${line}${endings.get(line)?.shift() ?? eol}`);
  if (before.startsWith(BOM) && !out.startsWith(BOM)) out = BOM + out;
  return out;
}

/** The ending a new file at `rel` (repo-relative, POSIX) in the worktree should get. */
export async function eolForNewFile(worktree: string, rel: string): Promise<Eol> {
  const attr = await execa('git', gitArgs(['check-attr', 'eol', '--', rel]), { cwd: worktree, reject: false });
  const value = /: eol: (\S+)\s*$/.exec(attr.stdout)?.[1];
  if (value === 'crlf') return '\r\n';
  if (value === 'lf') return '\n';
  // `git ls-files --eol`: "i/lf    w/crlf  attr/<attributes>\t<path>" per file; w/ is the checkout as it is on disk.
  const listed = await execa('git', gitArgs(['ls-files', '--eol', '-z']), { cwd: worktree, reject: false });
  if (listed.exitCode !== 0) return '\n';
  const ext = extOf(rel);
  const tally = { same: { crlf: 0, lf: 0 }, all: { crlf: 0, lf: 0 } };
  for (const entry of listed.stdout.split('\0')) {
    const m = /^i\/\S*\s+w\/(crlf|lf)\s[^\t]*\t(.*)$/s.exec(entry);
    if (!m) continue;
    const style = m[1] as 'crlf' | 'lf';
    tally.all[style]++;
    if (ext && extOf(m[2]!) === ext) tally.same[style]++;
  }
  const pick = tally.same.crlf + tally.same.lf > 0 ? tally.same : tally.all;
  return pick.crlf > pick.lf ? '\r\n' : '\n';
}

function extOf(rel: string): string {
  const base = rel.slice(rel.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot).toLowerCase() : '';
}
