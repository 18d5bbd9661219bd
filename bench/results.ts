/** One measurement, the median of several, and the table and RESULTS.md built from them. */

export interface CaseResult {
  /** Records that arrived at the measuring end. */
  records: number;
  /** Records that were sent. */
  expected: number;
  lost: number;
  /** First to last record at the measuring end. */
  seconds: number;
  /** records / seconds */
  rate: number;
  notes: string[];
}

export interface CaseSummary {
  name: string;
  /** What is measured, for the notes under the table. */
  description: string;
  runs: CaseResult[];
  /** The run with the median rate. */
  median: CaseResult | undefined;
  /** Set when a run failed. */
  error?: string;
  /** Set when the case was not run, and why. */
  skipped?: string;
}

export function summarize(name: string, description: string, runs: CaseResult[], extra: { error?: string; skipped?: string } = {}): CaseSummary {
  const sorted = [...runs].sort((a, b) => a.rate - b.rate);
  const median = sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : undefined;
  return { name, description, runs, median, ...extra };
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

function ratio(c: CaseSummary, base: CaseSummary | undefined): string {
  if (!c.median || !base?.median || base.median.rate === 0) return '-';
  return `${(c.median.rate / base.median.rate).toFixed(2)}x`;
}

export interface TableRow {
  case: string;
  records: string;
  seconds: string;
  rate: string;
  ratio: string;
  lost: string;
}

export function tableRows(cases: CaseSummary[], baseline: CaseSummary | undefined): TableRow[] {
  return cases.map((c) => {
    const m = c.median;
    const lost = c.runs.reduce((s, r) => s + r.lost, 0);
    return {
      case: c.name,
      records: m ? int(m.records) : '-',
      seconds: m ? m.seconds.toFixed(3) : '-',
      rate: m ? int(m.rate) : c.error ? 'failed' : c.skipped ? 'not run' : '-',
      ratio: ratio(c, baseline),
      lost: c.runs.length ? int(lost) : '-',
    };
  });
}

const HEAD: TableRow = { case: 'case', records: 'records', seconds: 'seconds', rate: 'records/s', ratio: 'vs batched raw', lost: 'lost (all runs)' };
const COLS = Object.keys(HEAD) as (keyof TableRow)[];

export function formatTextTable(rows: TableRow[]): string {
  const width = COLS.map((k) => Math.max(HEAD[k].length, ...rows.map((r) => r[k].length)));
  const line = (r: TableRow): string => COLS.map((k, i) => (i === 0 ? r[k].padEnd(width[i]!) : r[k].padStart(width[i]!))).join('  ');
  return [line(HEAD), width.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatMarkdownTable(rows: TableRow[]): string {
  const line = (r: TableRow): string => `| ${COLS.map((k) => r[k]).join(' | ')} |`;
  return [line(HEAD), `|${COLS.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map(line)].join('\n');
}
