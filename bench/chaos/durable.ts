/**
 * The chaos phase of at-least-once streams and checkpoints: a source of
 * 20,000 records/s (100 keys every 5 ms) into a key-grouped counter (2
 * instances) on at-least-once streams, 3 workers; a worker running a counter
 * instance is killed with -9 again and again: idle, in the middle of a swap,
 * in the middle of a scale. The counter's output says whether every record
 * was counted exactly once: a key's count must equal the tick of the record
 * counted (test/alo-helpers.ts), and no tick may be missing; duplicates at the
 * output (records produced again after a restart) are counted.
 */
import { ALO_COUNTER, ALO_OUT, ALO_SOURCE, type CountValue } from '../../test/fixtures/alo-lib.js';
import { exactness, untilSettled, type Out } from '../../test/alo-helpers.js';
import { startCluster, waitFor } from '../../test/harness.js';
import { tapStream } from '../../test/swap-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface DurableResult {
  what: string;
  seconds: number;
  records: number;
  lost: number;
  countsOff: number;
  duplicatesAtOutput: number;
  recoveriesMs: number[];
  notes: string[];
  errors: string[];
}

type Moment = 'idle' | 'mid-swap' | 'mid-scale';

export async function durablePhase(kills: number, log: (s: string) => void): Promise<DurableResult> {
  const t0 = Date.now();
  const res: DurableResult = {
    what: `${kills} worker(s) killed with -9 in a row at 20,000 records/s on at-least-once streams (idle, mid-swap, mid-scale)`,
    seconds: 0, records: 0, lost: 0, countsOff: 0, duplicatesAtOutput: 0, recoveriesMs: [], notes: [], errors: [],
  };
  const c = await startCluster({ workers: 3 });
  const out = await tapStream<Out>(c.client, ALO_OUT, (key, value, producer) => ({ key, producer, ...(value as CountValue) }));
  try {
    await c.client.deployFile('test/fixtures/alo-counter.ts', { instances: 2 });
    await c.client.deployFile('test/fixtures/alo-source-20k.ts');
    await waitFor(() => out.records.length > 20_000, { what: 'counted records flowing', timeoutMs: 30_000 });
    log(`  topology up in ${c.dir}`);
    let code = 'v2';
    let instances = 2;
    for (let k = 0; k < kills; k++) {
      const moment: Moment = (['idle', 'mid-swap', 'mid-scale'] as const)[k % 3]!;
      const status = await c.client.status();
      const counterOn = status.computations.find((x) => x.name === ALO_COUNTER)!.instances.map((i) => i.workerId);
      const victim = counterOn[k % counterOn.length]!;
      const n = Number(victim.replace(/^w-/, ''));
      let change: Promise<string> | undefined;
      if (moment === 'mid-swap') {
        const file = code === 'v2' ? 'test/fixtures/alo-counter-v2.ts' : 'test/fixtures/alo-counter.ts';
        change = c.client.swap(ALO_COUNTER, file).then((r) => `swap ${r.result}`, (e: Error) => `swap failed: ${e.message.slice(0, 100)}`);
        code = code === 'v2' ? 'v1' : 'v2';
      } else if (moment === 'mid-scale') {
        instances = instances === 2 ? 3 : 2;
        change = c.client.scale(ALO_COUNTER, instances).then((r) => `scale to ${r.instances}`, (e: Error) => `scale failed: ${e.message.slice(0, 100)}`);
      }
      if (change) {
        // Into the change: once a counter instance leaves 'running' (paused, released, on probation).
        const deadline = Date.now() + 5_000;
        while (Date.now() < deadline) {
          const s = await c.client.status().catch(() => undefined);
          if (s?.computations.find((x) => x.name === ALO_COUNTER)?.instances.some((i) => i.state !== 'running')) break;
          await sleep(10);
        }
      }
      const before = out.records.length;
      const killedAt = Date.now();
      await c.killWorker(n, 'SIGKILL');
      const outcome = change ? await change : 'no change under way';
      await waitFor(async () => {
        const s = await c.client.status();
        return s.computations.every((x) => x.instances.length > 0 && x.instances.every((i) => i.state === 'running' && i.workerId !== victim));
      }, { what: `every instance running again after ${victim} was killed`, timeoutMs: 60_000 }).catch((err: Error) => res.errors.push(err.message));
      await waitFor(() => out.records.length > before + 5_000, { what: 'records flowing again', timeoutMs: 60_000 }).catch((err: Error) => res.errors.push(err.message));
      res.recoveriesMs.push(Date.now() - killedAt);
      res.notes.push(`kill ${k + 1} (${moment}): ${victim}; ${outcome}; output flowing again ${Date.now() - killedAt} ms after the kill (the controller notices a dead worker when its 5 s lease runs out)`);
      log(`  ${res.notes.at(-1)}`);
      await c.startWorker(n);
      await sleep(1_500);
      instances = (await c.client.computation(ALO_COUNTER))?.instances ?? instances;
    }
    await c.client.kill(ALO_SOURCE);
    await untilSettled(out.records, 'output settled', 60_000, 1_500);
    const e = exactness(out.records);
    res.records = out.records.length;
    res.lost = e.missing;
    res.countsOff = e.wrong;
    res.duplicatesAtOutput = e.duplicates;
    res.notes.push(`${e.keys} keys, ${e.minMax} ticks per key at least; ${e.examples.length ? `examples: ${e.examples.join('; ')}` : 'every count equals its tick'}`);
  } catch (err) {
    res.errors.push((err as Error).message);
  } finally {
    await out.stop().catch(() => undefined);
    await c.stop().catch(() => undefined);
  }
  res.seconds = Math.round((Date.now() - t0) / 1000);
  return res;
}
