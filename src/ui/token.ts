/**
 * The dashboard's access token, kept in the workspace (`.meta-agent/ui-token`, owner-only)
 * so a bookmark of the printed URL keeps working across restarts. `--rotate-token` makes a
 * new one, which logs every open tab out.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Layout } from '../workspace/layout.ts';

const TOKEN_RE = /^[A-Za-z0-9_-]{32,}$/;

export const uiTokenPath = (layout: Layout) => path.join(layout.state, 'ui-token');

/** The stored token, or a new one written 0600 (first start, `rotate`, or a damaged file). */
export async function uiToken(layout: Layout, options: { rotate?: boolean } = {}): Promise<string> {
  const file = uiTokenPath(layout);
  if (!options.rotate) {
    const stored = (await fs.readFile(file, 'utf8').catch(() => '')).trim();
    if (TOKEN_RE.test(stored)) return stored;
  }
  const token = randomBytes(24).toString('base64url');
  await fs.mkdir(path.dirname(file), { recursive: true });
  // Write beside, then rename: a reader never sees half a token. The mode is set at creation.
  const temp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temp, `${token}\n`, { mode: 0o600 });
  await fs.chmod(temp, 0o600);
  await fs.rename(temp, file);
  return token;
}
