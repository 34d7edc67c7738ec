/**
 * What Windows hands the queue: file names from Explorer ("New Text Document.md", "x - Copy
 * (2).md", "Задача 1.md") and bytes from Notepad, PowerShell and Python (UTF-8 with a BOM,
 * UTF-16 with a BOM, a legacy code page such as Windows-1251).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import slugify from '@sindresorhus/slugify';

/** The longest task id (TaskIdSchema's bound). */
export const MAX_TASK_ID_CHARS = 120;
const VALID_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * The task id a file name gives when the task sets no `id:`. The name without `.md`, if
 * that is a valid id already (letters, digits, ".", "_", "-"; so every id that worked before
 * is unchanged). Otherwise its slug: transliterated to Latin letters (Cyrillic, accents,
 * ligatures), lower case, every other run of characters one "-", at most 120 characters;
 * a name with no letter or digit left (only emoji) gives `task-<8 hex of its sha256>`.
 * The same name always gives the same id.
 */
export function idFromFileName(fileName: string): string {
  const stem = path.basename(fileName).replace(/\.md$/i, '');
  if (VALID_ID.test(stem) && !stem.includes('..') && stem.length <= MAX_TASK_ID_CHARS) return stem;
  const slug = slugify(stem, { decamelize: false, preserveCharacters: ['_'] })
    .slice(0, MAX_TASK_ID_CHARS)
    .replace(/[-_]+$/, '');
  return slug || `task-${createHash('sha256').update(stem).digest('hex').slice(0, 8)}`;
}

/**
 * The text of a task file saved as UTF-16 with its byte-order mark (PowerShell's `>` and
 * Out-File write UTF-16 LE), or null when the bytes do not start with one (the caller checks
 * them as UTF-8). Throws a plain Error when the UTF-16 is broken (an odd length, a lone surrogate).
 */
export function decodeUtf16(bytes: Buffer): string | null {
  const encoding = bytes[0] === 0xff && bytes[1] === 0xfe ? 'utf-16le' : bytes[0] === 0xfe && bytes[1] === 0xff ? 'utf-16be' : null;
  if (!encoding) return null;
  try {
    return new TextDecoder(encoding, { fatal: true }).decode(bytes.subarray(2));
  } catch {
    throw new Error(`the file starts with a ${encoding.toUpperCase()} byte-order mark but is not valid ${encoding.toUpperCase()}`);
  }
}
