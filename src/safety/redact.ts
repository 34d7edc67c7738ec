/**
 * Redaction of secrets from everything that leaves the process: prompts, reports,
 * trajectories, logs. Two nets: the values of secret-looking variables of the service's
 * environment (exact), and patterns of common key formats.
 */
const KEY_PATTERNS: RegExp[] = [
  /\bsk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_-]{16,}/g, // OpenAI, Anthropic, Stripe-like
  /\bAKIA[0-9A-Z]{16}\b/g, // AWS access key id
  /\bgh[pousr]_[A-Za-z0-9]{30,}\b/g, // GitHub tokens
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g, // Slack
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
  /\b(?:[A-Za-z0-9]+[_-])*(?:api[_-]?key|api[_-]?secret|secret[_-]?key|secret|access[_-]?token|auth[_-]?token|password|passwd)\b(\s*[:=]\s*)["']?[^\s"',;]{8,}["']?/gi,
];
const SECRET_NAME = /(KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE|CREDENTIAL)/i;
export const REDACTED = '[REDACTED]';

export type Redactor = (text: string) => string;

export function makeRedactor(env: Readonly<Record<string, string | undefined>>, extraSecrets: readonly string[] = []): Redactor {
  const values = [
    ...extraSecrets,
    ...Object.entries(env)
      .filter(([name, value]) => SECRET_NAME.test(name) && value && value.length >= 8)
      .map(([, value]) => value!),
  ]
    .filter((v) => v.length >= 8)
    .sort((a, b) => b.length - a.length);
  return (text) => {
    if (!text) return text;
    let out = text;
    for (const value of values) if (out.includes(value)) out = out.split(value).join(REDACTED);
    for (const pattern of KEY_PATTERNS) {
      out = out.replace(pattern, (match, sep?: string) => (typeof sep === 'string' ? match.slice(0, match.indexOf(sep) + sep.length) + REDACTED : REDACTED));
    }
    return out;
  };
}

/** Redacts every string inside a JSON-able value. */
export function redactDeep<T>(value: T, redact: Redactor): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, redact)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v, redact)])) as T;
  }
  return value;
}
