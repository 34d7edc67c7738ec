/**
 * Per-action tokens for the dashboard's state-changing requests (approve, reject, retry,
 * create). The session token alone is not enough: each POST must also carry a token the
 * server issued for exactly that action on exactly that target (for a patch, the bytes
 * the person was shown), which works once and expires. Tokens are HMACs under a key made
 * at start, so issuing one stores nothing; only used ones are remembered until they expire.
 *
 * What they do and do not stop: they bind an approval to the diff that was shown, and they
 * stop requests that carry only the session token (CSRF, a replayed request). They do not
 * stop a script running in the page: GET /api/patches/<id>, /api/failed/<id> and
 * /api/tasks/new hand a token to any holder of the session token, so such a script could
 * fetch one, then POST. What stops injected script is that none runs: the strict CSP and the
 * sanitized rendering (test/ui-untrusted.test.ts shows both halves).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type Action = 'approve' | 'reject' | 'retry' | 'create';

const TTL_MS = 30 * 60_000;

export interface ActionTokens {
  issue(action: Action, target: string): string;
  /** True once for a token issued for this action and target and not expired. */
  consume(action: Action, target: string, token: string): boolean;
}

export function actionTokens(now: () => number = Date.now): ActionTokens {
  const key = randomBytes(32);
  const used = new Map<string, number>(); // token -> expiry
  const mac = (action: Action, target: string, expires: number, nonce: string) =>
    createHmac('sha256', key).update(`${action}\0${target}\0${expires}\0${nonce}`).digest('base64url');
  return {
    issue(action, target) {
      const expires = now() + TTL_MS;
      const nonce = randomBytes(9).toString('base64url');
      return `${expires}.${nonce}.${mac(action, target, expires, nonce)}`;
    },
    consume(action, target, token) {
      const t = now();
      for (const [k, exp] of used) if (exp < t) used.delete(k);
      const [expiresText, nonce, given] = token.split('.');
      const expires = Number(expiresText);
      if (!nonce || !given || !Number.isSafeInteger(expires) || expires < t || used.has(token)) return false;
      const a = Buffer.from(given);
      const b = Buffer.from(mac(action, target, expires, nonce));
      if (a.length !== b.length || !timingSafeEqual(a, b)) return false;
      used.set(token, expires);
      return true;
    },
  };
}
