/** Human-readable rendering of status, records, dead letters and log lines (swaps: swapFormat.ts). */
import { PARTITIONS, type ComputationRecord, type ProcessStatus, type StatusReply } from '../../protocol/index.js';
import { isTraceId } from '../../protocol/trace.js';
import type { CanarySummary, ComputationStatusView, DeadLetterEntry, LogEntry, StatusView, TapRecord } from '../client/index.js';

/** JSON.stringify that survives what msgpack can carry: bytes, bigints, maps. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Uint8Array) return { base64: Buffer.from(v).toString('base64') };
    if (v instanceof Map) return Object.fromEntries(v);
    if (v instanceof Set) return [...v];
    return v;
  });
}

function clip(s: string, max = 160): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export function clock(ms: unknown): string {
  const d = new Date(typeof ms === 'number' ? ms : typeof ms === 'string' ? Date.parse(ms) : Date.now());
  if (Number.isNaN(d.getTime())) return '--:--:--.---';
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}:${String(d.getSeconds()).padStart(2, '0')}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** Left-aligned columns; the header row is the first row. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n');
}

/** "0, 2, 4 (3 of 32 partitions)" */
export function partitionList(partitions: number[]): string {
  return `${[...partitions].sort((a, b) => a - b).join(', ')} (${partitions.length} of ${PARTITIONS} partitions)`;
}

/** One line about a canary running beside its computation's current version. */
export function canaryDetail(name: string, c: CanarySummary): string {
  const where = [...c.placements].sort((a, b) => a.index - b.index).map((p) => `${p.index}@${p.workerId}`).join(', ');
  return `${name} canary v${c.version} (sha ${c.sha.slice(0, 12)}) on ${c.percent}% of the keys: partitions ${partitionList(c.partitions)}${where ? `; instances ${where}` : ''}`;
}

