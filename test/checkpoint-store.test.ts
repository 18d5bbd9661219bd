/**
 * The checkpoint store against a real nats-server: a writer that dies midway through a checkpoint
 * (some of its KV puts stored, the rest never) leaves state, input positions and output sequences
 * that are read back from one and the same cut. CI once saw a restarted source replay one second of
 * ticks under new sequence numbers (the counter downstream counted them twice): its output position
 * had been stored, its state chunk not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { buckets, packr, partitionOf } from '../protocol/index.js';
import { openControlPlane } from '../runtime/controller/infrastructure.js';
import { CheckpointStore, type CheckpointCut, type WrittenCache } from '../runtime/state/checkpointStore.js';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';

const scratch = mkdtempSync(join(tmpdir(), 'topo-checkpoint-store-test-'));
let nats: StartedNats;
let nc: NatsConnection;
let kv: KV;

beforeAll(async () => {
  nats = await startNatsServer({ storeDir: join(scratch, 'nats') });
  nc = await connect({ servers: nats.url });
  kv = (await openControlPlane(nc)).checkpoints;
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** Two keys in two different partitions. */
const [keyA, keyB] = ((): [string, string] => {
  const a = 'key-0';
  for (let i = 1; ; i++) if (partitionOf(`key-${i}`) !== partitionOf(a)) return [a, `key-${i}`];
})();

/** A cut of instance 0 of 1 of `name` owning the partitions of keyA and keyB, where every key's state and the output sequence are `n`. */
function cutAt(name: string, n: number): CheckpointCut {
  return {
    computation: name, version: 1, index: 0, count: 1, at: Date.now(), partitions: [partitionOf(keyA), partitionOf(keyB)],
    state: { entries: [[keyA, n], [keyB, n]] }, timers: [],
    seen: [], pos: [[`in ${partitionOf(keyA)}`, n], [`in ${partitionOf(keyB)}`, n]], producer: 'p-1', seqs: [['out', n]],
  };
}

/** The bucket as a writer sees it, dying (every later put never arrives) after `puts` puts. */
function dyingAfter(puts: number): KV {
  let left = puts;
  return new Proxy(kv, {
    get(target, prop, receiver) {
      if (prop !== 'put') return Reflect.get(target, prop, receiver) as unknown;
      return (...args: Parameters<KV['put']>) => (left-- > 0 ? target.put(...args) : new Promise<number>(() => undefined));
    },
  });
}

describe('a checkpoint writer that dies midway', () => {
  // A cut is two chunks and one output position: three puts. Dying after 0, 1 or 2 of them.
  it.each([0, 1, 2])('after %i of the second checkpoint\'s puts: state, positions and output sequence come back from one cut', async (puts) => {
    const name = `c${puts}`;
    const written: WrittenCache = new Map();
    await new CheckpointStore(kv).write(cutAt(name, 10), written);
    void new CheckpointStore(dyingAfter(puts)).write(cutAt(name, 20), written);
    await new Promise((r) => setTimeout(r, 300));

    const loaded = (await new CheckpointStore(kv).load(name, [partitionOf(keyA), partitionOf(keyB)], 0, 1))!;
    const state = new Map(loaded.state.entries);
    const n = loaded.meta!.seqs[0]![1];
    expect({ a: state.get(keyA), b: state.get(keyB), pos: loaded.pos.map(([, p]) => p) }).toEqual({ a: n, b: n, pos: [n, n] });
    expect([10, 20]).toContain(n);
    expect(loaded.unpinned).toBe(0);
  });

  it('a completed checkpoint is read back whole, unchanged chunks included', async () => {
    const written: WrittenCache = new Map();
    const store = new CheckpointStore(kv);
    await store.write(cutAt('whole', 1), written);
    const cut = cutAt('whole', 2);
    cut.state.entries[1] = [keyB, 1]; // keyB's chunk unchanged but for its position
    cut.pos[1] = [cut.pos[1]![0], 1];
    const { chunks } = await store.write(cut, written);
    expect(chunks).toBe(1);
    const loaded = (await store.load('whole', [partitionOf(keyA), partitionOf(keyB)], 0, 1))!;
    expect(new Map(loaded.state.entries)).toEqual(new Map([[keyA, 2], [keyB, 1]]));
    expect(loaded.meta!.seqs).toEqual([['out', 2]]);
  });
});

describe('a hostile output position', () => {
  it('naming a revision of another key, or garbage, changes nothing: the latest chunks are read, and it is counted', async () => {
    const written: WrittenCache = new Map();
    const store = new CheckpointStore(kv);
    await store.write(cutAt('hostile', 7), written);
    const other = await kv.put('someone-else.p0', new Uint8Array([1]));
    const metaKey = 'hostile.m0';
    const meta = (await store.load('hostile', [partitionOf(keyA), partitionOf(keyB)], 0, 1))!.meta!;
    await kv.put(metaKey, packr.pack({ ...meta, chunks: [[partitionOf(keyA), other], [partitionOf(keyB), other]] }));
    const misled = (await store.load('hostile', [partitionOf(keyA), partitionOf(keyB)], 0, 1))!;
    expect(new Map(misled.state.entries)).toEqual(new Map([[keyA, 7], [keyB, 7]]));
    expect(misled.unpinned).toBe(2);
    await kv.put(metaKey, packr.pack({ ...meta, chunks: [[99, -1]] }));
    const garbage = (await store.load('hostile', [partitionOf(keyA), partitionOf(keyB)], 0, 1))!;
    expect(garbage.meta).toBeUndefined();
    expect(garbage.invalid).toBe(1);
    expect(new Map(garbage.state.entries)).toEqual(new Map([[keyA, 7], [keyB, 7]]));
  });
});

describe('the checkpoints bucket', () => {
  it('keeps more than one revision per key, also when an older controller made it with one', async () => {
    const old = await startNatsServer({ storeDir: join(scratch, 'nats-old') });
    const c = await connect({ servers: old.url });
    try {
      await new Kvm(c).create(buckets.checkpoints, { history: 1 });
      await openControlPlane(c);
      const info = await (await jetstreamManager(c)).streams.info(`KV_${buckets.checkpoints}`);
      expect(info.config.max_msgs_per_subject).toBeGreaterThan(1);
    } finally {
      await c.close();
      await old.stop();
    }
  });
});
