/** Glob matching on repo-relative paths (always "/"-separated). */
import picomatch from 'picomatch';

/** Never readable, listable with content, or sent to the LLM; no patch may touch them. */
export const DEFAULT_DENY = ['.env', '.env.*', '*.pem', '*.key', 'secrets/**', 'id_rsa*', '*.p12', '*.pfx'];

export type PathMatcher = (rel: string) => boolean;

/**
 * A pattern without "/" matches a file's name at any depth (".env" matches "bot/.env");
 * a pattern with "/" matches the path from the repo root; "dir/**" also matches "dir".
 */
export function globMatcher(patterns: readonly string[]): PathMatcher {
  if (patterns.length === 0) return () => false;
  const matchers = patterns.map((p) => {
    const pattern = p.replace(/\\/g, '/').replace(/^\.\//, '');
    const anyDepth = !pattern.replace(/\/\*\*$/, '').includes('/');
    return picomatch(anyDepth ? `**/${pattern}` : pattern, { dot: true });
  });
  return (rel) => {
    const p = toPosix(rel);
    return matchers.some((m) => m(p));
  };
}

export function toPosix(rel: string): string {
  return rel.replace(/\\/g, '/').replace(/^\.\//, '');
}

/** The task's scope bounded by the project's scope. Empty task scope: nothing is writable. */
export function scopeMatcher(taskScope: readonly string[], projectScope: readonly string[]): PathMatcher {
  if (taskScope.length === 0) return () => false;
  const inTask = anchoredMatcher(taskScope);
  const inProject = anchoredMatcher(projectScope);
  return (rel) => inTask(rel) && inProject(rel);
}

/** Scope globs are anchored at the repo root ("README.md", "bot/*.py", "bot/**"); "**" is everything. */
export function anchoredMatcher(patterns: readonly string[]): PathMatcher {
  const matchers = patterns.map((p) => picomatch(toPosix(p), { dot: true }));
  return (rel) => {
    const p = toPosix(rel);
    return matchers.some((m) => m(p));
  };
}

export function denyMatcher(extra: readonly string[]): PathMatcher {
  const deny = globMatcher([...DEFAULT_DENY, ...extra]);
  return (rel) => {
    const p = toPosix(rel);
    return p === '.git' || p.startsWith('.git/') || p.includes('/.git/') || deny(p);
  };
}
