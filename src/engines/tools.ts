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
    execa('git', args, { cwd: ctx.worktree }),
    execa('git', ['ls-files', '--deleted', '-z', ...(under ? ['--', under] : [])], { cwd: ctx.worktree }),
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

export async function readFile(ctx: Ctx, args: { path?: unknown; start_line?: unknown; end_line?: unknown }): Promise<string> {
  const target = await resolve(ctx, args.path);
  refuseDenied(ctx, target.rel);
  const stat = await fs.stat(target.abs).catch(() => null);
  if (!stat) throw new ToolError(`"${target.rel}" does not exist`);
  if (stat.isDirectory()) throw new ToolError(`"${target.rel}" is a folder; use list_files`);
  if (stat.size > MAX_READ_BYTES) throw new ToolError(`"${target.rel}" is ${stat.size} bytes; too large to read`);
  const buffer = await fs.readFile(target.abs).catch(toolErrorFor(target.rel));
  if (buffer.includes(0)) throw new ToolError(`"${target.rel}" is a binary file`);
  const lines = buffer.toString('utf8').split(/\r?\n/);
  const start = toLine(args.start_line, 1);
  const end = Math.min(toLine(args.end_line, lines.length), lines.length);
  if (start > end) throw new ToolError(`start_line ${start} is after end_line ${end} (the file has ${lines.length} lines)`);
  const body = lines.slice(start - 1, end).join('\n');
  const header = start === 1 && end === lines.length ? `${target.rel} (${lines.length} lines)` : `${target.rel} (lines ${start}-${end} of ${lines.length})`;
  return `${header}\n${ctx.redact(body)}`;
}

function toLine(value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ToolError('start_line and end_line must be positive integers');
  return n;
}

export async function search(ctx: Ctx, args: { pattern?: unknown; path?: unknown }): Promise<string> {
  if (typeof args.pattern !== 'string' || args.pattern === '') throw new ToolError('"pattern" must be a non-empty string (an extended regular expression)');
  const target = await resolve(ctx, args.path ?? '.');
  const result = await execa('git', ['grep', '-n', '-I', '--untracked', '--no-color', '-E', '-e', args.pattern, '--', target.rel || '.'], {
    cwd: ctx.worktree,
    reject: false,
  });
  if (result.exitCode === 1) return `no matches for /${args.pattern}/`;
  if (result.exitCode !== 0) throw new ToolError(`search failed: ${result.stderr.split('\n')[0]}`);
  const lines = result.stdout.split('\n').filter((line) => line && !ctx.denied(line.slice(0, line.indexOf(':'))));
  if (lines.length === 0) return `no matches for /${args.pattern}/`;
  const shown = lines.slice(0, MAX_MATCHES).map((l) => ctx.redact(l.length > 400 ? l.slice(0, 400) + '...' : l));
  return shown.join('\n') + (lines.length > shown.length ? `\n... ${lines.length - shown.length} more matches; narrow the pattern or path` : '');
}

export async function writeFile(ctx: Ctx, args: { path?: unknown; content?: unknown }): Promise<string> {
  const target = await resolve(ctx, args.path);
  if (typeof args.content !== 'string') throw new ToolError('"content" must be a string');
  refuseOutOfScope(ctx, target.rel);
  const stat = await fs.lstat(target.abs).catch(() => null);
  if (stat?.isDirectory()) throw new ToolError(`"${target.rel}" is a folder`);
  if (stat?.isSymbolicLink()) throw new ToolError(`refused: "${target.rel}" is a symlink; write to its target instead`);
  if (args.content.includes(REDACTED)) refuseMarker(args.content, stat ? await fs.readFile(target.abs, 'utf8') : '', target.rel);
  await fs.mkdir(path.dirname(target.abs), { recursive: true }).catch(toolErrorFor(target.rel));
  await fs.writeFile(target.abs, args.content).catch(toolErrorFor(target.rel));
  return `wrote ${target.rel} (${Buffer.byteLength(args.content)} bytes)`;
}

export async function editFile(ctx: Ctx, args: { path?: unknown; old?: unknown; new?: unknown }): Promise<string> {
  const target = await resolve(ctx, args.path);
  if (typeof args.old !== 'string' || args.old === '') throw new ToolError('"old" must be a non-empty string that occurs exactly once in the file');
  if (typeof args.new !== 'string') throw new ToolError('"new" must be a string');
  refuseOutOfScope(ctx, target.rel);
  const stat = await fs.lstat(target.abs).catch(() => null);
  if (!stat) throw new ToolError(`"${target.rel}" does not exist; use write_file to create it`);
  if (stat.isSymbolicLink()) throw new ToolError(`refused: "${target.rel}" is a symlink`);
  const text = await fs.readFile(target.abs, 'utf8').catch(toolErrorFor(target.rel));
  // Files with CRLF: let the model write "\n" and keep the file's line endings.
  const crlf = text.includes('\r\n') && !args.old.includes('\r\n');
  const oldText = crlf ? args.old.replace(/\n/g, '\r\n') : args.old;
  const newText = crlf ? args.new.replace(/\r?\n/g, '\r\n') : args.new;
  const count = text.split(oldText).length - 1;
  if (count === 0 && args.old.includes(REDACTED)) {
    throw new ToolError(`"old" was not found in ${target.rel}: it contains ${REDACTED}, where meta-agent hid a secret from you; the file has the real value there. Choose "old" from text around it, without ${REDACTED}`);
  }
  if (count === 0) throw new ToolError(`"old" was not found in ${target.rel}; read the file and copy the exact text, including whitespace`);
  if (count > 1) throw new ToolError(`"old" occurs ${count} times in ${target.rel}; include more surrounding lines so it matches exactly once`);
  refuseMarker(args.new, args.old, target.rel);
  const index = text.indexOf(oldText);
  await fs.writeFile(target.abs, text.slice(0, index) + newText + text.slice(index + oldText.length)).catch(toolErrorFor(target.rel));
  return `edited ${target.rel}`;
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
