/**
 * Serves the web UI's files, dist/ui/ as bin/build-ui.mjs bundled them, from
 * the controller itself: no CDN, so the UI works offline. Only plain file
 * names found in that folder are served; anything else is a 404.
 */
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { packageRoot } from '../client/paths.js';
import { answer, type HttpServer } from '../http/server.js';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Everything from the controller's own origin; styles may be set inline (the chart library sizes its elements so). */
const CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

export function uiDir(): string {
  return join(packageRoot(), 'dist', 'ui');
}

/**
 * The folder is looked up on the first request, not at start: a controller bundled on its own, away from
 * the package, still runs; only its web UI is missing, and the page says why.
 */
export function mountUiAssets(http: HttpServer, dir?: string): void {
  let folder: { dir?: string; error?: string } | undefined = dir === undefined ? undefined : { dir };
  const locate = () => {
    try {
      return { dir: uiDir() };
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  http.route('/', async (_req, res, url) => {
    folder ??= locate();
    if (folder.error !== undefined) return answer(res, 404, `the web UI is not available: ${folder.error}`);
    const dir = folder.dir!;
    const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
    const type = CONTENT_TYPES[extname(name)];
    // One plain file name, listed in the folder: no path walks up or sideways.
    const files = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && type ? await readdir(dir).catch(() => [] as string[]) : [];
    if (!files.includes(name)) {
      if (name === 'index.html') return answer(res, 404, `the web UI is not built (no ${join(dir, 'index.html')}): run \`npm run build\``);
      return answer(res, 404, `nothing at ${url.pathname}`);
    }
    const body = await readFile(join(dir, name));
    res.writeHead(200, {
      'content-type': type!,
      'content-length': String(body.length),
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      ...(name.endsWith('.html') ? { 'content-security-policy': CSP, 'referrer-policy': 'no-referrer' } : {}),
    });
    res.end(body);
  });
}
