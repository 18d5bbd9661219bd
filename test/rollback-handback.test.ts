/**
 * A rollback after the upstreams resumed, when the new instances run on
 * other workers than the old ones (a scale): the input each new instance
 * took goes back to the old instance that owns it, on its own worker,
 * through the Object Store (abort -> handback -> replay), before anything
 * new flows. The counter's output is audited per key: nothing lost,
 * duplicated or reordered, counts continuing.
 */
import { describe, expect, it } from 'vitest';
import { COUNTER, SOURCE } from './fixtures/swap-e2e-lib.js';
import { waitFor } from './harness.js';
import { audit, NO_PROBLEMS, problems, settle, tapCounter, type Tap, perTest } from './swap-helpers.js';

const run = perTest();
const taps = run.taps;

describe('rollback of a scale whose new instances fail after resume', () => {
  it('hands the input they took back to the old instance on its own worker, losing nothing', async () => {
    const c = (await run.cluster({ workers: 3, env: { TOPO_AUTOPILOT: '0' } }));
    await c.client.deployFile('test/fixtures/handback-counter.ts');
    const { input, output } = await tapCounter(c.client);
    taps.push(input as Tap<unknown>, output as Tap<unknown>);
    await c.client.deployFile('test/fixtures/scale-source.ts');
    await waitFor(() => output.records.length > 1_000, { what: 'counted records flowing', timeoutMs: 15_000 });

    const err = await c.client.scale(COUNTER, 3).then(() => undefined, (e: Error & { detail?: { steps?: { step: string; ok: boolean; detail?: string }[] } }) => e);
    expect(err?.name).toBe('SwapRolledBackError');
    const steps = err!.detail?.steps ?? [];
    const replay = steps.find((s) => s.step === 'replay');
    // The new instances on the other workers had taken input when instance 2 failed: it went back through the store.
    expect(replay, JSON.stringify(steps)).toBeDefined();
    expect(replay!.ok).toBe(true);
    const rec = (await c.client.computation(COUNTER))!;
    expect(rec.instances).toBe(1);

    const mark = output.records.length;
    await waitFor(() => output.records.length > mark + 1_000, { what: 'counting on after the rollback', timeoutMs: 15_000 });
    await c.client.kill(SOURCE);
    const upTo = await settle(input.records, output.records, 60_000);
    const a = audit(output.records, upTo);
    expect(problems(a), a.examples.join('\n')).toEqual(NO_PROBLEMS);
    console.log(`handback: ${[...upTo.values()].reduce((n, s) => n + s, 0)} records over ${a.keys} keys, lost ${a.lost}, duplicated ${a.duplicated}, ` +
      `reordered ${a.reordered}, bad counts ${a.badCounts}; ${replay!.detail}`);
  }, 120_000);
});
