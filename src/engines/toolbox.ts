/**
 * The tools the agent is offered: their definitions (what the model reads) and the one
 * dispatch from a tool name to its implementation. The definitions are built once and
 * never change during a run, so the request prefix stays byte-stable for prompt caching.
 */
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import { RISK_LEVELS, type ShellMode } from '../contract/report.ts';
import { RUN_COMMAND_DEFINITION, runCommand } from './shellTool.ts';
import * as tools from './tools.ts';
import { ToolError } from './tools.ts';
import type { EngineContext } from './types.ts';

const str = (description: string) => ({ type: 'string', description }) as const;
const strList = (description: string) => ({ type: 'array', items: { type: 'string' }, description }) as const;

export const TOOL_DEFINITIONS: ChatCompletionTool[] = [
  fn('list_files', 'List the files under a folder of the repository (recursive; ignored files are not shown).', { path: str('Folder, relative to the repo root; "." for all') }, ['path']),
  fn(
    'read_file',
    'Read a text file, optionally a range of lines (1-based, inclusive).',
    { path: str('File, relative to the repo root'), start_line: { type: 'integer', minimum: 1 }, end_line: { type: 'integer', minimum: 1 } },
    ['path'],
  ),
  fn('search', 'Search files for an extended regular expression (git grep -E). Returns file:line:text.', { pattern: str('Regular expression'), path: str('Folder or file to search; default the whole repo') }, ['pattern']),
  fn('write_file', 'Create or replace a whole file (inside the task scope only).', { path: str('File, relative to the repo root'), content: str('The complete new content') }, ['path', 'content']),
  fn(
    'edit_file',
    'Replace one exact occurrence of "old" with "new" in a file (inside the task scope only). "old" must occur exactly once.',
    { path: str('File, relative to the repo root'), old: str('Exact text to replace, including whitespace'), new: str('Replacement text') },
    ['path', 'old', 'new'],
  ),
  fn('run_checks', "Run the project's tests and dry-run on the current state of your changes.", {}, []),
  fn(
    'finish',
    'End the task. Call it once, when the work is done (or cannot be done).',
    {
      summary: str('What you found and changed, for the human reviewer'),
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
      return formatChecks(await ctx.runChecks());
    case 'run_command':
      if (ctx.shell && ctx.shell !== 'off') return runCommand(ctx, args);
      break;
  }
  const offered = toolDefinitions({ shell: ctx.shell ?? 'off' });
  throw new ToolError(`unknown tool "${name}"; the tools are ${offered.map((t) => (t.type === 'function' ? t.function.name : '')).join(', ')}`);
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
    parts.push(`$ ${check.command}\nexit code ${check.exit_code ?? 'none'}${check.timed_out ? ' (timed out)' : ''} - ${check.passed ? 'PASSED' : 'FAILED'} in ${check.duration_ms} ms\n${check.output_tail}`);
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
