/**
 * Bundles the CLI into dist/ (esbuild; dependencies stay external), so the service starts
 * without transpiling TypeScript: less start-up time and memory. Runs on `npm ci` (prepare).
 * bin/meta-agent.js falls back to running src/ directly when dist/ is missing or older.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { STATIC_FILES } from '../src/ui/staticFiles.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: { cli: path.join(root, 'src', 'cli.ts') },
  outdir: dist,
  outExtension: { '.js': '.js' },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // Modules loaded with import() (BullMQ, the OpenAI engine, the Markdown renderer) become
  // chunks of their own, loaded only by the commands and configs that use them.
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
});
// The dashboard's page, script and style are served from beside the bundle.
for (const file of STATIC_FILES) await copyFile(path.join(root, 'src', 'ui', file), path.join(dist, file));
console.log('built dist/cli.js');
