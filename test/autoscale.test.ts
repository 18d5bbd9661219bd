/**
 * The seed's instant bursting: a computation with hints.autoscale is scaled
 * out by the oracle while it saturates (busy above 0.8 for a window) and back
 * in once it idles, live, every record still delivered once.
 */
import { describe, expect, it } from 'vitest';
import { SOURCE } from './fixtures/swap-e2e-lib.js';
import { waitFor } from './harness.js';
import { tapStream, type Tap, perTest } from './swap-helpers.js';

const run = perTest();
const taps = run.taps;

describe('autoscaling by the oracle', () => {
  it('scales a saturated computation out, and back in when it idles, delivering every record once', async () => {
    const c = (await run.cluster({ workers: 2 }));
    await c.client.deployFile('test/fixtures/autoscale-busy.ts');
    const input = await tapStream(c.client, 'swap-in', (key, value) => `${key}:${(value as { seq: number }).seq}`);
    const output = await tapStream(c.client, 'autoscale-out', (key, value) => `${key}:${(value as { seq: number }).seq}`);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    // 8,000 records/s at ~250 µs each: two seconds of work every second for one instance.
    await c.client.deployFile('test/fixtures/scale-source.ts');
    const count = async () => (await c.client.computation('autoscale-busy'))?.instances ?? 0;
    const out = await waitFor(async () => ((await count()) >= 2 ? count() : undefined), { what: 'scaled out by the oracle', timeoutMs: 45_000 });
    expect(out).toBeGreaterThanOrEqual(2);
    // Desired state is written just before the history entry (runtime/controller/swapRunner.ts commit): wait for the entry.
    const history = await waitFor(async () => {
      const h = (await c.client.history('autoscale-busy')).filter((e) => e.action === 'scale');
      return h.length ? h : undefined;
    }, { what: 'the scale in history' });
    expect(history[0]?.steps?.find((s) => s.step === 'target')?.detail).toMatch(/^1 -> 2 instance/);

    await c.client.kill(SOURCE);
    await waitFor(async () => ((await count()) === 1 ? true : undefined), { what: 'scaled back in once idle', timeoutMs: 60_000 });
    await waitFor(() => output.records.length >= input.records.length, { what: 'every record through', timeoutMs: 30_000 });
    const seen = new Map<string, number>();
    for (const o of output.records) seen.set(o, (seen.get(o) ?? 0) + 1);
    const lost = input.records.filter((i) => !seen.has(i)).length;
    const duplicated = [...seen.values()].filter((n) => n > 1).length;
    const scales = (await c.client.history('autoscale-busy')).filter((e) => e.action === 'scale').map((e) => e.steps?.find((s) => s.step === 'target')?.detail?.split(',')[0]);
    console.log(`autoscale: ${input.records.length} records, lost ${lost}, duplicated ${duplicated}; scales: ${scales.join('; ')}`);
    expect({ lost, duplicated }).toEqual({ lost: 0, duplicated: 0 });
  }, 180_000);
});
