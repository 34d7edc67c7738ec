/**
 * The task file: what a GUI, a supervisor or a person drops into `inbox/`.
 * Two forms parse to the same `Task`: YAML front matter + Markdown body, and the seed's
 * plain header form (`PROJECT: ...`, `OBJECTIVE: ...`, `SCOPE: ...`, `TASKS:` + list, `OUTPUT: ...`).
 */
import path from 'node:path';
import matter from 'gray-matter';
import { z } from 'zod';
import { MetaAgentError } from './errors.ts';
import { decodeUtf16, idFromFileName } from './taskName.ts';

export const TASK_TYPES = ['audit_code', 'propose_features', 'retrain_model', 'risk_review', 'custom'] as const;
export const TASK_SOURCES = ['gui', 'supervisor', 'human', 'cli'] as const;
export const ENGINE_NAMES = ['openai', 'command'] as const;
export const EngineNameSchema = z.enum(ENGINE_NAMES);
export type EngineName = z.infer<typeof EngineNameSchema>;
/** Task files larger than this are refused: a task is a page of text, not a data dump. */
export const MAX_TASK_BYTES = 256 * 1024;

export const TaskIdSchema = z
  .string()
  .min(1)
  .max(120)
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, 'only letters, digits, ".", "_" and "-", not starting with "."')
  .refine((id) => !id.includes('..'), 'must not contain ".."');

const stringList = z.preprocess(
  (value) => (typeof value === 'string' ? splitList(value) : value),
  z.array(z.string().trim().min(1, 'entries must not be empty')),
);

export const TaskSchema = z.strictObject({
  id: TaskIdSchema.describe('Unique task id; defaults to the file name without .md, or its slug when that is not an id ("Задача 1.md" -> zadacha-1)'),
  project: z.string().trim().min(1, 'must not be empty').describe("A key of the config's `projects`"),
  type: z.enum(TASK_TYPES).default('custom'),
  objective: z.string().trim().min(1, 'must not be empty').describe('What the agent should achieve'),
  scope: stringList.default([]).describe('Globs (relative to the repo root) that may be changed; empty = report only'),
  tasks: stringList.default([]).describe('Concrete sub-tasks'),
  output: z.string().trim().default('').describe('What is expected back'),
  source: z.enum(TASK_SOURCES).default('human'),
  engine: EngineNameSchema.optional().describe("Overrides the config's engine"),
  created: z.preprocess((v) => (v instanceof Date ? v.toISOString() : v), z.string().optional()),
  max_tokens: z.number().int().positive().optional().describe('Caps limits.max_tokens for this task (the supervisor sets it from its budget)'),
  body: z.string().default('').describe('Free Markdown for the model (front matter form: the body)'),
});

/** A body up to this long is the objective whole; a longer one gives its first heading and paragraph, cut to this. */
export const MAX_BODY_OBJECTIVE_CHARS = 2000;

/** The front matter as a file may hold it: `objective` may be left out when the Markdown body says what to do. */
export const TaskFrontMatterSchema = TaskSchema.extend({
  objective: TaskSchema.shape.objective
    .optional()
    .describe(
      `What the agent should achieve. Left out: the Markdown body is the objective (the whole body up to ${MAX_BODY_OBJECTIVE_CHARS} characters, else its first heading and paragraph)`,
    ),
});

export type Task = z.infer<typeof TaskSchema>;
export type TaskInput = z.input<typeof TaskSchema>;

/** The seed's header form: known keys only; other lines continue the current section. */
const HEADER_KEYS: Record<string, keyof TaskInput> = {
  ID: 'id',
  PROJECT: 'project',
  TYPE: 'type',
  OBJECTIVE: 'objective',
  SCOPE: 'scope',
  TASKS: 'tasks',
  OUTPUT: 'output',
  SOURCE: 'source',
  ENGINE: 'engine',
  CREATED: 'created',
  CONTEXT: 'body',
  NOTES: 'body',
};
const LIST_FIELDS = new Set<keyof TaskInput>(['scope', 'tasks']);
const HEADER_LINE = new RegExp(`^\\s*(?:#+\\s*)?(?:\\*\\*)?(${Object.keys(HEADER_KEYS).join('|')})(?:\\*\\*)?\\s*:\\s*(.*)$`, 'i');
const LIST_ITEM = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/;

