/**
 * The worker's view of the desired state in KV (`topo_state`): which consumer
 * groups read each stream. Producers use it for credit flow control (how many
 * groups must acknowledge a record) and to know whether a stream needs key
 * partitioning at all.
 */
import type { KV } from '@nats-io/kv';
import { checkComputationEntry, kvKeys, type BridgeConsumerRecord, type ComputationRecord } from '../../protocol/index.js';
import { checkBridgeConsumerEntry } from '../../protocol/schemas.js';

/** Where the view reports KV entries it skips. */
export interface ViewLog {
  error(obj: object, msg: string): void;
}

export interface StreamConsumers {
  /** Consumer group ids that must credit every record of the stream. */
  groups: string[];
  /** True when some consumer groups the stream by key, so producers must partition by key hash. */
  keyed: boolean;
}

const NONE: StreamConsumers = Object.freeze({ groups: [], keyed: false }) as StreamConsumers;

/** The group id a consumer instance acknowledges under (PROTOCOL.md, flow control). */
export function groupIdOf(computation: string, grouping: string, index: number): string {
  return grouping === 'broadcast' ? `${computation}#${index}` : computation;
}

export class TopologyView {
  private readonly computations = new Map<string, ComputationRecord>();
  /** Consumer groups registered by bridges (topo_state `consumer.<group>`): producers owe them credit like computations. */
  private readonly bridgeConsumers = new Map<string, BridgeConsumerRecord>();
  private byStream = new Map<string, StreamConsumers>();
  /** Streams some computation declares at-least-once (PROTOCOL.md, "Delivery"). */
  private atLeastOnce = new Set<string>();
  /** Bumped on every change so producers can cache their lookups cheaply. */
  version = 0;
  private stopWatch: (() => void) | undefined;
  private stopBridgeWatch: (() => void) | undefined;

  consumersOf(stream: string): StreamConsumers {
    return this.byStream.get(stream) ?? NONE;
  }

  /** True when some computation of the topology declares `stream` at-least-once. */
  isAtLeastOnce(stream: string): boolean {
    return this.atLeastOnce.has(stream);
  }

  computation(name: string): ComputationRecord | undefined {
    return this.computations.get(name);
  }

  /** Applies one valid `consumer.<group>` entry (value undefined = deleted): a consumer group of bridges. */
  applyBridgeConsumer(group: string, record: BridgeConsumerRecord | undefined): void {
    if (record) this.bridgeConsumers.set(group, record);
    else this.bridgeConsumers.delete(group);
    this.rebuild();
  }

  /** Applies one valid KV entry (value undefined = deleted). */
  apply(name: string, record: ComputationRecord | undefined): void {
    if (record) this.computations.set(name, record);
    else this.computations.delete(name);
    this.rebuild();
  }

  private rebuild(): void {
    const next = new Map<string, StreamConsumers>();
    const alo = new Set<string>();
    for (const c of this.computations.values()) {
      for (const m of c.canary ? [c.metadata, c.canary.metadata] : [c.metadata]) for (const s of Object.keys(m.delivery ?? {})) alo.add(s);
      // A canary reads with its own metadata but credits under the computation's group.
      const istreams = c.canary ? [...c.metadata.istreams, ...c.canary.metadata.istreams] : c.metadata.istreams;
      for (const { stream, grouping } of istreams) {
        let entry = next.get(stream);
        if (!entry) next.set(stream, (entry = { groups: [], keyed: false }));
        if (grouping === 'broadcast') {
          for (let i = 0; i < c.instances; i++) {
            const g = groupIdOf(c.name, grouping, i);
            if (!entry.groups.includes(g)) entry.groups.push(g);
          }
        } else if (!entry.groups.includes(c.name)) {
          entry.groups.push(c.name);
        }
        if (grouping === 'key') entry.keyed = true;
      }
    }
    // Bridge consumer groups: `<group>`, or `<group>#<index>` per member for broadcast. A group without members owes nothing.
    for (const b of this.bridgeConsumers.values()) {
      if (b.members.length === 0) continue;
      let entry = next.get(b.stream);
      if (!entry) next.set(b.stream, (entry = { groups: [], keyed: false }));
      const ids = b.grouping === 'broadcast' ? b.members.map((m) => groupIdOf(b.group, 'broadcast', m.index)) : [b.group];
      for (const g of ids) if (!entry.groups.includes(g)) entry.groups.push(g);
      if (b.grouping === 'key') entry.keyed = true;
    }
    this.byStream = next;
    this.atLeastOnce = alo;
    this.version++;
  }

