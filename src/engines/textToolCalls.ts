/**
 * Tool calls written as text, for models and servers that cannot (or will not) use the
 * API's tool calls:
 * - native mode: a reply with no tool call but one written into its text (Qwen/Hermes
 *   `<tool_call>{...}</tool_call>`, Llama's `<function=name>{...}</function>` or bare JSON,
 *   a fenced JSON block) is read and run, with a note to use real tool calls;
 * - text mode (`llm.tool_mode: text`, after mini-swe-agent's text protocol): no tools in
 *   the request; the system prompt asks for exactly one fenced action block per reply,
 *   named after a tool, with its JSON arguments.
 * And the replies that carry no usable call (format errors), told to the model as such.
 */
import type { ChatCompletionMessage, ChatCompletionTool } from 'openai/resources/chat/completions';
import { MetaAgentError } from '../contract/errors.ts';
import { TOOL_DEFINITIONS } from './toolbox.ts';

/** A tool call as the API gives it: the arguments are JSON text. `id` only for the API's own calls. */
export interface ParsedToolCall {
  id?: string;
  name: string;
  arguments: string;
}

export type ReplyReading =
  | { kind: 'calls'; calls: ParsedToolCall[]; via: 'native' | 'text' }
  /** `answer`: ids of the API's tool calls that must each get a tool message. */
  | { kind: 'format_error'; message: string; answer: ParsedToolCall[] };

/** Consecutive format errors that end a run (mini-swe-agent stops at 3 too). */
export const MAX_FORMAT_ERRORS = 3;

export const TOOL_NAMES: ReadonlySet<string> = new Set([...TOOL_DEFINITIONS.flatMap((t) => (t.type === 'function' ? [t.function.name] : [])), 'run_command']);

export const NO_TOOL_CALL = 'You did not call a tool. Continue the task with the tools, and call finish when you are done.';

export const TEXT_CALL_NOTE =
  'Note: you wrote your tool call as text in your reply instead of calling the tool. meta-agent ran it this time; use the tool-calling interface for your next calls.';

export function cutReply(tokens: number | null): string {
  return `Your reply was cut ${tokens !== null ? `at ${tokens} tokens (the output limit)` : 'by the output limit'} before it was complete, so nothing in it was run. Send a shorter one: a single tool call, and write a long file in several smaller edits.`;
}

/** The error that ends a run after MAX_FORMAT_ERRORS format errors in a row. */
export function formatFailure(lastProblem: string, mode: 'native' | 'text'): MetaAgentError {
  const last = (lastProblem.split('\n')[0] ?? '').slice(0, 160);
  const advice = mode === 'native' ? 'a model that calls tools reliably, or llm.tool_mode: text' : 'a stronger model';
  return new MetaAgentError('format', `the model's last ${MAX_FORMAT_ERRORS} replies in a row had no usable tool call (the last: ${last}); try ${advice}`, {
    field: 'llm.tool_mode',
  });
}

/** How one reply is taken: the calls to run, or what to tell the model instead. */
export function readReply(
  message: ChatCompletionMessage,
  finishReason: string | null | undefined,
  completionTokens: number | null,
  mode: 'native' | 'text',
): ReplyReading {
  const native: ParsedToolCall[] = (message.tool_calls ?? []).flatMap((c) =>
    c.type === 'function' ? [{ id: c.id, name: c.function.name, arguments: c.function.arguments }] : [],
  );
  if (finishReason === 'length') return { kind: 'format_error', message: cutReply(completionTokens), answer: native };
  const text = message.content ?? '';
  if (mode === 'text') {
    const action = parseAction(text);
    return 'error' in action ? { kind: 'format_error', message: action.error, answer: native } : { kind: 'calls', calls: [action.call], via: 'text' };
  }
  if (native.length) return { kind: 'calls', calls: native, via: 'native' };
  const written = toolCallsInText(text);
  if (written.length) return { kind: 'calls', calls: written, via: 'text' };
  return { kind: 'format_error', message: NO_TOOL_CALL, answer: [] };
}

/**
 * Tool calls written into a reply's text, in the shapes weak tool callers use:
 * `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, `<function=name>{...}</function>`,
 * a fenced block (named after a tool, or JSON naming one), or a bare JSON object
 * ({"name"|"tool": ..., "arguments"|"args"|"parameters": ...}, or OpenAI's {"function": {...}}).
 * Only known tools count, so prose with braces is left alone.
 */
export function toolCallsInText(text: string, known: ReadonlySet<string> = TOOL_NAMES): ParsedToolCall[] {
  const tagged: ParsedToolCall[] = [];
  for (const m of text.matchAll(/<tool_call>\s*([\s\S]*?)\s*(?:<\/tool_call>|$)/g)) tagged.push(...callsInJson(m[1]!, known));
  for (const m of text.matchAll(/<function=([\w-]+)>\s*([\s\S]*?)\s*<\/function>/g)) {
    if (known.has(m[1]!)) tagged.push({ name: m[1]!, arguments: m[2]!.trim() || '{}' });
  }
  if (tagged.length) return tagged;
  const fenced: ParsedToolCall[] = [];
  for (const block of fencedBlocks(text)) {
    if (known.has(block.info)) fenced.push({ name: block.info, arguments: block.body.trim() || '{}' });
    else fenced.push(...callsInJson(block.body, known));
  }
  if (fenced.length) return fenced;
  const bare: ParsedToolCall[] = [];
  for (const json of jsonObjectsIn(text.replace(/<\|python_tag\|>/g, ''))) bare.push(...callsInJson(json, known));
  return bare;
}

