/**
 * `meta-agent service install|uninstall|status`: `watch` as the operating system's service,
 * so it starts with the machine (or the logon), restarts when it dies, and runs for months.
 *
 * Windows: a Task Scheduler task registered from an XML file (UTF-16 LE with BOM, as
 * schtasks wants it): no execution time limit (the default stops a task after 72 h), no
 * battery conditions (the default stops it on a laptop unplugged), restart on failure, at
 * logon, or with `whenLoggedOff` at boot whether or not the user is logged on (S4U: no
 * password stored; network shares are out of reach, the network is not).
 * Linux: a systemd user unit (~/.config/systemd/user/meta-agent.service, Restart=on-failure).
 *
 * Nothing here runs a program itself: the runner is injected (the CLI passes the real one,
 * tests a recorder), and `printService` shows what would be installed.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { MetaAgentError } from '../contract/errors.ts';
import type { Settings } from '../workspace/config.ts';
import { PACKAGE_ROOT } from '../workspace/init.ts';
import { SERVICE_NODE_FLAGS } from '../workspace/launch.ts';
import { taskXml, utf16le, windowsArg, xmlText } from '../supervisor/taskXml.ts';

export type ServiceKind = 'windows' | 'linux';

/** Runs a program (schtasks, systemctl) and returns what it said; never through a shell. */
export type ServiceRunner = (file: string, args: string[]) => Promise<{ exitCode: number; stdout: string; stderr: string }>;

export const realRunner: ServiceRunner = async (file, args) => {
  const r = await execa(file, args, { reject: false, stdin: 'inherit', windowsHide: true, timeout: 120_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? r.shortMessage ?? '') };
};

export interface ServiceOptions {
  /** Default: this machine's (win32 -> windows, linux -> linux; others are refused). */
  kind?: ServiceKind;
  /** The task's / unit's name (default "meta-agent"). */
  name?: string;
  /** Windows: run at boot, whether or not the user is logged on (S4U), not at logon. */
  whenLoggedOff?: boolean;
  /** The service's environment: the user (Windows: USERDOMAIN\USERNAME) and HOME. */
  env?: Readonly<Record<string, string | undefined>>;
  /** The node executable and the bin (default: this process's). */
  node?: string;
  bin?: string;
  runner?: ServiceRunner;
}

export const DEFAULT_NAME = 'meta-agent';
export const BIN = path.join(PACKAGE_ROOT, 'bin', 'meta-agent.js');

export function serviceKind(platform: NodeJS.Platform = process.platform): ServiceKind {
  if (platform === 'win32') return 'windows';
  if (platform === 'linux') return 'linux';
  throw new MetaAgentError(
    'input',
    `"service" is built for Windows (Task Scheduler) and Linux (a systemd user unit), not ${platform}; run "meta-agent watch" under your system's service manager`,
    { field: 'service' },
  );
}

function windowsUser(env: Readonly<Record<string, string | undefined>>): string | null {
  const user = env.USERNAME;
  if (!user) return null;
  return env.USERDOMAIN ? `${env.USERDOMAIN}\\${user}` : user;
}

/** The `watch` task: at logon (or at boot, logged on or not), restarted on failure, no time limit. */
export function watchTaskXml(settings: Settings, options: ServiceOptions = {}): string {
  const env = options.env ?? settings.env;
  const user = windowsUser(env);
  const whenLoggedOff = options.whenLoggedOff === true;
  const trigger = whenLoggedOff
    ? ['    <BootTrigger>', '      <Enabled>true</Enabled>', '    </BootTrigger>']
    : ['    <LogonTrigger>', '      <Enabled>true</Enabled>', ...(user ? [`      <UserId>${xmlText(user)}</UserId>`] : []), '    </LogonTrigger>'];
  return taskXml({
    description: `meta-agent watch: the folder queue of ${settings.layout.root}`,
    triggers: trigger.join('\r\n'),
    command: options.node ?? process.execPath,
    args: [...SERVICE_NODE_FLAGS, options.bin ?? BIN, 'watch', '--root', settings.layout.root],
    workingDirectory: settings.layout.root,
    user,
    whenLoggedOff,
    restartOnFailure: true,
  });
}

