/**
 * Where a model's edit goes in a file: pure functions, no file system.
 *
 * Real models copy text imperfectly: trailing whitespace dropped, the block indented one
 * level off, tabs typed as spaces, a CRLF file quoted with LF, the `read_file` line numbers
 * pasted along, “smart quotes”. Each stage below forgives one more of these, in order, and
 * a stage counts only when it finds exactly ONE place; several places stop the search (a
 * looser stage would find at least as many). Ideas from Aider's editblock_coder
 * (`perfect_or_whitespace`, `replace_part_with_missing_leading_whitespace`) and SWE-agent's
 * str_replace_editor (unique match, line numbers in every answer).
 *
 * Matching happens on LF text; the file's own line endings are put back afterwards (lines
 * the edit did not touch keep theirs, new lines get those of the lines they replace).
 */

export interface Edit {
  old: string;
  new: string;
}

export type Strategy = 'exact' | 'line endings' | 'trailing whitespace' | 'indentation' | 'unicode punctuation';

export interface Applied {
  text: string;
  strategy: Strategy;
  /** 1-based first line of the replacement in the new text. */
  line: number;
  /** The line-number prefixes of read_file were removed from "old" (and "new"). */
  strippedLineNumbers: boolean;
}

/** The model's edit does not fit the file; the message is the feedback it gets. */
export class EditMismatch extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EditMismatch';
  }
}

// ---- the line-number format of read_file (one definition: read_file prints it, edits strip it)

/** `  12| text`: the number right-aligned to `width`, a bar, a space (none for an empty line). */
export function numberLine(lineNo: number, text: string, width: number): string {
  const prefix = `${String(lineNo).padStart(width)}|`;
  return text === '' ? prefix : `${prefix} ${text}`;
}

const NUMBER_PREFIX = /^ *(\d+)\|(?: |$)/;

/** Lines without their read_file prefixes, or null unless every line has one (and, if `consecutive`, numbered n, n+1, ...). */
function withoutLineNumbers(lines: string[], consecutive: boolean): string[] | null {
  const out: string[] = [];
  let expected: number | null = null;
  for (const line of lines) {
    const m = NUMBER_PREFIX.exec(line);
    if (!m) return null;
    const n = Number(m[1]);
    if (consecutive && expected !== null && n !== expected) return null;
    expected = n + 1;
    out.push(line.slice(m[0].length));
  }
  return out;
}

// ---- unicode punctuation a model "prettifies"

const UNICODE_ASCII: Record<string, string> = {
  '\u201c': '"',
  '\u201d': '"',
  '\u201e': '"',
  '\u201f': '"',
  '\u2033': '"',
  '\u2018': "'",
  '\u2019': "'",
  '\u201a': "'",
  '\u201b': "'",
  '\u2032': "'",
  '\u2010': '-',
  '\u2011': '-',
  '\u2012': '-',
  '\u2013': '-',
  '\u2014': '-',
  '\u2212': '-',
  '\u2026': '...',
  '\u00a0': ' ',
};
const UNICODE_RE = /[\u201c-\u201f\u2033\u2018\u2019\u2032\u2010-\u2014\u2212\u2026\u00a0]/g;

function foldUnicode(text: string): string {
  return text.replace(UNICODE_RE, (c) => UNICODE_ASCII[c] ?? c);
}

// ---- lines and their endings

interface SplitText {
  lines: string[];
  /** seps[i] ends lines[i]: "\n" or "\r\n"; the last line has none. */
  seps: string[];
}

function splitLines(text: string): SplitText {
  const parts = text.split(/(\r\n|\n)/);
  return { lines: parts.filter((_, i) => i % 2 === 0), seps: parts.filter((_, i) => i % 2 === 1) };
}

/** The lines of a model's text: LF, and one final newline dropped (it ends the last line, it is not an empty line). */
function modelLines(text: string): string[] {
  const lf = text.replace(/\r\n/g, '\n');
  return (lf.endsWith('\n') ? lf.slice(0, -1) : lf).split('\n');
}

