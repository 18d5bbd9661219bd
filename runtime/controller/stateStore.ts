/**
 * Desired state (KV topo_state) with an in-memory copy, and the deploy
 * history (KV topo_history). The controller is the only writer of both, so
 * the memory copy is authoritative between writes.
 */
import type { KV } from '@nats-io/kv';
import type { ComputationRecord, Placement } from '../../sdk/protocol/index.js';
import { encodeJson } from '../transport/rpc.js';

export interface HistoryEntry {
  name: string;
  version: number;
  sha: string;
  source?: string;
  action: 'deploy' | 'kill';
  at: number;
  result: 'ok' | 'failed';
  error?: string;
}

const compKey = (name: string) => `comp.${name}`;

export class StateStore {
  private readonly comps = new Map<string, ComputationRecord>();
  /** Records whose KV write failed and must be retried. */
  private readonly unsaved = new Set<string>();

  constructor(private readonly stateKv: KV, private readonly historyKv: KV) {}

  /** Reads every `comp.*` key into memory (controller start). Returns what it skipped as unreadable. */
  async load(): Promise<string[]> {
    const bad: string[] = [];
    const keys: string[] = [];
    for await (const k of await this.stateKv.keys('comp.*')) keys.push(k);
    for (const k of keys) {
      const e = await this.stateKv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      try {
        const rec = e.json<ComputationRecord>();
        if (typeof rec?.name !== 'string' || !Array.isArray(rec.placements)) throw new Error('not a ComputationRecord');
        this.comps.set(rec.name, rec);
      } catch {
        bad.push(k);
      }
    }
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

  /** Every placement on one worker. */
  placementsOn(workerId: string): { rec: ComputationRecord; placement: Placement }[] {
    const out: { rec: ComputationRecord; placement: Placement }[] = [];
    for (const rec of this.comps.values()) for (const p of rec.placements) if (p.workerId === workerId) out.push({ rec, placement: p });
    return out;
  }

  findInstance(instanceId: string): { rec: ComputationRecord; placement: Placement } | undefined {
    for (const rec of this.comps.values()) for (const p of rec.placements) if (p.instanceId === instanceId) return { rec, placement: p };
    return undefined;
  }

  /** Desired instances per worker, over all computations. */
  loadByWorker(): Map<string, number> {
    const load = new Map<string, number>();
    for (const rec of this.comps.values()) for (const p of rec.placements) load.set(p.workerId, (load.get(p.workerId) ?? 0) + 1);
    return load;
  }

  /** 1 + the highest version ever recorded for this name, so versions never repeat across kill/deploy. */
  async nextVersion(name: string): Promise<number> {
    let highest = this.comps.get(name)?.version ?? 0;
    const prefix = `${name}.`;
    for await (const k of await this.historyKv.keys(`${name}.*`)) {
      const v = Number(k.slice(prefix.length));
      if (Number.isInteger(v) && v > highest) highest = v;
    }
    return highest + 1;
  }

  async recordHistory(entry: HistoryEntry): Promise<void> {
    await this.historyKv.put(`${entry.name}.${entry.version}`, encodeJson(entry));
  }

  /** Every history entry of a name, oldest first (all revisions kept by the bucket). */
  async history(name: string): Promise<HistoryEntry[]> {
    const out: HistoryEntry[] = [];
    const it = await this.historyKv.history({ key: `${name}.*` });
    for await (const e of it) {
      if (e.operation === 'PUT') out.push(e.json<HistoryEntry>());
    }
    return out;
  }
}
