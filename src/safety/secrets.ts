/**
 * Finding secrets in text that the deny list did not keep out (a config file it does not
 * name, a test that prints a key, a constant in the bot's code). Four detectors, each
 * returning the ranges of secret *values*, never of names or expressions, so that code
 * naming a key (`Client(api_key=settings.api_key)`, `os.environ["BINANCE_API_KEY"]`)
 * reaches the model byte for byte and an edit copied from it still applies:
 *
 * 1. secretlint's recommended rule set (@secretlint/secretlint-rule-preset-recommend):
 *    provider key formats (AWS, GCP, GitHub, GitLab, Slack, npm, OpenAI, Anthropic,
 *    Hugging Face, SendGrid, Shopify, ...), private keys, credentials in URLs and
 *    database connection strings. Chosen over the gitleaks rules because it is a
 *    maintained npm package (gitleaks ships its rules only inside a Go binary or a TOML
 *    file, and the npm wrappers download that binary). Its core (`lintSource`) is async,
 *    but redaction runs in synchronous places (pino formatters, JSON of every trajectory
 *    line), so the rules are run here through their documented rule interface
 *    (`create(context).file(source)`), which is synchronous for text. Version 12: 13.x
 *    needs Node 22.
 * 2. A few formats it does not cover: `sk-...` keys of OpenAI-compatible providers
 *    (secretlint's OpenAI rule needs the T3BlbkFJ marker), private key blocks that are
 *    cut short or too short for its rule, `Bearer <token>`, short URL passwords.
 * 3. Assignments: a literal assigned to a secret-ish name (token, secret, password,
 *    api_key, private_key, ...) whose value looks like a secret. A literal is a quoted
 *    string in any language (also after a type: `api_key: str = "..."`), or the value of a
 *    YAML / .env / INI line; a reference (`${TOKEN}`, `settings.api_key`,
 *    `get_secret("x")`, `None`) is never one.
 * 4. Key-shaped tokens with no name: long, random-looking runs of base64 characters (a key
 *    in a comment, a test's output). Hex (git SHAs, hashes, UUIDs), lockfile integrity
 *    hashes, identifiers and base64 of files or text are left alone; see keyShaped.
 */
import { rules as secretlintRules } from '@secretlint/secretlint-rule-preset-recommend';
import type { SecretLintRuleContext, SecretLintSourceCode } from '@secretlint/types';

export interface SecretHit {
  start: number;
  end: number;
  /** Which detector found it: a secretlint rule id, "format:<name>" or "assignment". */
  rule: string;
}

/** What redaction puts in place of a secret; never itself taken for a secret. */
export const REDACTED = '[REDACTED]';

/** Ranges of the secrets in `text`, sorted, without overlaps. */
export function findSecrets(text: string): SecretHit[] {
  if (!text) return [];
  return merge([...ruleSetHits(text), ...formatHits(text), ...assignmentHits(text), ...randomTokenHits(text)]);
}

// ---------------------------------------------------------------------------------------------
// 1. secretlint's recommended rules

/**
 * The comment filter is left out on purpose: it honours `secretlint-disable` comments, and
 * the repository is hostile input (a comment must not switch the detector off).
 */
const RULES = secretlintRules.filter(
  (rule) => rule.meta.id !== '@secretlint/secretlint-rule-filter-comments' && rule.meta.supportedContentTypes.some((t) => t === 'text' || t === 'all'),
);
/** Options per rule: AWS access key ids are off by default in secretlint. */
const RULE_OPTIONS: Record<string, unknown> = { '@secretlint/secretlint-rule-aws': { enableIDScanRule: true } };

function ruleSetHits(content: string): SecretHit[] {
  const hits: SecretHit[] = [];
  const source = sourceCode(content);
  for (const rule of RULES) {
    const context: SecretLintRuleContext = {
      sharedOptions: {},
      createTranslator: () => ((messageId: string) => ({ message: messageId, messageId, data: {} })) as never,
      report: (descriptor) => hits.push(widen(content, { start: descriptor.range[0], end: descriptor.range[1], rule: rule.meta.id })),
      ignore: () => undefined,
    };
    try {
      const handler = (rule.create as (context: SecretLintRuleContext, options: unknown) => { file?: (source: SecretLintSourceCode) => unknown })(
        context,
        RULE_OPTIONS[rule.meta.id] ?? {},
      );
      const pending = handler.file?.(source);
      // Only the binary (PKCS#12) checks are async; text never reaches them. Keep a rejection from going unhandled.
      if (pending instanceof Promise) pending.catch(() => undefined);
    } catch {
      // A rule that breaks on odd input must not take redaction down; the other detectors still run.
    }
  }
  return hits;
}

