/**
 * The controller's HTTP server: Prometheus metrics, the web UI and its read-only
 * API, on one local port. node:http is enough for a handful of GET routes; a
 * framework would add weight and nothing the routes need.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/** Handles one request whose path matched; throwing answers 500 with the message. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export interface HttpServer {
  /** http://host:port, with the port actually bound. */
  readonly url: string;
  /** Serves `path` (exact) or, ending in '/', everything under it; the longest match wins. */
  route(path: string, handler: RouteHandler): void;
  close(): Promise<void>;
}

export interface HttpListen {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** When `port` is taken, take a free one instead of failing. */
  fallbackToFreePort?: boolean;
}

/** Parses TOPO_HTTP: "off", "PORT", "HOST:PORT" or unset (a free local port). */
export function httpListenFrom(value: string | undefined): HttpListen | undefined {
  const v = value?.trim();
  if (v === 'off' || v === 'false') return undefined;
  if (!v) return { host: '127.0.0.1', port: 0 };
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65_535) throw new Error(`TOPO_HTTP must be "off", PORT or HOST:PORT, got ${JSON.stringify(v.slice(0, 100))}`);
  return { host: m[1] ?? '127.0.0.1', port, fallbackToFreePort: true };
}

export async function startHttpServer(listen: HttpListen, log: Logger): Promise<HttpServer> {
  const routes = new Map<string, RouteHandler>();
  const server = createServer((req, res) => void serve(req, res));

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://local');
    } catch {
      return answer(res, 400, 'bad request URL');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'only GET and HEAD are served', { allow: 'GET, HEAD' });
    const handler = match(routes, url.pathname);
    if (!handler) return answer(res, 404, `nothing at ${url.pathname}`);
    try {
      await handler(req, res, url);
    } catch (err) {
      log.warn({ err, path: url.pathname }, `HTTP ${url.pathname} failed: ${(err as Error).message}`);
      if (!res.headersSent) answer(res, 500, (err as Error).message);
      else res.destroy();
    }
  }

  const port = await bind(server, listen).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EADDRINUSE' || !listen.fallbackToFreePort || listen.port === 0) throw err;
    log.warn(`HTTP port ${listen.port} is taken; serving on a free port instead`);
    return bind(server, { ...listen, port: 0 });
  });
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}`,
    route: (path, handler) => void routes.set(path, handler),
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function bind(server: Server, listen: HttpListen): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(listen.port, listen.host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function match(routes: Map<string, RouteHandler>, path: string): RouteHandler | undefined {
  const exact = routes.get(path);
  if (exact) return exact;
  let best: string | undefined;
  for (const p of routes.keys()) if (p.endsWith('/') && path.startsWith(p) && (!best || p.length > best.length)) best = p;
  return best === undefined ? undefined : routes.get(best);
}

export function answer(res: ServerResponse, code: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', ...headers });
  res.end(`${text}\n`);
}
