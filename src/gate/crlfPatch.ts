/**
 * A patch an editor re-saved with CRLF line endings (Notepad, an IDE set to CRLF on Windows):
 * `git apply` then finds a CR at the end of every line of the LF files it patches and fails,
 * which the gate took for a conflict (and dropped a redo task for).
 *
 * The rule: a patch is re-saved when EVERY line ends in CRLF. git writes its header lines
 * (`diff --git`, `index`, `---`, `+++`, `@@`) with LF always, so a patch git made never
 * qualifies, also not one that changes the content of CRLF files (only its content lines
 * carry a CR). Such a patch gets back what git wrote: header lines end in LF; the content
 * lines of a file the repository stores with LF (its majority at the branch head) end in LF,
 * those of a file stored with CRLF keep the CR; the line before "\ No newline at end of file"
 * never has one. A new file is LF, unless CRLF makes the patch byte for byte the one that
 * was proposed (its sidecar's sha256).
 */
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { HunkLines, splitDiffGit } from './inspect.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

/** Every line ends in CRLF (and there is at least one line break). */
export function resavedWithCrlf(text: string): boolean {
  return text.includes('\r\n') && !/(?:^|[^\r])\n/.test(text);
}

/** How the repository stores a file: true CRLF, false LF, null not there (a new file). */
export type StoredCrlf = (path: string) => boolean | null;

/** The patch as git wrote it (see the module comment); `text` must be resavedWithCrlf. */
export function undoCrlfResave(text: string, storedCrlf: StoredCrlf, newFilesCrlf: boolean): string {
  const lines = text.split('\r\n');
  const last = lines.pop()!; // '' when the patch ends with a line break
  const hunk = new HunkLines();
  let keepCr = false;
  const out: string[] = [];
  lines.forEach((line, i) => {
    if (hunk.inside) {
      hunk.take(line);
      const beforeNoNewline = (lines[i + 1] ?? last).startsWith('\\');
      out.push(line + (keepCr && !beforeNoNewline ? '\r\n' : '\n'));
      return;
    }
    if (line.startsWith('diff --git ')) {
      const [from] = splitDiffGit(line.slice('diff --git '.length));
      const stored = from ? storedCrlf(from) : null;
      keepCr = stored ?? newFilesCrlf;
    }
    hunk.start(line);
    out.push(`${line}\n`);
  });
  return out.join('') + last;
}

/**
 * The approved patch with an editor's CRs removed, or null when it was not re-saved with
 * CRLF. Files are looked up at `rev` in `repo`; `proposedSha256` is the sidecar's.
 */
export async function normaliseResavedPatch(bytes: Buffer, repo: string, rev: string, proposedSha256: string): Promise<Buffer | null> {
  const text = bytes.toString('utf8');
  if (!resavedWithCrlf(text)) return null;
  const stored = new Map<string, boolean | null>();
  for (const m of text.matchAll(/^diff --git (.*)\r$/gm)) {
    const [from] = splitDiffGit(m[1]!);
    if (from && !stored.has(from)) stored.set(from, await storedWithCrlf(repo, rev, from));
  }
  const lookup: StoredCrlf = (p) => stored.get(p) ?? null;
  const lf = Buffer.from(undoCrlfResave(text, lookup, false), 'utf8');
  if ([...stored.values()].includes(null) && sha256(lf) !== proposedSha256) {
    const crlf = Buffer.from(undoCrlfResave(text, lookup, true), 'utf8');
    if (sha256(crlf) === proposedSha256) return crlf;
  }
  return lf;
}

async function storedWithCrlf(repo: string, rev: string, file: string): Promise<boolean | null> {
  const blob = await execa('git', gitArgs(['cat-file', 'blob', `${rev}:${file}`]), { cwd: repo, reject: false, encoding: 'buffer' });
  if (blob.exitCode !== 0) return null;
  const content = Buffer.from(blob.stdout);
  let crlf = 0;
  let all = 0;
  for (let i = content.indexOf(10); i !== -1; i = content.indexOf(10, i + 1)) {
    all++;
    if (i > 0 && content[i - 1] === 13) crlf++;
  }
  return crlf * 2 > all;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
