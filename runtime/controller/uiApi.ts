/**
 * The web UI's read-only API on the controller's HTTP server (web.ts):
 *
 *   GET /api/status          the status reply (what `topo status --json` shows)
 *   GET /api/history/<name>  a computation's history, newest last (what `topo history` shows)
 *   GET /api/dead-letters/<name>  its latest dead letters, newest last, values cut short
 *   GET /api/events          Server-Sent Events: `status` every second
 *   GET /api/logs/<name>     Server-Sent Events: its last stored log lines, then new ones as they come
 *
 * Nothing here changes the topology. Every stream is bounded: the number of
 * event clients is capped, and a client that does not keep up is skipped
 * (status: the next one will do) or waited for (logs: they stay in the
 * stream), rather than buffered for.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { jetstream, jetstreamManager, DeliverPolicy, type Consumer } from '@nats-io/jetstream';
import { NAME_PATTERN, jsStreams, packr, subjects, type DeadLetter, type HistoryEntry } from '../../protocol/index.js';
import type { ControllerContext } from './context.js';
import { status } from './status.js';
import { answer, type HttpServer } from '../http/server.js';

export const UI_LIMITS = {
  /** Browsers subscribed to /api/events at once. */
  statusClients: 32,
  /** Log tails open at once (each holds a JetStream consumer). */
  logClients: 8,
  /** Stored log lines sent first when a tail opens. */
  logBacklog: 100,
  /** History entries answered (the newest). */
  historyEntries: 200,
  /** Dead letters answered (the newest), found among the last deadLetterScan messages of TOPO_DLQ before the newest of the computation. */
  deadLetters: 20,
  deadLetterScan: 5_000,
  /** Characters of a dead letter's value and error shown. */
  deadLetterText: 500,
  statusEveryMs: 1_000,
} as const;

const textDecoder = new TextDecoder();

export function mountUiApi(http: HttpServer, ctx: ControllerContext): { close(): void } {
  const feed = new StatusFeed(ctx);
  const logTails = new Set<ServerResponse>();

  http.route('/api/status', (_req, res) => json(res, 200, status(ctx)));
  http.route('/api/events', (req, res) => feed.join(req, res));
  http.route('/api/history/', async (_req, res, url) => {
    const name = nameIn(url.pathname, '/api/history/');
    if (name === undefined) return answer(res, 404, 'no such computation name (names are letters, digits, "_" and "-")');
    const entries = await ctx.store.history(name);
    if (entries.length === 0) return answer(res, 404, `no history for ${name}: it was never deployed`);
    json(res, 200, { name, entries: entries.slice(-UI_LIMITS.historyEntries).map(forUi) });
  });
  http.route('/api/dead-letters/', async (_req, res, url) => {
    const name = nameIn(url.pathname, '/api/dead-letters/');
    if (name === undefined) return answer(res, 404, 'no such computation name (names are letters, digits, "_" and "-")');
    if (!ctx.store.get(name) && (await ctx.store.history(name)).length === 0) return answer(res, 404, `${name} was never deployed`);
    json(res, 200, { name, deadLetters: await latestDeadLetters(ctx, name) });
  });
  http.route('/api/logs/', async (req, res, url) => {
    const name = nameIn(url.pathname, '/api/logs/');
    if (name === undefined) return answer(res, 404, 'no such computation name (names are letters, digits, "_" and "-")');
    if (!ctx.store.get(name) && (await ctx.store.history(name)).length === 0) return answer(res, 404, `${name} was never deployed`);
    if (logTails.size >= UI_LIMITS.logClients) return answer(res, 503, `too many log tails open (${UI_LIMITS.logClients}); close one`);
    logTails.add(res);
    try {
      await tailLogs(ctx, name, req, res);
    } finally {
      logTails.delete(res);
    }
  });
  return { close: () => feed.close() };
}

/** The name after `prefix`, when it is one path segment that can be a computation name. */
function nameIn(path: string, prefix: string): string | undefined {
  let name: string;
  try {
    name = decodeURIComponent(path.slice(prefix.length));
  } catch {
    return undefined;
  }
  return NAME_PATTERN.test(name) ? name : undefined;
}

