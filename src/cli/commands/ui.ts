/** `meta-agent ui`: the dashboard, until a stop signal. */
import type { Command } from 'commander';
import { startUi } from '../../ui/server.ts';
import { uiToken } from '../../ui/token.ts';
import type { CliContext } from '../context.ts';
import { untilStopSignal } from '../signals.ts';

export function registerUi(program: Command, cli: CliContext): void {
  program
    .command('ui')
    .description('the dashboard: a local web page over the same folders (prints its URL with the access token)')
    .option('--port <n>', 'port (default: ui.port in meta-agent.yaml, else a free one)')
    .option('--host <host>', 'address to listen on (default: ui.host, else 127.0.0.1; anything else exposes it to the network)')
    .option('--rotate-token', 'make a new access token (.meta-agent/ui-token): old bookmarks and open tabs stop working')
    .action(async (opts: { port?: string; host?: string; rotateToken?: boolean }) => {
      const { io } = cli;
      const settings = await cli.settings();
      const log = cli.makeLog(settings);
      const token = await uiToken(settings.layout, { rotate: opts.rotateToken === true });
      if (opts.rotateToken) io.out('made a new dashboard token; old bookmarks no longer work');
      const ui = await startUi({
        settings,
        log,
        token,
        port: opts.port ? Number(opts.port) : settings.config.ui.port,
        host: opts.host ?? settings.config.ui.host,
      });
      io.out(`dashboard: ${ui.url}`);
      await untilStopSignal(() => ui.close(), io, 'stopping the dashboard...');
    });
}
