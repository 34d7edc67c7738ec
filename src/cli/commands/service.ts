/** `meta-agent service install|uninstall|status`: `watch` as this machine's service. */
import { Option, type Command } from 'commander';
import { MetaAgentError } from '../../contract/errors.ts';
import { installService, printService, serviceKind, serviceStatus, uninstallService, type ServiceKind } from '../../service/osService.ts';
import type { CliContext } from '../context.ts';

interface InstallOptions {
  print?: boolean;
  for?: ServiceKind;
  whenLoggedOff?: boolean;
  name: string;
}

export function registerService(program: Command, cli: CliContext): void {
  const service = program
    .command('service')
    .description('run "watch" as this machine\'s service: a Task Scheduler task on Windows, a systemd user unit on Linux');
  service
    .command('install')
    .description(
      'install (or replace) and start the service: it starts at logon (Windows) or with your user session (Linux), restarts on failure, has no time limit',
    )
    .option('--print', 'show the task XML / unit file and the commands, and install nothing')
    .addOption(new Option('--for <os>', 'with --print: show it for another system').choices(['windows', 'linux']))
    .option('--when-logged-off', 'Windows: start at boot and run whether or not you are logged on (no password stored; network shares are out of reach)')
    .option('--name <name>', 'the task / unit name', 'meta-agent')
    .action((opts: InstallOptions) => install(cli, opts));
  service
    .command('uninstall')
    .description('stop the service and remove it')
    .option('--name <name>', 'the task / unit name', 'meta-agent')
    .action(async (opts: { name: string }) => {
      const settings = await cli.settings();
      for (const line of await uninstallService(settings, { name: opts.name })) cli.io.out(line);
    });
  service
    .command('status')
    .description('what the system says about the service (exit 1 when it is not installed)')
    .option('--name <name>', 'the task / unit name', 'meta-agent')
    .action(async (opts: { name: string }) => {
      const settings = await cli.settings();
      const status = await serviceStatus(settings, { name: opts.name });
      cli.io.out(status.text);
      if (!status.installed) cli.exitCode = 1;
    });
}

async function install(cli: CliContext, opts: InstallOptions): Promise<void> {
  const settings = await cli.settings();
  const options = { name: opts.name, whenLoggedOff: Boolean(opts.whenLoggedOff), ...(opts.for ? { kind: opts.for } : {}) };
  if (opts.print) return cli.io.out(printService(settings, options).trimEnd());
  if (opts.for && opts.for !== serviceKind())
    throw new MetaAgentError('input', `--for ${opts.for} works only with --print (this is ${process.platform})`, { field: 'service install' });
  for (const line of await installService(settings, options)) cli.io.out(line);
}