function majority(seps: string[]): string | null {
  if (seps.length === 0) return null;
  const crlf = seps.filter((s) => s === '\r\n').length;
  return crlf * 2 > seps.length ? '\r\n' : '\n';
}

/** A replacement in LF space: [start, end) of the LF text becomes `insert`. */
interface Replacement {
  start: number;
  end: number;
  insert: string;
}

/** Applies `r` to the file and puts line endings back: untouched lines keep theirs, new ones get those of the replaced lines. */
function applyReplacement(file: SplitText, r: Replacement): string {
  const lf = file.lines.join('\n');
  const before = lf.slice(0, r.start);
  const after = lf.slice(r.end);
  const headSeps = count(before, '\n');
  const tailSeps = count(after, '\n');
  const replaced = file.seps.slice(headSeps, file.seps.length - tailSeps);
  const eol = majority(replaced) ?? majority(file.seps) ?? '\n';
  // As many line breaks as before: each keeps its own (a mixed file stays mixed, line for line).
  const sameShape = count(r.insert, '\n') === replaced.length;
  const result = splitLines(before + r.insert + after);
  const seps = result.seps.map((_, i) => {
    if (i < headSeps) return file.seps[i]!;
    if (i >= result.seps.length - tailSeps) return file.seps[i - (result.seps.length - file.seps.length)]!;
    return sameShape ? replaced[i - headSeps]! : eol;
  });
  return result.lines.map((line, i) => line + (seps[i] ?? '')).join('');
}

function count(text: string, needle: string): number {
  let n = 0;
  for (let i = text.indexOf(needle); i !== -1; i = text.indexOf(needle, i + 1)) n++;
  return n;
}

// ---- the stages

interface Found {
  /** 0-based first line of each match. */
  starts: number[];
  /** The replacement, when there is exactly one match. */
  replacement?: Replacement;
}

function exactStage(file: SplitText, oldLf: string, newLf: string): Found {
  const lf = file.lines.join('\n');
  const starts: number[] = [];
  let first = -1;
  for (let i = lf.indexOf(oldLf); i !== -1; i = lf.indexOf(oldLf, i + 1)) {
    if (first === -1) first = i;
    starts.push(count(lf.slice(0, i), '\n'));
  }
  return { starts, ...(starts.length === 1 ? { replacement: { start: first, end: first + oldLf.length, insert: newLf } } : {}) };
}

const lead = (line: string) => /^[ \t]*/.exec(line)![0];
const blank = (line: string) => line.trim() === '';

function columns(indent: string, tabWidth: number): number {
  let cols = 0;
  for (const c of indent) cols = c === '\t' ? cols + tabWidth - (cols % tabWidth) : cols + 1;
  return cols;
}

/** How a line-window stage compares and rewrites: per window, a function from a model's new line to the file's. */
interface LineRule {
  /** Null when the window does not match; else how to write each line of "new". */
  tryWindow(window: string[], old: string[]): ((line: string) => string) | null;
}

const trailingWhitespace: LineRule = {
  tryWindow(window, old) {
    return window.every((line, k) => line.trimEnd() === old[k]!.trimEnd()) ? (line) => line : null;
  },
};

/**
 * Indentation off by a constant number of columns (tabs counted as `tabWidth`), and, with
 * `fold`, unicode punctuation ignored. New lines are re-indented by the same offset and in
 * the window's style (tabs if it uses them).
 */
