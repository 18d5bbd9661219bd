/**
 * What the controller serves over HTTP (runtime/http/server.ts): /metrics for
 * Prometheus, the web UI (uiAssets.ts) and its read-only API (uiApi.ts).
 */
import type { ControllerContext } from './context.js';
import { startHttpServer, type HttpListen, type HttpServer } from '../http/server.js';
import { topologyMetrics } from '../metrics/controllerMetrics.js';
import { mountUiApi } from './uiApi.js';
import { mountUiAssets } from './uiAssets.js';
import { loopbackOnly } from './uiHost.js';

export async function startControllerHttp(ctx: ControllerContext, listen: HttpListen): Promise<HttpServer> {
  const http = await startHttpServer(listen, ctx.log);
  const metrics = topologyMetrics(ctx);
  ctx.observeHistory = (entry) => metrics.observeHistory(entry);
  http.route('/metrics', async (_req, res) => {
    const { contentType, body } = await metrics.render();
    res.writeHead(200, { 'content-type': contentType });
    res.end(body);
  });
  // The UI's routes answer only requests naming this host (DNS rebinding, uiHost.ts).
  const ui: HttpServer = { ...http, route: (path, handler) => http.route(path, loopbackOnly(http.url, handler)) };
  mountUiAssets(ui);
  const api = mountUiApi(ui, ctx);
  return { ...http, close: async () => { api.close(); await http.close(); } };
}
