#!/usr/bin/env node
// Runs the bundle in dist/ (built by `npm ci` / `npm run build`) when it is newer than every
// source file; otherwise the TypeScript sources directly through tsx, so an edited checkout
// never runs stale code.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleUrl } from './bundle-url.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bundle = path.join(root, 'dist', 'cli.js');

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(full) : statSync(full).mtimeMs);
  }
  return newest;
}

function bundleIsFresh() {
  try {
    return statSync(bundle).mtimeMs >= newestSource(path.join(root, 'src'));
  } catch {
    return false;
  }
}

let main;
if (bundleIsFresh()) {
  ({ main } = await import(bundleUrl(root)));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli.ts'));
}
process.exitCode = await main(process.argv);
// Once main() is done, nothing is left to do: a handle a library left open (a timer, a
// socket) must not keep a stopped service alive. Unref'd, so a clean exit is not delayed.
setTimeout(() => {
  process.stderr.write('meta-agent: something was still open after the command finished; exiting anyway\n');
  process.exit();
}, 3000).unref();
