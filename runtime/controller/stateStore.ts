/**
 * Desired state (KV topo_state) with an in-memory copy, the journal of swaps
 * under way (topo_state `swap.<name>`), and the deploy history (KV
 * topo_history). The controller is the only writer of both buckets, so the
 * memory copy is authoritative between writes.
 */
import type { KV } from '@nats-io/kv';
import { checkComputationEntry, checkMessage, kvKeys, schemas, truncateError, type ComputationRecord, type HistoryEntry, type Placement } from '../../protocol/index.js';
import { encodeJson } from '../transport/rpc.js';
import { placementsOf } from './records.js';
import { HISTORY_REVISIONS } from './infrastructure.js';
import type { Upstream } from './upstreams.js';

const compKey = kvKeys.computation;
const swapKey = kvKeys.swap;

/**
 * A swap under way, so that a controller restarted mid-swap can finish it:
 * before commit it is aborted on its workers, once committing it is
 * committed again and its record saved.
 */
export interface SwapJournal {
  swapId: string;
  name: string;
  phase: 'started' | 'committing';
  /** Workers with released or adopted instances. */
  workers: string[];
  startedAt: number;
  /** The history entry to complete (result and error are set on recovery). */
  history: HistoryEntry;
  /** When committing: the desired state once committed. */
  record?: ComputationRecord;
  /** The other computations the run changes (fuse, split), recovered with it: recorded in history, and saved when it commits. */
  also?: { name: string; history: HistoryEntry; record?: ComputationRecord }[];
  /** The workers in the groups an abort goes to one after the other (swapRunner.ts, abortOrderOf); absent: all at once. */
  abortOrder?: string[][];
  /** The upstreams the swap paused: a restarted controller holds them again while it aborts (they may have resumed). */
  upstreams?: Upstream[];
}

export class StateStore {
  private readonly comps = new Map<string, ComputationRecord>();
  /** Records whose KV write failed and must be retried. */
  private readonly unsaved = new Set<string>();

  /** `onInvalid` hears about every KV entry skipped because it does not match its schema. */
  constructor(
    private readonly stateKv: KV,
    private readonly historyKv: KV,
    private readonly onInvalid: (key: string, problem: string) => void = () => {},
  ) {}

  /** Reads every `comp.*` key into memory (controller start). Returns what it skipped as invalid (schemas.computationRecord). */
  async load(): Promise<string[]> {
    const bad: string[] = [];
    const keys: string[] = [];
    for await (const k of await this.stateKv.keys(kvKeys.computationList)) keys.push(k);
    for (const k of keys) {
      const e = await this.stateKv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      let r: ReturnType<typeof checkComputationEntry>;
      try {
        r = checkComputationEntry(k, e.json());
      } catch (err) {
        r = { ok: false, problem: `not JSON: ${(err as Error).message}` };
      }
      if (r.ok) this.comps.set(r.record.name, r.record);
      else {
        this.onInvalid(k, r.problem);
        bad.push(k);
      }
    }
    // History is read once, now, before anything can write to it (see history()).
    await (this.historyLoad ??= this.readAllHistory());
    return bad;
  }

  get(name: string): ComputationRecord | undefined {
    return this.comps.get(name);
  }

  all(): ComputationRecord[] {
    return [...this.comps.values()];
  }

  /** Writes the record to KV, then to memory. */
  async save(rec: ComputationRecord): Promise<void> {
    await this.stateKv.put(compKey(rec.name), encodeJson(rec));
    this.comps.set(rec.name, rec);
    this.unsaved.delete(rec.name);
  }

  /** Updates memory now and KV as soon as possible (instances already moved; memory must match reality). */
  async saveOrRetry(rec: ComputationRecord): Promise<Error | undefined> {
    this.comps.set(rec.name, rec);
    try {
      await this.stateKv.put(compKey(rec.name), encodeJson(rec));
      this.unsaved.delete(rec.name);
      return undefined;
    } catch (err) {
      this.unsaved.add(rec.name);
      return err as Error;
    }
  }

  /** Retries KV writes that failed earlier. */
  async flushUnsaved(): Promise<void> {
    for (const name of [...this.unsaved]) {
      const rec = this.comps.get(name);
      if (!rec) {
        this.unsaved.delete(name);
        continue;
      }
      await this.save(rec);
    }
  }

  /** Deletes from KV first (workers stop counting on it), then from memory. */
  async remove(name: string): Promise<void> {
    await this.stateKv.delete(compKey(name));
    this.comps.delete(name);
    this.unsaved.delete(name);
  }

  /** Every placement (canaries included) on one worker. */
  placementsOn(workerId: string): { rec: ComputationRecord; placement: Placement }[] {
    const out: { rec: ComputationRecord; placement: Placement }[] = [];
    for (const rec of this.comps.values()) for (const p of placementsOf(rec)) if (p.workerId === workerId) out.push({ rec, placement: p });
    return out;
  }

  /** The placement (current version or canary) with this instance id. */
  findInstance(instanceId: string): { rec: ComputationRecord; placement: Placement } | undefined {
    for (const rec of this.comps.values()) for (const p of placementsOf(rec)) if (p.instanceId === instanceId) return { rec, placement: p };
    return undefined;
  }

