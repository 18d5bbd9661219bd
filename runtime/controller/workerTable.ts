/**
 * The lease table: which workers exist, whether their lease is current, what
 * they last reported, and two metric samples per instance for rate computation.
 * Pure bookkeeping; the controller decides what to do about changes.
 */
import type { Heartbeat, InstanceReport, Lang, RegisterRequest, WorkerStatus } from '../../sdk/protocol/index.js';

interface RateSample {
  at: number;
  recordsIn: number;
  recordsOut: number;
}

export interface WorkerEntry {
  workerId: string;
  host: string;
  pid: number;
  lang: Lang;
  startedAt?: number;
  alive: boolean;
  /** Local time of the last register or heartbeat. */
  lastSeen: number;
  /** The lease runs from here (lastSeen, or the controller's start for workers remembered from KV). */
  leaseFrom: number;
  /** Instances of the latest heartbeat, by instanceId. */
  reported: Map<string, InstanceReport>;
  /** Latest and previous metric sample per instanceId. */
  samples: Map<string, { last: RateSample; prev?: RateSample }>;
}

export type WorkerChange = 'new' | 'revived' | 'restarted' | 'seen';

export const WORKER_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const LANGS: readonly Lang[] = ['ts', 'python'];

export function isLang(v: unknown): v is Lang {
  return typeof v === 'string' && (LANGS as readonly string[]).includes(v);
}

export class WorkerTable {
  private readonly entries = new Map<string, WorkerEntry>();
  /** Workers whose KV mirror is out of date. */
  private readonly dirty = new Set<string>();
  private readonly forgotten = new Set<string>();
  private readonly mirroredAt = new Map<string, number>();

  constructor(private readonly leaseMs: number) {}

  /** Remembers a worker from the KV mirror after a controller restart; it gets one full lease to show up. */
  seed(s: WorkerStatus, now: number): void {
    if (this.entries.has(s.workerId)) return;
    this.entries.set(s.workerId, {
      workerId: s.workerId, host: s.host, pid: s.pid, lang: s.lang, alive: s.alive,
      lastSeen: s.lastSeen, leaseFrom: Math.max(s.lastSeen, now), reported: new Map(), samples: new Map(),
    });
  }

  register(req: RegisterRequest, now: number): WorkerChange {
    const e = this.entries.get(req.workerId);
    if (!e) {
      this.entries.set(req.workerId, {
        workerId: req.workerId, host: req.host, pid: req.pid, lang: req.lang, startedAt: req.startedAt,
        alive: true, lastSeen: now, leaseFrom: now, reported: new Map(), samples: new Map(),
      });
      this.touch(req.workerId);
      return 'new';
    }
    const wasAlive = e.alive;
    const restarted = e.pid !== req.pid || e.startedAt !== req.startedAt;
    Object.assign(e, { host: req.host, pid: req.pid, lang: req.lang, startedAt: req.startedAt, alive: true, lastSeen: now, leaseFrom: now });
    if (restarted) {
      // A fresh process runs nothing yet, whatever the old one reported.
      e.reported = new Map();
      e.samples = new Map();
    }
    this.touch(req.workerId);
    return !wasAlive ? 'revived' : restarted ? 'restarted' : 'seen';
  }

  heartbeat(hb: Heartbeat, now: number): WorkerChange {
    let e = this.entries.get(hb.workerId);
    let change: WorkerChange = 'seen';
    if (!e) {
      e = {
        workerId: hb.workerId, host: hb.host, pid: hb.pid, lang: hb.lang, alive: true,
        lastSeen: now, leaseFrom: now, reported: new Map(), samples: new Map(),
      };
      this.entries.set(hb.workerId, e);
      change = 'new';
    } else {
      if (!e.alive) change = 'revived';
      else if (e.pid !== hb.pid) change = 'restarted';
      e.host = hb.host;
      e.pid = hb.pid;
      e.lang = hb.lang;
      e.alive = true;
      e.lastSeen = now;
      e.leaseFrom = now;
    }
    const at = Number.isFinite(hb.at) ? hb.at : now;
    const reported = new Map<string, InstanceReport>();
    const samples = new Map<string, { last: RateSample; prev?: RateSample }>();
    for (const inst of hb.instances) {
      reported.set(inst.instanceId, inst);
      const before = e.samples.get(inst.instanceId);
      const last = { at, recordsIn: inst.metrics.recordsIn, recordsOut: inst.metrics.recordsOut };
      // A repeated timestamp would give a zero interval: then keep the older previous sample.
      const prev = before && before.last.at < at ? before.last : before?.prev;
      samples.set(inst.instanceId, prev ? { last, prev } : { last });
    }
    if (change !== 'seen' || reported.size !== e.reported.size || now - (this.mirroredAt.get(e.workerId) ?? 0) > Math.max(this.leaseMs, 5_000)) {
      this.touch(e.workerId);
    }
    e.reported = reported;
    e.samples = samples;
    return change;
  }

  /** Marks workers whose lease ran out as dead and returns them. */
  expire(now: number): WorkerEntry[] {
    const died: WorkerEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.alive && now - e.leaseFrom > this.leaseMs) {
        e.alive = false;
        e.reported = new Map();
        e.samples = new Map();
        died.push(e);
        this.touch(e.workerId);
      }
    }
    return died;
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

  alive(lang?: Lang): WorkerEntry[] {
    const out: WorkerEntry[] = [];
    for (const e of this.entries.values()) if (e.alive && (lang === undefined || e.lang === lang)) out.push(e);
    return out;
  }

  all(): WorkerEntry[] {
    return [...this.entries.values()];
  }

  status(e: WorkerEntry): WorkerStatus {
    return { workerId: e.workerId, host: e.host, pid: e.pid, lang: e.lang, alive: e.alive, lastSeen: e.lastSeen, instances: e.reported.size };
  }

  /** Records/s in and out of one instance, from its two latest heartbeats (0 until there are two). */
  rates(workerId: string, instanceId: string): { inPerSec: number; outPerSec: number } {
    const s = this.entries.get(workerId)?.samples.get(instanceId);
    if (!s?.prev) return { inPerSec: 0, outPerSec: 0 };
    const secs = (s.last.at - s.prev.at) / 1000;
    const rate = (a: number, b: number) => (secs > 0 && a >= b ? (a - b) / secs : 0);
    return { inPerSec: rate(s.last.recordsIn, s.prev.recordsIn), outPerSec: rate(s.last.recordsOut, s.prev.recordsOut) };
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

  private touch(workerId: string): void {
    this.dirty.add(workerId);
    this.forgotten.delete(workerId);
  }
}