/** Parses a task file's text. `file` is used for the default id and for error messages. */
export function parseTask(text: string | Buffer, file: string): Task {
  const name = path.basename(file);
  const raw = decodeTaskText(text, name);
  const fields = raw.trimStart().startsWith('---') ? parseFrontMatter(raw.trimStart(), name) : parseHeaderForm(raw, name);
  if (fields.id === undefined) fields.id = defaultIdFor(name);
  const result = TaskSchema.safeParse(fields, { reportInput: true });
  if (!result.success) throw zodToTaskError(result.error, name);
  return result.data;
}

/** The id of a task without `id:`: its file name, or the name's slug (taskName.ts; README, "Task files"). */
export function defaultIdFor(fileName: string): string {
  return idFromFileName(fileName);
}

function decodeTaskText(input: string | Buffer, name: string): string {
  const bytes = Buffer.isBuffer(input) ? input.length : Buffer.byteLength(input);
  if (bytes > MAX_TASK_BYTES)
    throw new MetaAgentError('input', `the file is ${bytes} bytes; a task file may be at most ${MAX_TASK_BYTES} bytes`, { file: name });
  // UTF-16 with a BOM (PowerShell's `>`) is text; other bytes must be UTF-8, never guessed at (cp1251 would come out garbled).
  let text: string | null = null;
  try {
    text = Buffer.isBuffer(input) ? decodeUtf16(input) : input;
  } catch (error) {
    throw new MetaAgentError('input', `${(error as Error).message}; save it as UTF-8 text`, { file: name });
  }
  if (text === null) {
    const bytes = input as Buffer;
    if (bytes.includes(0))
      throw new MetaAgentError(
        'input',
        'the file is binary (contains NUL bytes; UTF-16 without a byte-order mark looks like this too); save it as UTF-8 text',
        { file: name },
      );
    const invalidAt = invalidUtf8Offset(bytes);
    if (invalidAt >= 0)
      throw new MetaAgentError(
        'input',
        `the file is not valid UTF-8 (at byte offset ${invalidAt}), perhaps a legacy code page such as Windows-1251; save it as UTF-8 text (Notepad: Save as, Encoding UTF-8)`,
        { file: name },
      );
    text = bytes.toString('utf8');
  }
  if (text.includes('\0')) throw new MetaAgentError('input', 'the file is binary (contains NUL characters); save it as UTF-8 text', { file: name });
  const normalized = text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  if (normalized.trim() === '')
    throw new MetaAgentError('input', 'the file is empty; expected a task (front matter or PROJECT:/OBJECTIVE: headers)', { file: name });
  return normalized;
}

function parseFrontMatter(raw: string, name: string): Partial<Record<keyof TaskInput, unknown>> {
  let parsed: matter.GrayMatterFile<string>;
  try {
    // gray-matter caches by content; an empty options object disables that cache.
    parsed = matter(raw, {});
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new MetaAgentError('input', `front matter is not valid YAML (${reason})`, { file: name, field: 'front matter' });
  }
  const data = parsed.data as unknown;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new MetaAgentError('input', 'front matter must be a YAML mapping of fields (project, objective, ...)', { file: name, field: 'front matter' });
  }
  const fields: Record<string, unknown> = { ...(data as Record<string, unknown>) };
  if ('body' in fields) throw new MetaAgentError('input', 'unknown field; the Markdown after the front matter is the body', { file: name, field: 'body' });
  fields.body = parsed.content.trim();
  if (fields.objective === undefined || fields.objective === null) {
    // As in GitHub Agentic Workflows, the body can be the prompt: a person writes a heading and a paragraph, not a YAML key.
    const fromBody = objectiveFromBody(String(fields.body));
    if (!fromBody)
      throw new MetaAgentError('input', 'is required: set objective: in the front matter, or write what to do in the Markdown body below it', {
        file: name,
        field: 'objective',
      });
    fields.objective = fromBody.objective;
    // The whole body became the objective: the model need not read it twice.
    if (fromBody.whole) fields.body = '';
  }
  return fields;
}

/**
 * The objective a body gives: the whole body when it is short, else its first heading and
 * first paragraph, cut to MAX_BODY_OBJECTIVE_CHARS. Null when the body says nothing
 * (empty, or only HTML comments such as the templates' hint).
 */