  /** Desired instances per worker, over all computations and canaries. */
  loadByWorker(): Map<string, number> {
    const load = new Map<string, number>();
    for (const rec of this.comps.values()) for (const p of placementsOf(rec)) load.set(p.workerId, (load.get(p.workerId) ?? 0) + 1);
    return load;
  }

  /** 1 + the highest version ever recorded for this name, so versions never repeat across kill/deploy. */
  async nextVersion(name: string): Promise<number> {
    let highest = this.comps.get(name)?.version ?? 0;
    for (const e of await this.history(name)) if (e.version > highest) highest = e.version;
    return highest + 1;
  }

  async putSwapJournal(j: SwapJournal): Promise<void> {
    await this.stateKv.put(swapKey(j.name), encodeJson(j));
  }

  async deleteSwapJournal(name: string): Promise<void> {
    await this.stateKv.delete(swapKey(name));
  }

  /** Journals of swaps that were under way when the previous controller stopped. */
  async swapJournals(): Promise<SwapJournal[]> {
    const keys: string[] = [];
    for await (const k of await this.stateKv.keys(kvKeys.swapList)) keys.push(k);
    const out: SwapJournal[] = [];
    for (const k of keys) {
      const e = await this.stateKv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      // Invalid: nothing to recover from it.
      try {
        const r = checkMessage(schemas.swapJournal, e.json(), 'swap journal');
        if (r.ok) out.push(r.value as SwapJournal);
        else this.onInvalid(k, r.message);
      } catch (err) {
        this.onInvalid(k, `not JSON: ${(err as Error).message}`);
      }
    }
    return out;
  }

  async recordHistory(entry: HistoryEntry): Promise<void> {
    const key = kvKeys.history(entry.name, entry.version);
    await this.historyKv.put(key, encodeJson(entry));
    if (this.historyIndex) this.remember(this.historyIndex, key, entry);
  }

  /**
   * Every history entry of a name, every revision the bucket keeps, oldest
   * first. Served from memory: the controller is the only writer of the
   * bucket, so it reads it once (one consumer) and then keeps the copy in
   * step. A history request, legitimate or a flood, costs the server nothing.
   */
  async history(name: string): Promise<HistoryEntry[]> {
    const index = await (this.historyLoad ??= this.readAllHistory());
    return (index.get(name) ?? []).map((h) => h.entry);
  }

  private historyIndex: Map<string, { key: string; entry: HistoryEntry }[]> | undefined;
  private historyLoad: Promise<Map<string, { key: string; entry: HistoryEntry }[]>> | undefined;

  /** Appends a revision of `key`, dropping the oldest ones the bucket no longer keeps. */
  private remember(index: Map<string, { key: string; entry: HistoryEntry }[]>, key: string, entry: HistoryEntry): void {
    let list = index.get(entry.name);
    if (!list) index.set(entry.name, (list = []));
    list.push({ key, entry });
    const revisions = list.filter((h) => h.key === key);
    if (revisions.length > HISTORY_REVISIONS) {
      const drop = new Set(revisions.slice(0, revisions.length - HISTORY_REVISIONS));
      index.set(entry.name, list.filter((h) => !drop.has(h)));
    }
  }

  private async readAllHistory(): Promise<Map<string, { key: string; entry: HistoryEntry }[]>> {
    const index = new Map<string, { key: string; entry: HistoryEntry }[]>();
    const it = await this.historyKv.history({ key: '>' });
    try {
      for await (const e of it) {
        if (e.operation !== 'PUT') continue;
        // An invalid entry is skipped: it must not make the whole history (and rollback) unreadable.
        try {
          const r = checkMessage(schemas.historyEntry, capErrors(e.json()), 'history entry');
          if (r.ok && e.key === `${r.value.name}.${r.value.version}`) this.remember(index, e.key, r.value as HistoryEntry);
          else this.onInvalid(`${e.key} (revision ${e.revision})`, r.ok ? `its key does not match its name and version` : r.message);
        } catch (err) {
          this.onInvalid(`${e.key} (revision ${e.revision})`, `not JSON: ${(err as Error).message}`);
        }
      }
    } finally {
      await dropConsumer(it);
    }
    this.historyIndex = index;
    return index;
  }
}

/**
 * Deletes the server-side consumer a KV history() iterator made. nats.js creates an ephemeral
 * push consumer per call with a 5-minute inactive threshold and, when nothing matches, never
 * even subscribes to it: a flood of `topo.api.history` requests left one consumer per request
 * on the server (3,000 requests: 3,000 consumers and nats-server 13 -> 136 MB RSS).
 */

async function dropConsumer(it: unknown): Promise<void> {
  const oc = (it as { _data?: { delete?: () => Promise<unknown> } })._data;
  await oc?.delete?.().catch(() => undefined);
}

/** Entries written before error strings were capped stay readable: their errors are cut, not the entry dropped. */
function capErrors(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  const e = v as { error?: unknown; steps?: unknown };
  if (typeof e.error === 'string') e.error = truncateError(e.error);
  if (Array.isArray(e.steps)) {
    for (const st of e.steps as { detail?: unknown }[]) if (st && typeof st.detail === 'string') st.detail = truncateError(st.detail);
  }
  return v;
}
