/**
 * Type-level tests, checked by `tsc --noEmit -p .` (part of `npm test`); vitest
 * does not run this file. Each `@ts-expect-error` must meet a compile error on
 * the next line, or tsc fails with "Unused '@ts-expect-error' directive".
 */
import { defineComputation, type InputRecord } from '../sdk/index.js';
import { createTestContext, type OutputRecord } from '../sdk/testing/index.js';

export function typeChecks(): void {
  const tagger = defineComputation({
    name: 'tagger',
    istreams: ['clicks', { stream: 'views', grouping: 'key' }],
    ostreams: ['tags', 'alerts'],
    processRecord(ctx, record) {
      ctx.produceRecord('tags', record.key, record.value);
      ctx.produceRecord('alerts', record.key, 1);
      // @ts-expect-error 'tgas' is not a declared ostream
      ctx.produceRecord('tgas', record.key, record.value);

      const stream: 'clicks' | 'views' = record.stream;
      if (stream === 'views') ctx.setTimer(record.key, record.timestamp + 1000);
      // @ts-expect-error 'purchases' is not a declared istream, so the comparison can never be true
      if (record.stream === 'purchases') return;
    },
    processTimer(ctx, key) {
      ctx.produceRecord('alerts', key, null);
      // @ts-expect-error ostreams are checked in every callback
      ctx.produceRecord('clicks', key, null);
    },
  });

  // The declared stream names survive as literal types.
  const onlyDeclared: InputRecord<'clicks' | 'views'>['stream'][] = ['clicks', 'views'];
  void onlyDeclared;

  const t = createTestContext(tagger);
  void t.send('clicks', 'k', 1);
  void t.send('views', 'k', 1, { timestamp: 5 });
  // @ts-expect-error the kit only sends to declared istreams
  void t.send('purchases', 'k', 1);
  // @ts-expect-error keys are strings
  void t.send('clicks', 42, 1);

  const out: OutputRecord<'tags' | 'alerts'> | undefined = t.outputs[0];
  void out;
  // @ts-expect-error outputs carry the ostream literal types
  const wrong: OutputRecord<'clicks'> | undefined = t.outputs[0];
  void wrong;

  const source = defineComputation({ name: 'source', istreams: [], ostreams: ['ticks'], processRecord() {} });
  const s = createTestContext(source);
  // @ts-expect-error a source has no istreams to send to
  void s.send('ticks', 'k', 1);
}
