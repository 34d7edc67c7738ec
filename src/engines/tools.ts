/**
 * The agent's hands: file tools bound to one worktree. Every path goes through
 * `resolveInside`, every read through the deny list, every write through the scope.
 * A refusal is a `ToolError`, which the loop returns to the model as the tool's result.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { EngineContext } from './types.ts';
import { pathErrorRefusal, PathRefused, resolveInside, type ResolvedPath } from '../safety/paths.ts';
import { toPosix } from '../safety/globs.ts';
import { REDACTED } from '../safety/redact.ts';
import { globMatcher } from '../safety/globs.ts';
import { applyEdits, EditMismatch, numberLine, type Edit, type Strategy } from './editMatch.ts';
import { syntaxCheck, type SyntaxCheckContext } from './syntaxCheck.ts';
import { eolForNewFile, inStyleOf, withEol } from './lineEndings.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolError';
  }
}

const MAX_READ_BYTES = 2_000_000;
const MAX_LIST = 400;
const MAX_MATCHES = 200;

type Ctx = Pick<EngineContext, 'worktree' | 'inScope' | 'denied' | 'redact'>;

async function resolve(ctx: Ctx, requested: unknown, field = 'path') {
  if (typeof requested !== 'string') throw new ToolError(`"${field}" must be a string`);
  let target: ResolvedPath;
  try {
    target = await resolveInside(ctx.worktree, requested);
  } catch (error) {
    if (error instanceof PathRefused) throw new ToolError(`refused: ${error.message}`);
    throw error;
  }
  // A symlink inside the repo may lead to a denied file (notes.txt -> secrets/api.txt): the deny list applies there too.
  const real = await fs.realpath(target.abs).catch(() => null);
  if (real) {
    const realRel = toPosix(path.relative(await fs.realpath(ctx.worktree), real));
    if (realRel !== target.rel && ctx.denied(realRel)) {
      throw new ToolError(`refused: "${target.rel}" leads to "${realRel}", which is on the deny list (secrets, keys, .git); it cannot be read or changed`);
    }
  }
  return target;
}

/** For `.catch()` on a file operation: an error about the path (ENOTDIR, EISDIR, ELOOP, ...) is a tool error the model sees. */
function toolErrorFor(rel: string) {
  return (error: unknown): never => {
    const refusal = pathErrorRefusal(error, rel);
    throw refusal ? new ToolError(refusal.message) : error;
  };
}

function refuseDenied(ctx: Ctx, rel: string): void {
  if (ctx.denied(rel)) throw new ToolError(`refused: "${rel}" is on the deny list (secrets, keys, .git); it cannot be read or changed`);
}

function refuseOutOfScope(ctx: Ctx, rel: string): void {
  refuseDenied(ctx, rel);
  if (!ctx.inScope(rel)) throw new ToolError(`refused: "${rel}" is outside this task's scope; you may only change files matching the scope given in the task`);
}

/** Files git sees (tracked + untracked, not ignored), minus denied ones. */
export async function listRepoFiles(ctx: Ctx, under = ''): Promise<string[]> {
  const args = ['ls-files', '--cached', '--others', '--exclude-standard', '-z'];
  if (under) args.push('--', under);
  // ls-files --cached lists deleted files too: ask git for those in one call instead of one
  // lstat per file (5,000 sequential lstats cost ~150 ms on every run).
  const [{ stdout }, deleted] = await Promise.all([
    execa('git', gitArgs(args), { cwd: ctx.worktree }),
    execa('git', gitArgs(['ls-files', '--deleted', '-z', ...(under ? ['--', under] : [])]), { cwd: ctx.worktree }),
  ]);
  const gone = new Set(deleted.stdout.split('\0'));
  const seen = new Set<string>();
  const files: string[] = [];
  for (const f of stdout.split('\0')) {
    if (!f || seen.has(f) || gone.has(f) || ctx.denied(f)) continue;
    seen.add(f);
    files.push(f);
  }
  return files.sort();
}

export async function listFiles(ctx: Ctx, args: { path?: unknown }): Promise<string> {
  const target = await resolve(ctx, args.path ?? '.');
  const stat = await fs.stat(target.abs).catch(() => null);
  if (!stat) throw new ToolError(`"${target.rel || '.'}" does not exist`);
  if (!stat.isDirectory()) throw new ToolError(`"${target.rel}" is a file; use read_file`);
  const files = await listRepoFiles(ctx, target.rel);
  if (files.length === 0) return `(no files under "${target.rel || '.'}")`;
  const shown = files.slice(0, MAX_LIST);
  const more = files.length - shown.length;
  return shown.join('\n') + (more > 0 ? `\n... and ${more} more files; list a sub-folder to see them` : '');
}

