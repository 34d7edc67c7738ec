/**
 * Lint-on-edit (SWE-agent's idea): after the agent edits or writes a file, a syntax check
 * runs and its error goes back with the tool's result, so a broken file is fixed in the
 * next step instead of surfacing in the test run. The edit is always kept.
 *
 * Built in: Python (the interpreter's own `compile`, fed the source on stdin, so nothing is
 * written next to the file and no repository code runs: `-I` keeps the repository off
 * `sys.path`, the working folder is the temp folder), JSON and YAML (parsed in-process).
 * A built-in check reports only errors the change brought: a file that did not parse
 * before the edit (a JSON-with-comments config) is not flagged.
 *
 * Configured: `projects.<p>.syntax_check` maps a glob to a command (`{file}` stands for the
 * file). That is repository tooling on LLM-written code, so it runs like a check: through
 * `EngineContext.runSyntaxCheck` (a throwaway copy, the scrubbed environment, the sandbox
 * unless the config says `sandbox: none`). When it cannot run (no sandbox), the agent is
 * told it did not run; the edit stands.
 */
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import YAML from 'yaml';
import { MetaAgentError } from '../contract/errors.ts';
import { scrubbedEnv } from '../safety/env.ts';
import { globMatcher } from '../safety/globs.ts';
import { findPython, venvPython } from '../safety/python.ts';
import type { Check } from '../workspace/config.ts';
import type { EngineContext } from './types.ts';

export type SyntaxCheckContext = Pick<EngineContext, 'settings' | 'project'> & Partial<Pick<EngineContext, 'runSyntaxCheck'>>;

const PYTHON_TIMEOUT_MS = 20_000;
const CONFIGURED_TIMEOUT_S = 120;
const OUTPUT_LINES = 20;

/** Reads the source from stdin and compiles it (never runs it); prints `file:line: Error: message` and the line. */
const PY_COMPILE = [
  'import sys',
  'name = sys.argv[1]',
  'try:',
  "    compile(sys.stdin.buffer.read(), name, 'exec', dont_inherit=True)",
  'except SyntaxError as e:',
  "    print('%s:%s: %s: %s' % (name, e.lineno, type(e).__name__, e.msg))",
  "    if e.text: print('    ' + e.text.strip())",
  '    sys.exit(1)',
  'except ValueError as e:',
  "    print('%s: %s' % (name, e))",
  '    sys.exit(1)',
].join('\n');

/** JSON with comments by convention: JSON.parse would flag every one of them. */
const JSONC = globMatcher(['tsconfig*.json', 'jsconfig*.json', '.vscode/**', '.devcontainer/**', 'devcontainer.json']);

/** A result to append to the tool's answer, or null when the file is fine or not checked. */
export async function syntaxCheck(ctx: SyntaxCheckContext, rel: string, before: string | null, after: string): Promise<string | null> {
  const notes: string[] = [];
  const builtIn = await builtInCheck(ctx, rel, before, after);
  if (builtIn) notes.push(builtIn);
  for (const [glob, argv] of Object.entries(ctx.project.syntax_check ?? {})) {
    if (!globMatcher([glob])(rel)) continue;
    const configured = await configuredCheck(ctx, rel, glob, argv);
    if (configured) notes.push(configured);
  }
  return notes.length ? notes.join('\n\n') : null;
}

type Problem = { error: string } | { note: string } | null;

async function builtInCheck(ctx: SyntaxCheckContext, rel: string, before: string | null, after: string): Promise<string | null> {
  const ext = path.extname(rel).toLowerCase();
  const check =
    ext === '.py'
      ? (text: string) => pythonProblem(ctx, rel, text)
      : ext === '.json' && !JSONC(rel)
        ? jsonProblem(rel)
        : ext === '.yaml' || ext === '.yml'
          ? yamlProblem(rel)
          : null;
  if (!check) return null;
  const now = await check(after);
  if (!now) return null;
  if ('note' in now) return now.note;
  // An error the file already had before this change is not the agent's to hear about on every edit.
  if (before !== null && (await check(before)) !== null) return null;
  return `SYNTAX ERROR after this change (the change was saved; fix it):\n${now.error}`;
}