  /**
   * Follows the KV bucket until stop(); resolves once the initial values are
   * loaded. An invalid `comp.*` entry is skipped with a logged error (the
   * last valid record of that name, if any, stays): it must never stop the
   * view from following the others, or producers would route with stale
   * consumer groups and partitioning.
   */
  async watch(kv: KV, log?: ViewLog): Promise<void> {
    // The consumer groups bridges registered are followed by a watch of their own (one watch of two keys needs nats-server 2.10).
    // It must not stop a worker from starting: without it producers only miss the bridges' groups (logged).
    const bridges = this.watchBridgeConsumers(kv, log).catch((err: unknown) =>
      log?.error({ err }, `could not follow the bridge consumer groups in topo_state: ${(err as Error).message}`));
    const iter = await kv.watch({ key: kvKeys.computationAll });
    let loaded!: () => void;
    const initial = new Promise<void>((r) => (loaded = r));
    this.stopWatch = () => iter.stop();
    void (async () => {
      for await (const e of iter) {
        const name = kvKeys.computationOf(e.key) ?? e.key;
        try {
          if (e.operation === 'DEL' || e.operation === 'PURGE' || e.value.length === 0) this.apply(name, undefined);
          else {
            let r: ReturnType<typeof checkComputationEntry>;
            try {
              r = checkComputationEntry(e.key, e.json());
            } catch (err) {
              r = { ok: false, problem: `not JSON: ${(err as Error).message}` };
            }
            if (r.ok) this.apply(name, r.record);
            else log?.error({ key: e.key.slice(0, 200), revision: e.revision }, `KV ${e.key.slice(0, 200)} in topo_state is not a valid ComputationRecord (${r.problem.slice(0, 500)}); skipping it`);
          }
        } catch (err) {
          // Never reached with a valid record; whatever happens, keep following the bucket.
          log?.error({ key: e.key.slice(0, 200), err }, `could not apply KV ${e.key.slice(0, 200)}: ${(err as Error).message}`);
        }
        if (e.delta === 0) loaded();
      }
    })();
    // An empty bucket yields no entries: do not wait for one.
    const status = await kv.status();
    if (status.values === 0) loaded();
    await Promise.race([Promise.all([initial, bridges]), new Promise((r) => setTimeout(r, 2_000))]);
  }

  /** Follows `consumer.>` (bridge consumer groups); resolves once the initial values are applied. */
  private async watchBridgeConsumers(kv: KV, log?: ViewLog): Promise<void> {
    const iter = await kv.watch({ key: kvKeys.bridgeConsumerAll });
    this.stopBridgeWatch = () => iter.stop();
    let loaded!: () => void;
    const initial = new Promise<void>((r) => (loaded = r));
    void (async () => {
      for await (const e of iter) {
        const group = kvKeys.bridgeConsumerOf(e.key);
        if (group !== undefined) this.applyBridgeEntry(e, group, log);
        if (e.delta === 0) loaded();
      }
    })();
    // No such entry yields nothing to wait for.
    let any = false;
    for await (const _k of await kv.keys(kvKeys.bridgeConsumerList)) any = true;
    if (!any) loaded();
    await initial;
  }

  private applyBridgeEntry(e: { key: string; revision: number; operation: string; value: Uint8Array; json<T>(): T }, group: string, log?: ViewLog): void {
    try {
      if (e.operation === 'DEL' || e.operation === 'PURGE' || e.value.length === 0) return this.applyBridgeConsumer(group, undefined);
      let r: ReturnType<typeof checkBridgeConsumerEntry>;
      try {
        r = checkBridgeConsumerEntry(e.key, e.json());
      } catch (err) {
        r = { ok: false, problem: `not JSON: ${(err as Error).message}` };
      }
      if (r.ok) this.applyBridgeConsumer(group, r.record);
      else log?.error({ key: e.key.slice(0, 200), revision: e.revision }, `KV ${e.key.slice(0, 200)} in topo_state is not a valid BridgeConsumerRecord (${r.problem.slice(0, 500)}); skipping it`);
    } catch (err) {
      log?.error({ key: e.key.slice(0, 200), err }, `could not apply KV ${e.key.slice(0, 200)}: ${(err as Error).message}`);
    }
  }

  stop(): void {
    this.stopWatch?.();
    this.stopBridgeWatch?.();
  }
}
