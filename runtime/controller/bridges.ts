/**
 * Bridges: producers and consumers outside the controller (PROTOCOL.md,
 * "Bridges"). A registered producer is listed with a lease it renews by
 * heartbeat and is paused by every swap, scale or fusion change of a
 * computation reading one of its streams, like an upstream instance
 * (upstreams.ts). A registered consumer is one member of a consumer group:
 * the controller keeps each group in topo_state as `consumer.<group>`, which
 * producers read (runtime/worker/topology.ts) to count it in flow control;
 * when the last member's lease runs out the entry is deleted and producers
 * stop owing it credit.
 *
 * Bounded under floods: at most MAX_BRIDGES entries; a heartbeat that does
 * not match its schema is ignored (counted, logged a few times).
 */
import type { Msg } from '@nats-io/transport-node';
import type { KV } from '@nats-io/kv';
import {
  BadRequestError, ConflictError, TimeoutError, checkMessage, kvKeys, schemas, subjects,
  type BridgeConsumerRecord, type BridgeConsumerRegistration, type BridgeConsumerStatus, type BridgeHeartbeat, type BridgeProducerRegistration,
  type BridgeProducerStatus, type BridgeRegisterReply, type BridgeRegisterRequest, type BridgeStats, type BridgeUnregisterRequest, type WorkerControl,
} from '../../protocol/index.js';
import { checkBridgeConsumerEntry } from '../../protocol/schemas.js';
import { call, decodeJson, serve } from '../transport/rpc.js';
import type { ControllerContext } from './context.js';

/** Registered producers and consumer members kept at most (a flood of registrations cannot grow the table beyond this). */
export const MAX_BRIDGES = 1_024;
/** Members of one broadcast group at most (their credit group ids are `<group>#<index>`, index up to 999). */
const MAX_MEMBERS = 1_000;

interface Common {
  registeredAt: number;
  lastSeen: number;
  stats?: BridgeStats;
}
export type ProducerEntry = BridgeProducerRegistration & Common;
export type ConsumerEntry = BridgeConsumerRegistration & Common & { index: number };

export class BridgeTable {
  readonly producers = new Map<string, ProducerEntry>();
  readonly consumers = new Map<string, ConsumerEntry>();
  /** Members seeded from KV that have not heartbeated since (their process is not known yet). */
  private readonly seeded = new Set<string>();

  constructor(private readonly leaseMs: number) {}

  get size(): number {
    return this.producers.size + this.consumers.size;
  }

  isAlive(id: string, now = Date.now()): boolean {
    const e = this.producers.get(id) ?? this.consumers.get(id);
    return e !== undefined && now - e.lastSeen <= this.leaseMs;
  }

  /** Live producers, for the swaps that must pause them. */
  liveProducers(now = Date.now()): ProducerEntry[] {
    return [...this.producers.values()].filter((p) => now - p.lastSeen <= this.leaseMs);
  }

  membersOf(group: string): ConsumerEntry[] {
    return [...this.consumers.values()].filter((c) => c.group === group).sort((a, b) => a.index - b.index);
  }

