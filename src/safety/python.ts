/**
 * Which Python runs on this machine: `python3`, else `python`, else the `py -3` launcher,
 * else the project's virtualenv (`.venv/Scripts/python.exe` on Windows, `.venv/bin/python`
 * elsewhere). Each candidate is run with `--version` and must answer "Python 3": being on
 * PATH is not enough, because Windows puts Store aliases `python.exe` and `python3.exe` on
 * PATH that only print "Python was not found" (python.org's installer makes `python` and
 * `py`, never `python3`). Used by `init` (the test command it writes), the doctor and the
 * built-in syntax check.
 */
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { findProgram } from './sandbox.ts';

export interface PythonCommand {
  /** The program as found (an absolute path). */
  file: string;
  /** Arguments before the script's own (`-3` for the py launcher). */
  pre: string[];
  /** How a config names it: `python3`, `python`, `py -3`, or the venv's path relative to the repository. */
  command: string;
  /** What `--version` said ("Python 3.12.1"). */
  version: string;
}

export interface FindPythonOptions {
  /** PATH (and PATHEXT on Windows) are searched. */
  env: Readonly<Record<string, string | undefined>>;
  /** The repository whose `.venv` is the last resort; none: no venv is tried. */
  repo?: string;
  platform?: NodeJS.Platform;
}

const VERSION_TIMEOUT_MS = 15_000;
const found = new Map<string, Promise<PythonCommand | null>>();

/** The venv's interpreter, relative to the repository, in the platform's layout. */
export function venvPython(platform: NodeJS.Platform = process.platform): string {
  return platform === 'win32' ? '.venv/Scripts/python.exe' : '.venv/bin/python';
}

/**
 * The first Python 3 that runs; null if none does. A find is cached per PATH, repository
 * and platform; a miss is not (Python installed later is found without a restart).
 */
export function findPython(options: FindPythonOptions): Promise<PythonCommand | null> {
  const platform = options.platform ?? process.platform;
  const key = JSON.stringify([options.env.PATH ?? '', options.env.PATHEXT ?? '', options.repo ?? '', platform]);
  let result = found.get(key);
  if (!result) {
    result = search(options, platform);
    found.set(key, result);
    void result.then((python) => {
      if (!python) found.delete(key);
    });
  }
  return result;
}

async function search(options: FindPythonOptions, platform: NodeJS.Platform): Promise<PythonCommand | null> {
  const searchPath = options.env.PATH ?? '';
  const candidates: Array<{ program: string; pre: string[]; command: string }> = [
    { program: 'python3', pre: [], command: 'python3' },
    { program: 'python', pre: [], command: 'python' },
    { program: 'py', pre: ['-3'], command: 'py -3' },
  ];
  if (options.repo) candidates.push({ program: path.join(options.repo, ...venvPython(platform).split('/')), pre: [], command: venvPython(platform) });
  for (const candidate of candidates) {
    const file = await findProgram(candidate.program, options.repo ?? os.tmpdir(), searchPath, options.env.PATHEXT, platform);
    if (!file) continue;
    const version = await pythonVersion(file, candidate.pre, options.env);
    if (version) return { file, pre: candidate.pre, command: candidate.command, version };
  }
  return null;
}

/** "Python 3.x.y" when `file pre --version` runs and says so; null otherwise (a Store alias, Python 2, a broken venv). */
export async function pythonVersion(file: string, pre: string[], env: Readonly<Record<string, string | undefined>>): Promise<string | null> {
  const result = await execa(file, [...pre, '--version'], {
    env: { ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: VERSION_TIMEOUT_MS,
    windowsHide: true,
  }).catch(() => null);
  if (result?.exitCode !== 0) return null;
  // Python 2 printed its version on stderr.
  const said = `${String(result.stdout ?? '')}\n${String(result.stderr ?? '')}`.trim();
  const version = /^Python 3\.\S+/m.exec(said)?.[0];
  return version ?? null;
}

/** Whether a check's program is a Python interpreter (what the doctor tries with --version). */
export function isPythonProgram(program: string): boolean {
  return /^(python(3(\.\d+)?)?|py)(\.exe)?$/i.test(path.basename(program.replace(/\\/g, '/')));
}
