/** Writes schema/<name>.json from the zod contract; `--check` fails if a file is stale. */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CONTRACT_SCHEMAS } from '../src/contract/index.ts';

const outDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'schema');
const check = process.argv.includes('--check');
let stale = 0;
await mkdir(outDir, { recursive: true });
for (const [name, { schema, io, title }] of Object.entries(CONTRACT_SCHEMAS)) {
  const json = { title, ...z.toJSONSchema(schema, { io, unrepresentable: 'any' }) };
  const text = `${JSON.stringify(json, null, 2)}\n`;
  const file = path.join(outDir, `${name}.json`);
  const current = await readFile(file, 'utf8').catch(() => '');
  if (current === text) continue;
  if (check) {
    console.error(`schema/${name}.json is out of date with src/contract; run: npm run schema`);
    stale++;
  } else {
    await writeFile(file, text);
    console.log(`wrote schema/${name}.json`);
  }
}
process.exitCode = stale ? 1 : 0;
