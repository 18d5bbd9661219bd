/**
 * Guards the UI's routes against DNS rebinding: a web page elsewhere whose
 * name is made to resolve to 127.0.0.1 could otherwise read the topology's
 * status and logs through the visitor's browser. A server bound to a loopback
 * address answers only requests naming a loopback host; one bound to another
 * address (TOPO_HTTP=0.0.0.0:PORT, chosen to be reached from elsewhere) answers any.
 */
import type { IncomingMessage } from 'node:http';
import { answer, type RouteHandler } from '../http/server.js';

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

function hostnameOf(host: string | undefined): string | undefined {
  if (!host) return undefined;
  try {
    return new URL(`http://${host}`).hostname;
  } catch {
    return undefined;
  }
}

export function allowsHost(serverUrl: string, req: IncomingMessage): boolean {
  const served = new URL(serverUrl).hostname;
  if (!LOOPBACK.test(served)) return true;
  const asked = hostnameOf(req.headers.host);
  return asked !== undefined && LOOPBACK.test(asked);
}

/** `handler`, answering 403 to a request whose Host header names another machine than a loopback server's. */
export function loopbackOnly(serverUrl: string, handler: RouteHandler): RouteHandler {
  return (req, res, url) => {
    if (!allowsHost(serverUrl, req)) return answer(res, 403, `this UI answers requests for ${new URL(serverUrl).host} only`);
    return handler(req, res, url);
  };
}