const MAX_READ_LINES = 2000;
const MAX_LINE_CHARS = 2000;

/**
 * A text file as numbered lines (`  12| text`, see editMatch.numberLine), with a header that
 * says how many lines it has and which are shown; long outputs stop at a line, with the
 * start_line that reads on.
 */
export async function readFile(
  ctx: Ctx & Partial<Pick<EngineContext, 'settings'>>,
  args: { path?: unknown; start_line?: unknown; end_line?: unknown },
): Promise<string> {
  const target = await resolve(ctx, args.path);
  refuseDenied(ctx, target.rel);
  const stat = await fs.stat(target.abs).catch(toolErrorFor(target.rel));
  if (stat.isDirectory()) throw new ToolError(`"${target.rel}" is a folder; use list_files`);
  if (stat.size > MAX_READ_BYTES) throw new ToolError(`"${target.rel}" is ${stat.size} bytes; too large to read`);
  const buffer = await fs.readFile(target.abs).catch(toolErrorFor(target.rel));
  if (buffer.includes(0)) throw new ToolError(`"${target.rel}" is a binary file`);
  const text = buffer.toString('utf8');
  const lines = text.split(/\r?\n/);
  // A final newline ends the last line; it does not start an empty one.
  if (lines.length > 1 && lines.at(-1) === '') lines.pop();
  const total = text === '' ? 0 : lines.length;
  if (total === 0) return `${target.rel} (empty file, 0 lines)`;
  const start = toLine(args.start_line, 1);
  const end = Math.min(toLine(args.end_line, total), total);
  if (start > total) throw new ToolError(`start_line ${start} is past the end of ${target.rel}, which has ${total} lines`);
  if (start > end) throw new ToolError(`start_line ${start} is after end_line ${end} (${target.rel} has ${total} lines)`);
  // Leave room for the header and the note inside the loop's cut of tool outputs.
  const budget = (ctx.settings?.config.limits.tool_output_chars ?? 16_000) - 400;
  const width = String(end).length;
  const shown: string[] = [];
  let chars = 0;
  let longLines = 0;
  for (let n = start; n <= end && shown.length < MAX_READ_LINES; n++) {
    let line = lines[n - 1]!;
    if (line.length > MAX_LINE_CHARS) {
      line = `${line.slice(0, MAX_LINE_CHARS)} [... ${line.length - MAX_LINE_CHARS} more characters on this line]`;
      longLines++;
    }
    const numbered = numberLine(n, line, width);
    if (shown.length > 0 && chars + numbered.length + 1 > budget) break;
    shown.push(numbered);
    chars += numbered.length + 1;
  }
  const last = start + shown.length - 1;
  const header = start === 1 && last === total ? `${target.rel} (${total} lines)` : `${target.rel} (lines ${start}-${last} of ${total})`;
  const notes: string[] = [];
  if (last < end) notes.push(`[${end - last} more lines not shown (${last + 1}-${end}); read them with start_line=${last + 1}]`);
  else if (last < total && args.end_line !== undefined) notes.push(`[the file goes on to line ${total}]`);
  if (longLines) notes.push(`[${longLines} very long line(s) cut at ${MAX_LINE_CHARS} characters]`);
  return [header, ctx.redact(shown.join('\n')), ...notes].join('\n');
}

function toLine(value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ToolError('start_line and end_line must be positive integers');
  return n;
}

const SEARCH_TIMEOUT_MS = 30_000;
const MAX_MATCH_CHARS = 300;

/**
 * Perl-compatible regular expressions (`git grep -P`: \d, \b, \s, (?i) work), one line at a
 * time; `file:line: text`. Where git was built without PCRE, JavaScript's RegExp (the same
 * for those classes) scans the files listRepoFiles gives.
 */
