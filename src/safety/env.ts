/**
 * The environment of code an LLM wrote (checks, run_command, the doctor's probes): only
 * what the project allow-lists, plus what programs need to start at all.
 *
 * On Windows that is more than PATH: the system folders (SYSTEMROOT, WINDIR, PROGRAMFILES,
 * ...), COMSPEC and PATHEXT (subprocess and `.cmd` shims need them) come from the service,
 * as they are: they name machine folders, never a secret. The per-user folders (USERPROFILE,
 * APPDATA, LOCALAPPDATA) are where credentials live (git, gh, pip, npm), so they are never
 * passed on: given a private HOME they point into it (Python's `~` reads USERPROFILE),
 * without one they are left out. Windows' variable names are case-insensitive (`Path`):
 * they are looked up that way and passed under one spelling.
 */
import path from 'node:path';

const ALWAYS = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TERM', 'TEMP', 'TMP'];

/** Windows' machine-wide variables: folders and facts of the machine, not of the user. */
const WINDOWS_SYSTEM = [
  'SYSTEMROOT',
  'WINDIR',
  'SYSTEMDRIVE',
  'COMSPEC',
  'PATHEXT',
  'PROGRAMFILES',
  'PROGRAMFILES(X86)',
  'PROGRAMW6432',
  'COMMONPROGRAMFILES',
  'COMMONPROGRAMFILES(X86)',
  'PROGRAMDATA',
  'NUMBER_OF_PROCESSORS',
  'PROCESSOR_ARCHITECTURE',
  'OS',
];

export function scrubbedEnv(
  serviceEnv: Readonly<Record<string, string | undefined>>,
  allow: readonly string[],
  extra: Record<string, string> = {},
  platform: NodeJS.Platform = process.platform,
): Record<string, string> {
  const windows = platform === 'win32';
  const lookup = windows ? caseInsensitive(serviceEnv) : (name: string) => serviceEnv[name];
  const env: Record<string, string> = {};
  for (const name of [...ALWAYS, ...(windows ? WINDOWS_SYSTEM : []), ...allow]) {
    const value = lookup(name);
    if (value !== undefined) env[name] = value;
  }
  const privateHome = extra.HOME;
  const userFolders: Record<string, string> =
    windows && privateHome
      ? {
          USERPROFILE: privateHome,
          APPDATA: path.win32.join(privateHome, 'AppData', 'Roaming'),
          LOCALAPPDATA: path.win32.join(privateHome, 'AppData', 'Local'),
        }
      : {};
  // Keep the worktree clean of byte-code caches, make output readable, and let Python write
  // any character to a pipe (Windows' ANSI code page crashes `print` on an emoji); the
  // project's own setting (env_allow, a check's env) wins.
  return { PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', PYTHONUTF8: '1', ...env, ...userFolders, ...extra };
}

function caseInsensitive(env: Readonly<Record<string, string | undefined>>): (name: string) => string | undefined {
  const byUpper = new Map<string, string | undefined>();
  for (const [name, value] of Object.entries(env)) if (value !== undefined && !byUpper.has(name.toUpperCase())) byUpper.set(name.toUpperCase(), value);
  return (name) => env[name] ?? byUpper.get(name.toUpperCase());
}