export function objectiveFromBody(body: string): { objective: string; whole: boolean } | null {
  const text = body.replace(/<!--[\s\S]*?(?:-->|$)/g, '').trim();
  if (!text) return null;
  if (text.length <= MAX_BODY_OBJECTIVE_CHARS) return { objective: text, whole: true };
  let heading: string | null = null;
  const paragraph: string[] = [];
  for (const line of text.split('\n')) {
    const h = /^#{1,6}\s+(.*)$/.exec(line);
    if (h) {
      if (paragraph.length) break;
      heading ??= h[1]!.trim();
      continue;
    }
    if (line.trim() === '') {
      if (paragraph.length) break;
      continue;
    }
    paragraph.push(line.trim());
  }
  const objective = [heading, paragraph.join(' ')].filter(Boolean).join('\n\n');
  const cut = objective.length > MAX_BODY_OBJECTIVE_CHARS ? `${objective.slice(0, MAX_BODY_OBJECTIVE_CHARS - 1).trimEnd()}\u2026` : objective;
  return { objective: cut, whole: false };
}

function parseHeaderForm(raw: string, name: string): Partial<Record<keyof TaskInput, unknown>> {
  const sections = new Map<keyof TaskInput, string[]>();
  let current: keyof TaskInput | undefined;
  for (const line of raw.split('\n')) {
    const header = HEADER_LINE.exec(line);
    if (header) {
      current = HEADER_KEYS[header[1]!.toUpperCase()]!;
      if (sections.has(current) && current !== 'body') {
        throw new MetaAgentError('input', `header ${header[1]!.toUpperCase()}: appears twice`, { file: name, field: current });
      }
      const lines = sections.get(current) ?? [];
      sections.set(current, lines);
      if (header[2]!.trim() !== '') lines.push(header[2]!);
      continue;
    }
    if (current) sections.get(current)!.push(line);
  }
  if (sections.size === 0) {
    throw new MetaAgentError('input', 'no task found: expected YAML front matter (---) or headers PROJECT:, OBJECTIVE:, SCOPE:, TASKS:, OUTPUT:', {
      file: name,
      field: 'project',
    });
  }
  const fields: Partial<Record<keyof TaskInput, unknown>> = {};
  for (const [key, lines] of sections) {
    if (LIST_FIELDS.has(key)) {
      fields[key] = lines.flatMap((l) => {
        const item = LIST_ITEM.exec(l);
        return item ? [item[1]!.trim()] : splitList(l);
      });
    } else {
      fields[key] = lines.join('\n').trim();
    }
  }
  return fields;
}

/** "a, b c" -> ["a", "b", "c"]; used for inline SCOPE:/TASKS: values. */
function splitList(value: string): string[] {
  // Commas inside braces belong to a glob ("bot/{a,b}.py").
  return value
    .split(/[,\n](?![^{]*\})/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function zodToTaskError(error: z.ZodError, name: string): MetaAgentError {
  const issue = error.issues[0]!;
  let field = issue.path.map(String).join('.') || 'task';
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    field = issue.keys.join(', ');
    message = `unknown field; known fields are ${Object.keys(TaskSchema.shape)
      .filter((k) => k !== 'body')
      .join(', ')}`;
  } else if (issue.code === 'invalid_value' && 'values' in issue) {
    message = `expected one of ${issue.values.join(', ')}`;
  } else if (issue.code === 'invalid_type' && issue.input === undefined) {
    message = `is required (expected ${issue.expected})`;
  }
  return new MetaAgentError('input', message, { file: name, field });
}

/** The offset of the first byte that is not part of a well-formed UTF-8 sequence (-1: all valid). */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i]!;
    const more = lead < 0x80 ? 0 : lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : -1;
    if (more < 0) return i;
    for (let k = 1; k <= more; k++) if (((bytes[i + k] ?? 0) & 0xc0) !== 0x80) return i;
    const second = bytes[i + 1] ?? 0;
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    if ((lead === 0xe0 && second < 0xa0) || (lead === 0xed && second > 0x9f) || (lead === 0xf0 && second < 0x90) || (lead === 0xf4 && second > 0x8f)) return i;
    i += more + 1;
  }
  return -1;
}
