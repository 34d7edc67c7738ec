/**
 * Redaction of secrets from everything that leaves the process: prompts, tool results,
 * reports, trajectories, logs. Two nets: the exact values of secret-looking variables of
 * the service's environment (at least 8 characters, so `DEBUG_TOKEN=1` does not blank
 * every "1"), and the detector in secrets.ts (key formats, literals under secret names,
 * random key-shaped tokens). A value the detector found once is remembered for the rest
 * of the run, so a test that prints it bare later is redacted too. Only values are
 * replaced, never names or expressions.
 */
import { findSecrets, REDACTED } from './secrets.ts';

export { REDACTED };

const SECRET_NAME = /(KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE|CREDENTIAL)/i;
/** Where a secret is kept, not the secret: `SSH_ASKPASS`, `HF_TOKEN_PATH`, `PASSWORD_STORE_DIR`. Replacing a path everywhere would mangle code. Judged by the name only: a base64 secret may start with "/". */
const LOCATION_NAME = /(?:_FILE|_PATH|_DIR|_HOME|ASKPASS)$/i;
/** Shorter values are not remembered: replacing them everywhere would mangle ordinary text. */
const MIN_VALUE = 8;

/** The values of the service's environment that are secrets, by the variable's name. */
function envSecrets(env: Readonly<Record<string, string | undefined>>): string[] {
  return Object.entries(env)
    .filter(([name, value]) => value && SECRET_NAME.test(name) && !LOCATION_NAME.test(name))
    .map(([, value]) => value!);
}

export interface Redactor {
  (text: string): string;
  /** How many secrets this redactor has replaced so far (a run's `secrets_redacted`). */
  readonly hits: number;
}

export function makeRedactor(env: Readonly<Record<string, string | undefined>>, extraSecrets: readonly string[] = []): Redactor {
  const known = new Set([...extraSecrets, ...envSecrets(env)].filter((v) => v.length >= MIN_VALUE));
  // Longest first, so a value that contains another is replaced whole.
  let values = sorted(known);
  let hits = 0;

  /** Replaces the remembered values in a stretch of text the detector left alone. */
  const replaceKnown = (text: string): string => {
    let out = text;
    for (const value of values) {
      if (!out.includes(value)) continue;
      const parts = out.split(value);
      hits += parts.length - 1;
      out = parts.join(REDACTED);
    }
    return out;
  };

  const redact = (text: string): string => {
    if (!text) return text;
    // The detector sees the text first: a remembered value that is only part of a longer
    // secret must not turn that secret into "[REDACTED]<rest of it>".
    const found = findSecrets(text);
    let result = '';
    let at = 0;
    const before = known.size;
    for (const { start, end } of found) {
      const value = text.slice(start, end);
      if (value.length >= MIN_VALUE && !value.includes(REDACTED)) known.add(value);
      result += replaceKnown(text.slice(at, start)) + REDACTED;
      at = end;
    }
    hits += found.length;
    if (known.size !== before) values = sorted(known);
    return result + replaceKnown(text.slice(at));
  };
  return Object.defineProperty(redact, 'hits', { get: () => hits, enumerable: true }) as Redactor;
}

function sorted(values: Set<string>): string[] {
  return [...values].sort((a, b) => b.length - a.length);
}

/** Redacts every string inside a JSON-able value. */
export function redactDeep<T>(value: T, redact: (text: string) => string): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, redact)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v, redact)])) as T;
  }
  return value;
}
