/** Test-only fault injection, switched on by environment variables (the soak and crash tests set them). */
import { existsSync } from 'node:fs';
import { injectFileFault } from '../workspace/files.ts';
import { installClockSkew, overrideHostName, setFaultPoints } from '../workspace/faults.ts';

/**
 * Fault injection for the soak test: while the file named by META_AGENT_FAULT_ENOSPC exists,
 * every file write of the pipeline fails with ENOSPC, as on a full disk.
 */
export function installFaultHooks(env: NodeJS.ProcessEnv): void {
  // Test-only: kill -9 at a named point, and a host name that plays another machine (faults.ts).
  setFaultPoints(env.META_AGENT_FAULT);
  overrideHostName(env.META_AGENT_FAULT_HOSTNAME);
  installClockSkew(env.META_AGENT_FAULT_CLOCK_SKEW_FILE);
  const flag = env.META_AGENT_FAULT_ENOSPC;
  if (!flag) return;
  injectFileFault((file) => {
    if (existsSync(flag)) throw Object.assign(new Error(`ENOSPC: no space left on device, write '${file}'`), { code: 'ENOSPC', path: file });
  });
}
