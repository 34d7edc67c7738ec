/** Glob matching on repo-relative paths (always "/"-separated). */
import picomatch from 'picomatch';

/**
 * Never readable, listable with content, or sent to the LLM; no patch may touch them.
 * Matched without regard to case (Windows and macOS file systems ignore it). A file whose
 * name merely contains "secret" or "credential" (bot/secret_sauce_strategy.py) is denied
 * too: a project lets it through with a negated entry in its deny list,
 * `deny: ["!bot/secret_sauce_strategy.py"]`. Private SSH keys are named one by one
 * (id_rsa*, id_ed25519*, ...), not as `id_*`, which would hide id_map.py.
 */
export const DEFAULT_DENY = [
  // environment files and secret stores
  '.env',
  '.env.*',
  '*.env',
  '.envrc',
  'secrets/**',
  '*secret*',
  '*secret*/**',
  '*credential*',
  '*credential*/**',
  '*service-account*.json',
  '*service_account*.json',
  '*serviceaccount*.json',
  '*.tfstate',
  '*.tfstate.*',
  // private keys, certificates with keys, key stores, password databases
  '*.pem',
  '*.key',
  '*.p12',
  '*.pfx',
  '*.keystore',
  '*.jks',
  '*.ppk',
  '*.kdbx',
  'id_rsa*',
  'id_dsa*',
  'id_ecdsa*',
  'id_ed25519*',
  '.ssh/**',
  // tools' credential files (tokens and passwords in plain text)
  '.netrc',
  '_netrc',
  '.npmrc',
  '.pypirc',
  '.pgpass',
  '.htpasswd',
  '.git-credentials',
  '.docker/config.json',
];

export type PathMatcher = (rel: string) => boolean;

/**
 * A pattern without "/" matches a file's name at any depth (".env" matches "bot/.env");
 * a pattern with "/" matches the path from the repo root; "dir/**" also matches "dir".
 */
export function globMatcher(patterns: readonly string[], options: { nocase?: boolean } = {}): PathMatcher {
  if (patterns.length === 0) return () => false;
  const matchers = patterns.map((p) => {
    const pattern = p.replace(/\\/g, '/').replace(/^\.\//, '');
    const anyDepth = !pattern.replace(/\/\*\*$/, '').includes('/');
    return picomatch(anyDepth ? `**/${pattern}` : pattern, { dot: true, nocase: options.nocase ?? false });
  });
  return (rel) => {
    const p = toPosix(rel);
    return matchers.some((m) => m(p));
  };
}

export function toPosix(rel: string): string {
  return rel.replace(/\\/g, '/').replace(/^\.\//, '');
}

/**
 * True where the file system ignores case by default (NTFS on Windows, APFS on macOS): there
 * `Bot/X.py` is the file `bot/x.py`, so path rules must match it too. The deny list ignores
 * case everywhere.
 */
export function caseInsensitiveFs(platform: NodeJS.Platform = process.platform): boolean {
  return platform === 'win32' || platform === 'darwin';
}

/** The task's scope bounded by the project's scope. Empty task scope: nothing is writable. */
export function scopeMatcher(taskScope: readonly string[], projectScope: readonly string[], platform: NodeJS.Platform = process.platform): PathMatcher {
  // One per scope, like denyMatcher: runs with the same scope share its answers (and the repo map built with it).
  const key = JSON.stringify([taskScope, projectScope, platform]);
  let matcher = scopeMatchers.get(key);
  if (!matcher) {
    matcher = remembering(buildScopeMatcher(taskScope, projectScope, platform));
    if (scopeMatchers.size >= 64) scopeMatchers.clear();
    scopeMatchers.set(key, matcher);
  }
  return matcher;
}

const scopeMatchers = new Map<string, PathMatcher>();

function buildScopeMatcher(taskScope: readonly string[], projectScope: readonly string[], platform: NodeJS.Platform): PathMatcher {
  if (taskScope.length === 0) return () => false;
  const nocase = caseInsensitiveFs(platform);
  const inTask = anchoredMatcher(taskScope, { nocase });
  const inProject = anchoredMatcher(projectScope, { nocase });
  return (rel) => inTask(rel) && inProject(rel);
}

/** Scope globs are anchored at the repo root ("README.md", "bot/*.py", "bot/**"); "**" is everything. */
export function anchoredMatcher(patterns: readonly string[], options: { nocase?: boolean } = {}): PathMatcher {
  const matchers = patterns.map((p) => picomatch(toPosix(p), { dot: true, nocase: options.nocase ?? false }));
  return (rel) => {
    const p = toPosix(rel);
    return matchers.some((m) => m(p));
  };
}

/**
 * The default deny list plus the project's `deny` and `patch.protected` entries. An entry
 * starting with "!" exempts the files it matches from the default list only (never from
 * .git/ nor from the project's own entries).
 */
export function denyMatcher(extra: readonly string[]): PathMatcher {
  const key = JSON.stringify(extra);
  let matcher = denyMatchers.get(key);
  if (!matcher) {
    matcher = remembering(buildDenyMatcher(extra));
    if (denyMatchers.size >= 16) denyMatchers.clear();
    denyMatchers.set(key, matcher);
  }
  return matcher;
}

/**
 * One matcher per deny list, remembering its answers: every run asks it about every file
 * of the repository (the history snapshot, the sandbox's masks, the repo map), and the
 * files change little from one run to the next.
 */
const denyMatchers = new Map<string, PathMatcher>();
const REMEMBERED_PATHS = 100_000;

function remembering(matcher: PathMatcher): PathMatcher {
  const answers = new Map<string, boolean>();
  return (rel) => {
    let answer = answers.get(rel);
    if (answer === undefined) {
      answer = matcher(rel);
      if (answers.size >= REMEMBERED_PATHS) answers.clear();
      answers.set(rel, answer);
    }
    return answer;
  };
}

function buildDenyMatcher(extra: readonly string[]): PathMatcher {
  const exempt = globMatcher(
    extra.filter((p) => p.startsWith('!')).map((p) => p.slice(1)),
    { nocase: true },
  );
  const byDefault = globMatcher(DEFAULT_DENY, { nocase: true });
  const byProject = globMatcher(
    extra.filter((p) => !p.startsWith('!')),
    { nocase: true },
  );
  return (rel) => {
    const p = toPosix(rel);
    const lower = p.toLowerCase();
    if (lower === '.git' || lower.startsWith('.git/') || lower.includes('/.git/')) return true;
    return byProject(p) || (byDefault(p) && !exempt(p));
  };
}
