/**
 * Whether a pending patch still fits its branch: has the branch moved since the patch's
 * base commit, and does the patch still apply on the current head (plainly, or with the
 * 3-way merge the gate uses)? Checked with `git apply --cached --check` against a throwaway
 * index and object folder in the temp dir, so neither the person's working tree, nor their
 * index, nor their object store is written. Cached per (patch bytes, head).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { PatchSidecar } from '../contract/patch.ts';
import type { Settings } from '../workspace/config.ts';
import { normaliseResavedPatch } from '../gate/crlfPatch.ts';
import { gitArgs } from '../workspace/gitArgs.ts';

export interface ApplyStatus {
  branch: string;
  base_commit: string;
  head: string | null;
  moved: boolean;
  /** clean: applies as is; three_way: applies with a 3-way merge (as the gate does); conflicts: the gate would reject it; unknown: could not check. */
  applies: 'clean' | 'three_way' | 'conflicts' | 'unknown';
  detail: string;
}

const MAX_CACHE = 200;

export function applyChecker(settings: Settings) {
  const cache = new Map<string, ApplyStatus>();

  async function headOf(repo: string, branch: string): Promise<string | null> {
    const r = await execa('git', gitArgs(['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]), { cwd: repo, reject: false });
    return r.exitCode === 0 ? r.stdout.trim() : null;
  }

  async function check(repo: string, head: string, patch: Buffer): Promise<Pick<ApplyStatus, 'applies' | 'detail'>> {
    const gitDir = (await execa('git', gitArgs(['rev-parse', '--absolute-git-dir']), { cwd: repo })).stdout.trim();
    const temp = await fs.mkdtemp(path.join(os.tmpdir(), 'meta-agent-applycheck-'));
    try {
      await fs.mkdir(path.join(temp, 'objects'));
      const patchFile = path.join(temp, 'checked.patch');
      await fs.writeFile(patchFile, patch);
      const env = {
        GIT_INDEX_FILE: path.join(temp, 'index'),
        GIT_OBJECT_DIRECTORY: path.join(temp, 'objects'),
        GIT_ALTERNATE_OBJECT_DIRECTORIES: path.join(gitDir, 'objects'),
      };
      const git = (args: string[]) => execa('git', gitArgs(args), { cwd: repo, env, reject: false, all: true });
      const read = await git(['read-tree', head]);
      if (read.exitCode !== 0) return { applies: 'unknown', detail: String(read.all ?? '').trim() };
      const plain = await git(['apply', '--cached', '--check', '--whitespace=nowarn', patchFile]);
      if (plain.exitCode === 0) return { applies: 'clean', detail: '' };
      // `--3way --check` exits 0 even with conflicts; its message tells.
      const merged = await git(['apply', '--cached', '--check', '--3way', '--whitespace=nowarn', patchFile]);
      const out = String(merged.all ?? '').trim();
      if (merged.exitCode === 0 && !/with conflicts/.test(out)) return { applies: 'three_way', detail: '' };
      const files = [
        ...new Set(
          [
            ...out.matchAll(
              /Applied patch to '([^']+)' with conflicts|error: ([^:\n]+): (?:patch does not apply|does not exist in index|already exists in index)/g,
            ),
          ].map((m) => m[1] ?? m[2]!),
        ),
      ];
      return { applies: 'conflicts', detail: files.length ? `conflicts in ${files.join(', ')}` : (out.split('\n')[0] ?? '') };
    } finally {
      await fs.rm(temp, { recursive: true, force: true });
    }
  }

  return async function status(sidecar: PatchSidecar, patchFile: string): Promise<ApplyStatus | null> {
    const project = settings.projects[sidecar.project];
    if (!project) return null;
    const base = { branch: sidecar.branch, base_commit: sidecar.base_commit };
    const head = await headOf(project.repoPath, sidecar.branch).catch(() => null);
    if (!head) return { ...base, head: null, moved: true, applies: 'unknown', detail: `branch ${sidecar.branch} not found in ${project.repoPath}` };
    const bytes = await fs.readFile(patchFile);
    const key = `${createHash('sha256').update(bytes).digest('hex')}:${head}`;
    let result = cache.get(key);
    if (!result) {
      // Checked as the gate applies it: a patch an editor re-saved with CRLF with git's line endings.
      const patch = (await normaliseResavedPatch(bytes, project.repoPath, head, sidecar.sha256).catch(() => null)) ?? bytes;
      result = {
        ...base,
        head,
        moved: head !== sidecar.base_commit,
        ...(await check(project.repoPath, head, patch).catch((e: unknown) => ({
          applies: 'unknown' as const,
          detail: String((e as Error).message).split('\n')[0] ?? '',
        }))),
      };
      if (cache.size >= MAX_CACHE) cache.delete(cache.keys().next().value!);
      cache.set(key, result);
    }
    return result;
  };
}