function rate(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

function ago(ms: number, now: number): string {
  const s = Math.max(0, now - ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/** The stream graph: for every stream, who produces it and who consumes it (with grouping). */
export function streamEdges(status: StatusReply): string[] {
  const producers = new Map<string, string[]>();
  const consumers = new Map<string, string[]>();
  const add = (m: Map<string, string[]>, k: string, v: string): void => void (m.get(k) ?? m.set(k, []).get(k))?.push(v);
  for (const c of status.computations) {
    for (const s of c.ostreams) add(producers, s, c.name);
    for (const s of c.istreams) add(consumers, s.stream, `${c.name} (${s.grouping})`);
  }
  // Bridges (producers and consumer groups outside the controller), marked as such.
  for (const p of status.bridges?.producers ?? []) for (const s of p.streams) add(producers, s, `bridge:${p.id}`);
  for (const g of new Map((status.bridges?.consumers ?? []).map((c) => [c.group, c])).values()) add(consumers, g.stream, `${g.group} (bridge, ${g.grouping})`);
  const streams = [...new Set([...producers.keys(), ...consumers.keys()])].sort();
  const alo = new Set(status.computations.flatMap((c) => c.atLeastOnce ?? []));
  return streams.map((s) => `${s}${alo.has(s) ? ' [at-least-once]' : ''}: ${(producers.get(s) ?? ['(no producer)']).join(', ')} -> ${(consumers.get(s) ?? ['(no consumer)']).join(', ')}`);
}

export function renderStatus(status: StatusView, now = Date.now()): string {
  const out: string[] = [];
  if (status.natsUrl) out.push(`NATS ${status.natsUrl}${status.httpUrl ? `   web UI ${status.httpUrl}/   metrics ${status.httpUrl}/metrics` : ''}`, '');
  out.push('COMPUTATIONS');
  if (status.computations.length === 0) {
    out.push('  (none deployed: `topo deploy <file>`)');
  } else {
    const computations: ComputationStatusView[] = [...status.computations].sort((a, b) => a.name.localeCompare(b.name));
    // The CANARY column only appears while some computation runs one.
    const canaries = computations.some((c) => c.canary);
    const fused = computations.some((c) => c.group);
    const rows = [['NAME', 'VER', ...(canaries ? ['CANARY'] : []), ...(fused ? ['GROUP'] : []), 'SHA', 'N', 'IN/S', 'OUT/S', 'ERRORS', 'DLQ', 'INSTANCES (index@worker state)']];
    for (const c of computations) {
      const inst = [...c.instances]
        .sort((a, b) => a.index - b.index)
        .map((i) => `${i.index}@${i.workerId} ${i.state}${i.version !== c.version ? ` v${i.version}` : ''}`)
        .join(', ');
      const canary = canaries ? [c.canary ? `v${c.canary.version} on ${c.canary.percent}%` : '-'] : [];
      const group = fused ? [c.group ?? '-'] : [];
      rows.push([c.name, String(c.version), ...canary, ...group, c.sha.slice(0, 12), String(c.instances.length), rate(c.inPerSec), rate(c.outPerSec), String(c.errors), String(c.deadLetters), inst || '(not placed)']);
    }
    out.push(...table(rows).split('\n').map((l) => `  ${l}`));
    const groups = status.fusion ?? [];
    if (groups.length) {
      out.push('', 'FUSION GROUPS (instance i of each member in one process, direct calls between them; `topo split <name>` separates)');
      for (const g of groups) out.push(`  ${g.group}: ${g.members.join(' -> ')}`);
    }
    const canaryLines = computations.flatMap((c) => (c.canary ? [`  ${canaryDetail(c.name, c.canary)}`] : []));
    if (canaryLines.length) out.push('', ...canaryLines);
    const failing = status.computations.flatMap((c) => c.instances.filter((i) => i.lastError).map((i) => `  ${c.name}[${i.index}] last error: ${clip(i.lastError ?? '', 200)}`));
    if (failing.length) out.push('', ...failing);
    const incidents = status.computations.flatMap((c) => [
      ...(c.coolDown ? [`  ${c.name} COOL-DOWN until ${clock(c.coolDown.until)}: ${c.coolDown.failures} failures within ${Math.round(c.coolDown.windowMs / 1000)} s (last: ${clip(c.coolDown.reason, 160)}); its instances are not re-placed meanwhile`] : []),
      ...(c.lastRecovery ? [`  ${c.name}: last restarted after its worker died at ${new Date(c.lastRecovery.at).toISOString().slice(11, 19)}, running again ${c.lastRecovery.ms} ms after the worker's last heartbeat`] : []),
      ...(c.permissionDenied ? [`  ${c.name}: ${c.permissionDenied} publish(es) or subscription(s) refused by NATS to its instances' users (outside its declared streams; \`topo logs ${c.name}\` names them)`] : []),
      ...(c.duplicates ? [`  ${c.name}: ${c.duplicates} duplicate record(s) of at-least-once input skipped (delivered again after a restart)`] : []),
      ...(c.lostSinceCheckpoint ? [`  ${c.name}: ${c.lostSinceCheckpoint} record(s) processed since the last checkpoint were lost with worker(s) that died (at-most-once input; declare its istreams at-least-once to replay them)`] : []),
      ...(c.stuckCount ? [`  ${c.name} stuck ${c.stuckCount} time${c.stuckCount === 1 ? '' : 's'} in a synchronous callback: each time its worker was restarted and the keyed state held in memory by that worker's instances was lost`] : []),
    ]);
    if (incidents.length) out.push('', ...incidents);
  }
  if (status.stuck?.recent.length) {
    out.push('', `STUCK (${status.stuck.total} report${status.stuck.total === 1 ? '' : 's'}, newest last)`);
    for (const r of status.stuck.recent.slice(-5)) {
      out.push(`  ${clock(r.at)}  ${r.workerId} pid ${r.pid}: ${r.callback ?? 'event loop'}${r.computation ? ` of ${r.computation} (${r.instanceId})` : ''} blocked for ${r.forMs} ms; worker restarted, in-memory keyed state of its instances lost`);
    }
  }
  out.push('', 'STREAMS');
  const edges = streamEdges(status);
  out.push(...(edges.length ? edges.map((e) => `  ${e}`) : ['  (none)']));
  out.push('', 'WORKERS');
  if (status.workers.length === 0) {
    out.push('  (none: start some with `topo up`)');
  } else {
    const rows = [['ID', 'ALIVE', 'LAST SEEN', 'INSTANCES', 'PID', 'HOST', 'LANG']];
    for (const w of [...status.workers].sort((a, b) => a.workerId.localeCompare(b.workerId, undefined, { numeric: true }))) {
      rows.push([w.workerId, w.alive ? 'yes' : 'NO', ago(w.lastSeen, now), String(w.instances), String(w.pid), w.host, w.lang]);
    }
    out.push(...table(rows).split('\n').map((l) => `  ${l}`));
  }
  if (status.bridges && (status.bridges.producers.length || status.bridges.consumers.length)) out.push('', ...renderBridges(status.bridges, now));
  if (status.processes?.length) out.push('', ...renderProcesses(status.processes, now));
  return out.join('\n') + '\n';
}

/** Registered producers and consumers outside the controller (bridges). */
export function renderBridges(bridges: NonNullable<StatusReply['bridges']>, now = Date.now()): string[] {
  const out = ['BRIDGES (producers and consumers outside the controller)'];
  const where = (b: { host?: string; pid?: number; lang?: string }): string => [b.lang, b.host, b.pid !== undefined ? `pid ${b.pid}` : undefined].filter(Boolean).join(' ') || '-';
  if (bridges.producers.length) {
    const rows = [['PRODUCER', 'STREAMS', 'LAST SEEN', 'PUBLISHED', 'PENDING', 'DEBT', 'STATE', 'WHERE']];
    for (const p of bridges.producers) {
      rows.push([p.id, p.streams.join(', '), ago(p.lastSeen, now), String(p.stats?.records ?? '-'), String(p.stats?.pending ?? '-'), String(p.stats?.debt ?? '-'), p.stats?.paused ? 'paused' : 'running', where(p)]);
    }
    out.push(...table(rows).split('\n').map((l) => `  ${l}`));
  }
  if (bridges.consumers.length) {
    const rows = [['CONSUMER', 'GROUP', 'STREAM', 'GROUPING', 'LAST SEEN', 'RECEIVED', 'CREDITED', 'WHERE']];
    for (const c of bridges.consumers) {
      rows.push([c.id, c.creditGroup, c.stream, c.grouping, ago(c.lastSeen, now), String(c.stats?.records ?? '-'), String(c.stats?.credited ?? '-'), where(c)]);
    }
    out.push(...table(rows).split('\n').map((l) => `  ${l}`));
  }
  return out;
}

/** The supervisor's table: one row per process of the local topology. */
export function renderProcesses(processes: ProcessStatus[], now = Date.now()): string[] {
  const out = ['PROCESSES (supervised)'];
  const rows = [['NAME', 'PID', 'STATE', 'RESTARTS', 'LAST EXIT', 'NOTE']];
  for (const p of processes) {
    const exit = p.lastExit ? `${p.lastExit.signal ?? (p.lastExit.code !== null ? `code ${p.lastExit.code}` : 'exited')} ${ago(p.lastExit.at, now)}` : '-';
    const note = p.state === 'cool-down' && p.coolDownUntil ? `${p.recentCrashes} crashes: not restarted until ${clock(p.coolDownUntil)}`
      : p.state === 'backoff' && p.nextStartAt ? `restart at ${clock(p.nextStartAt)}`
      : p.lastStuck ? `last killed for a stuck ${p.lastStuck.callback ?? 'event loop'}${p.lastStuck.computation ? ` of ${p.lastStuck.computation}` : ''} (${p.lastStuck.forMs} ms)` : '';
    rows.push([p.name, p.state === 'running' ? String(p.pid ?? '-') : '-', p.state === 'cool-down' ? 'COOL-DOWN' : p.state, String(p.restarts), exit, note]);
  }
  out.push(...table(rows).split('\n').map((l) => `  ${l}`));
  return out;
}

export function renderDeployed(c: ComputationRecord): string {
  const workers = [...new Set(c.placements.map((p) => p.workerId))];
  return `deployed ${c.name} v${c.version} (sha ${c.sha.slice(0, 12)}): ${c.instances} instance${c.instances === 1 ? '' : 's'}${workers.length ? ` on ${workers.join(', ')}` : ''}`;
}

export function renderTapRecord(r: TapRecord): string {
  const bad = r.typeError ? `  TYPE MISMATCH: ${clip(r.typeError, 160)}` : '';
  // Only a well-formed trace id is shown: anything else on the wire is a producer's garbage.
  const trace = isTraceId(r.trace) ? `  trace=${r.trace}` : '';
  return `${clock(r.timestamp)}  ${r.stream}/${r.partition}  ${r.key}  ${clip(toJson(r.value) ?? 'undefined')}  (${r.producer} #${r.seq})${trace}${bad}`;
}

export function renderDeadLetter(d: DeadLetterEntry): string {
  const rec = d.record ? `  key=${d.record.key} value=${clip(toJson(d.record.value) ?? 'undefined', 120)}` : d.raw ? `  (${d.raw.length} raw bytes)` : '';
  return `${clock(d.at)}  ${d.instanceId} on ${d.stream}: ${d.reason}: ${clip(d.error, 200)}${rec}`;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** pino's own fields and the bindings every topo log line carries: not repeated after the message. */
const QUIET_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'v', 'computation', 'instance', 'instanceId', 'index', 'count', 'version']);

export function levelName(level: unknown): string {
  if (typeof level === 'number') return LEVELS[level] ?? String(level);
  return typeof level === 'string' ? level.toUpperCase() : 'INFO';
}

/** "time level instance msg key=value..." */
export function renderLogEntry(e: LogEntry, computation: string): string {
  const l = e.line;
  const extras: string[] = [];
  for (const [k, v] of Object.entries(l)) {
    if (QUIET_FIELDS.has(k)) continue;
    // pino serializes errors as {type, message, stack}: the message is enough here (--json has the stack).
    const errMessage = v !== null && typeof v === 'object' && typeof (v as { message?: unknown }).message === 'string' ? (v as { message: string }).message : undefined;
    if (errMessage !== undefined) {
      extras.push(`${k}=${JSON.stringify(clip(errMessage, 200))}`);
      continue;
    }
    extras.push(`${k}=${clip(typeof v === 'string' ? v : (toJson(v) ?? 'undefined'), 200)}`);
  }
  const msg = typeof l.msg === 'string' ? l.msg : l.msg === undefined ? '' : toJson(l.msg);
  return `${clock(l.time)} ${levelName(l.level).padEnd(5)} ${computation}[${e.index}] ${msg}${extras.length ? `  ${extras.join(' ')}` : ''}`;
}
