/**
 * The worker's side of the operator protocol against the language-neutral
 * vectors (protocol/vectors/operator.json): every valid frame reads back as
 * its decoded form and fits its schema, every invalid byte stream is refused;
 * and the hand-written completion check (completionProblem, on the hot path)
 * says exactly what the zod schema says, on the vectors and on mutations of
 * them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  completionFrame, completionProblem, decodeFrameBody, encodeFrame, FrameReader, helloFrame, operatorReply, operatorSchemas,
} from '../protocol/operator.js';

interface Vector { name: string; hex: string; decoded: unknown }
interface Invalid { name: string; hex: string; reason: string }
const file = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'protocol', 'vectors', 'operator.json'), 'utf8')) as { vectors: Vector[]; invalid: Invalid[] };

/** The JSON form of the vectors: bin as {"$bin": base64}. */
function toJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) return v.map(toJson);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJson(x)]));
  return v;
}

const schemaOf: Record<string, string> = {
  hello: 'operator-hello', init: 'operator-init', activate: 'operator-activate', destroy: 'operator-destroy',
  completion: 'operator-completion', error: 'operator-error',
};

describe('operator frames: the vectors', () => {
  for (const v of file.vectors) {
    it(`${v.name} reads back as its decoded form and fits its schema`, () => {
      const frames = new FrameReader().push(Buffer.from(v.hex, 'hex'));
      expect(frames).toHaveLength(1);
      expect(toJson(frames[0])).toEqual(v.decoded);
      const f = frames[0]!;
      const name = f.op === 'snapshot' ? ('state' in f ? 'operator-snapshot-reply' : 'operator-snapshot') : schemaOf[f.op as string]!;
      const r = operatorSchemas[name]!.safeParse(f);
      expect(r.success, JSON.stringify(r.error?.issues)).toBe(true);
      if (f.op === 'completion') expect(completionProblem(f)).toBeUndefined();
      if (f.op === 'hello') expect(helloFrame.safeParse(f).success).toBe(true);
      // And what this side writes reads back the same.
      expect(toJson(decodeFrameBody(encodeFrame(f).subarray(4)))).toEqual(v.decoded);
    });
  }

  for (const v of file.invalid) {
    it(`${v.name} is refused (${v.reason})`, () => {
      const reader = new FrameReader();
      let refused = false;
      try {
        const frames = reader.push(Buffer.from(v.hex, 'hex'));
        // A frame begun but never finished: refused at end of stream.
        refused = frames.length === 0 && reader.pending > 0;
      } catch {
        refused = true;
      }
      expect(refused).toBe(true);
    });
  }
});

describe('completionProblem agrees with the zod schema', () => {
  const completions = file.vectors.filter((v) => (v.decoded as { op: string }).op === 'completion')
    .map((v) => new FrameReader().push(Buffer.from(v.hex, 'hex'))[0]!);
  const bad: unknown[] = [undefined, null, -1, 1.5, 'x', true, [], {}, [1, 2], ['a'], { where: 'nowhere', error: 'e' }, new Uint8Array(2)];
  const fields = ['id', 'outputs', 'records', 'batches', 'failures', 'nextTimerAt', 'stateKeys', 'timers', 'busyMs', 'logs', 'stopped'];

  it(`on ${completions.length} valid completions and every field of each set to each of ${bad.length} wrong values`, () => {
    let cases = 0;
    for (const c of completions) {
      for (const field of fields) {
        for (const value of bad) {
          const m: Record<string, unknown> = { ...c, [field]: value };
          if (value === undefined) delete m[field];
          const zodOk = completionFrame.safeParse(m).success;
          expect(completionProblem(m) === undefined, `${field} = ${JSON.stringify(value)}: zod says ${zodOk ? 'valid' : 'invalid'}`).toBe(zodOk);
          cases++;
        }
      }
      // Inside the arrays: an output, a batch item, a failure, a log line gone wrong.
      const inner: [string, unknown][] = [
        ['outputs', [['s', 1, null]]], ['outputs', [['s', 'k']]], ['outputs', [[1, 'k', null]]], ['outputs', [['s', 'k', { any: 'value' }]]],
        ['batches', [['src', -1]]], ['batches', [['src']]], ['batches', [null, ['src', 3]]], ['batches', [[1, 3]]],
        ['failures', [{ where: 'type', error: 'e', batch: 0, index: 2 }]], ['failures', [{ where: 'processRecord', error: 5 }]],
        ['failures', [{ where: 'decode', error: 'e', batch: -1 }]], ['failures', [{ where: 'processTimer', error: 'e', timer: 3 }]],
        ['logs', [['info', 'm']]], ['logs', [['info', 'm', { f: 1 }]]], ['logs', [['loud', 'm']]], ['logs', [['info']]], ['logs', [['info', 5]]],
      ];
      for (const [field, value] of inner) {
        const m = { ...c, [field]: value };
        const zodOk = completionFrame.safeParse(m).success;
        expect(completionProblem(m) === undefined, `${field} = ${JSON.stringify(value)}: zod says ${zodOk ? 'valid' : 'invalid'}`).toBe(zodOk);
        cases++;
      }
    }
    expect(cases).toBeGreaterThan(500);
  });

  it('the other replies go through the zod union', () => {
    expect(operatorReply.safeParse({ op: 'error', id: 3, error: 'no' }).success).toBe(true);
    expect(operatorReply.safeParse({ op: 'snapshot', id: 3, state: [['k', 1]], timers: [['t', 5]] }).success).toBe(true);
    expect(operatorReply.safeParse({ op: 'snapshot', id: 3, state: [[1, 1]], timers: [] }).success).toBe(false);
  });
});
