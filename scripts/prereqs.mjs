#!/usr/bin/env node
/**
 * The one system package meta-agent needs besides Node, git and python3: bubblewrap (`bwrap`),
 * which runs test and dry-run commands without network and with the disk read-only (Linux only).
 * `npm test` and `npm start` run this first, so the README's two commands work on a fresh machine:
 *
 *   node scripts/prereqs.mjs test    installs bubblewrap when it can (root or passwordless sudo,
 *                                    with apt-get); otherwise prints what to install and exits 1.
 *                                    On Windows/macOS: nothing to do (the sandbox tests skip).
 *   node scripts/prereqs.mjs start   the same install, but never stops the service from starting:
 *                                    it says what is missing and `meta-agent watch` decides.
 *
 * Plain Node, no shell, no dependencies but `yaml` (to read `sandbox:` from meta-agent.yaml).
 * For tests of this script: META_AGENT_PREREQ_BWRAP=<file> is the bwrap to look for (instead of
 * `bwrap` on PATH); META_AGENT_PREREQ_NO_ROOT=1 acts as a user without root and without
 * passwordless sudo.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';

const README_SANDBOX = 'README.md#configuration-meta-agentyaml, the `sandbox:` line';
const purpose = process.argv[2];
if (purpose !== 'test' && purpose !== 'start') {
  console.error('usage: node scripts/prereqs.mjs test|start');
  process.exit(2);
}
const needed = purpose === 'test' ? 'needed by the sandbox tests' : 'needed to sandbox test and dry-run commands';
const say = (line) => console.log(`prereqs: ${line}`);

/** Ends the script: for `test` a missing prerequisite fails the command, for `start` it is left to `watch`. */
function missing(lines) {
  for (const line of lines) console.error(line);
  if (purpose === 'start') console.error(`  Or run checks unsandboxed, knowingly: \`sandbox: none\` in meta-agent.yaml (${README_SANDBOX}).`);
  process.exit(purpose === 'test' ? 1 : 0);
}

