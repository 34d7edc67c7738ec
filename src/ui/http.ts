/** The dashboard's HTTP basics: its headers, its error type, JSON replies and request bodies. */
import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { z } from 'zod';
import { MetaAgentError, toErrorInfo } from '../contract/errors.ts';
import { parseJsonText } from '../contract/readJson.ts';

/** No inline script or style anywhere: text that slips through escaping still cannot run or restyle the page. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');
export const SECURITY_HEADERS = {
  'content-security-policy': CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const MAX_BODY = 256 * 1024;

/** A refusal with its HTTP status; its message goes to the browser as is. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** What a handler answers: JSON (200 unless said), or a file's bytes. */
export type Reply = { json: unknown; status?: number } | { bytes: Buffer; type: string };

export function send(res: http.ServerResponse, reply: Reply): void {
  if ('bytes' in reply) {
    res.writeHead(200, { 'content-type': reply.type, 'cache-control': 'no-store', ...SECURITY_HEADERS });
    return void res.end(reply.bytes);
  }
  res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', 'cache-control': 'no-store', ...SECURITY_HEADERS });
  res.end(JSON.stringify(reply.json));
}

/** A failed request as JSON `{ error }`: the user's own faults are 4xx, anything else 500 and logged. */
export function sendError(res: http.ServerResponse, error: unknown, onInternal: (error: unknown) => void): void {
  const status = error instanceof HttpError ? error.status : error instanceof MetaAgentError && (error.kind === 'input' || error.kind === 'config') ? 400 : 500;
  const message = error instanceof HttpError ? error.message : toErrorInfo(error).message;
  if (status === 500) onInternal(error);
  if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json', ...SECURITY_HEADERS });
  res.end(JSON.stringify({ error: message }));
}

/** Equal secrets, compared in constant time. */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The request's JSON body checked against `schema` (an empty body is `{}`); a bad one is a 400 naming the field. */
export async function readJsonBody<S extends z.ZodType>(req: http.IncomingMessage, schema: S): Promise<z.infer<S>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'request too large');
    chunks.push(chunk as Buffer);
  }
  try {
    return parseJsonText(Buffer.concat(chunks).toString('utf8') || '{}', schema, 'the request body');
  } catch (error) {
    throw new HttpError(400, error instanceof MetaAgentError ? error.message : 'the body is not a JSON object');
  }
}
