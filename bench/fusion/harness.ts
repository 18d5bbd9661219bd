/**
 * The fusion bench's three pipelines, each a real topology run by
 * bench/topo/harness.ts's runPipeline (same source, sink, record count):
 * - fused: source -> stages 1..5 fused into one chain (`client.fuse`) -> sink, 3 workers;
 * - loop: source -> one computation calling the same 5 functions -> sink, 3 workers;
 * - unfused: source -> 5 stages, each on its own worker -> sink, 7 workers.
 * The autopilot is off (TOPO_AUTOPILOT=0) so nothing is fused but what the case fuses.
 * Bundled into dist/bench/fusion.mjs by bench/run.mjs.
 */
import { join } from 'node:path';
import type { TopoClient } from '../../runtime/client/client.js';
import type { CaseResult } from '../results.js';
import { runPipeline } from '../topo/harness.js';
import { STEPS, stageName } from './steps.js';

export type FusionKind = 'fused' | 'loop' | 'unfused';

export interface FusionCaseOptions {
  root: string;
  kind: FusionKind;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
}

const STAGES = STEPS.map((_, i) => stageName(i + 1));

/** Where each computation runs, e.g. "w-1: bench-source; w-3: bfuse-stage-1..5". */
async function placement(client: TopoClient): Promise<Map<string, string[]>> {
  const status = await client.status();
  const byWorker = new Map<string, string[]>();
  for (const c of status.computations) for (const i of c.instances) byWorker.set(i.workerId, [...(byWorker.get(i.workerId) ?? []), c.name]);
  return byWorker;
}

export async function runFusionCase(o: FusionCaseOptions): Promise<CaseResult> {
  const file = (f: string): string => join(o.root, 'bench', f);
  const middle = o.kind === 'loop' ? [file('fusion/loop.ts')] : STAGES.map((_, i) => file(`fusion/stage-${i + 1}.ts`));
  return runPipeline({
    label: `fusion-${o.kind}`, workers: o.kind === 'unfused' ? 2 + STAGES.length : 3, count: o.count, timeoutMs: o.timeoutMs, log: o.log,
    env: { TOPO_AUTOPILOT: '0' },
    async setup(client) {
      // Source and sink first, so each has a worker of its own (placement goes to the least loaded worker).
      await client.deployFile(file('topo/source.ts'));
      await client.deployFile(file('fusion/sink.ts'));
      for (const f of middle) await client.deployFile(f);
      if (o.kind === 'fused') {
        const r = await client.fuse(STAGES);
        const group = r.groups.find((g) => g.members.includes(STAGES[0]!));
        if (group?.members.join() !== STAGES.join()) throw new Error(`fuse: expected one group ${STAGES.join(' -> ')}, got ${JSON.stringify(r.groups)}`);
      }
      const status = await client.status();
      const groups = status.fusion ?? [];
      if (o.kind !== 'fused' && groups.length) throw new Error(`${o.kind}: expected no fusion group, got ${JSON.stringify(groups)}`);
      const byWorker = await placement(client);
      const notes: string[] = [];
      for (const [w, names] of byWorker) {
        const mixed = names.length > 1 && !(o.kind === 'fused' && names.every((n) => STAGES.includes(n)));
        if (mixed) notes.push(`${names.join(' and ')} share worker ${w}`);
      }
      const used = byWorker.size;
      const expected = o.kind === 'unfused' ? 2 + STAGES.length : 3;
      if (used !== expected) notes.push(`${used} workers run computations, ${expected} expected`);
      return notes;
    },
  });
}
