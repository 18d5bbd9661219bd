/**
 * The typed-streams bench (`npm run bench -- --only typed`): what a
 * protobuf-typed stream costs per record against plain msgpack on the same
 * records, with its baseline in the same run, interleaved:
 *
 * - codec: encode + decode of the bench records (bench/records.ts) in batches
 *   of 256, in this process: plain = encodeBatch/decodeBatch of the values as
 *   they are; typed = the same plus StreamType.encode of each value before and
 *   StreamType.decode after (bench/typed/bench-value.proto), exactly what a
 *   typed producer and consumer add on the wire path;
 * - pipeline: bench-source -> bench-sink on a fresh local topology (two
 *   workers, the autopilot off), plain (bench/topo) vs typed (bench/typed).
 *
 * Prints a table and a markdown section (the lead copies it into RESULTS.md:
 * this bench writes no file). Bundled into dist/bench/typed.mjs by bench/run.mjs.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeBatch, encodeBatch, PROTOCOL_VERSION, type WireRecord } from '../../protocol/index.js';
import { describeProto, StreamType } from '../../protocol/types.js';
import { benchKey, benchValue, BATCH_SIZE } from '../records.js';
import { checkPlacement, runPipeline } from '../topo/harness.js';
import { cutSections, renderSections, wrapSection } from '../sections.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const log = (line: string): void => console.error(`bench: ${line}`);

interface Options {
  runs: number;
  codecRecords: number;
  pipelineRecords: number;
  pipeline: boolean;
}

function parse(argv: string[]): Options {
  const o: Options = { runs: 5, codecRecords: 256 * 800, pipelineRecords: 200_000, pipeline: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v <= 0) throw new Error(`${a} takes a positive integer`);
      return v;
    };
    if (a === '--runs') o.runs = num();
    else if (a === '--typed-records') o.codecRecords = num();
    else if (a === '--typed-pipeline-records') o.pipelineRecords = num();
    else if (a === '--no-typed-pipeline') o.pipeline = false;
  }
  return o;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** One codec pass over `n` records; returns ns per record and wire bytes per record. */
