/**
 * The gate's writes into the person's own repository (moving the branch, updating their
 * checkout, installing artifacts) run git there, and git leaves HEAD.lock, index.lock or
 * refs/heads/<branch>.lock behind when it is killed. Then the person's next `git commit`
 * fails with "File exists". So the gate notes when it starts writing there; the next gate
 * run finds the note of a dead process and removes exactly the git locks that appeared
 * since, and nothing older (those could be the person's own git at work).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { execa } from 'execa';
import { RepoOpNoteSchema, type RepoOpNote } from '../contract/gateFiles.ts';
import type { Settings } from '../workspace/config.ts';
import { replaceFile } from '../workspace/files.ts';
import { pidAlive } from '../workspace/lease.ts';
import { gitArgs } from '../workspace/gitArgs.ts';
import { readGateFile } from './gateRun.ts';

const notePath = (settings: Settings) => path.join(settings.layout.state, 'gate-repo-op.json');

/** Whether a gate run was writing into a repository when it died (or is writing now). */
export async function repoOpNoted(settings: Settings): Promise<boolean> {
  return fs.stat(notePath(settings)).then(
    () => true,
    () => false,
  );
}

/** Runs `work` (git in the person's repository) with the note in place; the note goes when it is done. */
export async function inRepo<T>(settings: Settings, repo: string, branch: string, work: () => Promise<T>): Promise<T> {
  const note: RepoOpNote = { host: os.hostname(), pid: process.pid, repo, branch, started_ms: Date.now() };
  await replaceFile(notePath(settings), `${JSON.stringify(note)}\n`);
  try {
    return await work();
  } finally {
    // Only a killed process leaves the note: git that fails on its own removes its locks.
    await fs.rm(notePath(settings), { force: true });
  }
}

/**
 * Call with the gate lock held. If a dead gate process on this host was writing into a
 * repository, removes the git lock files it left (created after it started, so not the
 * person's), then the note. Returns the files removed.
 */
export async function clearGitLocksOfDeadGate(settings: Settings, log: Logger): Promise<string[]> {
  if (!(await repoOpNoted(settings))) return [];
  // A damaged note is read as none: its process died before it ran any git.
  const note = await readGateFile(notePath(settings), RepoOpNoteSchema, log);
  if (note && note.host === os.hostname() && pidAlive(note.pid) && note.pid !== process.pid) return [];
  const removed: string[] = [];
  if (note) {
    const gitDir = (await execa('git', gitArgs(['rev-parse', '--absolute-git-dir']), { cwd: note.repo, reject: false })).stdout.trim();
    const candidates = gitDir ? ['HEAD.lock', 'index.lock', path.join('refs', 'heads', `${note.branch}.lock`)].map((f) => path.join(gitDir, f)) : [];
    for (const lock of candidates) {
      const stat = await fs.stat(lock).catch(() => null);
      // A lock git created before the gate started is someone else's: leave it.
      if (!stat || stat.mtimeMs < note.started_ms - 1000) continue;
      await fs.rm(lock, { force: true });
      removed.push(lock);
    }
    if (removed.length) log.warn({ repo: note.repo, removed }, "removed the git lock files a killed gate run left in the project's repository");
  }
  await fs.rm(notePath(settings), { force: true });
  return removed;
}
