/**
 * The lease table: which workers exist, whether their lease is current, what
 * they last reported, and a window of metric samples per instance for rates.
 * Pure bookkeeping; the controller decides what to do about changes.
 *
 * Bounded under floods: an id is *pending* until it has been seen twice
 * (register then heartbeat, or two heartbeats; ids remembered from the KV
 * mirror are not pending). Pending ids are not mirrored to KV, not listed by
 * all() (status), and a pending id whose lease runs out is dropped at once
 * rather than kept as dead; at most `maxPending` exist (the oldest is dropped
 * first: a real worker's next heartbeat brings it back). A registration that
 * never heartbeats is so gone within one lease, and a garbage heartbeat from
 * an unknown id leaves nothing behind. Dead workers are dropped after
 * forgetDead's bound, including ones remembered from KV.
 */
import type { Heartbeat, InstanceReport, Lang, ProcessMetrics, RegisterRequest, WorkerStatus } from '../../protocol/index.js';
import { RateWindow } from './rateWindow.js';

/** Counter name prefix of one output stream's records in a rate window. */
const STREAM_OUT = 'out:';

export interface WorkerEntry {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  /** Languages it hosts as operator processes besides its own. */
  hosts?: Lang[];
  startedAt?: number;
  alive: boolean;
  /** Local time of the last register or heartbeat. */
  lastSeen: number;
  /** The lease runs from here (lastSeen, or the controller's start for workers remembered from KV). */
  leaseFrom: number;
  /** Instances of the latest heartbeat, by instanceId. */
  reported: Map<string, InstanceReport>;
  /** What it last reported before its lease ran out (what its instances lost is counted from it). */
  reportedAtDeath?: Map<string, InstanceReport>;
  /** Counter samples per instanceId, for rates. */
  samples: Map<string, RateWindow>;
  /** The process's own figures, from its latest heartbeat. */
  process?: ProcessMetrics;
  /** Seen only once so far (see the file comment); `announced` says whether a 'new' was returned already. */
  pending?: { announced: boolean };
}

export type WorkerChange = 'new' | 'revived' | 'restarted' | 'seen';

export const WORKER_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const LANGS: readonly Lang[] = ['ts', 'python', 'cmd'];
/** Pending ids kept at most (a flood of registrations with fresh ids cannot grow the table beyond this). */
export const MAX_PENDING_WORKERS = 1024;
/** Longest host name kept (longer ones are cut: the table must not hold attacker-sized strings). */
export const MAX_HOST_CHARS = 256;

const clipHost = (h: unknown): string => (typeof h === 'string' ? (h.length > MAX_HOST_CHARS ? h.slice(0, MAX_HOST_CHARS) : h) : '');
const saneHosts = (h: unknown): { hosts?: Lang[] } => (Array.isArray(h) ? { hosts: h.filter(isLang).slice(0, 8) } : {});
const saneNumber = (n: unknown, fallback: number): number => (typeof n === 'number' && Number.isFinite(n) ? n : fallback);

export function isLang(v: unknown): v is Lang {
  return typeof v === 'string' && (LANGS as readonly string[]).includes(v);
}

export class WorkerTable {
  private readonly entries = new Map<string, WorkerEntry>();
  /** Workers whose KV mirror is out of date. */
  private readonly dirty = new Set<string>();
  private readonly forgotten = new Set<string>();
  private readonly mirroredAt = new Map<string, number>();
  /** Ids of pending entries, oldest first. */
  private readonly pendingIds = new Set<string>();

  constructor(private readonly leaseMs: number, private readonly maxPending = MAX_PENDING_WORKERS) {}

  /**
   * Remembers a worker from the KV mirror after a controller restart; it gets one full lease to show up.
   * Returns false (nothing remembered) for an entry that is not a usable WorkerStatus: the caller deletes it.
   */
  seed(s: WorkerStatus, now: number): boolean {
    if (s === null || typeof s !== 'object' || typeof s.workerId !== 'string' || !WORKER_ID_PATTERN.test(s.workerId) || !isLang(s.lang)) return false;
    if (this.entries.has(s.workerId)) return true;
    // A lastSeen that is not a time, or lies in the future, must not keep a dead worker listed for ever.
    const lastSeen = Math.min(saneNumber(s.lastSeen, 0), now);
    this.entries.set(s.workerId, {
      workerId: s.workerId, host: clipHost(s.host), pid: saneNumber(s.pid, 0), lang: s.lang, ...saneHosts(s.hosts), alive: s.alive === true,
      lastSeen, leaseFrom: Math.max(lastSeen, now), reported: new Map(), samples: new Map(),
    });
    return true;
  }

