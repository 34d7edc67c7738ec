/**
 * The real Codex CLI for tests, installed on demand from the npm registry into a cache folder
 * (never a dependency of the package) and reused while its version is the one the preset was
 * checked against. Only an unreachable registry makes a test skip (with a visible note); any
 * other install failure fails the test.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { CODEX_VERSION_CHECKED } from '../../src/engines/presets/index.ts';

export const CODEX_CACHE = process.env.META_AGENT_TEST_CODEX_CACHE || path.join(os.homedir(), '.cache', 'meta-agent-test', 'codex');
const BIN = (dir: string) => path.join(dir, 'node_modules', '.bin', process.platform === 'win32' ? 'codex.cmd' : 'codex');
const UNREACHABLE = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network request .* failed/i;

async function version(bin: string): Promise<string | null> {
  const result = await execa(bin, ['--version'], { reject: false, timeout: 30_000 });
  return result.exitCode === 0 ? String(result.stdout).trim() : null;
}

let pending: Promise<string | null> | undefined;

/** The path of the codex executable, or null (after a console note) when the npm registry cannot be reached. */
export function codexBinary(): Promise<string | null> {
  pending ??= install();
  return pending;
}

async function install(): Promise<string | null> {
  const bin = BIN(CODEX_CACHE);
  if ((await version(bin))?.endsWith(CODEX_VERSION_CHECKED)) return bin;
  // Installed beside the cache and renamed in, so two test processes never see half an install.
  const staging = `${CODEX_CACHE}.${process.pid}.tmp`;
  await fs.rm(staging, { recursive: true, force: true });
  await fs.mkdir(staging, { recursive: true });
  const result = await execa('npm', ['install', '--prefix', staging, '--no-audit', '--no-fund', '--loglevel=error', `@openai/codex@${CODEX_VERSION_CHECKED}`], {
    reject: false,
    all: true,
    timeout: 600_000,
  });
  if (result.exitCode !== 0) {
    await fs.rm(staging, { recursive: true, force: true });
    const output = String(result.all ?? result.message);
    if (UNREACHABLE.test(output)) {
      console.warn(
        `\n  NOTE: the npm registry is unreachable, so the tests with the real Codex CLI ${CODEX_VERSION_CHECKED} are SKIPPED (${output
          .split('\n')
          .find((l) => UNREACHABLE.test(l))
          ?.trim()})\n`,
      );
      return null;
    }
    throw new Error(`npm install @openai/codex@${CODEX_VERSION_CHECKED} failed: ${output.slice(-2000)}`);
  }
  await fs.rm(CODEX_CACHE, { recursive: true, force: true });
  await fs.mkdir(path.dirname(CODEX_CACHE), { recursive: true });
  await fs.rename(staging, CODEX_CACHE).catch(async (error) => {
    await fs.rm(staging, { recursive: true, force: true });
    if (!(await version(bin))) throw error;
  });
  const installed = await version(bin);
  if (!installed?.endsWith(CODEX_VERSION_CHECKED)) throw new Error(`codex --version after the install says ${installed ?? 'nothing'}`);
  return bin;
}

/** The installed Codex CLI, or null with a visible note (only when the npm registry is unreachable). */
export async function codexOrSkip(name: string): Promise<string | null> {
  const codex = await codexBinary();
  if (!codex) console.warn(`  SKIPPED (npm registry unreachable): ${name}`);
  return codex;
}

/** Closes a Codex test's scripted server and removes its workspace. */
export async function teardownCodexCase(c: { api: { close(): Promise<void> }; ws: { cleanup(): Promise<void> } } | undefined): Promise<void> {
  if (!c) return;
  await c.api.close();
  await c.ws.cleanup();
}
