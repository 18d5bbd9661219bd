/** Throughput cases run several times, interleaved, and summarized by their median. */
import { loadavg } from 'node:os';
import { summarize, type CaseResult, type CaseSummary } from './results.js';

export interface BenchCase {
  name: string;
  description: string;
  /** Set when the case cannot run at all. */
  skipped?: string;
  once(run: number): Promise<CaseResult>;
}

/**
 * Runs every case `runs` times, interleaved (run 1 of each case, then run 2,
 * ...) so that background load on the machine hits the baseline and the case alike.
 */
export async function runInterleaved(cases: BenchCase[], runs: number, log: (line: string) => void): Promise<CaseSummary[]> {
  const results = new Map<BenchCase, CaseResult[]>(cases.map((c) => [c, []]));
  const errors = new Map<BenchCase, string>();
  for (let r = 1; r <= runs; r++) {
    for (const c of cases) {
      if (c.skipped || errors.has(c)) continue;
      try {
        const load = loadavg()[0] ?? 0;
        const res = await c.once(r);
        res.notes.push(`1-min load ${load.toFixed(1)} before the run`);
        results.get(c)!.push(res);
        log(`${c.name} run ${r}/${runs}: ${Math.round(res.rate).toLocaleString('en-US')} records/s, ${res.records}/${res.expected} records in ${res.seconds.toFixed(3)} s${res.lost ? `, LOST ${res.lost}` : ''}${res.notes.length ? ` (${res.notes.join('; ')})` : ''}`);
      } catch (err) {
        log(`${c.name} run ${r}/${runs} failed: ${(err as Error).message}`);
        errors.set(c, (err as Error).message);
      }
    }
  }
  return cases.map((c) => {
    const error = errors.get(c);
    return summarize(c.name, c.description, results.get(c)!, {
      ...(error !== undefined ? { error } : {}),
      ...(c.skipped !== undefined ? { skipped: c.skipped } : {}),
    });
  });
}
