/**
 * The fusion, CPU-heavy, polyglot, auth, live scale, live fuse/split and
 * durable parts of the bench,
 * run by main.ts after the others: each prints its table and verdict and
 * returns its RESULTS.md section.
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { LiveCaseOptions, LiveMode, LiveResult } from './live/harness.js';
import { LIVE_TITLES, liveMarkdownSection, liveTextTable, liveVerdict } from './live/report.js';
import type { BenchOptions } from './options.js';
import { durablePart } from './durable/part.js';
import { polyglotPart, polyglotSwaps } from './polyglot/part.js';
import { endMarker } from './sections.js';
import { authPart, metricsPart, tracePart, fusionPart, heavyPart, pairMarkdownSection, pairTextTable, pairVerdict, runPart, type PairContext, type RunFacts } from './pairs.js';
import type { SectionName } from './sections.js';

export interface PartsContext extends PairContext {
  /** Facts of the run for each section (date and load are taken when the part starts). */
  facts: Omit<RunFacts, 'date' | 'loadBefore'>;
}

export interface PartsOutcome {
  sections: Map<SectionName, string>;
  failed: boolean;
}

const factsNow = (ctx: PartsContext): RunFacts => ({ ...ctx.facts, date: new Date().toISOString(), loadBefore: loadavg()[0] ?? 0 });

async function runLive(mode: LiveMode, opts: BenchOptions, ctx: PartsContext): Promise<{ result?: LiveResult; error?: string }> {
  const modPath = join(ctx.here, 'live.mjs');
  if (!existsSync(modPath)) return { error: 'live harness not built: the runtime (runtime/client, runtime/worker, runtime/controller) is missing' };
  const mod = (await import(pathToFileURL(modPath).href)) as { runLiveCase(o: LiveCaseOptions): Promise<LiveResult> };
  const cycles = mode === 'scale' ? opts.scaleCycles : opts.regroupCycles;
  ctx.log(`${mode}: ${LIVE_TITLES[mode]}, ${cycles} cycles at ${(opts.liveKeys * 100).toLocaleString('en-US')} records/s`);
  try {
    return { result: await mod.runLiveCase({ root: ctx.root, mode, cycles, keys: opts.liveKeys, log: ctx.log }) };
  } catch (err) {
    ctx.log(`${mode} bench failed: ${(err as Error).message}`);
    return { error: (err as Error).message };
  }
}

export async function runParts(opts: BenchOptions, ctx: PartsContext): Promise<PartsOutcome> {
  const sections = new Map<SectionName, string>();
  let failed = false;
  const pairs = [
    ...(opts.fusion ? [() => fusionPart(ctx, opts.fusionRecords)] : []),
    ...(opts.heavy ? [() => heavyPart(ctx, opts.heavyRecords)] : []),
    ...(opts.polyglot ? [() => polyglotPart(ctx, opts.polyglotRecords)] : []),
    ...(opts.auth ? [() => authPart(ctx, opts.authRecords)] : []),
    ...(opts.metrics ? [() => metricsPart(ctx, opts.metricsRecords)] : []),
    ...(opts.trace ? [() => tracePart(ctx, opts.traceRecords)] : []),
  ];
  for (const make of pairs) {
    const facts = factsNow(ctx);
    const part = await make();
    const cases = await runPart(part, ctx);
    console.log(`\n${part.title}:\n${pairTextTable(part, cases)}\n`);
    console.log(pairVerdict(part, cases).join('\n'));
    let section = pairMarkdownSection(part, cases, facts);
    if (part.section === 'polyglot') {
      const swaps = await polyglotSwaps(ctx, Math.max(5, Math.round(opts.swaps / 5)), Math.min(opts.swapKeys, 200));
      console.log(`\nSwap pause, Python vs TypeScript:\n${swaps.text}\n`);
      if (swaps.markdown) section = section.replace(endMarker('polyglot'), `\n${swaps.markdown}\n${endMarker('polyglot')}`);
      if (swaps.failed) failed = true;
    }
    sections.set(part.section, section);
    if (cases.some((c) => c.error !== undefined)) failed = true;
  }
  for (const mode of ['scale', 'regroup'] as const) {
    if (!opts[mode]) continue;
    const facts = factsNow(ctx);
    const r = await runLive(mode, opts, ctx);
    if (r.result) {
      console.log(`\n${LIVE_TITLES[mode]}:\n${liveTextTable(r.result)}\n`);
      const slowest = r.result.changes.filter((c) => c.pauseMs !== undefined).sort((x, y) => y.pauseMs! - x.pauseMs!).slice(0, 3);
      for (const c of slowest) console.log(`  change ${c.n} (${c.what}): pause ${Math.round(c.pauseMs!)} ms (${c.steps})`);
    }
    console.log(liveVerdict(mode, r.result, r.error).join('\n'));
    sections.set(mode, liveMarkdownSection(mode, r.result, facts, r.error));
    if (r.error !== undefined) failed = true;
  }
  if (opts.durable) {
    const facts = factsNow(ctx);
    const d = await durablePart(ctx, { records: opts.durableRecords, kills: opts.kills }, facts);
    sections.set('durable', d.section);
    if (d.failed) failed = true;
  }
  return { sections, failed };
}