function relativeIndent(tabWidth: number, fold: boolean): LineRule {
  const norm = fold ? (s: string) => foldUnicode(s).trim() : (s: string) => s.trim();
  return {
    tryWindow(window, old) {
      let delta: number | null = null;
      for (let k = 0; k < window.length; k++) {
        const f = window[k]!;
        const o = old[k]!;
        if (blank(f) !== blank(o)) return null;
        if (blank(f)) continue;
        if (norm(f) !== norm(o)) return null;
        const d = columns(lead(f), tabWidth) - columns(lead(o), tabWidth);
        if (delta === null) delta = d;
        else if (d !== delta) return null;
      }
      if (delta === null) return null;
      const offset = delta;
      const tabs = window.some((l) => !blank(l) && lead(l).includes('\t'));
      const present = new Set(window.join('\n').match(UNICODE_RE) ?? []);
      return (line) => {
        if (blank(line)) return '';
        const cols = Math.max(0, columns(lead(line), tabWidth) + offset);
        const indent = tabs ? '\t'.repeat(Math.floor(cols / tabWidth)) + ' '.repeat(cols % tabWidth) : ' '.repeat(cols);
        let body = line.trimStart();
        // Punctuation the file does not use here came from the model's pen, not from the code: write it as ASCII.
        if (fold) body = body.replace(UNICODE_RE, (c) => (present.has(c) ? c : (UNICODE_ASCII[c] ?? c)));
        return indent + body;
      };
    },
  };
}

function lineStage(file: SplitText, oldLines: string[], newLines: string[], rules: LineRule[]): Found {
  const { lines } = file;
  const m = oldLines.length;
  const matches = new Map<number, (line: string) => string>();
  for (let i = 0; i + m <= lines.length; i++) {
    const window = lines.slice(i, i + m);
    for (const rule of rules) {
      const rewrite = rule.tryWindow(window, oldLines);
      if (rewrite) {
        matches.set(i, rewrite);
        break;
      }
    }
  }
  const starts = [...matches.keys()];
  if (starts.length !== 1) return { starts };
  const start = starts[0]!;
  const window = lines.slice(start, start + m);
  const rewrite = matches.get(start)!;
  // A line of "new" that is a line of "old" unchanged stays the file's line, byte for byte (no whitespace-only diff noise).
  const fileLineOf = new Map<string, string | null>();
  oldLines.forEach((o, k) => {
    fileLineOf.set(o, fileLineOf.has(o) && fileLineOf.get(o) !== window[k] ? null : window[k]!);
  });
  const written = newLines.map((line) => fileLineOf.get(line) ?? rewrite(line));
  const offsetOf = (lineIdx: number) => lines.slice(0, lineIdx).reduce((sum, l) => sum + l.length + 1, 0);
  let begin = offsetOf(start);
  let end = offsetOf(start + m) - 1;
  if (written.length === 0) {
    // Removing whole lines removes their line breaks too.
    if (start + m < lines.length) end += 1;
    else if (start > 0) begin -= 1;
  }
  return { starts, replacement: { start: begin, end, insert: written.join('\n') } };
}

const STAGES: Array<{
  strategy: Strategy;
  looser: string;
  run: (file: SplitText, oldLf: string, newLf: string, oldLines: string[], newLines: string[]) => Found;
}> = [
  { strategy: 'exact', looser: '', run: (f, o, n) => exactStage(f, o, n) },
  { strategy: 'trailing whitespace', looser: 'ignoring trailing whitespace', run: (f, _o, _n, ol, nl) => lineStage(f, ol, nl, [trailingWhitespace]) },
  {
    strategy: 'indentation',
    looser: 'ignoring indentation',
    run: (f, _o, _n, ol, nl) =>
      lineStage(
        f,
        ol,
        nl,
        [4, 8, 2].map((w) => relativeIndent(w, false)),
      ),
  },
  {
    strategy: 'unicode punctuation',
    looser: 'ignoring indentation and quote/dash styles',
    run: (f, _o, _n, ol, nl) =>
      lineStage(
        f,
        ol,
        nl,
        [4, 8, 2].map((w) => relativeIndent(w, true)),
      ),
  },
];

/**
 * Applies one edit to `text` (the content of `file`, named in messages). Throws
 * EditMismatch with the model's feedback when "old" matches no place or several, or when
 * the edit would change nothing.
 */
