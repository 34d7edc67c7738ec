/**
 * bubblewrap for the sandbox tests. On Linux it is required: `npm test` installs it
 * (scripts/prereqs.mjs), so a missing bwrap fails loudly instead of letting the tests pass
 * unsandboxed. Elsewhere (Windows, macOS) the sandbox is a Linux-only feature: a test that
 * needs it checks there that the sandbox refuses (fails closed) instead.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sandboxStatus } from '../../src/safety/sandbox.ts';

export const SANDBOX_SUPPORTED = process.platform === 'linux';

/** The sandbox a check runs in under `sandbox: auto`: bwrap on Linux (asserted installed), none elsewhere. */
export const AUTO_SANDBOX: 'bwrap' | 'none' = SANDBOX_SUPPORTED ? 'bwrap' : 'none';

/** `bwrap` on PATH (as src/repo/checks.ts runs it), or undefined. */
export function findBwrap(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    try {
      accessSync(path.join(dir, 'bwrap'), constants.X_OK);
      return path.join(dir, 'bwrap');
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/** Throws a clear error when bwrap should be here (Linux) and is not. */
export function assertBwrapInstalled(): void {
  if (SANDBOX_SUPPORTED && !findBwrap()) {
    throw new Error('bubblewrap (bwrap) is not on PATH: `npm test` installs it (scripts/prereqs.mjs), or `apt-get install bubblewrap`');
  }
}

/**
 * `test` on Linux (bubblewrap asserted installed). Elsewhere bubblewrap cannot run, so the
 * same test name proves the other half of the promise instead: the sandbox fails closed
 * (`sandbox: auto` is a config error naming `sandbox: none`), never runs checks unsandboxed.
 */
export function sandboxTest(name: string, fn: () => Promise<void>): void {
  if (SANDBOX_SUPPORTED) {
    test(name, async () => {
      assertBwrapInstalled();
      await fn();
    });
    return;
  }
  test(`${name} [on ${process.platform}: sandbox: auto refuses instead]`, async () => {
    const status = await sandboxStatus({ config: { sandbox: 'auto' }, env: process.env });
    assert.ok(status.error, 'sandbox: auto must refuse where bubblewrap cannot run');
    assert.match(status.error, /sandbox: none/);
  });
}