/** A file on PATH (or the override), or undefined. */
function findProgram(name) {
  const override = process.env.META_AGENT_PREREQ_BWRAP;
  if (name === 'bwrap' && override) return isExecutable(override) ? override : undefined;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `sandbox:` of the workspace's meta-agent.yaml ($META_AGENT_ROOT, else this folder), or 'auto'. */
async function configuredSandbox() {
  const file = path.join(process.env.META_AGENT_ROOT || process.cwd(), 'meta-agent.yaml');
  try {
    const { parse } = await import('yaml');
    const value = parse(readFileSync(file, 'utf8'))?.sandbox;
    return typeof value === 'string' ? value : 'auto';
  } catch {
    return 'auto'; // no or bad config: `watch` reports that itself
  }
}

/** How to run apt-get as root: [] when root, ['sudo', '-n'] with passwordless sudo, else undefined. */
function rootPrefix() {
  if (process.env.META_AGENT_PREREQ_NO_ROOT === '1') return undefined;
  if (process.getuid?.() === 0) return [];
  if (!findProgram('sudo')) return undefined;
  const probe = spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore', timeout: 10_000 });
  return probe.status === 0 ? ['sudo', '-n'] : undefined;
}

function run(argv, timeout) {
  const result = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? String(result.error) : ''}` };
}

/** apt-get install, and once more after apt-get update (a fresh machine's package lists may be stale or empty). */
function aptInstall(prefix, pkg = 'bubblewrap') {
  // Wait for a dpkg lock held by another apt run (unattended-upgrades on a fresh machine) instead of failing.
  const apt = [...prefix, 'apt-get', '-o', 'DPkg::Lock::Timeout=120', '-y', '-q'];
  const first = run([...apt, 'install', pkg], 600_000);
  if (first.ok) return first;
  const update = run([...apt, 'update'], 600_000);
  if (!update.ok) return update;
  return run([...apt, 'install', pkg], 600_000);
}

/**
 * The scale-out tests (test/scaleout.test.ts) start their own redis-server: installed like
 * bubblewrap, for `test` only (the folder host and workers use a Redis anywhere, not this machine's).
 */
function ensureRedisForTests() {
  if (purpose !== 'test' || process.platform !== 'linux' || findProgram('redis-server')) return;
  const prefix = findProgram('apt-get') ? rootPrefix() : undefined;
  if (!prefix)
    missing([
      'prereqs: redis-server is not installed; the scale-out tests need it.',
      '  Install it, then run the command again:',
      '    sudo apt-get install -y redis-server    # Debian, Ubuntu (the tests start their own; no service needed)',
    ]);
  say('installing redis-server (needed by the scale-out tests; they start their own, on a unix socket) ...');
  const result = aptInstall(prefix, 'redis-server');
  if (!result.ok || !findProgram('redis-server'))
    missing([
      'prereqs: installing redis-server failed:',
      ...result.output
        .trim()
        .split('\n')
        .slice(-8)
        .map((l) => `    ${l}`),
    ]);
  say(`installed ${findProgram('redis-server')}`);
}

const INSTALL_BY_HAND = [
  '  Install it, then run the command again:',
  '    sudo apt-get install -y bubblewrap    # Debian, Ubuntu',
  '    sudo dnf install -y bubblewrap        # Fedora, RHEL',
  '    sudo pacman -S bubblewrap             # Arch',
];

/** The sandbox flags meta-agent uses (src/repo/checks.ts): bwrap may be installed yet not allowed to create namespaces. */
function bwrapRuns(bwrap) {
  const result = spawnSync(bwrap, ['--ro-bind', '/', '/', '--dev', '/dev', '--unshare-net', '--die-with-parent', '--', 'true'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { ok: result.status === 0, why: (result.stderr || String(result.error ?? `exit ${result.status}`)).trim() };
}

async function main() {
  if (purpose === 'start' && (await configuredSandbox()) === 'none') return; // checks run unsandboxed by choice
  if (process.platform !== 'linux') {
    if (purpose === 'test') say(`bubblewrap is Linux-only: the bubblewrap sandbox test is skipped on ${process.platform}`);
    else
      console.error(
        `meta-agent: there is no sandbox for checks on ${process.platform} (bubblewrap is Linux-only): set \`sandbox: none\` in meta-agent.yaml ` +
          `to run test and dry-run commands unsandboxed, knowingly. See ${README_SANDBOX}`,
      );
    return;
  }
  let bwrap = findProgram('bwrap');
  if (!bwrap) {
    const prefix = findProgram('apt-get') ? rootPrefix() : undefined;
    if (!prefix) {
      const why = !findProgram('apt-get') ? 'there is no apt-get here' : 'this user is not root and has no passwordless sudo';
      missing([`prereqs: bubblewrap (bwrap) is not installed; it is ${needed}, and ${why} to install it.`, ...INSTALL_BY_HAND]);
    }
    say(`installing bubblewrap (${needed}) ...`);
    const result = aptInstall(prefix);
    bwrap = findProgram('bwrap');
    if (!result.ok || !bwrap) {
      const tail = result.output
        .trim()
        .split('\n')
        .slice(-8)
        .map((l) => `    ${l}`);
      missing([
        `prereqs: installing bubblewrap failed (${result.ok ? 'apt-get succeeded, but bwrap is still not found' : 'apt-get failed'}):`,
        ...tail,
        ...INSTALL_BY_HAND,
      ]);
    }
    say(`installed ${bwrap}`);
  }
  const check = bwrapRuns(bwrap);
  if (!check.ok) {
    missing([
      `prereqs: ${bwrap} is installed but cannot create its sandbox here: ${check.why}`,
      '  It needs unprivileged user namespaces: `sysctl kernel.unprivileged_userns_clone=1` (Debian),',
      '  or on Ubuntu 24.04+ an AppArmor profile allowing bwrap (`kernel.apparmor_restrict_unprivileged_userns=0`);',
      '  in a container, run it with --privileged or a seccomp profile that allows unshare.',
    ]);
  }
}

await main();
ensureRedisForTests();
