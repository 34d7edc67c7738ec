#!/usr/bin/env node
/** Functions longer than a limit (default 80 lines) in a folder: `node scripts/function-lengths.mjs src 80`; exit 1 when any. */
import ts from 'typescript';
import fs from 'node:fs';
import path from 'node:path';
const root = process.argv[2] ?? 'src';
const limit = Number(process.argv[3] ?? 80);
const out = [];
function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.(ts|js|mjs)$/.test(e.name)) scan(p);
  }
}
function nameOf(node, sf) {
  if (node.name) return node.name.getText(sf);
  const p = node.parent;
  if (p && ts.isVariableDeclaration(p)) return p.name.getText(sf);
  if (p && ts.isPropertyAssignment(p)) return p.name.getText(sf);
  if (p && ts.isCallExpression(p)) return `<callback in ${p.expression.getText(sf).slice(0, 40)}>`;
  return '<anonymous>';
}
function scan(file) {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const visit = (node) => {
    if (ts.isFunctionLike(node) && node.body) {
      const s = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const e = sf.getLineAndCharacterOfPosition(node.end).line;
      const n = e - s + 1;
      if (n > limit) out.push({ file, name: nameOf(node, sf), line: s + 1, lines: n });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}
walk(root);
out.sort((a, b) => b.lines - a.lines);
for (const o of out) console.log(`${o.lines}\t${o.file}:${o.line}\t${o.name}`);
console.log(`${out.length} function(s) over ${limit} lines`);
process.exitCode = out.length ? 1 : 0;