function codecPass(n: number, t: StreamType | undefined): { nsPerRecord: number; bytesPerRecord: number; check: number } {
  const values = Array.from({ length: BATCH_SIZE }, (_, i) => benchValue(i));
  let bytes = 0;
  let check = 0;
  const t0 = process.hrtime.bigint();
  for (let done = 0, bseq = 1; done < n; bseq++) {
    const recs: WireRecord[] = [];
    for (let i = 0; i < BATCH_SIZE && done < n; i++, done++) {
      const v = values[i]!;
      recs.push([benchKey(done), t ? t.encode(v) : v, 1_700_000_000_000 + done, done + 1]);
    }
    const wire = encodeBatch({ v: PROTOCOL_VERSION, src: 'bench', stream: 'bench-a', bseq, recs });
    bytes += wire.length;
    const got = decodeBatch(wire).recs;
    for (const r of got) check += ((t ? t.decode(r[1]) : r[1]) as { id: number }).id;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  return { nsPerRecord: ns / n, bytesPerRecord: bytes / n, check };
}

interface Row { name: string; runs: number[]; median: number; unit: string; extra?: string }

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const startedAt = new Date();
  const loadBefore = loadavg()[0] ?? 0;
  const decl = describeProto(readFileSync(join(root, 'bench', 'typed', 'bench-value.proto'), 'utf8'), 'bench.BenchValue');
  const t = new StreamType('bench-a', decl);

  log(`typed codec: ${o.runs} interleaved runs of ${o.codecRecords.toLocaleString('en-US')} records each, plain msgpack vs protobuf-typed`);
  codecPass(20_000, undefined); // warm-up
  codecPass(20_000, t);
  const plain: number[] = [];
  const typed: number[] = [];
  let plainBytes = 0;
  let typedBytes = 0;
  for (let r = 0; r < o.runs; r++) {
    const a = codecPass(o.codecRecords, undefined);
    const b = codecPass(o.codecRecords, t);
    if (a.check !== b.check) throw new Error(`typed records decoded to other values (checksum ${b.check} != ${a.check})`);
    plain.push(a.nsPerRecord);
    typed.push(b.nsPerRecord);
    plainBytes = a.bytesPerRecord;
    typedBytes = b.bytesPerRecord;
  }
  const rows: Row[] = [
    { name: 'codec, plain msgpack', runs: plain, median: median(plain), unit: 'ns/record', extra: `${plainBytes.toFixed(1)} wire bytes/record` },
    { name: 'codec, protobuf-typed', runs: typed, median: median(typed), unit: 'ns/record', extra: `${typedBytes.toFixed(1)} wire bytes/record` },
  ];

  if (o.pipeline) {
    const runsN = Math.min(o.runs, 3);
    log(`typed pipeline: ${runsN} interleaved runs each of ${o.pipelineRecords.toLocaleString('en-US')} records, bench-source -> bench-sink on two workers`);
    const files = {
      plain: [join(root, 'bench', 'topo', 'source.ts'), join(root, 'bench', 'topo', 'sink-one-hop.ts')],
      typed: [join(root, 'bench', 'typed', 'source.ts'), join(root, 'bench', 'typed', 'sink.ts')],
    };
    const rates: Record<'plain' | 'typed', number[]> = { plain: [], typed: [] };
    for (let r = 0; r < runsN; r++) {
      for (const kind of ['plain', 'typed'] as const) {
        const res = await runPipeline({
          label: `typed-${kind}`, workers: 2, count: o.pipelineRecords, timeoutMs: Math.max(60_000, o.pipelineRecords / 10), log,
          env: { TOPO_AUTOPILOT: '0' },
          async setup(client) {
            for (const f of files[kind]) await client.deployFile(f);
            return checkPlacement(client);
          },
        });
        log(`  ${kind} run ${r + 1}: ${Math.round(res.rate).toLocaleString('en-US')} records/s`);
        rates[kind].push(res.rate);
      }
    }
    rows.push(
      { name: 'pipeline, plain msgpack', runs: rates.plain, median: median(rates.plain), unit: 'records/s' },
      { name: 'pipeline, protobuf-typed', runs: rates.typed, median: median(rates.typed), unit: 'records/s' },
    );
  }

  const fmt = (n: number): string => (n >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
  const codecRatio = rows[1]!.median / rows[0]!.median;
  const pipeRatio = rows[3] ? rows[3].median / rows[2]!.median : undefined;
  const table = [
    ['case', 'median', 'unit', 'ratio', 'runs', 'note'],
    [rows[0]!.name, fmt(rows[0]!.median), rows[0]!.unit, '1.00', rows[0]!.runs.map(fmt).join(', '), rows[0]!.extra ?? ''],
    [rows[1]!.name, fmt(rows[1]!.median), rows[1]!.unit, `${codecRatio.toFixed(2)}x the cost`, rows[1]!.runs.map(fmt).join(', '), rows[1]!.extra ?? ''],
    ...(rows[3]
      ? [
        [rows[2]!.name, fmt(rows[2]!.median), rows[2]!.unit, '1.00', rows[2]!.runs.map(fmt).join(', '), ''],
        [rows[3].name, fmt(rows[3].median), rows[3].unit, `${pipeRatio!.toFixed(2)}x the rate`, rows[3].runs.map(fmt).join(', '), ''],
      ]
      : []),
  ];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  console.log(`\nTyped streams (protobuf) vs plain msgpack, same records:\n${table.map((r) => r.map((x, c) => x.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n')}\n`);
  const extraNs = rows[1]!.median - rows[0]!.median;
  console.log(`- codec: typing adds ${extraNs.toFixed(0)} ns per record (encode at produceRecord + decode before processRecord), ${codecRatio.toFixed(2)}x plain.`);
  if (pipeRatio !== undefined) console.log(`- pipeline: the typed one-hop runs at ${pipeRatio.toFixed(2)}x the plain one's records/s.`);

  const md = [
    '## Typed streams (protobuf) vs plain msgpack',
    '',
    `- Date: ${startedAt.toISOString()}; machine: ${availableParallelism()} CPUs, ${cpus()[0]?.model ?? 'unknown CPU'}; Node ${process.version}; load before: ${loadBefore.toFixed(2)}`,
    `- Command: \`npm run bench -- --only typed\`; ${o.runs} interleaved runs (codec), ${Math.min(o.runs, 3)} (pipeline); median shown`,
    '',
    '| case | median | unit | ratio | runs | note |',
    '|---|---|---|---|---|---|',
    ...table.slice(1).map((r) => `| ${r.join(' | ')} |`),
    '',
    '- codec: bench records (`{id, user, text}`) in batches of 256 through encodeBatch/decodeBatch; typed adds `StreamType.encode` per value before and `StreamType.decode` after (what a typed producer and consumer add).',
    '- pipeline: bench-source -> bench-sink, one worker each, a fresh local topology per run, autopilot off; typed declares `bench.BenchValue` on bench-a in both.',
  ].join('\n');
  if (process.argv.includes('--no-write')) {
    console.log(`\nRESULTS.md section (not written: --no-write):\n\n${md}\n`);
    return;
  }
  // Its own section of RESULTS.md; the others are kept as they are.
  const file = join(root, 'bench', 'RESULTS.md');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# topo benchmark results\n';
  const { rest, sections } = cutSections(text);
  writeFileSync(file, `${rest.trimEnd()}\n${renderSections(sections, new Map([['typed', wrapSection('typed', md)]]))}`);
  console.error(`bench: wrote ${file}`);
}

main().catch((err: unknown) => {
  console.error(`bench: typed bench failed: ${(err as Error).message}`);
  process.exit(1);
});
