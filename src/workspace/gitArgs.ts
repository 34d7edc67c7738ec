/**
 * Every git call's arguments pass through here. On Windows git refuses paths past 260
 * characters unless `core.longpaths` is on, and a worktree under
 * `.meta-agent\worktrees\<run id>` of a deep repository passes that.
 */
let gitPlatform: NodeJS.Platform = process.platform;

/** Test hook: play another platform's git calls. */
export function setGitPlatform(platform: NodeJS.Platform): void {
  gitPlatform = platform;
}

/** `args` with `-c core.longpaths=true` in front on Windows. */
export function gitArgs(args: readonly string[], platform: NodeJS.Platform = gitPlatform): string[] {
  return platform === 'win32' ? ['-c', 'core.longpaths=true', ...args] : [...args];
}
