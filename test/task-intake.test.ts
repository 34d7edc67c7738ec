/**
 * Task files as Windows makes them (issue 15, point 10): Explorer's names ("New Text
 * Document.md", "x - Copy (2).md", Cyrillic) give ids by a stable slug; UTF-16 with a BOM
 * (PowerShell's `>`) is read as text; a legacy code page (cp1251) is refused with a one-line
 * message that names the file and says to save it as UTF-8. Unit tests of the parser, and
 * real files dropped into a real `meta-agent watch`'s inbox.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseTask, TaskIdSchema } from '../src/contract/task.ts';
import { idFromFileName } from '../src/contract/taskName.ts';
import { MetaAgentError } from '../src/contract/errors.ts';
import type { Report } from '../src/contract/report.ts';
import { makeWorkspace, readJson } from './helpers/workspace.ts';
import { killAll, list, publish, startWatchReady, waitFor } from './helpers/procs.ts';

const TASK = '---\nproject: bot\nobjective: Report only\nscope: []\n---\n';
const CYRILLIC_TASK = '---\nproject: bot\nobjective: Перевірити розмір позиції\nscope: []\n---\n';

/** UTF-16 with its BOM, as PowerShell's `>` (LE) or a "Unicode big endian" save writes it. */
function utf16(text: string, order: 'le' | 'be'): Buffer {
  const le = Buffer.from(`\uFEFF${text}`, 'utf16le');
  return order === 'le' ? le : Buffer.from(le).swap16();
}

/** "Перевірити" in Windows-1251 (what Python writes with open(..., 'w') on a Ukrainian Windows). */
const CP1251 = Buffer.concat([
  Buffer.from('---\nproject: bot\nobjective: '),
  Buffer.from([0xcf, 0xe5, 0xf0, 0xe5, 0xe2, 0xb3, 0xf0, 0xe8, 0xf2, 0xe8]),
  Buffer.from('\nscope: []\n---\n'),
]);

test('ids from any file name: valid names unchanged, the rest a lower-case transliterated slug', () => {
  const cases: Array<[string, string]> = [
    ['audit-sizing.md', 'audit-sizing'],
    ['Audit.v2_final.MD', 'Audit.v2_final'],
    ['New Text Document.md', 'new-text-document'],
    ['New Text Document (2).md', 'new-text-document-2'],
    ['x - Copy.md', 'x-copy'],
    ['x - Copy (2).md', 'x-copy-2'],
    ['Задача 1.md', 'zadacha-1'],
    ['Перевірка ризиків.md', 'perevirka-rizikiv'],
    ['Café crème.md', 'cafe-creme'],
    ['  spaced   out .md', 'spaced-out'],
    ['..hidden.md', 'hidden'],
    ['a..b.md', 'a-b'],
    ['🚀 launch 🚀.md', 'launch'],
  ];
  for (const [name, id] of cases) {
    assert.is(idFromFileName(name), id, name);
    assert.ok(TaskIdSchema.safeParse(id).success, `${id} is a valid id`);
    assert.is(parseTask(TASK, name).id, id, `${name} through parseTask`);
  }
  // Only emoji: a stable id from the name's hash, different for different names.
  const rocket = idFromFileName('🚀.md');
  assert.match(rocket, /^task-[0-9a-f]{8}$/);
  assert.is(idFromFileName('🚀.md'), rocket, 'stable');
  assert.is.not(idFromFileName('🎉.md'), rocket);
  const long = idFromFileName(`${'Довга назва '.repeat(20)}.md`);
  assert.ok(long.length <= 120 && TaskIdSchema.safeParse(long).success, long);
  // An id: in the file wins over the name.
  assert.is(parseTask('---\nid: mine\nproject: bot\nobjective: x\n---\n', 'New Text Document.md').id, 'mine');
});