/** A history entry without the metadata a rollback needs and the UI does not. */
function forUi(e: HistoryEntry): Omit<HistoryEntry, 'metadata'> {
  const { metadata: _metadata, ...rest } = e;
  return rest;
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function startEvents(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write('retry: 2000\n\n');
}

function event(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

/** One status every second for every subscribed browser, computed once per tick, and only while someone listens. */
class StatusFeed {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: ControllerContext) {}

  join(req: IncomingMessage, res: ServerResponse): void {
    if (this.clients.size >= UI_LIMITS.statusClients) return answer(res, 503, `too many UI clients (${UI_LIMITS.statusClients})`);
    startEvents(res);
    res.write(event('status', JSON.stringify(status(this.ctx))));
    this.clients.add(res);
    this.timer ??= setInterval(() => this.tick(), UI_LIMITS.statusEveryMs);
    req.once('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stop();
    });
  }

  private tick(): void {
    let data: string;
    try {
      data = event('status', JSON.stringify(status(this.ctx)));
    } catch (err) {
      this.ctx.log.warn({ err }, `UI status feed: ${(err as Error).message}`);
      return;
    }
    // A client whose socket buffer is still full gets the next status instead: only the latest matters.
    for (const res of this.clients) if (!res.writableNeedDrain) res.write(data);
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.stop();
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}

/**
 * Streams a computation's log lines from TOPO_LOGS (every instance's subject) to one browser: the last
 * UI_LIMITS.logBacklog stored ones, then new ones until the browser goes away. A browser that reads slowly
 * makes the tail wait (the consumer's own buffer is bounded, the rest stays in the stream), not the
 * controller buffer for it.
 */
async function tailLogs(ctx: ControllerContext, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let closed = false;
  const gone = new Promise<void>((resolve) => req.once('close', () => { closed = true; resolve(); }));
  const consumer: Consumer = await jetstream(ctx.nc).consumers.get(jsStreams.logs, {
    filter_subjects: subjects.logAll(name), deliver_policy: DeliverPolicy.All,
  });
  try {
    let skip = Math.max(0, (await consumer.info(true)).num_pending - UI_LIMITS.logBacklog);
    startEvents(res);
    const messages = await consumer.consume({ max_messages: 256 });
    void gone.then(() => messages.stop());
    for await (const m of messages) {
      if (closed) break;
      if (skip > 0) {
        skip--;
        continue;
      }
      const index = Number(m.subject.slice(m.subject.lastIndexOf('.') + 1));
      if (!res.write(event('log', JSON.stringify({ index, line: logLine(m.data) })))) {
        await Promise.race([new Promise((resolve) => res.once('drain', resolve)), gone]);
      }
    }
  } finally {
    await consumer.delete().catch(() => undefined); // an ordered consumer also expires on its own
    res.end();
  }
}

/** The pino JSON object of a log line; a line that is not a JSON object comes as `{ msg: <text> }`. */
function logLine(data: Uint8Array): Record<string, unknown> {
  const text = textDecoder.decode(data);
  try {
    const v: unknown = JSON.parse(text);
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // not JSON: shown as text
  }
  return { msg: text };
}

/** A dead letter as the UI shows it: the value as cut-short JSON text, raw bytes only counted. */
export interface DeadLetterView {
  seq: number;
  instanceId: string;
  stream: string;
  reason: string;
  error: string;
  at: number;
  key?: string;
  value?: string;
  rawBytes?: number;
}

/**
 * The newest UI_LIMITS.deadLetters dead letters of `name`, oldest first. They are looked for among the
 * UI_LIMITS.deadLetterScan messages of TOPO_DLQ up to its newest one, so the work is bounded however many
 * the stream holds (older ones: `topo tap --dead-letters`).
 */
async function latestDeadLetters(ctx: ControllerContext, name: string): Promise<DeadLetterView[]> {
  const subject = subjects.deadLetter(name);
  const jsm = await jetstreamManager(ctx.nc);
  const newest = await jsm.streams.getMessage(jsStreams.deadLetters, { last_by_subj: subject }).catch(() => null);
  if (!newest) return [];
  const consumer = await jetstream(ctx.nc).consumers.get(jsStreams.deadLetters, {
    filter_subjects: subject, opt_start_seq: Math.max(1, newest.seq - UI_LIMITS.deadLetterScan),
  });
  const found: DeadLetterView[] = [];
  try {
    let pending = (await consumer.info(true)).num_pending;
    if (pending === 0) return [];
    const messages = await consumer.consume({ max_messages: 256 });
    for await (const m of messages) {
      const view = deadLetterView(m.seq, m.data);
      if (view) found.push(view);
      if (found.length > UI_LIMITS.deadLetters) found.shift();
      if (--pending <= 0 || m.seq >= newest.seq) break;
    }
    messages.stop();
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return found;
}

function cut(text: string): string {
  return text.length > UI_LIMITS.deadLetterText ? `${text.slice(0, UI_LIMITS.deadLetterText)}…` : text;
}

function deadLetterView(seq: number, data: Uint8Array): DeadLetterView | undefined {
  let d: Partial<DeadLetter>;
  try {
    d = packr.unpack(data) as Partial<DeadLetter>;
  } catch {
    return undefined;
  }
  if (d === null || typeof d !== 'object' || typeof d.reason !== 'string') return undefined;
  let value: string | undefined;
  if (d.record) {
    try {
      value = cut(JSON.stringify(d.record.value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'undefined');
    } catch (err) {
      value = `(not shown: ${(err as Error).message})`;
    }
  }
  return {
    seq, instanceId: String(d.instanceId ?? ''), stream: String(d.stream ?? ''), reason: cut(d.reason), error: cut(String(d.error ?? '')),
    at: typeof d.at === 'number' ? d.at : 0,
    ...(d.record ? { key: cut(String(d.record.key)), ...(value !== undefined ? { value } : {}) } : {}),
    ...(d.raw instanceof Uint8Array ? { rawBytes: d.raw.length } : {}),
  };
}
