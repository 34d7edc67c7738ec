/**
 * The one way to read a JSON file meta-agent wrote: parsed, then checked against its zod
 * schema, so a damaged or hand-edited file is one line naming the file and the field, never
 * an object of the wrong shape travelling on. A missing file is left to the caller (ENOENT
 * is thrown as is, or `null` from the `OrNull` forms), since "not written yet" is normal.
 */
import { promises as fs, readFileSync } from 'node:fs';
import type { z } from 'zod';
import { MetaAgentError } from './errors.ts';

/** `text` (the content of `file`) checked against `schema`; a bad one is a MetaAgentError naming both. */
export function parseJsonText<S extends z.ZodType>(text: string, schema: S, file: string): z.infer<S> {
  let value: unknown;
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new MetaAgentError('internal', `not valid JSON (${(error as Error).message})`, { file, cause: error });
  }
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.length ? issue.path.join('.') : undefined;
  throw new MetaAgentError('internal', issue?.message ?? 'does not match its format', { file, field });
}

export async function readJsonFile<S extends z.ZodType>(file: string, schema: S): Promise<z.infer<S>> {
  return parseJsonText(await fs.readFile(file, 'utf8'), schema, file);
}

/** As readJsonFile, but `null` when the file is not there. */
export async function readJsonFileOrNull<S extends z.ZodType>(file: string, schema: S): Promise<z.infer<S> | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  return parseJsonText(text, schema, file);
}

export function readJsonFileSync<S extends z.ZodType>(file: string, schema: S): z.infer<S> {
  return parseJsonText(readFileSync(file, 'utf8'), schema, file);
}