  register(req: RegisterRequest, now: number): WorkerChange {
    const e = this.entries.get(req.workerId);
    if (!e) {
      this.addPending({
        workerId: req.workerId, host: clipHost(req.host), pid: req.pid, lang: req.lang, ...saneHosts(req.hosts), startedAt: req.startedAt,
        alive: true, lastSeen: now, leaseFrom: now, reported: new Map(), samples: new Map(), pending: { announced: true },
      });
      return 'new';
    }
    const wasAlive = e.alive;
    const restarted = e.pid !== req.pid || e.startedAt !== req.startedAt;
    Object.assign(e, { host: clipHost(req.host), pid: req.pid, lang: req.lang, hosts: saneHosts(req.hosts).hosts, startedAt: req.startedAt, alive: true, lastSeen: now, leaseFrom: now });
    if (restarted) {
      // A fresh process runs nothing yet, whatever the old one reported.
      e.reported = new Map();
      e.samples = new Map();
    }
    if (e.pending) {
      // Its lease starts again: move it to the young end, so expire() can stop at the first young id.
      this.pendingIds.delete(e.workerId);
      this.pendingIds.add(e.workerId);
      // Registered twice without a heartbeat: still pending, and not news twice.
      if (e.pending.announced) return 'seen';
      e.pending.announced = true;
      return 'new';
    }
    this.touch(req.workerId);
    return !wasAlive ? 'revived' : restarted ? 'restarted' : 'seen';
  }

  heartbeat(hb: Heartbeat, now: number): WorkerChange {
    let e = this.entries.get(hb.workerId);
    let change: WorkerChange = 'seen';
    if (!e) {
      // An id never seen: a worker that outlived a controller restart, or garbage. Pending until its next
      // heartbeat; what it reports is not kept before then (a one-off message must leave nothing behind).
      this.addPending({
        workerId: hb.workerId, host: clipHost(hb.host), pid: hb.pid, lang: hb.lang, ...saneHosts(hb.hosts), alive: true,
        lastSeen: now, leaseFrom: now, reported: new Map(), samples: new Map(), pending: { announced: false },
      });
      return 'seen';
    }
    if (e.pending) {
      change = e.pending.announced ? 'seen' : 'new';
      this.confirm(e);
    } else if (!e.alive) change = 'revived';
    else if (e.pid !== hb.pid) change = 'restarted';
    e.host = clipHost(hb.host);
    e.pid = hb.pid;
    e.lang = hb.lang;
    e.hosts = saneHosts(hb.hosts).hosts;
    e.alive = true;
    e.lastSeen = now;
    e.leaseFrom = now;
    const at = Number.isFinite(hb.at) ? hb.at : now;
    const reported = new Map<string, InstanceReport>();
    const samples = new Map<string, RateWindow>();
    for (const inst of hb.instances) {
      reported.set(inst.instanceId, inst);
      const window = e.samples.get(inst.instanceId) ?? new RateWindow();
      const counters: Record<string, number> = { recordsIn: inst.metrics.recordsIn, recordsOut: inst.metrics.recordsOut };
      for (const o of inst.metrics.outlets ?? []) counters[STREAM_OUT + o.stream] = o.records;
      window.add(at, counters);
      samples.set(inst.instanceId, window);
    }
    e.process = hb.process;
    if (change !== 'seen' || reported.size !== e.reported.size || now - (this.mirroredAt.get(e.workerId) ?? 0) > Math.max(this.leaseMs, 5_000)) {
      this.touch(e.workerId);
    }
    e.reported = reported;
    e.samples = samples;
    return change;
  }

  /**
   * Marks workers whose lease ran out as dead and returns them. Pending ids whose lease ran out
   * (registered but never heard from again) are dropped instead, silently: they never were workers.
   */
  expire(now: number): WorkerEntry[] {
    const died: WorkerEntry[] = [];
    for (const id of this.pendingIds) {
      const e = this.entries.get(id);
      if (e && now - e.leaseFrom <= this.leaseMs) break; // oldest first: the rest are younger
      this.dropPending(id);
    }
    for (const e of this.entries.values()) {
      if (e.alive && !e.pending && now - e.leaseFrom > this.leaseMs) {
        e.alive = false;
        e.reportedAtDeath = e.reported;
        e.reported = new Map();
        e.samples = new Map();
        died.push(e);
        this.touch(e.workerId);
      }
    }
    return died;
  }

