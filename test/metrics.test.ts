/**
 * Prometheus metrics (runtime/metrics/controllerMetrics.ts) served by the controller on /metrics,
 * scraped by a real Prometheus; and status rates taken over a window of heartbeat counters.
 */
import { describe, expect, it } from 'vitest';
import { waitFor } from './harness.js';
import { perTest } from './swap-helpers.js';
import { parseExposition, startPrometheus, type Prometheus, type Sample } from './prometheus.js';
import { RateWindow } from '../runtime/controller/rateWindow.js';
import { Observed } from '../runtime/worker/observed.js';

const run = perTest();

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

const pick = (samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const total = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  pick(samples, name, labels).reduce((n, s) => n + s.value, 0);

describe('metrics on /metrics', () => {
  it('has every instance\'s and worker\'s figures, a real Prometheus scrapes a rate, and swaps and dead workers show', async () => {
    const c = await run.cluster({ workers: 2 });
    await c.client.deployFile('test/fixtures/metrics-sink.ts');
    await c.client.deployFile('test/fixtures/e2e-ticker.ts');
    const httpUrl = (await c.client.status()).httpUrl;
    expect(httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const url = httpUrl!;

    const first = await waitFor(async () => {
      const s = await scrape(url);
      // Each side's figures come with its own worker's heartbeat: the ticker's may be a beat behind the sink's.
      return total(s, 'topo_records_in_total', { computation: 'metrics-sink' }) > 20 &&
        total(s, 'topo_records_out_total', { computation: 'e2e-ticker', stream: 'e2e-ticks' }) > 20 ? s : undefined;
    }, { what: 'the sink and the ticker counted on /metrics', timeoutMs: 20_000 });
    const sink = pick(first, 'topo_records_in_total', { computation: 'metrics-sink' })[0]!;
    expect(Object.keys(sink.labels).sort()).toEqual(['computation', 'instance', 'version', 'worker']);
    expect(sink.labels).toMatchObject({ instance: '0', version: '1' });
    expect(['w-1', 'w-2']).toContain(sink.labels.worker);
    // Per output stream, with the stream label; the latency histogram is whole (+Inf bucket = count).
    expect(total(first, 'topo_records_out_total', { computation: 'e2e-ticker', stream: 'e2e-ticks' })).toBeGreaterThan(20);
    const count = total(first, 'topo_processing_latency_seconds_count', { computation: 'metrics-sink' });
    expect(count).toBeGreaterThan(0);
    expect(total(first, 'topo_processing_latency_seconds_bucket', { computation: 'metrics-sink', le: '+Inf' })).toBe(count);
    expect(total(first, 'topo_processing_latency_seconds_sum', { computation: 'metrics-sink' })).toBeGreaterThan(0);
    for (const name of ['topo_busy_seconds_total', 'topo_idle_seconds_total', 'topo_backpressured_seconds_total', 'topo_queue_depth_batches', 'topo_errors_total', 'topo_dead_letters_total']) {
      expect(pick(first, name, { computation: 'metrics-sink' }), name).toHaveLength(1);
    }
    expect(pick(first, 'topo_credit_stall_seconds_total', { computation: 'e2e-ticker', stream: 'e2e-ticks' })).toHaveLength(1);
    expect(total(first, 'topo_idle_seconds_total', { computation: 'metrics-sink' })).toBeGreaterThan(0);
    for (const w of ['w-1', 'w-2']) {
      expect(total(first, 'topo_worker_up', { worker: w })).toBe(1);
      expect(total(first, 'topo_worker_resident_memory_bytes', { worker: w })).toBeGreaterThan(10_000_000);
      expect(total(first, 'topo_worker_cpu_seconds_total', { worker: w })).toBeGreaterThan(0);
      expect(pick(first, 'topo_worker_event_loop_lag_seconds', { worker: w })).toHaveLength(1);
    }

    let prom: Prometheus | undefined;
    try {
      prom = await startPrometheus(url);
      // The ticker produces one record every 20 ms: up to 50/s.
      const rate = await waitFor(async () => {
        const r = await prom!.query('sum(rate(topo_records_in_total{computation="metrics-sink"}[5s]))');
        return r[0] && r[0].value > 5 ? r[0].value : undefined;
      }, { what: 'a rate from Prometheus', timeoutMs: 30_000, intervalMs: 500 });
      expect(rate).toBeLessThan(60);
      const up = await prom.query('up{job="topo"}');
      expect(up.map((u) => u.value)).toEqual([1]);
    } finally {
      await prom?.stop();
    }

    // A swap's pause goes into the swap histogram, in seconds (the oracle's fusing of the chain may be there before it).
    const beforeSwap = await scrape(url);
    const outcome = await c.client.swap('metrics-sink', 'test/fixtures/metrics-sink-v2.ts');
    expect(outcome.result).toBe('ok');
    const afterSwap = await scrape(url);
    const swapLabels = { computation: 'metrics-sink' };
    expect(total(afterSwap, 'topo_swap_pause_seconds_count', swapLabels) - total(beforeSwap, 'topo_swap_pause_seconds_count', swapLabels)).toBe(1);
    expect(total(afterSwap, 'topo_swap_pause_seconds_sum', swapLabels) - total(beforeSwap, 'topo_swap_pause_seconds_sum', swapLabels))
      .toBeCloseTo((outcome.pauseMs ?? NaN) / 1_000, 6);
    await waitFor(async () => pick(await scrape(url), 'topo_records_in_total', { computation: 'metrics-sink', version: '2' }).length === 1,
      { what: 'version 2 on /metrics' });

    // A worker killed with -9 reads 0 once its lease runs out, and its instances' series go.
    await c.killWorker(2);
    await waitFor(async () => total(await scrape(url), 'topo_worker_up', { worker: 'w-2' }) === 0, { what: 'w-2 down on /metrics', timeoutMs: 20_000 });
    const afterKill = await scrape(url);
    expect(pick(afterKill, 'topo_records_in_total', { worker: 'w-2' })).toEqual([]);
    expect(pick(afterKill, 'topo_worker_resident_memory_bytes', { worker: 'w-2' })).toEqual([]);
  }, 120_000);

  it('gives status rates over a window: a sink at 0.5 records/s reads about 0.5 every time, not 0 or 1', async () => {
    const c = await run.cluster({ workers: 1 });
    await c.client.deployFile('test/fixtures/metrics-trickle-sink.ts');
    await c.client.deployFile('test/fixtures/metrics-trickle.ts');
    const rate = async (): Promise<number> => (await c.client.status()).computations.find((x) => x.name === 'metrics-trickle-sink')?.inPerSec ?? -1;
    // A full window of heartbeats (10 s) after the first record.
    await waitFor(async () => (await rate()) > 0, { what: 'the sink counting', timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 11_000));
    const rates: number[] = [];
    for (let i = 0; i < 8; i++) {
      rates.push(await rate());
      await new Promise((r) => setTimeout(r, 700));
    }
    for (const r of rates) expect(r, `rates seen: ${rates.join(', ')}`).toBeGreaterThan(0.3);
    for (const r of rates) expect(r, `rates seen: ${rates.join(', ')}`).toBeLessThan(0.7);
    const status = await c.client.status();
    expect(status.computations.find((x) => x.name === 'metrics-trickle')?.streamsOutPerSec?.trickle).toBeGreaterThan(0.3);
  }, 60_000);
});

describe('rate window', () => {
  it('rates over the window, and starts afresh when a counter goes down', () => {
    const w = new RateWindow(10_000);
    expect(w.rate('n')).toBe(0);
    for (let t = 0; t <= 20; t++) w.add(t * 1_000, { n: t * 5, 'out:a': t });
    expect(w.rate('n')).toBeCloseTo(5, 6);
    expect(w.ratesOf('out:')).toEqual({ a: 1 });
    // Only the window is kept: a burst older than it no longer counts.
    const b = new RateWindow(10_000);
    b.add(0, { n: 0 });
    b.add(1_000, { n: 1_000 });
    for (let t = 2; t <= 13; t++) b.add(t * 1_000, { n: 1_000 });
    expect(b.rate('n')).toBe(0);
    // A restarted instance's counters begin again at 0: not a negative rate, and the old samples go.
    w.add(21_000, { n: 3 });
    expect(w.rate('n')).toBe(0);
    w.add(22_000, { n: 8 });
    expect(w.rate('n')).toBeCloseTo(5, 6);
    // Out-of-order and repeated timestamps are ignored.
    w.add(22_000, { n: 1_000 });
    w.add(10_000, { n: 1_000 });
    expect(w.rate('n')).toBeCloseTo(5, 6);
  });

  it('observes nothing with TOPO_METRICS=0', () => {
    const on = new Observed(true);
    const off = new Observed(false);
    for (const o of [on, off]) o.ran(2, 10);
    expect(on.report(0).latencyBuckets?.reduce((a, b) => a + b, 0)).toBe(1);
    expect(on.report(0).busyTotalMs).toBeGreaterThanOrEqual(0);
    expect(off.report(0).latencyBuckets).toBeUndefined();
    expect(off.report(0).busyTotalMs).toBeUndefined();
  });
});
