/**
 * The tools the agent is offered: their definitions (what the model reads) and the one
 * dispatch from a tool name to its implementation. The definitions are built once and
 * never change during a run, so the request prefix stays byte-stable for prompt caching.
 */
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { CHECK_NAMES, FINDING_SEVERITIES, RISK_LEVELS, type CheckName, type ShellMode } from '../contract/report.ts';
import { RUN_COMMAND_DEFINITION, runCommand } from './shellTool.ts';
import * as tools from './tools.ts';
import { ToolError } from './tools.ts';
import type { EngineContext } from './types.ts';

const str = (description: string) => ({ type: 'string', description }) as const;
const strList = (description: string) => ({ type: 'array', items: { type: 'string' }, description }) as const;

export const TOOL_DEFINITIONS: ChatCompletionTool[] = [
  fn(
    'list_files',
    'List the files under a folder of the repository (recursive; ignored files are not shown).',
    { path: str('Folder, relative to the repo root; "." for all') },
    ['path'],
  ),
  fn(
    'read_file',
    'Read a text file as numbered lines, each prefixed with its line number and a bar: "  12| text". The first line of the answer says how many lines the file has and which are shown; a long file is cut at a line, with a note giving the start_line to read on. Line numbers are 1-based; both ends of the range are included.',
    {
      path: str('File, relative to the repo root'),
      start_line: { type: 'integer', minimum: 1, description: 'First line to show (default 1)' },
      end_line: { type: 'integer', minimum: 1, description: 'Last line to show (default: the end)' },
    },
    ['path'],
  ),
  fn(
    'search',
    'Search file contents, line by line, for a Perl-style regular expression (git grep -P): \\d, \\w, \\s, \\b, (?i) for case-insensitive, escape ( ) [ ] . * + ? { } | \\ to match them literally. Returns "file:line: text" per matching line (at most 200, with a note when more were found). Secret files are never searched.',
    {
      pattern: str('Regular expression, e.g. "def \\w+_size\\(" or "\\bstop_loss\\b"'),
      path: str('Folder or file to search; default the whole repo'),
      glob: str('Only files matching this glob, e.g. "*.py" (any folder) or "src/**/*.py" (from the repo root)'),
    },
    ['pattern'],
  ),
  fn(
    'write_file',
    'Create a file or replace a whole file (inside the task scope only). For changes to an existing file prefer edit_file. Python, JSON and YAML files are syntax-checked after the write; an error comes back with the result.',
    { path: str('File, relative to the repo root'), content: str('The complete new content') },
    ['path', 'content'],
  ),
  fn(
    'edit_file',
    'Change an existing file (inside the task scope only) by replacing text: "old" is the current text, "new" its replacement ("" deletes it). "old" must match exactly ONE place: copy whole lines from read_file, enough of them to be unique; the "  12| " line-number prefixes may be left in, they are removed. Small slips in trailing whitespace, indentation, tabs/spaces, line endings or quote styles are forgiven, and then "new" is re-indented to match; when "old" matches nowhere or several places, nothing changes and the answer shows the closest lines or every match\'s line number. Several changes to one file: give "edits", a list of {old, new} applied in order, all or none. Python, JSON and YAML files are syntax-checked after the edit; an error comes back with the result (the edit is kept), so fix it next.',
    {
      path: str('File, relative to the repo root'),
      old: str('The text to replace, copied from the file (whole lines are best)'),
      new: str('The replacement text'),
      edits: {
        type: 'array',
        description: 'Instead of old/new: several replacements in this file, applied in order; if one fails, none is applied',
        items: {
          type: 'object',
          properties: { old: str('Text to replace'), new: str('Replacement text') },
          required: ['old', 'new'],
          additionalProperties: false,
        },
      },
    },
    ['path'],
  ),
  fn(
    'run_checks',
    "Run the project's configured checks (the whole test suite and/or the dry run) on your current changes, in a sandbox copy. Shows each check now beside the same check on the base commit (before your change), and names the tests you broke. Slow: the whole suite runs each time, often a minute or more; use it after a change, not to explore.",
    { which: { type: 'string', enum: [...CHECK_NAMES], description: 'Run only this check; default both' } },
    [],
  ),
  fn(
    'finish',
    'End the task. Call it once, when the work is done (or cannot be done). If you changed files since the checks last ran, finish runs them first; if something that passed on the base commit now fails, finish is refused and names the failing tests, and you get your turn back to fix it.',
    {
      summary: str('What you found and changed, for the human reviewer'),
      findings: {
        type: 'array',
        description:
          'Concrete findings, one per problem, each at a file and line you read (read_file shows line numbers). Locations are checked; a wrong one is marked in the report.',
        items: {
          type: 'object',
          properties: {
            file: str('File, relative to the repo root'),
            line: { type: 'integer', minimum: 1, description: 'Line the finding is about (1-based)' },
            severity: { type: 'string', enum: [...FINDING_SEVERITIES] },
            title: str('One line: what is wrong'),
            detail: str('Why it matters, and the fix (optional)'),
          },
          required: ['file', 'line', 'severity', 'title'],
          additionalProperties: false,
        },
      },
      risks: strList('Risks of the change, one per item'),
      risk_level: { type: 'string', enum: [...RISK_LEVELS], description: 'Risk of merging your change' },
      next_actions: strList('What the human should do or check next'),
    },
    ['summary', 'risks', 'risk_level', 'next_actions'],
  ),
];

