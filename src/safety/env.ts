/** The environment of code an LLM wrote: only what the project allow-lists. */
const ALWAYS = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TERM', 'SYSTEMROOT', 'WINDIR', 'COMSPEC', 'PATHEXT', 'TEMP', 'TMP'];

export function scrubbedEnv(
  serviceEnv: Readonly<Record<string, string | undefined>>,
  allow: readonly string[],
  extra: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...ALWAYS, ...allow]) {
    const value = serviceEnv[name];
    if (value !== undefined) env[name] = value;
  }
  // Keep the worktree clean of byte-code caches and make output readable.
  return { PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', ...env, ...extra };
}
