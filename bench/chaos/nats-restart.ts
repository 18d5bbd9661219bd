/**
 * The chaos phase of nats-server restarts: the topology of the durable phase
 * (bench/chaos/durable.ts: 20,000 records/s, 100 keys every 5 ms, into a
 * key-grouped counter of 2 instances on at-least-once streams, 3 workers),
 * and nats-server itself stopped again and again, alternately with SIGTERM
 * (a clean shutdown) and SIGKILL (a crash), left down a few seconds, then
 * started again on the same port with the same store dir (its JetStream data
 * on disk), as the supervisor of `topo up` does. After each restart: how long
 * until output records made after the restart reach a tap.
 *
 * The audit reads the output as stored in JetStream (test/alo-helpers.ts
 * storedReader: a durable consumer made before the source starts keeps every
 * message until the end), not a tap: a tap misses what passes while its own
 * connection is down. Every key gets every tick, so a tick missing below a
 * key's highest one is lost; each count must equal its tick (no reset, no
 * double count); records stored twice (same producer and sequence) are
 * counted and dropped by the reader. A tap of the input says when a lost
 * record was published, so the report can say in which outage it went.
 * (The input is not read as stored: on nats-server 2.9.10 an audit consumer
 * of the input lost messages the counter had acknowledged, across a restart.)
 *
 * Beside it, cheaply, an at-most-once pair (test/fixtures/restart-source.ts,
 * 1,000 numbered records/s into restart-counter.ts, core NATS), tapped: what
 * the same restarts cost a stream that is not stored.
 */
import { ALO_COUNTER, ALO_IN, ALO_OUT, ALO_SOURCE } from '../../test/fixtures/alo-lib.js';
import { exactness, storedReader, untilSettled } from '../../test/alo-helpers.js';
import { isMalformed } from '../../runtime/client/client.js';
import { startCluster, waitFor, type Cluster } from '../../test/harness.js';
import { tapStream } from '../../test/swap-helpers.js';
import type { StatusReply } from '../../protocol/index.js';
import type { DurableResult } from './durable.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Down this long: SIGTERM a short outage, SIGKILL one past the workers' 5 s lease. */
const DOWN_MS = { SIGTERM: 3_000, SIGKILL: 6_000 } as const;
/** Output records made after the restart that must reach the tap for the output to count as flowing again. */
const FLOWING = 5_000;

/** What the durable phase reports (recoveriesMs here: ms from nats-server started again to FLOWING output records at the tap). */
export type NatsRestartResult = DurableResult;

type Sig = keyof typeof DOWN_MS;

function allRunning(s: StatusReply | undefined): boolean {
  return !!s && s.computations.length > 0 && s.computations.every((c) => c.instances.length > 0 && c.instances.every((i) => i.state === 'running'));
}