  /**
   * Starts the lease of every live worker afresh at `now` (after the controller could hear no one:
   * a broker outage), as seed() does after a controller restart. Returns how many.
   */
  renewLeases(now: number): number {
    let n = 0;
    for (const e of this.entries.values()) {
      if (!e.alive || e.pending) continue;
      e.leaseFrom = Math.max(e.leaseFrom, now);
      n++;
    }
    return n;
  }

  /** Drops workers dead for longer than `afterMs`. */
  forgetDead(now: number, afterMs: number): string[] {
    const gone: string[] = [];
    for (const e of this.entries.values()) {
      if (!e.alive && now - e.lastSeen > afterMs) {
        this.entries.delete(e.workerId);
        this.dirty.delete(e.workerId);
        this.forgotten.add(e.workerId);
        gone.push(e.workerId);
      }
    }
    return gone;
  }

  get(workerId: string): WorkerEntry | undefined {
    return this.entries.get(workerId);
  }

  isAlive(workerId: string): boolean {
    return this.entries.get(workerId)?.alive === true;
  }

  /**
   * Live workers that may take instances. A registered id still waiting for its first heartbeat counts
   * (a worker heartbeats right after registering); an id known only from one heartbeat does not.
   */
  alive(lang?: Lang): WorkerEntry[] {
    const out: WorkerEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.alive && (lang === undefined || e.lang === lang || e.hosts?.includes(lang) === true) && (!e.pending || e.pending.announced)) out.push(e);
    }
    return out;
  }

  /** Every worker except pending ids (what status lists). */
  all(): WorkerEntry[] {
    const out: WorkerEntry[] = [];
    for (const e of this.entries.values()) if (!e.pending) out.push(e);
    return out;
  }

  /** Sizes, for tests and diagnostics. */
  get size(): { entries: number; pending: number } {
    return { entries: this.entries.size, pending: this.pendingIds.size };
  }

  status(e: WorkerEntry): WorkerStatus {
    return { workerId: e.workerId, host: e.host, pid: e.pid, lang: e.lang, ...(e.hosts?.length ? { hosts: e.hosts } : {}), alive: e.alive, lastSeen: e.lastSeen, instances: e.reported.size };
  }

  /** Records/s in and out of one instance over the rate window of its heartbeats (0 until there are two). */
  rates(workerId: string, instanceId: string): { inPerSec: number; outPerSec: number } {
    const s = this.entries.get(workerId)?.samples.get(instanceId);
    if (!s) return { inPerSec: 0, outPerSec: 0 };
    return { inPerSec: s.rate('recordsIn'), outPerSec: s.rate('recordsOut') };
  }

  /** Records/s one instance produced onto each of its output streams, over the same window. */
  streamRates(workerId: string, instanceId: string): Record<string, number> {
    return this.entries.get(workerId)?.samples.get(instanceId)?.ratesOf(STREAM_OUT) ?? {};
  }

  /** Takes the workers whose KV mirror must be rewritten or deleted since the last call. */
  takeMirrorWork(now: number): { put: WorkerStatus[]; remove: string[] } {
    const put: WorkerStatus[] = [];
    for (const id of this.dirty) {
      const e = this.entries.get(id);
      if (e) {
        put.push(this.status(e));
        this.mirroredAt.set(id, now);
      }
    }
    this.dirty.clear();
    const remove = [...this.forgotten];
    for (const id of remove) this.mirroredAt.delete(id);
    this.forgotten.clear();
    return { put, remove };
  }

  private addPending(e: WorkerEntry): void {
    this.entries.set(e.workerId, e);
    this.pendingIds.add(e.workerId);
    while (this.pendingIds.size > this.maxPending) {
      const oldest = this.pendingIds.values().next().value as string;
      this.dropPending(oldest);
    }
  }

  private dropPending(workerId: string): void {
    this.pendingIds.delete(workerId);
    if (this.entries.get(workerId)?.pending) this.entries.delete(workerId);
  }

  private confirm(e: WorkerEntry): void {
    delete e.pending;
    this.pendingIds.delete(e.workerId);
    this.touch(e.workerId);
  }

  private touch(workerId: string): void {
    this.dirty.add(workerId);
    this.forgotten.delete(workerId);
  }
}