  /**
   * Adds or renews a registration. Throws ConflictError (and changes nothing) when the id is taken by
   * another process or kind, or the group cannot take this member. Returns the entry and whether it is new.
   */
  register(
    req: BridgeRegisterRequest, now: number, isComputation: (name: string) => boolean, fusedReaderOf: (stream: string) => string | undefined = () => undefined,
  ): { entry: ProducerEntry | ConsumerEntry; fresh: boolean } {
    const other = req.kind === 'producer' ? this.consumers.get(req.id) : this.producers.get(req.id);
    if (other && this.isAlive(req.id, now)) throw new ConflictError(`bridge id ${req.id} is registered as a ${other.kind}`);
    const same = req.kind === 'producer' ? this.producers.get(req.id) : this.consumers.get(req.id);
    // A member remembered from KV (after a controller restart) does not know its process: its first heartbeat is it.
    if (same && this.seeded.delete(req.id)) same.startedAt = req.startedAt;
    if (same && same.startedAt !== req.startedAt && now - same.lastSeen <= this.leaseMs) {
      throw new ConflictError(`bridge id ${req.id} is registered by another process (startedAt ${same.startedAt}); choose another id or wait ${this.leaseMs} ms for its lease to end`);
    }
    if (!same && this.size >= MAX_BRIDGES) throw new ConflictError(`too many bridges registered (${MAX_BRIDGES})`);
    if (req.kind === 'producer') {
      // A stream fed in-process inside a fusion group is not read on NATS by its consumer: what a bridge published there would be lost.
      if (!same) {
        for (const stream of req.streams) {
          const reader = fusedReaderOf(stream);
          if (reader) throw new ConflictError(`stream ${stream} is fused into ${reader}, which does not read it on NATS: records of a bridge would not reach it (\`topo split\` it first)`);
        }
      }
      const entry: ProducerEntry = {
        kind: 'producer', id: req.id, streams: [...new Set(req.streams)], startedAt: req.startedAt,
        ...pick(req), registeredAt: same && same.startedAt === req.startedAt ? same.registeredAt : now, lastSeen: now,
        ...(same?.stats ? { stats: same.stats } : {}),
      };
      if (other) this.consumers.delete(req.id);
      this.producers.set(req.id, entry);
      return { entry, fresh: !same || same.startedAt !== req.startedAt };
    }
    if (isComputation(req.group)) throw new ConflictError(`consumer group ${req.group} is the name of a deployed computation: choose another group name`);
    const members = this.membersOf(req.group).filter((m) => m.id !== req.id && now - m.lastSeen <= this.leaseMs);
    const first = members[0];
    if (first && (first.stream !== req.stream || first.grouping !== req.grouping)) {
      throw new ConflictError(`consumer group ${req.group} reads ${first.stream} with ${first.grouping} grouping, not ${req.stream} with ${req.grouping}`);
    }
    if (req.grouping === 'key' && members.length > 0) {
      throw new ConflictError(`consumer group ${req.group} reads ${req.stream} by key with one member (${first!.id}); a key-grouped bridge group has one member`);
    }
    if (members.length >= MAX_MEMBERS) throw new ConflictError(`consumer group ${req.group} has ${MAX_MEMBERS} members already`);
    const prev = same as ConsumerEntry | undefined;
    // A member keeps its index (its broadcast credit group) while it lives; a new one takes the lowest free index.
    const taken = new Set(members.map((m) => m.index));
    let index = 0;
    if (prev && prev.group === req.group && !taken.has(prev.index)) index = prev.index;
    else while (taken.has(index)) index++;
    const entry: ConsumerEntry = {
      kind: 'consumer', id: req.id, group: req.group, stream: req.stream, grouping: req.grouping, startedAt: req.startedAt, index,
      ...pick(req), registeredAt: prev && prev.startedAt === req.startedAt ? prev.registeredAt : now, lastSeen: now,
      ...(prev?.stats ? { stats: prev.stats } : {}),
    };
    if (other) this.producers.delete(req.id);
    this.consumers.set(req.id, entry);
    return { entry, fresh: !prev || prev.startedAt !== req.startedAt || prev.group !== req.group || prev.index !== index };
  }

  /** Remembers a member from KV after a controller restart: it gets one lease to heartbeat. */
  seed(rec: BridgeConsumerRecord, now: number): void {
    for (const m of rec.members) {
      if (this.consumers.has(m.id) || this.producers.has(m.id) || this.size >= MAX_BRIDGES) continue;
      this.consumers.set(m.id, {
        kind: 'consumer', id: m.id, group: rec.group, stream: rec.stream, grouping: rec.grouping, index: m.index, startedAt: 0, registeredAt: now, lastSeen: now,
      });
      this.seeded.add(m.id);
    }
  }

