// The bundle's import specifier. import() takes a URL, not a path: on Windows
// `import('C:\\...\\dist\\cli.js')` fails (ERR_UNSUPPORTED_ESM_URL_SCHEME), and on any system
// a '#' or '%' in the install path would be read as a URL's fragment or escape.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** file:// URL of <root>/dist/cli.js, with the path rules of `platform`. */
export function bundleUrl(root, platform = process.platform) {
  const windows = platform === 'win32';
  const file = (windows ? path.win32 : path.posix).join(root, 'dist', 'cli.js');
  return pathToFileURL(file, { windows }).href;
}
