/**
 * `meta-agent schedule --print cron|systemd|windows`: the configured schedule for the
 * operating system's scheduler, for users who prefer it to a running `watch`. For Windows
 * the task files are XML files (taskXml.ts) the CLI writes beside the printed commands.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import { MetaAgentError } from '../contract/errors.ts';
import type { Settings } from '../workspace/config.ts';
import { PACKAGE_ROOT } from '../workspace/init.ts';
import { SERVICE_NODE_FLAGS } from '../workspace/launch.ts';
import type { ScheduleJob } from './schedule.ts';
import { taskXml, utf16le, windowsArg } from './taskXml.ts';

const BIN = path.join(PACKAGE_ROOT, 'bin', 'meta-agent.js');
const DOW = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

function superviseArgs(settings: Settings, job: ScheduleJob): string[] {
  return ['supervise', '--goal', job.goal, '--mode', job.mode, ...(job.project ? ['--project', job.project] : []), '--root', settings.layout.root];
}

const q = (s: string) => (/^[A-Za-z0-9_./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The 5-field form (node-cron also accepts a leading seconds field). */
function fiveFields(expression: string): string[] {
  const f = expression.trim().split(/\s+/);
  return f.length === 6 ? f.slice(1) : f;
}

/** minute hour and day-of-week of a simple daily/weekly expression, or null. */
function simpleTimes(expression: string): { minute: number; hour: number; days: number[] | null } | null {
  const [m, h, dom, mon, dow] = fiveFields(expression);
  if (!m || !h || !/^\d+$/.test(m) || !/^\d+$/.test(h) || dom !== '*' || mon !== '*') return null;
  if (dow === '*') return { minute: Number(m), hour: Number(h), days: null };
  const days = cron.parse(`0 0 * * ${dow}`).dayOfWeek.map((d) => Number(d) % 7);
  return { minute: Number(m), hour: Number(h), days: [...new Set(days)].sort() };
}

export function printSchedule(settings: Settings, kind: 'cron' | 'systemd' | 'windows'): string {
  const { schedule, timezone } = settings.config.supervisor;
  if (schedule.length === 0) throw new MetaAgentError('config', 'no jobs in supervisor.schedule', { file: 'meta-agent.yaml', field: 'supervisor.schedule' });
  const node = process.execPath;
  if (kind === 'cron') {
    return [
      `# meta-agent supervisor, times in ${timezone} (cronie/systemd-cron honour CRON_TZ; otherwise convert to the machine's zone)`,
      `CRON_TZ=${timezone}`,
      ...schedule.map(
        (job) =>
          `${fiveFields(job.cron).join(' ')} ${[node, BIN, ...superviseArgs(settings, job)].map(q).join(' ')} >> ${q(path.join(settings.layout.logs, 'cron.log'))} 2>&1`,
      ),
      '',
    ].join('\n');
  }
  if (kind === 'systemd') {
    const out: string[] = [
      '# ~/.config/systemd/user/meta-agent.service  (the service: watch runs the queue, the gate and this schedule)',
      '[Unit]',
      'Description=meta-agent folder queue',
      '',
      '[Service]',
      `WorkingDirectory=${settings.layout.root}`,
      `ExecStart=${[node, ...SERVICE_NODE_FLAGS, BIN].join(' ')} watch --root ${settings.layout.root}`,
      'Restart=on-failure',
      'KillSignal=SIGTERM',
      'TimeoutStopSec=60',
      '',
      '[Install]',
      'WantedBy=default.target',
      '',
      '# Enable: systemctl --user daemon-reload && systemctl --user enable --now meta-agent.service',
      '# Or, without a running watch, one timer per job:',
    ];
    for (const [i, job] of schedule.entries()) {
      const t = simpleTimes(job.cron);
      const onCalendar = t
        ? `${t.days ? `${t.days.map((d) => DOW[d]![0] + DOW[d]!.slice(1).toLowerCase()).join(',')} ` : ''}*-*-* ${String(t.hour).padStart(2, '0')}:${String(t.minute).padStart(2, '0')}:00 ${timezone}`
        : null;
      out.push(
        '',
        `# ~/.config/systemd/user/meta-agent-supervise-${i + 1}.service`,
        '[Service]',
        'Type=oneshot',
        `ExecStart=${[node, BIN, ...superviseArgs(settings, job)].join(' ')}`,
        '',
        `# ~/.config/systemd/user/meta-agent-supervise-${i + 1}.timer`,
        '[Timer]',
        onCalendar ? `OnCalendar=${onCalendar}` : `# "${job.cron}" has no simple OnCalendar form; write one by hand (man systemd.time)`,
        'Persistent=true',
        '',
        '[Install]',
        'WantedBy=timers.target',
      );
    }
    return `${out.join('\n')}\n`;
  }
  const out: string[] = [
    `# meta-agent supervisor for Windows Task Scheduler, one task per job. Times are the machine's local time; the config says ${timezone}.`,
  ];
  for (const task of scheduleTasks(settings)) {
    if (!task.xml) {
      out.push(`# ${task.name}: "${task.cron}" has no simple Task Scheduler trigger; create the task in Task Scheduler by hand`);
      continue;
    }
    out.push(`schtasks /Create /F /XML ${windowsArg(task.file)} /TN ${windowsArg(task.name)}`);
  }
  out.push(`# The task files (UTF-16 task XML) are in ${path.join(settings.layout.state, 'service')}.`);
  return `${out.join('\n')}\n`;
}

export interface ScheduleTask {
  name: string;
  cron: string;
  /** Where `schedule --print windows` writes the XML (as UTF-16 LE, see taskXml.ts). */
  file: string;
  /** Null when the cron expression has no simple trigger. */
  xml: string | null;
}

/** One Task Scheduler task per job of supervisor.schedule. */
export function scheduleTasks(settings: Settings): ScheduleTask[] {
  return settings.config.supervisor.schedule.map((job, i) => {
    const name = `meta-agent ${job.goal} ${i + 1}`;
    const file = path.join(settings.layout.state, 'service', `${name.replace(/[^A-Za-z0-9_.-]+/g, '-')}.xml`);
    const t = simpleTimes(job.cron);
    if (!t) return { name, cron: job.cron, file, xml: null };
    const time = `${String(t.hour).padStart(2, '0')}:${String(t.minute).padStart(2, '0')}`;
    const days = t.days
      ? `<ScheduleByWeek><WeeksInterval>1</WeeksInterval><DaysOfWeek>${t.days.map((d) => `<${DAY_NAMES[d]} />`).join('')}</DaysOfWeek></ScheduleByWeek>`
      : '<ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>';
    const xml = taskXml({
      description: `meta-agent supervisor: ${job.goal} (${job.cron}) in ${settings.layout.root}`,
      triggers: `    <CalendarTrigger><StartBoundary>2026-01-01T${time}:00</StartBoundary><Enabled>true</Enabled>${days}</CalendarTrigger>`,
      command: process.execPath,
      args: [BIN, ...superviseArgs(settings, job)],
      workingDirectory: settings.layout.root,
      user: null,
      whenLoggedOff: false,
      restartOnFailure: false,
      wakeToRun: true,
    });
    return { name, cron: job.cron, file, xml };
  });
}

/** Writes the task files `printSchedule(settings, 'windows')` names. */
export async function writeScheduleTasks(settings: Settings): Promise<void> {
  for (const task of scheduleTasks(settings)) {
    if (!task.xml) continue;
    await fs.mkdir(path.dirname(task.file), { recursive: true });
    await fs.writeFile(task.file, utf16le(task.xml));
  }
}