  remove(id: string): ProducerEntry | ConsumerEntry | undefined {
    const e = this.producers.get(id) ?? this.consumers.get(id);
    this.seeded.delete(id);
    this.producers.delete(id);
    this.consumers.delete(id);
    return e;
  }

  /** Gives every entry one lease from `now` (after a broker outage, when no heartbeat could arrive), as seed() does. */
  renewLeases(now: number): void {
    for (const m of [this.producers, this.consumers] as Map<string, ProducerEntry | ConsumerEntry>[]) {
      for (const e of m.values()) e.lastSeen = Math.max(e.lastSeen, now);
    }
  }

  /** Drops every entry whose lease ran out; returns them. */
  expire(now: number): (ProducerEntry | ConsumerEntry)[] {
    const out: (ProducerEntry | ConsumerEntry)[] = [];
    for (const m of [this.producers, this.consumers] as Map<string, ProducerEntry | ConsumerEntry>[]) {
      for (const [id, e] of m) {
        if (now - e.lastSeen > this.leaseMs) {
          m.delete(id);
          this.seeded.delete(id);
          out.push(e);
        }
      }
    }
    return out;
  }

  /** The KV record of a group, or undefined when it has no member left. */
  recordOf(group: string, now: number): BridgeConsumerRecord | undefined {
    const members = this.membersOf(group);
    const first = members[0];
    if (!first) return undefined;
    return { group, stream: first.stream, grouping: first.grouping, members: members.map((m) => ({ id: m.id, index: m.index })), updatedAt: now };
  }

  status(): { producers: BridgeProducerStatus[]; consumers: BridgeConsumerStatus[] } {
    return {
      producers: [...this.producers.values()].sort((a, b) => a.id.localeCompare(b.id)).map((p) => ({
        id: p.id, streams: p.streams, lastSeen: p.lastSeen, registeredAt: p.registeredAt, ...pick(p), ...(p.stats ? { stats: p.stats } : {}),
      })),
      consumers: [...this.consumers.values()].sort((a, b) => a.group.localeCompare(b.group) || a.index - b.index).map((c) => ({
        id: c.id, group: c.group, stream: c.stream, grouping: c.grouping, index: c.index, creditGroup: creditGroupOf(c),
        lastSeen: c.lastSeen, registeredAt: c.registeredAt, ...pick(c), ...(c.stats ? { stats: c.stats } : {}),
      })),
    };
  }
}

function pick(r: { host?: string | undefined; pid?: number | undefined; lang?: string | undefined }): { host?: string; pid?: number; lang?: string } {
  return { ...(r.host !== undefined ? { host: r.host } : {}), ...(r.pid !== undefined ? { pid: r.pid } : {}), ...(r.lang !== undefined ? { lang: r.lang } : {}) };
}

/** The group id a member credits as: `<group>`, or `<group>#<index>` for broadcast (PROTOCOL.md, flow control). */
export function creditGroupOf(c: { group: string; grouping: string; index: number }): string {
  return c.grouping === 'broadcast' ? `${c.group}#${c.index}` : c.group;
}

const registry = new WeakMap<ControllerContext, BridgeTable>();

/** The bridge table of a controller (created on first use). */
export function bridgesOf(ctx: ControllerContext): BridgeTable {
  let t = registry.get(ctx);
  if (!t) registry.set(ctx, (t = new BridgeTable(ctx.settings.leaseMs)));
  return t;
}