test('encodings: UTF-8 with or without BOM and UTF-16 LE/BE with BOM give the same task; CRLF is fine', () => {
  const crlf = CYRILLIC_TASK.replace(/\n/g, '\r\n');
  const inputs: Array<[string, Buffer]> = [
    ['UTF-8', Buffer.from(CYRILLIC_TASK)],
    ['UTF-8 + BOM + CRLF', Buffer.from(`\uFEFF${crlf}`)],
    ['UTF-16 LE (PowerShell >) + CRLF', utf16(crlf, 'le')],
    ['UTF-16 BE', utf16(CYRILLIC_TASK, 'be')],
  ];
  for (const [what, bytes] of inputs) {
    const task = parseTask(bytes, 'Задача 1.md');
    assert.is(task.objective, 'Перевірити розмір позиції', what);
    assert.is(task.id, 'zadacha-1', what);
  }
});

test('cp1251 and UTF-16 without a BOM are refused with one line naming the file and saying to save as UTF-8', () => {
  const refusal = (bytes: Buffer) => {
    try {
      parseTask(bytes, 'Задача 2.md');
    } catch (error) {
      assert.instance(error, MetaAgentError);
      return (error as Error).message;
    }
    assert.unreachable('parsed');
    return '';
  };
  for (const [what, bytes] of [
    ['cp1251', CP1251],
    ['UTF-16 LE without BOM', Buffer.from(TASK, 'utf16le')],
    ['UTF-16 LE BOM, odd length', Buffer.concat([utf16(TASK, 'le'), Buffer.from([0x41])])],
  ] as Array<[string, Buffer]>) {
    const message = refusal(bytes);
    assert.match(message, 'Задача 2.md', `${what}: names the file`);
    assert.match(message, 'save it as UTF-8', `${what}: says what to do`);
    assert.not.match(message, /[\r\n]/, `${what}: one line`);
  }
  assert.match(refusal(CP1251), 'not valid UTF-8 (at byte offset 28');
});

test('end to end: Explorer names, Cyrillic and a UTF-16 file run through a real watch; cp1251 goes to failed/ with its reason', async () => {
  const config = [
    'engine: command',
    'command:',
    '  run: ["true"]',
    'queue:',
    '  settle_ms: 100',
    '  scan_interval_ms: 200',
    '  lease_stale_s: 2',
    '  shutdown_grace_s: 1',
  ].join('\n');
  const ws = await makeWorkspace({ project: '    scope: ["**"]', extra: config });
  try {
    const { inbox, done, failed, reports } = ws.settings.layout;
    const proc = await startWatchReady(ws.root);
    const dropped: Array<[string, string | Buffer, string]> = [
      ['Задача 1.md', CYRILLIC_TASK, 'zadacha-1'],
      ['New Text Document - Copy (2).md', TASK, 'new-text-document-copy-2'],
      ['ps-task.md', utf16(CYRILLIC_TASK.replace(/\n/g, '\r\n'), 'le'), 'ps-task'],
    ];
    for (const [name, data] of dropped) await publish(inbox, name, data);
    await publish(inbox, 'Задача 2.md', CP1251);
    const state = async () => `done: ${await list(done)} failed: ${await list(failed)} inbox: ${await list(inbox)}\n${proc.output()}`;
    await waitFor('all three done', async () => (await list(done)).length === 3, 30_000, state);
    await waitFor('the cp1251 file failed', async () => (await list(failed)).includes('Задача 2.md.error.md'), 30_000, state);
    assert.equal((await list(done)).sort(), dropped.map(([name]) => name).sort(), 'the files keep their names');
    for (const [name, , id] of dropped) {
      const report = await readJson<Report>(path.join(reports, `${id}.json`));
      assert.is(report.status, 'ok', `${name}: ${report.error?.message}`);
      assert.is(report.task_id, id);
      assert.is(path.basename(report.task_file), name, 'the report names the original file');
    }
    assert.is((await readJson<Report>(path.join(reports, 'ps-task.json'))).objective, 'Перевірити розмір позиції', 'UTF-16 decoded');
    const why = await fs.readFile(path.join(failed, 'Задача 2.md.error.md'), 'utf8');
    assert.match(why, 'not valid UTF-8');
    assert.match(why, 'save it as UTF-8');
  } finally {
    await killAll();
    await ws.cleanup();
  }
});

test.run();