function jsonProblem(rel: string) {
  return async (text: string): Promise<Problem> => {
    try {
      JSON.parse(text.replace(/^\uFEFF/, ''));
      return null;
    } catch (error) {
      const message = (error as Error).message;
      const at = /position (\d+)/.exec(message);
      const line = at ? text.slice(0, Number(at[1])).split('\n').length : null;
      return { error: `${rel}:${line ?? '?'}: ${message.replace(/^JSON\.parse: /, '')}` };
    }
  };
}

function yamlProblem(rel: string) {
  return async (text: string): Promise<Problem> => {
    const lineCounter = new YAML.LineCounter();
    for (const doc of YAML.parseAllDocuments(text, { lineCounter, prettyErrors: false })) {
      const first = 'errors' in doc ? doc.errors[0] : undefined;
      if (first) return { error: `${rel}:${lineCounter.linePos(first.pos[0]).line}: ${first.message.split('\n')[0]}` };
    }
    return null;
  };
}

async function pythonProblem(ctx: SyntaxCheckContext, rel: string, text: string): Promise<Problem> {
  const env = scrubbedEnv(ctx.settings.env, []);
  // The first Python 3 that really runs (a Windows Store alias does not), else the project's venv.
  const python = await findPython({ env, repo: ctx.project.repoPath });
  if (!python)
    return { note: `(syntax of ${rel} not checked: no Python 3 runs here: not python3, python or py -3 on PATH, nor ${venvPython()} in the repository)` };
  const result = await execa(python.file, [...python.pre, '-I', '-B', '-c', PY_COMPILE, rel], {
    input: text,
    cwd: os.tmpdir(),
    env,
    extendEnv: false,
    reject: false,
    timeout: PYTHON_TIMEOUT_MS,
    windowsHide: true,
  });
  if (result.exitCode === 0) return null;
  const out = String(result.stdout ?? '').trim();
  if (result.exitCode === 1 && out.startsWith(`${rel}:`)) return { error: out };
  const why = result.timedOut
    ? 'timed out'
    : (String(result.stderr ?? '')
        .trim()
        .split('\n')
        .at(-1) ?? `exit code ${result.exitCode}`);
  return { note: `(syntax of ${rel} not checked: ${python.file} failed: ${why})` };
}

/** A project's own syntax check, run like its tests are (see EngineContext.runSyntaxCheck). */
async function configuredCheck(ctx: SyntaxCheckContext, rel: string, glob: string, argv: string[]): Promise<string | null> {
  const field = `projects.${ctx.project.name}.syntax_check["${glob}"]`;
  if (!ctx.runSyntaxCheck) return `(${field} not run: checks cannot run here)`;
  // A file named "-x.py" must not read as an option.
  const file = rel.startsWith('-') ? `./${rel}` : rel;
  const args = argv.map((a) => a.replaceAll('{file}', file)) as [string, ...string[]];
  const check: Check = {
    label: 'syntax_check',
    command: args.join(' '),
    argv: args,
    cwd: '.',
    env: {},
    timeoutMs: Math.min(CONFIGURED_TIMEOUT_S, ctx.settings.config.limits.check_timeout_s) * 1000,
  };
  try {
    const result = await ctx.runSyntaxCheck(check);
    if (result.passed) return null;
    const tail = result.output_tail.trim().split('\n').slice(-OUTPUT_LINES).join('\n');
    return `SYNTAX CHECK FAILED after this change (the change was saved; fix it): $ ${check.command}${result.timed_out ? ' (timed out)' : ''}\n${tail}`;
  } catch (error) {
    // No sandbox, or the program is missing: the project's problem, not a reason to undo the edit.
    if (error instanceof MetaAgentError) return `(${field} not run: ${error.message})`;
    throw error;
  }
}
