import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin');
const { bundleUrl } = (await import(path.join(BIN, 'bundle-url.js') as string)) as { bundleUrl: (root: string, platform?: string) => string };

test('bundleUrl: a Windows install path becomes a file:///C:/ URL (import() refuses C:\\ paths)', () => {
  assert.is(bundleUrl('C:\\Users\\Olena Koval\\AppData\\meta-agent', 'win32'), 'file:///C:/Users/Olena%20Koval/AppData/meta-agent/dist/cli.js');
  assert.is(bundleUrl('\\\\server\\share\\meta-agent', 'win32'), 'file://server/share/meta-agent/dist/cli.js');
});

test('bundleUrl: a POSIX path with # and % is escaped, not read as a fragment', () => {
  assert.is(bundleUrl('/opt/tools #1/100%', 'linux'), 'file:///opt/tools%20%231/100%25/dist/cli.js');
});

test('the bin imports a fresh bundle by URL (its install path holds # and %)', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-bin #1 100%-'));
  try {
    await fs.mkdir(path.join(root, 'bin'));
    await fs.mkdir(path.join(root, 'src'));
    await fs.mkdir(path.join(root, 'dist'));
    for (const name of await fs.readdir(BIN)) await fs.copyFile(path.join(BIN, name), path.join(root, 'bin', name));
    await fs.writeFile(path.join(root, 'src', 'cli.ts'), '');
    // The bundle is newer than every source, so the bin takes its bundle branch.
    await fs.writeFile(
      path.join(root, 'dist', 'cli.js'),
      "export async function main(argv) { process.stdout.write('bundle ran: ' + argv.slice(2).join(' ')); return 7; }\n",
    );
    const later = new Date(Date.now() + 60_000);
    await fs.utimes(path.join(root, 'dist', 'cli.js'), later, later);
    const result = await execa(process.execPath, [path.join(root, 'bin', 'meta-agent.js'), 'status', '--json'], { reject: false, timeout: 30_000 });
    assert.is(result.stdout, 'bundle ran: status --json', result.stderr);
    assert.is(result.exitCode, 7);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test.run();