export function applyEdit(text: string, edit: Edit, file: string): Applied {
  if (edit.old === '') throw new EditMismatch(`"old" is empty; copy the lines to replace from ${file} (read_file shows them)`);
  const attempts: Array<{ old: string; new: string; stripped: boolean }> = [{ old: edit.old, new: edit.new, stripped: false }];
  const strippedOld = withoutLineNumbers(modelLines(edit.old), true);
  if (strippedOld) {
    const strippedNew = withoutLineNumbers(modelLines(edit.new), false);
    const newline = (original: string) => (/\r?\n$/.test(original) ? '\n' : '');
    attempts.push({
      old: strippedOld.join('\n') + newline(edit.old),
      new: strippedNew ? strippedNew.join('\n') + newline(edit.new) : edit.new,
      stripped: true,
    });
  }
  // Aider's observation: models add a blank line above or below the text they quote.
  for (const attempt of [...attempts]) {
    const trimmed = withoutBlankEdges(attempt.old, attempt.new);
    if (trimmed) attempts.push({ ...trimmed, stripped: attempt.stripped });
  }
  const split = splitLines(text);
  for (const attempt of attempts) {
    const oldLf = attempt.old.replace(/\r\n/g, '\n');
    const newLf = attempt.new.replace(/\r\n/g, '\n');
    const oldLines = modelLines(attempt.old);
    const newLines = attempt.new === '' ? [] : modelLines(attempt.new);
    for (const stage of STAGES) {
      const found = stage.run(split, oldLf, newLf, oldLines, newLines);
      if (found.starts.length > 1) throw severalMatches(found.starts, stage.looser, file);
      if (!found.replacement) continue;
      const result = applyReplacement(split, found.replacement);
      if (result === text) throw new EditMismatch(`the edit changes nothing in ${file}: "new" is the same as the text it replaces`);
      const strategy = stage.strategy === 'exact' && !text.includes(edit.old) && !attempt.stripped ? 'line endings' : stage.strategy;
      return { text: result, strategy, line: count(split.lines.join('\n').slice(0, found.replacement.start), '\n') + 1, strippedLineNumbers: attempt.stripped };
    }
  }
  throw new EditMismatch(noMatch(split.lines, modelLines(strippedOld ? strippedOld.join('\n') : edit.old), file));
}

/** "old" without blank lines at its start and end (and "new" without the same ones), or null if it has none. */
function withoutBlankEdges(old: string, replacement: string): { old: string; new: string } | null {
  const oldLines = modelLines(old);
  const newLines = replacement === '' ? [] : modelLines(replacement);
  let head = 0;
  while (head < oldLines.length - 1 && blank(oldLines[head]!)) head++;
  let tail = 0;
  while (tail < oldLines.length - head - 1 && blank(oldLines[oldLines.length - 1 - tail]!)) tail++;
  if (head + tail === 0 || head + tail === oldLines.length) return null;
  const newHead = newLines.slice(0, head).every(blank) ? Math.min(head, newLines.length) : 0;
  const newTail = newLines.slice(newHead).slice(-tail).every(blank) ? Math.min(tail, newLines.length - newHead) : 0;
  return {
    old: `${oldLines.slice(head, oldLines.length - tail).join('\n')}\n`,
    new: newLines.slice(newHead, newLines.length - newTail).join('\n') + (newLines.length - newTail > newHead ? '\n' : ''),
  };
}

/** Applies edits one after the other, all or none; a failure names the edit by its 1-based index. */
export function applyEdits(text: string, edits: Edit[], file: string): { text: string; applied: Applied[] } {
  let current = text;
  const applied: Applied[] = [];
  edits.forEach((edit, i) => {
    try {
      const done = applyEdit(current, edit, file);
      applied.push(done);
      current = done.text;
    } catch (error) {
      if (!(error instanceof EditMismatch) || edits.length === 1) throw error;
      throw new EditMismatch(
        `edit ${i + 1} of ${edits.length} failed, so none of the ${edits.length} edits was applied (${file} is unchanged): ${error.message}`,
      );
    }
  });
  return { text: current, applied };
}

