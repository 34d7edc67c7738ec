/** The dashboard's page, script and style: server.ts serves them from beside itself, scripts/build.ts copies them beside the bundle. */
export const STATIC_FILES: readonly string[] = ['page.html', 'app.js', 'app.css'];
