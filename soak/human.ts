/**
 * The scripted person of the soak, during the (simulated) day. Everything is done the way a
 * person does it by hand: fs.rename like Explorer, a file copied in slowly in chunks,
 * `git commit` in the bot's checkout.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { Layout } from '../src/workspace/layout.ts';
import { publish, sleep } from '../test/helpers/procs.ts';

export const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

async function renameIfThere(from: string, to: string): Promise<boolean> {
  try {
    // Like Explorer, never silently replace a file of the same name (the person would be asked).
    if (
      await fs.stat(to).then(
        () => true,
        () => false,
      )
    )
      return false;
    await fs.rename(from, to);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Moves the sidecar (and artifacts) first, then the patch, like `meta-agent approve`. */
export async function approveByHand(layout: Layout, id: string): Promise<boolean> {
  const { pending, approved } = layout.patches;
  // A name already taken in approved/ (an earlier run's patch is still being gated): not now.
  if (
    await fs.stat(path.join(approved, `${id}.patch`)).then(
      () => true,
      () => false,
    )
  )
    return false;
  await renameIfThere(path.join(pending, `${id}.patch.json`), path.join(approved, `${id}.patch.json`));
  await renameIfThere(path.join(pending, `${id}.artifacts`), path.join(approved, `${id}.artifacts`));
  return renameIfThere(path.join(pending, `${id}.patch`), path.join(approved, `${id}.patch`));
}

/** Writes `<id>.reason.md`, then moves the sidecar and the patch into rejected/. */
export async function rejectByHand(layout: Layout, id: string, reason: string): Promise<boolean> {
  const { pending, rejected } = layout.patches;
  if (!(await fs.stat(path.join(pending, `${id}.patch`)).catch(() => null))) return false;
  // An earlier proposal of the same task was rejected already: the person would be asked to replace it; not now.
  if (
    await fs.stat(path.join(rejected, `${id}.patch`)).then(
      () => true,
      () => false,
    )
  )
    return false;
  await publish(rejected, `${id}.reason.md`, `# ${id}.patch rejected by a person\n\n${reason}\n`);
  await renameIfThere(path.join(pending, `${id}.patch.json`), path.join(rejected, `${id}.patch.json`));
  await renameIfThere(path.join(pending, `${id}.artifacts`), path.join(rejected, `${id}.artifacts`));
  return renameIfThere(path.join(pending, `${id}.patch`), path.join(rejected, `${id}.patch`));
}

/**
 * Drops a task into inbox/: published by rename, or copied in slowly (written in place in
 * chunks, each gap shorter than queue.settle_ms, as Explorer does).
 */
export async function dropTask(inbox: string, name: string, text: string, slow: { chunks: number; gapMs: number } | null): Promise<void> {
  if (!slow) {
    await publish(inbox, name, text);
    return;
  }
  const data = Buffer.from(text);
  const handle = await fs.open(path.join(inbox, name), 'wx');
  try {
    const size = Math.ceil(data.length / slow.chunks);
    for (let i = 0; i < data.length; i += size) {
      await handle.write(data.subarray(i, i + size));
      await handle.sync();
      if (i + size < data.length) await sleep(slow.gapMs);
    }
  } finally {
    await handle.close();
  }
}

export function humanTaskText(objective: string, type: 'custom' | 'audit_code'): string {
  return `---\nproject: bot\ntype: ${type}\nobjective: ${JSON.stringify(objective)}\nscope: ["bot/**", "tests/**"]\ntasks: ["Keep the change small", "Keep the tests green"]\n---\n\nDropped by hand during the day.\n`;
}

const GIT_ID = ['-c', 'user.name=Soak Human', '-c', 'user.email=human@soak', '-c', 'commit.gpgsign=false'];

/**
 * The person's own change, committed in the checkout: a note right above
 * `def position_size(` in bot/sizing.py (where the agent's notes go: conflicts), or a line
 * at the end of README.md. While git is locked (the gate updating the checkout holds
 * index.lock for a moment) the person waits and tries again, for a few seconds; a lock that
 * stays is not theirs to remove: the commit fails, and the soak counts it as a breach.
 */
export async function commitByHand(repo: string, kind: 'conflicting' | 'elsewhere', tag: string): Promise<{ sha: string }> {
  const file = kind === 'conflicting' ? path.join(repo, 'bot', 'sizing.py') : path.join(repo, 'README.md');
  const rel = path.relative(repo, file);
  for (let attempt = 1; ; attempt++) {
    // A careful person starts from the committed file (never from a half-updated one).
    const text = (await execa('git', ['show', `HEAD:${rel}`], { cwd: repo, stripFinalNewline: false })).stdout;
    const next =
      kind === 'conflicting'
        ? text.replace('def position_size(', `# human note ${tag}: reviewed by hand.\ndef position_size(`)
        : `${text.trimEnd()}\n\nHuman note ${tag}.\n`;
    await fs.writeFile(file, next);
    const add = await execa('git', ['add', '--', rel], { cwd: repo, reject: false });
    const commit =
      add.exitCode === 0 ? await execa('git', [...GIT_ID, 'commit', '--quiet', '-m', `Human note ${tag}`, '--', rel], { cwd: repo, reject: false }) : add;
    if (commit.exitCode === 0) return { sha: (await execa('git', ['rev-parse', 'HEAD'], { cwd: repo })).stdout.trim() };
    await execa('git', ['reset', '--quiet', 'HEAD', '--', rel], { cwd: repo, reject: false });
    await execa('git', ['checkout', '--', rel], { cwd: repo, reject: false });
    if (attempt >= 20) throw new Error(`the person could not commit: ${(commit.stderr || commit.stdout).split('\n')[0]}`);
    await sleep(300);
  }
}
