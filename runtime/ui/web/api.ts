/**
 * What the UI reads from the controller (runtime/controller/uiApi.ts): the
 * status every second over Server-Sent Events, a computation's history, and a
 * live tail of its logs. Read-only: nothing here changes the topology.
 */
import type { ComputationStatus, HistoryEntry, StatusReply } from '../../../protocol/control.js';

export type { ComputationStatus, HistoryEntry, InstanceStatus, StatusReply, WorkerStatus } from '../../../protocol/control.js';

/** `streamsOutPerSec` may be missing (an older controller, nothing produced yet): a producer's outPerSec then stands for each of its streams. */
export type ComputationView = ComputationStatus;
export type StatusView = StatusReply;

export type Connection = 'connecting' | 'live' | 'lost';

/** Calls `onStatus` with each status the controller sends (every second), `onConnection` as the feed comes and goes; returns a stop function. */
export function followStatus(onStatus: (s: StatusView) => void, onConnection: (c: Connection) => void): () => void {
  const source = new EventSource('api/events');
  source.addEventListener('open', () => onConnection('live'));
  source.addEventListener('error', () => onConnection(source.readyState === EventSource.CLOSED ? 'lost' : 'connecting'));
  source.addEventListener('status', (e) => onStatus(JSON.parse((e as MessageEvent<string>).data) as StatusView));
  return () => source.close();
}

export type TimelineEntry = Omit<HistoryEntry, 'metadata'>;

export async function fetchHistory(name: string, signal?: AbortSignal): Promise<TimelineEntry[]> {
  const res = await fetch(`api/history/${encodeURIComponent(name)}`, signal ? { signal } : {});
  if (res.status === 404) return [];
  if (!res.ok) throw new Error(`history of ${name}: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { entries: TimelineEntry[] }).entries;
}

export interface LogLine {
  /** Instance index. */
  index: number;
  line: Record<string, unknown>;
}

/** A live tail of a computation's logs, its last stored lines first; `onOpen` on each (re)connection, which sends them again. */
export function followLogs(name: string, onLine: (l: LogLine) => void, onOpen: () => void): () => void {
  const source = new EventSource(`api/logs/${encodeURIComponent(name)}`);
  source.addEventListener('open', onOpen);
  source.addEventListener('log', (e) => onLine(JSON.parse((e as MessageEvent<string>).data) as LogLine));
  return () => source.close();
}

/** A dead letter as /api/dead-letters answers it (runtime/controller/uiApi.ts): value as cut-short JSON text. */
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

export async function fetchDeadLetters(name: string, signal?: AbortSignal): Promise<DeadLetterView[]> {
  const res = await fetch(`api/dead-letters/${encodeURIComponent(name)}`, signal ? { signal } : {});
  if (!res.ok) throw new Error(`dead letters of ${name}: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { deadLetters: DeadLetterView[] }).deadLetters;
}
