/**
 * The `meta-agent` command's entry point: scripts/build.ts bundles this file into
 * dist/cli.js and bin/meta-agent.js runs it (or this file through tsx). The program is in cli/.
 */
export { main } from './cli/main.ts';
export { STOP_SIGNALS } from './cli/signals.ts';