/** Sends pause or resume to a registered producer; fails early when its lease runs out meanwhile. */
export async function controlBridge(ctx: ControllerContext, id: string, ctl: WorkerControl, timeoutMs: number): Promise<object> {
  const table = bridgesOf(ctx);
  let watch: NodeJS.Timeout | undefined;
  const leaseLost = new Promise<never>((_, reject) => {
    watch = setInterval(() => {
      if (!table.isAlive(id)) reject(new TimeoutError(`bridge ${id} left (its lease expired) during ${ctl.op}`));
    }, 250);
  });
  leaseLost.catch(() => undefined);
  try {
    const reply = await Promise.race([call<object>(ctx.nc, subjects.bridgeControl(id), ctl, timeoutMs), leaseLost]);
    // A bridge is outside the runtime: its pause reply is checked, and one that is not a PauseReply of this producer fails the pause.
    if (ctl.op === 'pause') {
      const r = checkMessage(schemas.controlReplies.pause, { ...reply, ok: true }, 'pause reply');
      if (!r.ok) throw new BadRequestError(`bridge producer ${id} sent an invalid ${r.message}`);
      if (r.value.producer !== id) throw new BadRequestError(`bridge producer ${id} sent a pause reply for producer ${JSON.stringify(r.value.producer)}`);
    }
    return reply;
  } catch (err) {
    if (err instanceof TimeoutError && err.cause !== undefined) {
      const silent = /nobody answers/.test(err.message) ? 'is not listening' : `did not answer within ${timeoutMs} ms`;
      throw new TimeoutError(`bridge producer ${id} ${silent} (${ctl.op})`, { cause: err });
    }
    throw err;
  } finally {
    clearInterval(watch);
  }
}

/**
 * Serves bridge registration, heartbeats and leases for one controller.
 * `stateKv` is topo_state, where consumer groups are written.
 */