/** Text mode: exactly one fenced action block naming a tool, with JSON arguments. */
export function parseAction(text: string, known: ReadonlySet<string> = TOOL_NAMES): { call: ParsedToolCall } | { error: string } {
  let actions = fencedBlocks(text)
    .filter((b) => known.has(b.info))
    .map((b) => ({ name: b.info, arguments: b.body.trim() || '{}' }));
  // Lenient: a call in another common shape (a ```json block naming the tool, <tool_call>) counts too.
  if (actions.length === 0) actions = toolCallsInText(text, known);
  if (actions.length !== 1) return { error: actionFormatError(`expected exactly one action block, found ${actions.length}`) };
  const action = actions[0]!;
  try {
    const args: unknown = JSON.parse(action.arguments);
    if (!args || typeof args !== 'object' || Array.isArray(args)) throw new Error('not a JSON object');
  } catch (error) {
    return { error: actionFormatError(`the arguments of ${action.name} are not valid JSON (${(error as Error).message})`) };
  }
  return { call: action };
}

function actionFormatError(problem: string): string {
  return [
    `Format error: ${problem}.`,
    'Every reply must contain exactly ONE action: a fenced block whose info string is a tool name and whose body is its arguments as one JSON object, for example:',
    '',
    '```read_file',
    '{"path": "README.md"}',
    '```',
    '',
    'When the work is done, the action is finish. Write nothing after the block.',
  ].join('\n');
}

/** The system prompt's addendum in text mode; built from the tool definitions, so it is the same bytes every run. */
export function textProtocolPrompt(definitions: ChatCompletionTool[] = TOOL_DEFINITIONS): string {
  const tools = definitions.flatMap((t) => {
    if (t.type !== 'function') return [];
    const params = (t.function.parameters ?? {}) as {
      properties?: Record<string, { type?: string; description?: string; items?: { type?: string } }>;
      required?: string[];
    };
    const fields = Object.entries(params.properties ?? {}).map(([name, p]) => {
      const type = p.type === 'array' ? `${p.items?.type ?? 'any'}[]` : (p.type ?? 'any');
      return `"${name}": ${type}${params.required?.includes(name) ? '' : ' (optional)'}${p.description ? ` - ${p.description}` : ''}`;
    });
    return [`- ${t.function.name}: ${t.function.description ?? ''}${fields.length ? `\n  arguments: {${fields.join('; ')}}` : '\n  arguments: {}'}`];
  });
  return [
    '## How to use the tools',
    'You call tools by writing them in your reply. Every reply must contain exactly ONE action: a fenced block whose info string is the tool name and whose body is the tool\'s arguments as one JSON object (strings JSON-escaped: \\n for a newline, \\" for a quote). For example:',
    '',
    '```read_file',
    '{"path": "bot/sizing.py", "start_line": 1, "end_line": 40}',
    '```',
    '',
    'You may think briefly before the block; write nothing after it. The result comes back in the next message. When the work is done, the action is finish.',
    '',
    'The tools:',
    ...tools,
  ].join('\n');
}

/** Fenced blocks; the closing fence is alone on its line, which a JSON string (no raw newline) cannot fake. */
function fencedBlocks(text: string): Array<{ info: string; body: string }> {
  const blocks: Array<{ info: string; body: string }> = [];
  for (const m of text.matchAll(/^[ \t]*```[ \t]*([\w-]*)[^\S\r\n]*\r?\n([\s\S]*?)\r?\n[ \t]*```[ \t]*$/gm)) blocks.push({ info: m[1]!, body: m[2]! });
  return blocks;
}

function callsInJson(json: string, known: ReadonlySet<string>): ParsedToolCall[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return [];
  }
  const items = Array.isArray(value) ? value : [value];
  return items.flatMap((item) => {
    const call = asCall(item, known);
    return call ? [call] : [];
  });
}

function asCall(value: unknown, known: ReadonlySet<string>): ParsedToolCall | null {
  if (!isObject(value)) return null;
  const fn = isObject(value.function) ? value.function : value;
  const name = [fn.name, fn.tool, fn.tool_name].find((v): v is string => typeof v === 'string');
  if (!name || !known.has(name)) return null;
  const args = fn.arguments ?? fn.args ?? fn.parameters ?? fn.input ?? {};
  // Arguments as a JSON string (the API's own shape) pass as they are; the loop reports bad JSON.
  if (typeof args === 'string') return { name, arguments: args };
  return isObject(args) ? { name, arguments: JSON.stringify(args) } : null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Balanced top-level `{...}` spans of a text that start like a JSON object, strings respected. */
function jsonObjectsIn(text: string): string[] {
  const found: string[] = [];
  let i = 0;
  while ((i = text.indexOf('{', i)) !== -1) {
    const end = /^\{\s*"/.test(text.slice(i, i + 64)) ? matchingBrace(text, i) : -1;
    if (end === -1) {
      i++;
      continue;
    }
    found.push(text.slice(i, end + 1));
    i = end + 1;
  }
  return found;
}

function matchingBrace(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let j = start; j < text.length; j++) {
    const c = text[j];
    if (inString) {
      if (c === '\\') j++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return j;
  }
  return -1;
}