function sourceCode(content: string): SecretLintSourceCode {
  const notNeeded = () => {
    throw new Error('not available');
  };
  return {
    hasBOM: content.charCodeAt(0) === 0xfeff,
    content,
    filePath: undefined,
    physicalFilePath: undefined,
    contentType: 'text',
    ext: '',
    getFilePath: () => undefined,
    getPhysicalFilePath: () => undefined,
    locationToRange: notNeeded,
    rangeToLocation: notNeeded,
    indexToPosition: notNeeded,
    positionToIndex: notNeeded,
  } as unknown as SecretLintSourceCode;
}

const TOKEN_CHAR = /[A-Za-z0-9+/=_-]/;

/**
 * A rule's range, reduced to the secret itself: `aws_secret_access_key = X` keeps its
 * name, `https://user:pass@host` keeps all but the password. A range that stops inside a
 * token (some rules report a prefix) is extended to the token's end.
 */
function widen(text: string, hit: SecretHit): SecretHit {
  let { start, end } = hit;
  while (end < text.length && TOKEN_CHAR.test(text[end]!)) end++;
  const found = text.slice(start, end);
  const credentials = /^[a-z][a-z0-9+.-]*:\/\/[^:/\s@]*:/i.exec(found);
  if (credentials) {
    const at = found.indexOf('@', credentials[0].length);
    if (at > 0) return { start: start + credentials[0].length, end: start + at, rule: hit.rule };
  }
  const named = /^[A-Za-z_][\w.-]*["']?\s*(?:[:=]|=>)\s*["']?/.exec(found);
  if (named && named[0].length < found.length) {
    start += named[0].length;
    while (end > start && /["']/.test(text[end - 1]!)) end--;
  }
  return { start, end, rule: hit.rule };
}

// ---------------------------------------------------------------------------------------------
// 2. formats secretlint does not cover

const FORMATS: Array<{ name: string; pattern: RegExp; group?: number; accept?: (value: string) => boolean }> = [
  // OpenAI-compatible providers (DeepSeek, Moonshot, ...) and older OpenAI keys.
  { name: 'sk-key', pattern: /\bsk-(?:[A-Za-z]+-)?[A-Za-z0-9_-]{16,}/g },
  // A private key block, also one cut short (the tail of a test's output) or too short for secretlint's rule.
  { name: 'private-key', pattern: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$(?![\s\S]))/g },
  { name: 'bearer', pattern: /\b(?:Bearer|Basic|Token)\s+([A-Za-z0-9._~+/-]{16,}=*)/g, group: 1, accept: randomLooking },
  // The password of a URL, whatever its length (secretlint wants a longer one): `https://user:pass@host`.
  // A reference in its place (`{password}`, `${DB_PASSWORD}`, `<password>`, `***`) is not one.
  {
    name: 'url-password',
    pattern: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@"'`]*:([^\s@/"'`]+)@[^\s/"'`@]/gi,
    group: 1,
    accept: (value) => !/^(?:\$?\{.*\}|<.*>|\*+|%\(.*\)s|\$[A-Za-z_]\w*)$/.test(value),
  },
];

function formatHits(text: string): SecretHit[] {
  const hits: SecretHit[] = [];
  for (const { name, pattern, group, accept } of FORMATS) {
    for (const match of text.matchAll(pattern)) {
      const value = group ? match[group]! : match[0];
      if (accept && !accept(value)) continue;
      const start = match.index! + (group ? match[0].indexOf(value) : 0);
      hits.push({ start, end: start + value.length, rule: `format:${name}` });
    }
  }
  return hits;
}

// ---------------------------------------------------------------------------------------------
// 3. literals assigned to secret-ish names

/** A name, optionally quoted or subscripted (`"apiKey":`, `cfg["token"] =`); only names holding a secret word are candidates (speed), isSecretName decides. */
const NAME = String.raw`(?<![\w$.]|[\w$.]-)(?<nq>["']?)(?<name>(?:[A-Za-z_$][\w$.-]*?)?(?:secret|token|pass|pwd|key|credential|mnemonic|auth|phrase)[\w$.-]*)\k<nq>\]?`;
const SEPARATOR = '(?<sep>:=|=>|:(?!:)|(?<![=!<>])=(?![=>~]))';
/** A type annotation before a default: `api_key: str = `, `apiKey: string = `, `val token: String = `, `password: Optional[str] = `. */
const ANNOTATED = String.raw`:[ \t]*[A-Za-z_&][\w.\[\]<>, |&?]*?[ \t]*(?<![=!<>])=(?![=>~])`;
/** `NAME = "value"` in any language (kwargs, JSON, YAML, constants, object literals, annotated fields and parameters). */
const QUOTED = new RegExp(String.raw`(?<head>${NAME}[ \t]*(?:${ANNOTATED}|${SEPARATOR})[ \t]*(?<q>["'\x60]))(?<value>(?:\\.|(?!\k<q>)[^\\\r\n])*)\k<q>`, 'gi');
/** A whole `NAME: value` / `NAME=value` line (YAML, .env, INI), the value unquoted; a trailing ` # comment` is not part of it. */
const UNQUOTED_LINE = new RegExp(
  String.raw`(?<head>^[ \t]*(?:export[ \t]+|-[ \t]+)?${NAME}(?<before>[ \t]*)${SEPARATOR}(?<after>[ \t]*))(?<value>[^\s"'\x60#][^\s]*?)[ \t]*(?:[ \t]#.*)?\r?$`,
  'gim',
);

function assignmentHits(text: string): SecretHit[] {
  const hits: SecretHit[] = [];
  // Positions come from the length of the "head" group: the `d` flag (match indices) is ~20x slower in V8.
  const add = (match: RegExpExecArray) => {
    const start = match.index + match.groups!.head!.length;
    hits.push({ start, end: start + match.groups!.value!.length, rule: 'assignment' });
  };
  for (const match of text.matchAll(QUOTED) as IterableIterator<RegExpExecArray>) {
    const { name, value, q } = match.groups!;
    if (q === '`' && value!.includes('${')) continue; // a template, not a literal
    if (isSecretName(name!) && literalLooksSecret(value!, name!)) add(match);
  }
  for (const match of text.matchAll(UNQUOTED_LINE) as IterableIterator<RegExpExecArray>) {
    const { name, value, sep, before, after } = match.groups!;
    if (isSecretName(name!) && unquotedLooksSecret(value!, name!, sep!, !before && !after)) add(match);
  }
  return hits;
}

/** The words of a name: `BINANCE_API_KEY`, `apiSecret`, `self.private-key` -> [..., "api", "key"]. */
function words(name: string): string[] {
  const last = name.split('.').filter(Boolean).at(-1) ?? '';
  return last
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase()
    .split(/[_\-$]+/)
    .filter(Boolean);
}

const SECRET_LAST_WORDS = new Set([
  'secret',
  'secrets',
  'token',
  'password',
  'passwd',
  'pwd',
  'pass',
  'passphrase',
  'credential',
  'credentials',
  'apikey',
  'privatekey',
  'mnemonic',
  'authorization',
]);
const KEY_KINDS = new Set([
  'api',
  'private',
  'secret',
  'access',
  'signing',
  'sign',
  'encryption',
  'master',
  'auth',
  'client',
  'app',
  'consumer',
  'webhook',
  'hmac',
]);
const PHRASE_KINDS = new Set(['seed', 'recovery', 'secret', 'pass']);

/** Whether a name says its value is a secret: it ends in one of the words above, `<kind> key` or `<kind> phrase`. */
export function isSecretName(name: string): boolean {
  let verdict = nameVerdicts.get(name);
  if (verdict === undefined) {
    if (nameVerdicts.size > 10_000) nameVerdicts.clear();
    verdict = judgeName(name);
    nameVerdicts.set(name, verdict);
  }
  return verdict;
}

/** Names repeat (every line of a JSON file has the same few keys): judged once each. */
const nameVerdicts = new Map<string, boolean>();

function judgeName(name: string): boolean {
  const w = words(name);
  const last = w.at(-1);
  const prev = w.at(-2);
  if (!last) return false;
  if (SECRET_LAST_WORDS.has(last)) return true;
  if (last === 'key' && prev !== undefined && KEY_KINDS.has(prev)) return true;
  return last === 'phrase' && prev !== undefined && PHRASE_KINDS.has(prev);
}

const PLACEHOLDER =
  /\$\{|\{\{|%\(|^\$[A-Za-z_]\w*$|^<[^>]*>$|^\*+$|^x+$|^\.+$|changeme|change[_-]me|your[_-]|[_-]here$|example|placeholder|dummy|redacted|^(?:password|secret|token)s?$/i;

/** A quoted literal under a secret-ish name: long enough, not a placeholder, a reference, an env var's name, a path or a URL. */
function literalLooksSecret(value: string, name: string): boolean {
  if (value.length < 8 || value.includes(REDACTED)) return false;
  const phrase = /mnemonic|phrase/i.test(name);
  if (/\s/.test(value) && !phrase) return false;
  if (PLACEHOLDER.test(value)) return false;
  if (/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^[A-Z_]+$/.test(value)) return false; // "BINANCE_API_KEY": the name of a variable
  if (/^[a-z]+(?:[_.-][a-z]+)+$/.test(value)) return false; // "access_token", "settings.api_key"
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return false; // a URL; credentials in it are secretlint's
  if (/^(?:\.{0,2}\/|~\/|[A-Za-z]:\\)/.test(value)) return false; // a path
  return true;
}

const KEYWORDS = new Set(['none', 'null', 'nil', 'true', 'false', 'yes', 'no', 'on', 'off', 'undefined', '~']);

/**
 * An unquoted value on a whole line. In YAML, .env and INI it is a literal; in code the same
 * shape is an expression (`api_key = settings.api_key`, `token = make_token()`), so values
 * that read as code are left alone unless they look random.
 */
function unquotedLooksSecret(value: string, name: string, sep: string, tight: boolean): boolean {
  if (KEYWORDS.has(value.toLowerCase())) return false;
  if (/[()[\]{}<>,;"'`]/.test(value)) return false;
  if (!literalLooksSecret(value, name)) return false;
  if (/^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(value)) return randomLooking(value); // an attribute path, unless a JWT-like token
  if (/^[A-Za-z_$][\w$]*$/.test(value)) {
    if (randomLooking(value)) return true;
    // `.env` style (`SECRET=hunter2hunter2`): a SCREAMING_CASE name glued to its value is a literal.
    if (sep === '=') return tight && /^[A-Z][A-Z0-9_]*$/.test(name) && /\d/.test(value);
    // YAML (`password: hunter2`) is a literal; a type annotation (`api_key: SecretStr`) or a camelCase identifier is not.
    return !/^[A-Z][a-z]+(?:[A-Z][a-z0-9]*)*$/.test(value) && !/^[a-z]+(?:[A-Z][a-z0-9]*)+$/.test(value);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// 4. key-shaped tokens with no name

/** A whole run of base64 / base64url characters (`=` only as padding at its end). */
const TOKEN = /(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{20,}={0,2}(?![A-Za-z0-9+/=_-])/g;
/** Integrity hashes in lockfiles and HTML (`sha512-...`, `pin-sha256="..."`), go.sum's `h1:...`, Docker digests: hashes, not keys. */
const HASH_PREFIX = /^(?:sha(?:1|224|256|384|512)|md5)-/i;
const HASH_BEFORE = /\b(?:h1|sha(?:1|224|256|384|512)|md5)(?:[-:=]|=["']|:[ \t]*["']?)$/i;

function randomTokenHits(text: string): SecretHit[] {
  const hits: SecretHit[] = [];
  for (const match of text.matchAll(TOKEN)) {
    const token = match[0];
    if (HASH_PREFIX.test(token) || HASH_BEFORE.test(text.slice(Math.max(0, match.index! - 12), match.index))) continue;
    // A path or URL (`github.com/org/repo/commit/<sha>`, `/api/v3/<token>/orders`) is judged part by part;
    // a base64 key that merely contains "/" is judged whole.
    const parts = token.split('/');
    const path = parts.length > 1 && (parts.some(pathNumber) || parts.filter(pathWord).length >= 2);
    let at = match.index!;
    for (const value of path ? parts : [token]) {
      if (keyShaped(value)) hits.push({ start: at, end: at + value.length, rule: 'random-token' });
      at += value.length + 1;
    }
  }
  return hits;
}

/**
 * Whether a token with no name around it is a generated key, judged as detect-secrets and
 * truffleHog judge strings (Shannon entropy over the token's alphabet), with what they get
 * wrong in code taken out:
 * - hex only (git SHAs, sha256 and md5 hashes, UUIDs, hex colours): a hash is far more
 *   common in code than a bare hex key; a hex key under a secret name is still found by
 *   the assignment detector;
 * - identifiers (`getUserAccountBalance2`, `test_order_book_v2_handles_429`): made of
 *   words, so their letter/digit/case runs are long; a random string's are 1-2 characters;
 * - encoded data (a base64 PNG in a test, a source map, the header and body of a JWT):
 *   decodes to a known file format or to text; text is searched for secrets itself.
 * Random bytes in no known format (a 44-character base64 key, a JWT's signature, an
 * encrypted fixture) are redacted: a leaked key costs more than a redacted fixture.
 */
export function keyShaped(token: string): boolean {
  let verdict = tokenVerdicts.get(token);
  if (verdict === undefined) {
    if (tokenVerdicts.size > 10_000) tokenVerdicts.clear();
    verdict = judgeToken(token);
    tokenVerdicts.set(token, verdict);
  }
  return verdict;
}

/** The same text is redacted more than once (tool result, trajectory, report): tokens are judged once each. */
const tokenVerdicts = new Map<string, boolean>();

function judgeToken(token: string): boolean {
  const body = token.replace(/=+$/, '');
  if (body.length < 20) return false;
  const digits = /\d/.test(body);
  const mixedCase = /[a-z]/.test(body) && /[A-Z]/.test(body);
  // Without digits only a mixed-case jumble counts: `AbCdEfGhIjKl...`, not `getUserAccountBalance`.
  if (!digits && !mixedCase) return false;
  if (/^[0-9a-f-]+$/i.test(body) || !/[A-Za-z]/.test(body)) return false;
  const mean = meanRun(body);
  if (mean > (mixedCase ? (digits ? MAX_MEAN_RUN : MAX_MEAN_RUN_NO_DIGITS) : MAX_MEAN_RUN_ONE_CASE)) return false;
  // kebab and snake names, mostly words, numbers and hex: `gpt-4o-mini-2024-07-18`, `NODE_SEA_FUSE_<hex>`,
  // `resp_<hex>`, `taken-<hex>-S1_bot_20261129T0031-daily-maintenance`; `whsec_<random>` is not one.
  if (/[-_]/.test(body) && structuredShare(body) >= 0.5) return false;
  if (entropy(body) < MIN_ENTROPY_RATIO * Math.log2(Math.min(body.length, alphabetSize(body)))) return false;
  return !encodedData(body);
}

/**
 * Calibrated on random keys (base62, base64, base64url, lowercase+digits; 20-64 chars: 94-100%
 * of mixed-case ones and 80-93% of one-case ones are found) and on every token of 20+
 * characters in this project's node_modules (what is found there: test ids such as nanoids
 * and ULIDs, JWK/HPKP test keys, embedded wasm). test/redaction.test.ts keeps both sides.
 */
const MAX_MEAN_RUN = 2.9;
/** Without digits, camelCase words are the rival: only a finer jumble counts. */
const MAX_MEAN_RUN_NO_DIGITS = 2.4;
/** Random lowercase+digit keys have longer letter runs (26 letters against 10 digits). */
const MAX_MEAN_RUN_ONE_CASE = 3.2;
/** Entropy against the most a token of its length and alphabet can have: a random key is at 0.85-0.95. */
const MIN_ENTROPY_RATIO = 0.75;
const STRUCTURED_PART = /^(?:.{0,3}|[a-z]+|[A-Z]+|[A-Z][a-z]+|\d+|[0-9a-f]{6,}|[a-z]+\d+|\d+[a-z]+|\d+T\d+Z?)$/;

/** How much of a kebab or snake name is made of words, numbers, hex and timestamps. */
function structuredShare(body: string): number {
  const parts = body.split(/[-_]+/);
  const structured = parts.filter((part) => STRUCTURED_PART.test(part)).reduce((n, part) => n + part.length, 0);
  return structured / parts.reduce((n, part) => n + part.length, 0);
}

/*
 * Parts of a path or URL: a number, hex or a UUID (one is enough), words (`api`, `commit`,
 * `TehShrike`, `aws-sdk-js-v3`: two are needed). A random base64 key has one "/" in 64
 * characters, and what lies between them is rarely one of these, let alone two.
 */
function pathNumber(part: string): boolean {
  return /^\d{3,}$/.test(part) || /^[0-9a-f]{8,}(?:-[0-9a-f]+)*$/i.test(part);
}

function pathWord(part: string): boolean {
  if (/^[a-z]{3,}$/.test(part)) return true;
  if (part.length < 6) return false;
  return meanRun(part) > 3 || (/[-_]/.test(part) && structuredShare(part) === 1);
}

/** The mean length of a token's word, number and case runs: `getUserBalance2` -> 3.75, a random key -> 1.3-2.5. */
function meanRun(token: string): number {
  const runs = token.match(/[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+/g) ?? [];
  return runs.length === 0 ? Infinity : runs.reduce((n, r) => n + r.length, 0) / runs.length;
}

function alphabetSize(body: string): number {
  let size = 0;
  if (/[a-z]/.test(body)) size += 26;
  if (/[A-Z]/.test(body)) size += 26;
  if (/\d/.test(body)) size += 10;
  if (/[+/_-]/.test(body)) size += 2;
  return size;
}

const MAGIC: Buffer[] = [
  [0x89, 0x50, 0x4e, 0x47], // PNG
  [0x47, 0x49, 0x46, 0x38], // GIF
  [0xff, 0xd8, 0xff], // JPEG
  [0x25, 0x50, 0x44, 0x46], // PDF
  [0x50, 0x4b, 0x03, 0x04], // zip, docx, jar
  [0x1f, 0x8b], // gzip
  [0x52, 0x49, 0x46, 0x46], // RIFF: WebP, WAV
  [0x00, 0x61, 0x73, 0x6d], // wasm
  [0x42, 0x4d], // BMP
  [0x3c, 0x3f, 0x78, 0x6d, 0x6c], // <?xml
  [0x77, 0x4f, 0x46], // woff
].map((bytes) => Buffer.from(bytes));

/** Base64 of a known file format, or of text holding no secret. */
function encodedData(body: string): boolean {
  const bytes = Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length < 12) return false;
  if (MAGIC.some((magic) => bytes.subarray(0, magic.length).equals(magic))) return true;
  const decoded = bytes.toString('utf8');
  const printable = decoded.replace(/[^\x20-\x7e\t\r\n\u00a0-\uffff]|\ufffd/g, '').length;
  if (printable < decoded.length * 0.95) return false;
  // Text: a secret inside it (base64 of a service account's JSON) makes the whole blob one.
  return findSecrets(decoded).length === 0;
}

/** Long, mixed letters and digits, and high entropy: a generated key, not a word or an identifier. */
export function randomLooking(value: string): boolean {
  if (value.length < 16) return false;
  if (!/\d/.test(value) || !/[A-Za-z]/.test(value)) return false;
  return entropy(value) >= 3.0;
}

/** Shannon entropy in bits per character. */
function entropy(value: string): number {
  const counts = new Map<string, number>();
  for (const ch of value) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / value.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

function merge(hits: SecretHit[]): SecretHit[] {
  const sorted = hits.filter((h) => h.end > h.start).sort((a, b) => a.start - b.start || b.end - a.end);
  const out: SecretHit[] = [];
  for (const hit of sorted) {
    const last = out.at(-1);
    if (last && hit.start < last.end) last.end = Math.max(last.end, hit.end);
    else out.push({ ...hit });
  }
  return out;
}