export async function search(ctx: Ctx, args: { pattern?: unknown; path?: unknown; glob?: unknown }): Promise<string> {
  if (typeof args.pattern !== 'string' || args.pattern === '') throw new ToolError('"pattern" must be a non-empty string (a Perl-style regular expression)');
  if (args.glob !== undefined && (typeof args.glob !== 'string' || args.glob === ''))
    throw new ToolError('"glob" must be a non-empty string such as "*.py" or "bot/**/*.py"');
  const pattern = args.pattern;
  const target = await resolve(ctx, args.path ?? '.');
  const inGlob = typeof args.glob === 'string' ? globMatcher([args.glob]) : () => true;
  const result = await execa('git', gitArgs(['grep', '-n', '-z', '-I', '--untracked', '--no-color', '-P', '-e', pattern, '--', target.rel || '.']), {
    cwd: ctx.worktree,
    reject: false,
    timeout: SEARCH_TIMEOUT_MS,
  });
  let matches: Array<[string, number, string]>;
  let dialect = '';
  if (result.timedOut) throw new ToolError(`search for /${pattern}/ took longer than ${SEARCH_TIMEOUT_MS / 1000} s; use a simpler pattern or a narrower path`);
  if (result.exitCode === 0 || result.exitCode === 1) {
    matches = result.stdout.split('\n').flatMap((row) => {
      const [file, line, ...text] = row.split('\0');
      return file && line ? [[file, Number(line), text.join('\0')] as [string, number, string]] : [];
    });
  } else if (/perl|pcre/i.test(result.stderr) && /support|compiled|USE_LIBPCRE/i.test(result.stderr)) {
    matches = await searchInProcess(ctx, pattern, target.rel);
    dialect = '\n[git here has no PCRE support; searched with JavaScript regular expressions]';
  } else {
    throw new ToolError(`search failed: ${result.stderr.split('\n')[0]}`);
  }
  const kept = matches.filter(([file]) => !ctx.denied(file) && inGlob(file));
  const where = `${target.rel ? ` in ${target.rel}` : ''}${typeof args.glob === 'string' ? ` (files matching ${args.glob})` : ''}`;
  if (kept.length === 0) return `no matches for /${pattern}/${where}${dialect}`;
  const shown = kept
    .slice(0, MAX_MATCHES)
    .map(([file, line, text]) => ctx.redact(`${file}:${line}: ${text.length > MAX_MATCH_CHARS ? `${text.slice(0, MAX_MATCH_CHARS)}...` : text}`));
  const cut =
    kept.length > shown.length ? `\n[${kept.length - shown.length} more matches not shown (${kept.length} in all); narrow the pattern, path or glob]` : '';
  return shown.join('\n') + cut + dialect;
}

async function searchInProcess(ctx: Ctx, pattern: string, under: string): Promise<Array<[string, number, string]>> {
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (error) {
    throw new ToolError(`search failed: ${(error as Error).message}`);
  }
  const found: Array<[string, number, string]> = [];
  for (const file of await listRepoFiles(ctx, under)) {
    const buffer = await fs.readFile(path.join(ctx.worktree, file)).catch(() => null);
    if (!buffer || buffer.length > MAX_READ_BYTES || buffer.includes(0)) continue;
    buffer
      .toString('utf8')
      .split(/\r?\n/)
      .forEach((line, i) => {
        if (re.test(line)) found.push([file, i + 1, line]);
      });
    if (found.length > MAX_MATCHES * 10) break;
  }
  return found;
}

type WriteCtx = Ctx & SyntaxCheckContext;

export async function writeFile(ctx: WriteCtx, args: { path?: unknown; content?: unknown }): Promise<string> {
  const target = await resolve(ctx, args.path);
  if (typeof args.content !== 'string') throw new ToolError('"content" must be a string');
  refuseOutOfScope(ctx, target.rel);
  const stat = await fs.lstat(target.abs).catch(() => null);
  if (stat?.isDirectory()) throw new ToolError(`"${target.rel}" is a folder`);
  if (stat?.isSymbolicLink()) throw new ToolError(`refused: "${target.rel}" is a symlink; write to its target instead`);
  const before = stat ? await fs.readFile(target.abs, 'utf8').catch(toolErrorFor(target.rel)) : null;
  if (args.content.includes(REDACTED)) refuseMarker(args.content, before ?? '', target.rel);
  await fs.mkdir(path.dirname(target.abs), { recursive: true }).catch(toolErrorFor(target.rel));
  // The file's line endings (and BOM) stay as they were: in a CRLF repository an LF rewrite would be a whole-file diff.
  const style = before?.includes('\n') ? null : await eolForNewFile(ctx.worktree, target.rel);
  const content = before !== null ? inStyleOf(before, args.content, style ?? '\n') : withEol(args.content, style!);
  await fs.writeFile(target.abs, content).catch(toolErrorFor(target.rel));
  return withSyntaxCheck(ctx, target.rel, before, content, `wrote ${target.rel} (${Buffer.byteLength(content)} bytes)`);
}

const MATCH_NOTES: Record<Strategy, string> = {
  exact: '',
  'line endings': '',
  'trailing whitespace': ' ("old" matched after ignoring trailing whitespace)',
  indentation: ' ("old" matched after ignoring indentation; "new" was re-indented the same way)',
  'unicode punctuation': ' ("old" matched after ignoring indentation and quote/dash styles; "new" was adjusted the same way)',
};

/**
 * `{path, old, new}` or `{path, edits: [{old, new}, ...]}`: each "old" must match one place
 * (see editMatch.ts for what is forgiven); all edits apply or none.
 */
