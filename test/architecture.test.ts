/**
 * Imports follow the data flow (contract -> safety -> workspace -> repo -> engines -> queue ->
 * run -> gate -> supervisor -> service -> ui -> cli): a module never imports from a folder
 * after its own, so each folder can be read, tested and changed knowing only what comes before it.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { importsAgainstTheFlow } from './helpers/importFlow.ts';

const SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');

test('src/: no import against the data flow', () => {
  const violations = importsAgainstTheFlow(SRC).map((v) => `${v.from} imports ${v.to} (${v.layers})`);
  assert.equal(violations, [], violations.join('\n'));
});

test('the check fails on an import against the flow (static, re-export, dynamic) and passes along it', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'flow-'));
  try {
    const write = async (rel: string, text: string) => {
      await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await fs.writeFile(path.join(root, rel), text);
    };
    await write('contract/task.ts', 'export const a = 1;\n');
    await write('run/runTask.ts', "import { a } from '../contract/task.ts';\nexport const b = a;\n");
    await write('queue/deep/x.ts', "import { a } from '../../contract/task.ts';\nexport { a };\n");
    assert.equal(importsAgainstTheFlow(root), [], 'along the flow: nothing');

    await write(
      'queue/watch.ts',
      "import { b } from '../run/runTask.ts';\nexport { c } from '../gate/gate.ts';\nexport const d = () => import('../ui/server.ts');\n",
    );
    await write('gate/gate.ts', 'export const c = 1;\n');
    await write('ui/server.ts', 'export {};\n');
    assert.equal(
      importsAgainstTheFlow(root)
        .map((v) => `${v.from} -> ${v.to} (${v.layers})`)
        .sort(),
      [
        `${path.join('queue', 'watch.ts')} -> ${path.join('gate', 'gate.ts')} (queue -> gate)`,
        `${path.join('queue', 'watch.ts')} -> ${path.join('run', 'runTask.ts')} (queue -> run)`,
        `${path.join('queue', 'watch.ts')} -> ${path.join('ui', 'server.ts')} (queue -> ui)`,
      ],
    );
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test.run();