export async function startBridges(ctx: ControllerContext, stateKv: KV): Promise<{ tick(now: number): void; renewLeases(now: number): void; stop(): Promise<void> }> {
  const { nc, log, settings } = ctx;
  const table = bridgesOf(ctx);
  // KV writes of consumer groups, one at a time and in order: a group's last write wins.
  let writes: Promise<void> = Promise.resolve();
  const syncGroup = (group: string): Promise<void> => {
    const next = writes.then(async () => {
      const rec = table.recordOf(group, Date.now());
      try {
        if (rec) await stateKv.put(kvKeys.bridgeConsumer(group), JSON.stringify(rec));
        else await stateKv.delete(kvKeys.bridgeConsumer(group));
      } catch (err) {
        log.warn({ err, group }, `could not write consumer group ${group} to topo_state: ${(err as Error).message}`);
      }
    });
    writes = next;
    return next;
  };

  // After a controller restart: the groups in KV, each member given one lease to heartbeat again.
  for await (const k of await stateKv.keys(kvKeys.bridgeConsumerList)) {
    const e = await stateKv.get(k).catch(() => null);
    if (!e || e.operation !== 'PUT') continue;
    let r: ReturnType<typeof checkBridgeConsumerEntry>;
    try {
      r = checkBridgeConsumerEntry(k, e.json());
    } catch (err) {
      r = { ok: false, problem: `not JSON: ${(err as Error).message}` };
    }
    if (r.ok) table.seed(r.record, Date.now());
    else log.error({ key: k.slice(0, 200) }, `KV ${k.slice(0, 200)} is not a valid BridgeConsumerRecord (${r.problem.slice(0, 500)}); skipping it`);
  }

  const isComputation = (name: string): boolean => ctx.store.get(name) !== undefined;
  const fusedReaderOf = (stream: string): string | undefined => {
    const r = ctx.store.all().find((c) => c.fusion?.inputs.includes(stream));
    return r ? `${r.name} (fusion group ${r.fusion!.group})` : undefined;
  };
  const accept = async (req: BridgeRegisterRequest, how: string, stats?: BridgeStats): Promise<BridgeRegisterReply> => {
    const before = req.kind === 'consumer' ? table.consumers.get(req.id)?.group : undefined;
    const { entry, fresh } = table.register(req, Date.now(), isComputation, fusedReaderOf);
    if (stats) entry.stats = stats;
    if (entry.kind === 'consumer') {
      // Written before the reply: a producer that starts afterwards counts the group from its first record.
      if (fresh) await syncGroup(entry.group);
      if (before !== undefined && before !== entry.group) await syncGroup(before);
    }
    if (fresh) {
      log.info({ bridge: entry.id, kind: entry.kind, how }, entry.kind === 'producer'
        ? `bridge producer ${entry.id} registered (${how}), producing ${entry.streams.join(', ')}`
        : `bridge consumer ${entry.id} joined group ${entry.group} on ${entry.stream} (${entry.grouping}, index ${entry.index}) (${how})`);
    }
    return {
      heartbeatMs: settings.heartbeatMs, leaseMs: settings.leaseMs,
      ...(entry.kind === 'consumer' ? { creditGroup: creditGroupOf(entry), index: entry.index } : {}),
    };
  };

  const subs: { unsubscribe(): void }[] = [];
  subs.push(
    serve<BridgeRegisterRequest, BridgeRegisterReply>(nc, subjects.bridgeRegister, (req) => accept(req, 'register'),
      { schema: schemas.bridge.registerRequest, what: 'bridge register request' }),
    serve<BridgeUnregisterRequest, { removed: boolean }>(nc, subjects.bridgeUnregister, async (req) => {
      const e = table.remove(req.id);
      if (!e) return { removed: false };
      log.info({ bridge: e.id, kind: e.kind }, `bridge ${e.kind} ${e.id} unregistered`);
      if (e.kind === 'consumer') await syncGroup(e.group);
      return { removed: true };
    }, { schema: schemas.bridge.unregisterRequest, what: 'bridge unregister request' }),
  );

  // Bad heartbeats: logged for a few subjects, then only counted.
  const badLogged = new Set<string>();
  let badIgnored = 0;
  const hbSub = nc.subscribe(subjects.bridgeHeartbeatAll, {
    callback: (err, msg: Msg) => {
      if (err) return;
      let hb: BridgeHeartbeat | undefined;
      let problem: string | undefined;
      try {
        const r = checkMessage(schemas.bridge.heartbeat, decodeJson(msg.data), 'bridge heartbeat');
        if (r.ok) hb = r.value;
        else problem = r.message;
      } catch (e) {
        problem = `not JSON: ${(e as Error).message}`;
      }
      if (hb && msg.subject !== subjects.bridgeHeartbeat(hb.id)) {
        problem = `its id ${JSON.stringify(hb.id)} is not the subject's`;
        hb = undefined;
      }
      if (!hb) {
        badIgnored++;
        if (badLogged.size < 64 && !badLogged.has(msg.subject)) {
          badLogged.add(msg.subject);
          log.warn({ subject: msg.subject.slice(0, 200), ignored: badIgnored }, `ignoring bridge heartbeat on ${msg.subject.slice(0, 200)}: ${problem?.slice(0, 500)}`);
        }
        return;
      }
      const { at: _at, stats, ...reg } = hb;
      // A heartbeat is the registration again: after a controller restart (or a lease that ran out) it registers anew.
      accept(reg as BridgeRegisterRequest, 'heartbeat', stats).catch((e: unknown) => {
        if (badLogged.size < 64 && !badLogged.has(`conflict ${msg.subject}`)) {
          badLogged.add(`conflict ${msg.subject}`);
          log.warn({ bridge: hb!.id }, `bridge heartbeat of ${hb!.id} refused: ${(e as Error).message}`);
        }
      });
    },
  });

  return {
    tick(now: number): void {
      for (const e of table.expire(now)) {
        log.warn({ bridge: e.id, kind: e.kind, lastSeen: e.lastSeen }, `bridge ${e.kind} ${e.id} missed its lease (nothing for ${now - e.lastSeen} ms): dropped` +
          (e.kind === 'consumer' ? ` from group ${e.group}` : ''));
        if (e.kind === 'consumer') void syncGroup(e.group);
      }
    },
    renewLeases(now: number): void {
      table.renewLeases(now);
    },
    async stop(): Promise<void> {
      for (const s of subs) s.unsubscribe();
      hbSub.unsubscribe();
      await writes;
    },
  };
}
