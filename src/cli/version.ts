/** `meta-agent --version`: the version in the package's own package.json. */
import path from 'node:path';
import { z } from 'zod';
import { readJsonFileSync } from '../contract/readJson.ts';
import { PACKAGE_ROOT } from '../workspace/init.ts';

const PackageJson = z.object({ version: z.string().optional() });

/** "unknown" when package.json is missing or damaged: --version must not stop the command. */
export function packageVersion(): string {
  try {
    return readJsonFileSync(path.join(PACKAGE_ROOT, 'package.json'), PackageJson).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