/**
 * The tools of one run: TOOL_DEFINITIONS, plus run_command when the run offers a shell
 * (decided once per run, so the list is the same in every request).
 */
export function toolDefinitions(options: { shell: ShellMode }): ChatCompletionTool[] {
  if (options.shell === 'off') return TOOL_DEFINITIONS;
  const finish = TOOL_DEFINITIONS.length - 1;
  return [...TOOL_DEFINITIONS.slice(0, finish), RUN_COMMAND_DEFINITION[options.shell], ...TOOL_DEFINITIONS.slice(finish)];
}

function fn(name: string, description: string, properties: Record<string, unknown>, required: string[]): ChatCompletionTool {
  return { type: 'function', function: { name, description, parameters: { type: 'object', properties, required, additionalProperties: false } } };
}

/** Runs one tool (not `finish`, which the loop handles); a refusal is a ToolError. */
export async function runTool(ctx: EngineContext, name: string, args: Record<string, unknown>): Promise<string> {
  switch (name) {
    case 'list_files':
      return tools.listFiles(ctx, args);
    case 'read_file':
      return tools.readFile(ctx, args);
    case 'search':
      return tools.search(ctx, args);
    case 'write_file':
      return tools.writeFile(ctx, args);
    case 'edit_file':
      return tools.editFile(ctx, args);
    case 'run_checks':
      return ctx.verifier ? ctx.verifier.checksTool(checkName(args.which)) : formatChecks(await ctx.runChecks());
    case 'run_command':
      if (ctx.shell && ctx.shell !== 'off') return runCommand(ctx, args);
      break;
  }
  const offered = toolDefinitions({ shell: ctx.shell ?? 'off' });
  throw new ToolError(`unknown tool "${name}"; the tools are ${offered.map((t) => (t.type === 'function' ? t.function.name : '')).join(', ')}`);
}

function checkName(which: unknown): CheckName | null {
  if (which === undefined || which === null || which === '') return null;
  if (CHECK_NAMES.includes(which as CheckName)) return which as CheckName;
  throw new ToolError(`"which" must be one of ${CHECK_NAMES.join(', ')} (or left out for both)`);
}

/** Long tool outputs keep their head and tail, with a note, so the context stays bounded. */
export function cutOutput(text: string, limit: number): string {
  if (text.length <= limit) return text;
  const head = Math.floor(limit * 0.6);
  const tail = limit - head;
  return `${text.slice(0, head)}\n\n[... ${text.length - limit} characters cut by meta-agent; showing the first ${head} and the last ${tail}. Use read_file with start_line/end_line or a narrower search to see the rest ...]\n\n${text.slice(-tail)}`;
}

function formatChecks(outcome: Awaited<ReturnType<EngineContext['runChecks']>>): string {
  const parts: string[] = [];
  for (const check of [outcome.tests, outcome.dry_run]) {
    if (!check) continue;
    parts.push(
      `$ ${check.command}\nexit code ${check.exit_code ?? 'none'}${check.timed_out ? ' (timed out)' : ''} - ${check.passed ? 'PASSED' : 'FAILED'} in ${check.duration_ms} ms\n${check.output_tail}`,
    );
  }
  return parts.length ? parts.join('\n\n') : 'this project has no test or dry_run command configured';
}

/** The file (or pattern, or command) a tool call is about, for the progress line; the model's text, bounded. */
export function toolTarget(rawArguments: string): string | null {
  try {
    const args = JSON.parse(rawArguments) as Record<string, unknown>;
    const target = [args.path, args.pattern, args.command].find((v): v is string => typeof v === 'string');
    return target ? target.replace(/[\r\n\t]/g, ' ').slice(0, 120) : null;
  } catch {
    return null;
  }
}
