/**
 * Windows Task Scheduler task definitions, for the service (`service install`) and the
 * supervisor's jobs (`schedule --print windows`): well-formed XML (every string escaped),
 * written as UTF-16 LE with a byte order mark, which is what its declaration says and what
 * `schtasks /Create /XML` reads.
 */

const TASK_NS = 'http://schemas.microsoft.com/windows/2004/02/mit/task';

/** Text for an XML element or attribute: `&`, `<`, `>`, quotes escaped. */
export function xmlText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** One argument of a Windows command line (CommandLineToArgvW's rules: quotes, and backslashes before a quote doubled). */
export function windowsArg(arg: string): string {
  if (arg && !/[\s"]/.test(arg)) return arg;
  return `"${arg.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}

export interface TaskXmlOptions {
  description: string;
  /** The <Triggers> content. */
  triggers: string;
  command: string;
  args: string[];
  workingDirectory: string;
  /** DOMAIN\user; the principal's user. */
  user: string | null;
  /** Run whether or not the user is logged on (S4U), else only while logged on. */
  whenLoggedOff: boolean;
  /** Restart every minute after a failure (the service); a scheduled job does not. */
  restartOnFailure: boolean;
  /** Wake the machine for the trigger (a night's job); default false. */
  wakeToRun?: boolean;
}

/**
 * A Task Scheduler task definition (schema 1.2, Windows 7 and later). The strings are
 * XML-escaped; settings left out take Task Scheduler's defaults, so the ones that stop a
 * long-running task are all written out.
 */
export function taskXml(o: TaskXmlOptions): string {
  const lines = [
    '<?xml version="1.0" encoding="UTF-16"?>',
    `<Task version="1.2" xmlns="${TASK_NS}">`,
    '  <RegistrationInfo>',
    `    <Description>${xmlText(o.description)}</Description>`,
    '  </RegistrationInfo>',
    '  <Triggers>',
    o.triggers,
    '  </Triggers>',
    '  <Principals>',
    '    <Principal id="Author">',
    ...(o.user ? [`      <UserId>${xmlText(o.user)}</UserId>`] : []),
    `      <LogonType>${o.whenLoggedOff ? 'S4U' : 'InteractiveToken'}</LogonType>`,
    '      <RunLevel>LeastPrivilege</RunLevel>',
    '    </Principal>',
    '  </Principals>',
    '  <Settings>',
    '    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>',
    '    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>',
    '    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>',
    '    <AllowHardTerminate>true</AllowHardTerminate>',
    '    <StartWhenAvailable>true</StartWhenAvailable>',
    '    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>',
    '    <IdleSettings>',
    '      <StopOnIdleEnd>false</StopOnIdleEnd>',
    '      <RestartOnIdle>false</RestartOnIdle>',
    '    </IdleSettings>',
    '    <AllowStartOnDemand>true</AllowStartOnDemand>',
    '    <Enabled>true</Enabled>',
    '    <Hidden>false</Hidden>',
    '    <RunOnlyIfIdle>false</RunOnlyIfIdle>',
    `    <WakeToRun>${o.wakeToRun === true}</WakeToRun>`,
    // PT0S: no limit (the default, PT72H, ends the service every three days).
    '    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>',
    '    <Priority>7</Priority>',
    ...(o.restartOnFailure ? ['    <RestartOnFailure>', '      <Interval>PT1M</Interval>', '      <Count>999</Count>', '    </RestartOnFailure>'] : []),
    '  </Settings>',
    '  <Actions Context="Author">',
    '    <Exec>',
    `      <Command>${xmlText(o.command)}</Command>`,
    `      <Arguments>${xmlText(o.args.map(windowsArg).join(' '))}</Arguments>`,
    `      <WorkingDirectory>${xmlText(o.workingDirectory)}</WorkingDirectory>`,
    '    </Exec>',
    '  </Actions>',
    '</Task>',
    '',
  ];
  return lines.join('\r\n');
}

/** The bytes schtasks reads: UTF-16 LE with its byte order mark, as the declaration says. */
export function utf16le(text: string): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
}
