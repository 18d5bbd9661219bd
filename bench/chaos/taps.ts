/** Taps for the chaos run and test/fuzz.test.ts. */
import type { TopoClient } from '../../runtime/client/client.js';
import { SWAP_IN, SWAP_OUT, type CounterValue, type SourceValue } from '../../test/fixtures/swap-e2e-lib.js';
import { tapStream, type OutRecord, type Tap } from '../../test/swap-helpers.js';

/**
 * Taps of the counter's input and output like test/swap-helpers.ts tapCounter, but safe for the
 * fuzz's made-up records (a value that is null or not an object must not crash the tap).
 */
export async function tapCounterOf(client: TopoClient): Promise<{ input: Tap<{ key: string; seq: number }>; output: Tap<OutRecord> }> {
  const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {});
  const input = await tapStream(client, SWAP_IN, (key, value) => ({ key, seq: (obj(value) as Partial<SourceValue>).seq as number }));
  const output = await tapStream(client, SWAP_OUT, (key, value, producer) => ({ key, producer, ...(obj(value) as unknown as CounterValue) }));
  return { input, output };
}

