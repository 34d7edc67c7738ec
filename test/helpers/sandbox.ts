/**
 * bubblewrap for the sandbox tests. On Linux it is required: `npm test` installs it
 * (scripts/prereqs.mjs), so a missing bwrap fails loudly instead of letting the tests pass
 * unsandboxed. Elsewhere (Windows, macOS) the sandbox is a Linux-only feature: tests that
 * need it are skipped, with the reason printed.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';

export const SANDBOX_SUPPORTED = process.platform === 'linux';

/** The sandbox a check runs in under `sandbox: auto`: bwrap on Linux (asserted installed), none elsewhere. */
export const AUTO_SANDBOX: 'bwrap' | 'none' = SANDBOX_SUPPORTED ? 'bwrap' : 'none';

/** `bwrap` on PATH (as src/run/checks.ts runs it), or undefined. */
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

/** `test`, or on a system without bubblewrap a skipped test that says why. */
export function sandboxTest(name: string, fn: () => Promise<void>): void {
  if (SANDBOX_SUPPORTED) {
    test(name, async () => {
      assertBwrapInstalled();
      await fn();
    });
    return;
  }
  console.log(`  skipped on ${process.platform} (bubblewrap is Linux-only): ${name}`);
  test.skip(name, fn);
}
