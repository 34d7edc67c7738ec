/**
 * The data flow of src/, as folder order: a module may import from its own folder and from
 * folders before it, never from one after it. `log.ts` sits just after safety (it redacts);
 * `index.ts` is the library API over everything, `cli.ts` the thin layer over that.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export const FLOW = [
  'contract',
  'safety',
  'log',
  'workspace',
  'repo',
  'engines',
  'queue',
  'run',
  'gate',
  'supervisor',
  'service',
  'ui',
  'index',
  'cli',
] as const;

export interface FlowViolation {
  from: string;
  to: string;
  /** e.g. "queue -> run" */
  layers: string;
}

function layerOf(srcRoot: string, file: string): number {
  const top = path
    .relative(srcRoot, file)
    .split(path.sep)[0]!
    .replace(/\.(ts|js)$/, '');
  const index = FLOW.indexOf(top as (typeof FLOW)[number]);
  if (index < 0) throw new Error(`${path.relative(srcRoot, file)}: the folder "${top}" has no place in the flow (test/helpers/importFlow.ts FLOW)`);
  return index;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.(ts|js|mjs)$/.test(entry.name) ? [full] : [];
  });
}

/** Every relative import (static, re-export or dynamic) in `srcRoot` that goes against the flow. */
export function importsAgainstTheFlow(srcRoot: string): FlowViolation[] {
  const violations: FlowViolation[] = [];
  for (const file of sourceFiles(srcRoot)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = path.resolve(path.dirname(file), fileName);
      const from = layerOf(srcRoot, file);
      const to = layerOf(srcRoot, target);
      if (to > from) {
        violations.push({ from: path.relative(srcRoot, file), to: path.relative(srcRoot, target), layers: `${FLOW[from]} -> ${FLOW[to]}` });
      }
    }
  }
  return violations;
}