export async function editFile(ctx: WriteCtx, args: { path?: unknown; old?: unknown; new?: unknown; edits?: unknown }): Promise<string> {
  const target = await resolve(ctx, args.path);
  const edits = editsOf(args);
  refuseOutOfScope(ctx, target.rel);
  const stat = await fs.lstat(target.abs).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') throw new ToolError(`"${target.rel}" does not exist; use write_file to create a file`);
    return toolErrorFor(target.rel)(error);
  });
  if (stat.isSymbolicLink()) throw new ToolError(`refused: "${target.rel}" is a symlink`);
  if (stat.isDirectory()) throw new ToolError(`"${target.rel}" is a folder, not a file`);
  if (stat.size > MAX_READ_BYTES) throw new ToolError(`"${target.rel}" is ${stat.size} bytes; too large to edit`);
  const buffer = await fs.readFile(target.abs).catch(toolErrorFor(target.rel));
  if (buffer.includes(0)) throw new ToolError(`"${target.rel}" is a binary file; edit_file changes text files only`);
  const text = buffer.toString('utf8');
  let result: ReturnType<typeof applyEdits>;
  try {
    result = applyEdits(text, edits, target.rel);
  } catch (error) {
    if (!(error instanceof EditMismatch)) throw error;
    const marked = edits.findIndex((e) => e.old.includes(REDACTED));
    if (marked !== -1 && / not found /.test(error.message)) {
      const which = edits.length > 1 ? `edit ${marked + 1}: ` : '';
      throw new ToolError(
        `${which}"old" was not found in ${target.rel}: it contains ${REDACTED}, where meta-agent hid a secret from you; the file has the real value there. Choose "old" from text around it, without ${REDACTED}`,
      );
    }
    throw new ToolError(error.message);
  }
  edits.forEach((edit, i) => {
    try {
      refuseMarker(edit.new, edit.old, target.rel);
    } catch (error) {
      if (error instanceof ToolError && edits.length > 1)
        throw new ToolError(`edit ${i + 1} of ${edits.length}: ${error.message}; none of the edits was applied`);
      throw error;
    }
  });
  await fs.writeFile(target.abs, result.text).catch(toolErrorFor(target.rel));
  const done =
    result.applied.length === 1
      ? `edited ${target.rel} at line ${result.applied[0]!.line}${MATCH_NOTES[result.applied[0]!.strategy]}`
      : `edited ${target.rel}: ${result.applied.length} edits, at lines ${result.applied.map((a) => a.line).join(', ')}${[...new Set(result.applied.map((a) => MATCH_NOTES[a.strategy]).filter(Boolean))].join('')}`;
  return withSyntaxCheck(ctx, target.rel, text, result.text, done);
}

function editsOf(args: { old?: unknown; new?: unknown; edits?: unknown }): Edit[] {
  const one = (e: { old?: unknown; new?: unknown }, which: string): Edit => {
    if (typeof e.old !== 'string' || e.old === '')
      throw new ToolError(`${which}"old" must be a non-empty string: the exact lines to replace, copied from read_file`);
    if (typeof e.new !== 'string') throw new ToolError(`${which}"new" must be a string (empty to delete "old")`);
    return { old: e.old, new: e.new };
  };
  if (args.edits === undefined) return [one(args, '')];
  if (args.old !== undefined || args.new !== undefined) throw new ToolError('give either "old" and "new", or "edits", not both');
  if (!Array.isArray(args.edits) || args.edits.length === 0) throw new ToolError('"edits" must be a non-empty array of {"old": ..., "new": ...}');
  return args.edits.map((e: unknown, i) => {
    if (!e || typeof e !== 'object') throw new ToolError(`edit ${i + 1} must be an object {"old": ..., "new": ...}`);
    return one(e as { old?: unknown; new?: unknown }, `edit ${i + 1}: `);
  });
}

async function withSyntaxCheck(ctx: WriteCtx, rel: string, before: string | null, after: string, done: string): Promise<string> {
  if (!ctx.settings || !ctx.project) return done;
  const problem = await syntaxCheck(ctx, rel, before, after);
  return problem ? `${done}\n\n${problem}` : done;
}

/**
 * The model saw secrets as the redaction marker; writing the marker would put it into the
 * bot's code in place of the real value. Allowed only where the text it replaces already
 * had as many (a file that really contains the marker).
 */
function refuseMarker(written: string, replaced: string, rel: string): void {
  const count = (text: string) => text.split(REDACTED).length - 1;
  if (count(written) > count(replaced)) {
    throw new ToolError(
      `refused: the text for ${rel} contains ${REDACTED}, the marker meta-agent shows in place of a secret; you never saw the real value, and writing the marker would break the file. Edit around that line with edit_file instead of rewriting it`,
    );
  }
}