/** systemd's quoting for one word of ExecStart= (and `%` is a specifier: doubled). */
function systemdWord(word: string): string {
  const escaped = word.replace(/%/g, '%%');
  return /^[A-Za-z0-9_./:=@+,-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function unitPath(env: Readonly<Record<string, string | undefined>>, name = DEFAULT_NAME): string {
  const home = env.HOME ?? os.homedir();
  const config = env.XDG_CONFIG_HOME ?? path.join(home, '.config');
  return path.join(config, 'systemd', 'user', `${name}.service`);
}

/** The systemd user unit that runs `watch`. */
export function systemdUnit(settings: Settings, options: ServiceOptions = {}): string {
  const root = settings.layout.root;
  const grace = settings.config.queue.shutdown_grace_s;
  return [
    '[Unit]',
    `Description=meta-agent folder queue (${root.replace(/%/g, '%%')})`,
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `WorkingDirectory=${systemdWord(root)}`,
    // The API key and other variables: one NAME=value per line (optional file; chmod 600 it).
    'EnvironmentFile=-%h/.config/meta-agent/env',
    `ExecStart=${[options.node ?? process.execPath, ...SERVICE_NODE_FLAGS, options.bin ?? BIN, 'watch', '--root', root].map(systemdWord).join(' ')}`,
    'Restart=on-failure',
    'RestartSec=30',
    'KillSignal=SIGTERM',
    // The running work's grace period, then some room to write its records.
    `TimeoutStopSec=${grace + 30}`,
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

/** What `service install --print` shows: the definition and the commands that would install it. */
export function printService(settings: Settings, options: ServiceOptions = {}): string {
  const kind = options.kind ?? serviceKind();
  const name = options.name ?? DEFAULT_NAME;
  if (kind === 'windows') {
    const file = taskXmlPath(settings, name);
    return [
      watchTaskXml(settings, options).replace(/\r\n/g, '\n').trimEnd(),
      '',
      `The file is written as UTF-16 LE to ${file}, then: ${['schtasks', ...createArgs(file, name)].map(windowsArg).join(' ')}`,
      '',
    ].join('\n');
  }
  return [
    `# ${unitPath(options.env ?? settings.env, name)}`,
    systemdUnit(settings, options).trimEnd(),
    '',
    `# then: systemctl --user daemon-reload && systemctl --user enable --now ${name}.service`,
    '# to keep it running after you log out: loginctl enable-linger $USER',
    '',
  ].join('\n');
}

export function taskXmlPath(settings: Settings, name = DEFAULT_NAME): string {
  return path.join(settings.layout.state, 'service', `${name}.xml`);
}

function createArgs(file: string, name: string): string[] {
  return ['/Create', '/F', '/XML', file, '/TN', name];
}

async function must(runner: ServiceRunner, file: string, args: string[]): Promise<string> {
  const r = await runner(file, args);
  if (r.exitCode !== 0) {
    throw new MetaAgentError(
      'input',
      `${file} ${args.join(' ')} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim().split(/\r?\n/)[0]?.trim() ?? ''}`,
      { field: 'service' },
    );
  }
  return r.stdout;
}

/** Installs (or replaces) and starts the service; returns the lines to print. */
export async function installService(settings: Settings, options: ServiceOptions = {}): Promise<string[]> {
  const kind = options.kind ?? serviceKind();
  const name = options.name ?? DEFAULT_NAME;
  const runner = options.runner ?? realRunner;
  if (kind === 'windows') {
    const file = taskXmlPath(settings, name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, utf16le(watchTaskXml(settings, options)));
    await must(runner, 'schtasks', createArgs(file, name));
    await must(runner, 'schtasks', ['/Run', '/TN', name]);
    return [
      `installed the Task Scheduler task "${name}" (${options.whenLoggedOff ? 'at boot, whether or not you are logged on' : 'at your logon'}; restarts on failure; no time limit) from ${file}, and started it`,
      `status: meta-agent service status   stop: schtasks /End /TN ${windowsArg(name)}   remove: meta-agent service uninstall`,
    ];
  }
  const env = options.env ?? settings.env;
  const unit = unitPath(env, name);
  await fs.mkdir(path.dirname(unit), { recursive: true });
  await fs.writeFile(unit, systemdUnit(settings, options));
  await must(runner, 'systemctl', ['--user', 'daemon-reload']);
  await must(runner, 'systemctl', ['--user', 'enable', '--now', `${name}.service`]);
  return [
    `installed ${unit} and started it (restarts on failure)`,
    `status: meta-agent service status   logs: journalctl --user -u ${name}   to keep it running after you log out: loginctl enable-linger $USER`,
  ];
}

/** Stops and removes the service; returns the lines to print. */
export async function uninstallService(settings: Settings, options: ServiceOptions = {}): Promise<string[]> {
  const kind = options.kind ?? serviceKind();
  const name = options.name ?? DEFAULT_NAME;
  const runner = options.runner ?? realRunner;
  if (kind === 'windows') {
    // /End is a hard kill on Windows: crash recovery at the next start puts running tasks back.
    await runner('schtasks', ['/End', '/TN', name]);
    await must(runner, 'schtasks', ['/Delete', '/TN', name, '/F']);
    await fs.rm(taskXmlPath(settings, name), { force: true });
    return [`removed the Task Scheduler task "${name}"`];
  }
  const unit = unitPath(options.env ?? settings.env, name);
  await runner('systemctl', ['--user', 'disable', '--now', `${name}.service`]);
  await fs.rm(unit, { force: true });
  await must(runner, 'systemctl', ['--user', 'daemon-reload']);
  return [`stopped and removed ${unit}`];
}

/** What the OS says about the service (a stopped or missing one is an answer, not an error). */
export async function serviceStatus(_settings: Settings, options: ServiceOptions = {}): Promise<{ installed: boolean; text: string }> {
  const kind = options.kind ?? serviceKind();
  const name = options.name ?? DEFAULT_NAME;
  const runner = options.runner ?? realRunner;
  const r =
    kind === 'windows'
      ? await runner('schtasks', ['/Query', '/TN', name, '/V', '/FO', 'LIST'])
      : await runner('systemctl', ['--user', 'status', '--no-pager', `${name}.service`]);
  // systemctl status: 0 running, 3 stopped, 4 no such unit.
  const installed = kind === 'windows' ? r.exitCode === 0 : r.exitCode === 0 || r.exitCode === 3;
  const text = (r.stdout || r.stderr).trim();
  return { installed, text: installed ? text : `not installed (meta-agent service install)${text ? `: ${text.split('\n')[0]}` : ''}` };
}
