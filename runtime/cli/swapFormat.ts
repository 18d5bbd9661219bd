/** Human-readable rendering of swaps, rollbacks, promotes, dry runs, canaries and history. */
import type { HistoryEntry, HistoryStep, MetadataDiff, SwapReply, TypeRef } from '../../protocol/index.js';
import type { CanarySummary, SwapOutcome } from '../client/index.js';
import { partitionList, table } from './format.js';

export type SwapKind = 'swap' | 'rollback' | 'promote';

function clip(s: string, max: number): string {
  const oneLine = s.replace(/\s+/g, ' ').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max - 1)}…` : oneLine;
}

/** A duration in ms as given: "7" stays "7", "4.123" becomes "4.1". */
function figure(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** "4.1 ms" below 10 ms, "212 ms" above. */
export function ms(n: number): string {
  return `${n < 10 ? n.toFixed(1) : Math.round(n).toFixed(0)} ms`;
}

const sha12 = (sha: string): string => sha.slice(0, 12);

/** Local date and time, "2025-11-21 21:43:05". */
export function localTime(at: number): string {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return '-';
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "; upstreams paused 4.1 ms; load 85 ms (not paused)" — only the figures the reply has. */
function timings(r: SwapReply): string {
  return (r.pauseMs !== undefined ? `; upstreams paused ${ms(r.pauseMs)}` : '') + (r.loadMs !== undefined ? `; load ${ms(r.loadMs)} (not paused)` : '');
}

export function renderSteps(steps: HistoryStep[], indent = '  '): string[] {
  if (steps.length === 0) return [];
  const rows = [['STEP', 'MS', 'OK', 'DETAIL']];
  for (const s of steps) rows.push([s.step, typeof s.ms === 'number' ? figure(s.ms) : '-', s.ok ? 'yes' : 'NO', clip(s.detail ?? '', 100)]);
  return table(rows).split('\n').map((l) => indent + l);
}

/**
 * Prints the steps of a deploy or swap one line each as the controller reports them (progress
 * events), under a header printed with the first, in the columns of renderSteps' table.
 * `count` says how many were printed: the outcome then leaves its step table out.
 */
export class StepPrinter {
  count = 0;
  constructor(private readonly out: (line: string) => void, private readonly indent = '  ') {}

  readonly print = (s: HistoryStep): void => {
    if (this.count++ === 0) this.out(`${this.indent}${'STEP'.padEnd(STEP_WIDTH)}  ${'MS'.padStart(6)}  OK   DETAIL`);
    const msText = typeof s.ms === 'number' ? figure(s.ms) : '-';
    this.out(`${this.indent}${s.step.padEnd(STEP_WIDTH)}  ${msText.padStart(6)}  ${(s.ok ? 'yes' : 'NO').padEnd(3)}  ${clip(s.detail ?? '', 100)}`.trimEnd());
  };
}
/** The longest step name (lease-expired) fits. */
const STEP_WIDTH = 13;

/** The first line of a successful swap, canary, rollback or promote, then its steps (unless `stepsShown`: printed as they happened). */
export function renderSwapOutcome(kind: SwapKind, o: SwapOutcome, canary?: CanarySummary, stepsShown = false): string {
  const head = `${o.name} v${o.fromVersion} -> v${o.version} (sha ${sha12(o.sha)}) in ${ms(o.elapsedMs)}${timings(o)}`;
  const lines: string[] = [];
  if (kind === 'rollback') lines.push(`rolled back ${head}`);
  else if (kind === 'promote') lines.push(`promoted ${head}; v${o.version} now runs on all keys`);
  else if (canary) {
    lines.push(`canary started: ${head}`);
    lines.push(`v${canary.version} runs on ${canary.percent}% of the keys: partitions ${partitionList(canary.partitions)}; v${o.fromVersion} keeps the rest`);
  } else lines.push(`swapped ${head}`);
  if (!stepsShown) lines.push(...renderSteps(o.steps));
  if (canary) lines.push(`next: \`topo promote ${o.name}\` (all keys to v${canary.version}) or \`topo rollback ${o.name}\` (drop the canary)`);
  return lines.join('\n');
}

/** The lines of a metadata diff, or "no stream changes". */
export function renderDiff(diff: MetadataDiff): string[] {
  const lines: string[] = [];
  const list = (label: string, items: string[]): void => void (items.length && lines.push(`${label.padEnd(20)}${items.join(', ')}`));
  list('istreams gained:', diff.istreams.gained);
  list('istreams lost:', diff.istreams.lost);
  list('istreams regrouped:', diff.istreams.regrouped.map((r) => `${r.stream} (${r.from} -> ${r.to})`));
  list('ostreams gained:', diff.ostreams.gained);
  list('ostreams lost:', diff.ostreams.lost);
  list('producers affected:', diff.producersAffected);
  list('consumers affected:', diff.consumersAffected);
  const t = (r: TypeRef): string => `${r.message} (fingerprint ${r.fingerprint.slice(0, 12)})`;
  list('types added:', (diff.types?.added ?? []).map((x) => `${x.stream}: ${t(x.to)}`));
  list('types removed:', (diff.types?.removed ?? []).map((x) => `${x.stream}: ${t(x.from)} -> untyped (msgpack)`));
  list('types changed:', (diff.types?.changed ?? []).map((x) => `${x.stream}: ${t(x.from)} -> ${t(x.to)}`));
  return lines.length ? lines : ['no stream changes (same istreams, groupings and ostreams)'];
}

export function renderDryRun(r: SwapReply, canaryPercent?: number): string {
  const as = canaryPercent !== undefined ? ` as a canary on ${canaryPercent}% of the keys` : '';
  return [
    `dry run: swap ${r.name} v${r.fromVersion} -> v${r.version} (sha ${sha12(r.sha)})${as}`,
    ...renderDiff(r.diff).map((l) => `  ${l}`),
    'nothing was changed (dry run)',
  ].join('\n');
}

/** What a rolled-back swap prints (on stderr): why, what runs now, the steps (unless `stepsShown`: printed as they happened). */
export function renderRolledBack(kind: SwapKind, r: SwapReply, stepsShown = false): string {
  return [
    `${kind} of ${r.name} to v${r.version} ROLLED BACK: ${r.error ?? 'the new version failed its health gate'}`,
    `v${r.fromVersion} is running again`,
    ...(stepsShown ? [] : renderSteps(r.steps)),
  ].join('\n');
}

export function renderHistory(entries: HistoryEntry[]): string {
  const rows = [['VERSION', 'ACTION', 'RESULT', 'SHA', 'WHEN', 'PAUSE MS', 'LOAD MS', 'FROM', 'ERROR']];
  const num = (n: number | undefined): string => (typeof n === 'number' ? figure(n) : '-');
  for (const e of entries) {
    // A placement change keeps the version; what it changed is in its target step.
    const note = ['scale', 'move', 'fuse', 'split'].includes(e.action) && !e.error ? (e.steps?.find((s) => s.step === 'target')?.detail ?? '') : '';
    rows.push([
      `v${e.version}`, e.action, e.result, sha12(e.sha ?? ''), localTime(e.at), num(e.pauseMs), num(e.loadMs),
      e.fromVersion !== undefined ? `v${e.fromVersion}` : '-', e.error ? clip(e.error, 80) : clip(note, 80),
    ]);
  }
  return table(rows);
}