export async function natsRestartPhase(restarts: number, log: (s: string) => void): Promise<NatsRestartResult> {
  const t0 = Date.now();
  const res: NatsRestartResult = {
    what: `nats-server restarted ${restarts} time(s) (SIGTERM and SIGKILL alternately, down ${DOWN_MS.SIGTERM / 1000} s / ${DOWN_MS.SIGKILL / 1000} s, same port and store dir) at 20,000 records/s on at-least-once streams`,
    seconds: 0, records: 0, lost: 0, countsOff: 0, duplicatesAtOutput: 0, recoveriesMs: [], notes: [], errors: [],
  };
  const c: Cluster = await startCluster({ workers: 3 });
  // A tap of the output, for "flowing again" only: the producer's timestamp of each record it sees. The audit reads the store.
  const stamps: number[] = [];
  const ac = new AbortController();
  const first = c.client.tap(ALO_OUT, { signal: ac.signal });
  const stamping = (async () => {
    for await (const item of first) if (!isMalformed(item)) stamps.push(item.timestamp);
  })();
  await c.client.nc.flush();
  // A tap of the input: when each (key, tick) was published (seen on core NATS), to say in which outage a lost one was made.
  const publishedAt = new Map<string, number>();
  const inTap = await tapStream(c.client, ALO_IN, (key, value) => publishedAt.set(`${key} ${(value as { tick: number }).tick}`, Date.now()));
  const amo = await tapStream(c.client, 'restart-counts', (key, value) => ({ key, ...(value as { n: number; count: number }) }));
  try {
    await c.client.deployFile('test/fixtures/alo-counter.ts', { instances: 2 });
    // Both at-least-once streams exist now (the counter declares them): readers made here keep everything from the start.
    const storedOut = await storedReader(c.client.nc, ALO_OUT);
    await c.client.deployFile('test/fixtures/restart-counter.ts', { instances: 2 });
    await c.client.deployFile('test/fixtures/alo-source-20k.ts');
    await c.client.deployFile('test/fixtures/restart-source.ts');
    await waitFor(() => stamps.length > 20_000 && amo.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 30_000 });
    log(`  topology up in ${c.dir}`);

    const windows: { sig: Sig; stopAt: number; goneAt: number; upAt: number }[] = [];
    for (let k = 0; k < restarts; k++) {
      const sig: Sig = k % 2 === 0 ? 'SIGTERM' : 'SIGKILL';
      await sleep(3_000);
      const stoppedAt = Date.now();
      await c.stopNats(sig);
      const goneMs = Date.now() - stoppedAt;
      await sleep(DOWN_MS[sig]);
      await c.startNats();
      const upAt = Date.now();
      windows.push({ sig, stopAt: stoppedAt, goneAt: stoppedAt + goneMs, upAt });
      let last: StatusReply | undefined;
      let runningMs: number | undefined;
      // Counting from where the tap was: stamps only grow.
      let from = stamps.length;
      let fresh = 0;
      const flowing = () => {
        for (; from < stamps.length; from++) if (stamps[from]! >= upAt) fresh++;
        return fresh >= FLOWING;
      };
      await waitFor(async () => {
        if (runningMs === undefined && allRunning((last = await c.client.status({ timeoutMs: 1_000 }).catch(() => undefined)))) runningMs = Date.now() - upAt;
        return runningMs !== undefined && flowing();
      }, { what: `output flowing again after nats-server restart ${k + 1} (${sig})`, timeoutMs: 60_000, intervalMs: 50 }).catch((err: Error) => {
        res.errors.push(`${err.message}; status: ${last ? JSON.stringify(last.computations.map((x) => [x.name, x.instances.map((i) => i.state)])) : 'none'}; ` +
          `worker 1: ${c.logTail(1, 5).replace(/\n/g, ' | ')}`);
      });
      const flowingMs = Date.now() - upAt;
      res.recoveriesMs.push(flowingMs);
      res.notes.push(`restart ${k + 1} (${sig}): nats-server gone in ${goneMs} ms, down ${upAt - stoppedAt} ms; every instance reported running ${runningMs ?? '?'} ms after it was started again, ` +
        `${FLOWING.toLocaleString('en-US')} output records made since then at the tap after ${flowingMs} ms`);
      log(`  ${res.notes.at(-1)}`);
    }
    await sleep(3_000);
    const status = await c.client.status();
    const counter = status.computations.find((x) => x.name === ALO_COUNTER);
    const retries = status.computations.flatMap((x) => x.instances).reduce((n, i) => n + (i.metrics.publishRetries ?? 0), 0);

    await c.client.kill(ALO_SOURCE);
    await c.client.kill('restart-source');
    await untilSettled(stamps, 'output settled', 60_000, 1_500);
    await sleep(500);

    // The audit: the output as the counter stored it (a reader made before the source started).
    const output = await storedOut.read();
    const e = exactness(output);
    const ticksOut = new Map<string, Set<number>>();
    for (const o of output) {
      let s = ticksOut.get(o.key);
      if (!s) ticksOut.set(o.key, (s = new Set()));
      s.add(o.tick);
    }
    // Every key gets every tick: a tick below the highest one counted that is not at the output is lost.
    let lost = 0;
    let produced = 0;
    const byWindow = new Map<number, { n: number; min: number; max: number }>();
    for (const [key, so] of ticksOut) {
      const top = Math.max(0, ...so);
      produced += top;
      for (let t = 1; t <= top; t++) {
        if (so.has(t)) continue;
        lost++;
        const at = publishedAt.get(`${key} ${t}`);
        const w = at === undefined ? -1 : windows.findIndex((x) => at >= x.stopAt - 500 && at <= x.upAt);
        const b = byWindow.get(w) ?? { n: 0, min: Infinity, max: -Infinity };
        b.n++;
        if (at !== undefined && w >= 0) (b.min = Math.min(b.min, at - windows[w]!.stopAt), b.max = Math.max(b.max, at - windows[w]!.stopAt));
        byWindow.set(w, b);
      }
    }
    res.records = produced;
    res.lost = lost;
    res.countsOff = e.wrong;
    res.duplicatesAtOutput = storedOut.duplicates;
    res.notes.push(`output as stored: ${output.length.toLocaleString('en-US')} records over ${ticksOut.size} keys, ${e.minMax} ticks per key at least (records: keys x highest tick counted); ` +
      `${e.examples.length ? `examples: ${e.examples.join('; ')}` : 'every count equals its tick'}`);
    for (const [w, b] of [...byWindow].sort((x, y) => x[0] - y[0])) {
      res.notes.push(w < 0
        ? `lost, published outside any restart (or not seen by the input tap): ${b.n.toLocaleString('en-US')}`
        : `lost around restart ${w + 1} (${windows[w]!.sig}): ${b.n.toLocaleString('en-US')} records, published (seen on core NATS by the input tap) ${b.min}..${b.max} ms after the stop signal ` +
          `(the server took ${windows[w]!.goneAt - windows[w]!.stopAt} ms to exit)`);
    }
    res.notes.push(`duplicates at the output (records stored twice, same producer id and sequence, dropped by the reader): ${storedOut.duplicates}; ticks counted twice under another sequence: ${e.duplicates}; ` +
      `the counter skipped ${counter?.duplicates ?? 0} duplicate(s) at its input; publishes retried (all instances): ${retries}`);
    res.notes.push(`a tap of the output (its connection down with the server) saw ${stamps.length.toLocaleString('en-US')} records, ${(output.length - stamps.length).toLocaleString('en-US')} fewer than stored (what passed while it was disconnected, less the duplicates it saw)`);

    // At-most-once beside it: what the tap of restart-counts saw (an upper bound: the tap's own outage counts too).
    const ns = amo.records.map((r) => r.n);
    const distinct = new Set(ns);
    const top = Math.max(0, ...ns);
    const counts = new Map<string, Set<number>>();
    let repeated = 0;
    for (const r of amo.records) {
      let s = counts.get(r.key);
      if (!s) counts.set(r.key, (s = new Set()));
      if (s.has(r.count)) repeated++;
      s.add(r.count);
    }
    res.notes.push(`at-most-once beside it (restart-source, 1,000 records/s on core NATS, tapped): ${(top - distinct.size).toLocaleString('en-US')} of ${top.toLocaleString('en-US')} numbers missing at the tap ` +
      `(${((100 * (top - distinct.size)) / Math.max(1, top)).toFixed(2)}%: lost in the outages by design, and what the tap missed while reconnecting), ${ns.length - distinct.size} seen twice, ` +
      `${repeated} counts repeated (a reset of the counter's state would repeat them)`);
  } catch (err) {
    res.errors.push((err as Error).message);
  } finally {
    ac.abort();
    await stamping.catch(() => undefined);
    await amo.stop().catch(() => undefined);
    await inTap.stop().catch(() => undefined);
    await c.stop().catch(() => undefined);
  }
  res.seconds = Math.round((Date.now() - t0) / 1000);
  return res;
}
