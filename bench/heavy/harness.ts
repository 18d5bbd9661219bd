/**
 * The CPU-heavy bench: source -> bheavy (~50 µs busy loop per record, shuffle)
 * -> sink on 4 workers, with bheavy on 1 instance or on 2 (one per worker,
 * neither sharing with the source or the sink). Run by runPipeline
 * (bench/topo/harness.ts); the autopilot is off so nothing is fused.
 * Bundled into dist/bench/heavy.mjs by bench/run.mjs.
 */
import { join } from 'node:path';
import type { CaseResult } from '../results.js';
import { runPipeline } from '../topo/harness.js';
import { HEAVY } from './busy.js';

export interface HeavyCaseOptions {
  root: string;
  instances: 1 | 2;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
}

export const HEAVY_WORKERS = 4;

export async function runHeavyCase(o: HeavyCaseOptions): Promise<CaseResult> {
  const file = (f: string): string => join(o.root, 'bench', f);
  return runPipeline({
    label: `heavy-${o.instances}`, workers: HEAVY_WORKERS, count: o.count, timeoutMs: o.timeoutMs, log: o.log,
    env: { TOPO_AUTOPILOT: '0' },
    async setup(client) {
      // The heavy instances first: they spread over workers of their own; source and sink take the next free ones.
      await client.deployFile(file('heavy/busy.ts'), { instances: o.instances });
      await client.deployFile(file('topo/source.ts'));
      await client.deployFile(file('heavy/sink.ts'));
      const status = await client.status();
      const byWorker = new Map<string, string[]>();
      for (const c of status.computations) for (const i of c.instances) byWorker.set(i.workerId, [...(byWorker.get(i.workerId) ?? []), `${c.name}#${i.index}`]);
      const notes = [...byWorker].filter(([, n]) => n.length > 1).map(([w, n]) => `${n.join(' and ')} share worker ${w}`);
      const heavy = status.computations.find((c) => c.name === HEAVY);
      if (heavy?.instances.length !== o.instances) notes.push(`${heavy?.instances.length ?? 0} ${HEAVY} instances running, ${o.instances} asked`);
      return notes;
    },
  });
}