function listLines(starts: number[]): string {
  const unique = [...new Set(starts)];
  if (unique.length === 1) return `all on line ${unique[0]! + 1}`;
  const nums = unique.map((s) => String(s + 1));
  const shown = nums.length > 10 ? [...nums.slice(0, 10), `${nums.length - 10} more`] : nums;
  return `lines ${shown.slice(0, -1).join(', ')} and ${shown.at(-1)}${unique.length < starts.length ? ', some more than once' : ''}`;
}

function severalMatches(starts: number[], looser: string, file: string): EditMismatch {
  const where = `${starts.length} places in ${file} (${listLines(starts)})`;
  const what = looser ? `"old" is not in ${file} exactly, and ${looser} it matches ${where}` : `"old" matches ${where}`;
  return new EditMismatch(`${what}; add neighbouring lines to "old" so it matches only one`);
}

// ---- the closest region, for "not found"

const MAX_REGION_LINES = 30;
/** Below this similarity (0..1) nothing is shown: unrelated lines only cost the model context. */
const MIN_SIMILARITY = 0.5;

function bigrams(text: string): Map<string, number> {
  const grams = new Map<string, number>();
  for (let i = 0; i < text.length - 1; i++) {
    const g = text.slice(i, i + 2);
    grams.set(g, (grams.get(g) ?? 0) + 1);
  }
  return grams;
}

/** Sørensen–Dice similarity of two lines' character bigrams (trimmed, punctuation folded): 1 for equal lines. */
function similarity(a: Map<string, number>, aText: string, b: Map<string, number>, bText: string): number {
  if (aText === bText) return 1;
  let sizeA = 0;
  let sizeB = 0;
  let common = 0;
  for (const n of a.values()) sizeA += n;
  for (const [g, n] of b) {
    sizeB += n;
    common += Math.min(n, a.get(g) ?? 0);
  }
  return sizeA + sizeB === 0 ? 0 : (2 * common) / (sizeA + sizeB);
}

function noMatch(lines: string[], oldLines: string[], file: string): string {
  const head = `"old" was not found in ${file}, not even ignoring line endings, trailing whitespace, indentation and quote styles`;
  const norm = (s: string) => foldUnicode(s).trim();
  const fileNorm = lines.map(norm);
  const oldNorm = oldLines.map(norm);
  const m = Math.min(oldLines.length, lines.length);
  // Bigram scores cost lines x old-lines comparisons; on a huge file compare equal lines only.
  const cheap = lines.length * m > 2_000_000;
  const fileGrams = cheap ? [] : fileNorm.map(bigrams);
  const oldGrams = cheap ? [] : oldNorm.map(bigrams);
  let best = { start: 0, score: -1 };
  for (let i = 0; i + m <= lines.length; i++) {
    let score = 0;
    for (let k = 0; k < m; k++) {
      score += cheap ? (fileNorm[i + k] === oldNorm[k] ? 1 : 0) : similarity(fileGrams[i + k]!, fileNorm[i + k]!, oldGrams[k]!, oldNorm[k]!);
    }
    score /= Math.max(1, oldLines.length);
    if (score > best.score) best = { start: i, score };
  }
  if (best.score < MIN_SIMILARITY) return `${head}, and no lines of it are similar to "old"; read_file ${file} to see its current content`;
  const shown = Math.min(m, MAX_REGION_LINES);
  const last = best.start + shown;
  const width = String(last).length;
  const region = lines.slice(best.start, last).map((l, k) => numberLine(best.start + k + 1, l, width));
  const range = shown === 1 ? `line ${best.start + 1}` : `lines ${best.start + 1}-${last}`;
  return `${head}. The most similar part is ${range}:\n${region.join('\n')}\nCopy "old" from the file as it is now (the line-number prefixes may be left in or out)`;
}
