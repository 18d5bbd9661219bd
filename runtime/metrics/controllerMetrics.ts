/**
 * Prometheus metrics of a topology, served by the controller on /metrics.
 * Every instance's figures come from its worker's heartbeats, so operators in
 * any language are observed alike; they are read from the worker table at
 * scrape time (nothing is kept twice). Names follow Prometheus practice: a
 * `topo_` prefix, base units (seconds, bytes), `_total` on counters, and only
 * the labels computation, instance (its index), stream, worker and version.
 */
import { Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HistoryEntry, InstanceMetrics, InstanceReport, ProcessMetrics } from '../../protocol/index.js';
import type { ControllerContext } from '../controller/context.js';

type Labels = Record<string, string>;
interface Value {
  labels: Labels;
  value: number;
  metricName?: string;
}
type MetricType = 'counter' | 'gauge' | 'histogram';

/** Latency histogram bounds (s): element i of a heartbeat's latencyBuckets counts latencies under 2^i µs; the last is open. */
const LATENCY_BOUNDS = Array.from({ length: 27 }, (_, i) => 2 ** i / 1e6);
/** Pause bounds (s): a swap's pause is typically 5-50 ms; a slow drain can take seconds. */
const PAUSE_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const SCALE_ACTIONS: ReadonlySet<HistoryEntry['action']> = new Set(['scale']);
const SWAP_ACTIONS: ReadonlySet<HistoryEntry['action']> = new Set(['swap', 'canary', 'promote', 'rollback', 'move', 'fuse', 'split']);

export interface TopologyMetrics {
  readonly registry: Registry;
  /** The exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
  /** A history entry was recorded: its pause, if it has one, goes into the swap or scale histogram. */
  observeHistory(entry: HistoryEntry): void;
}

interface Observed {
  workerId: string;
  report: InstanceReport;
}

export function topologyMetrics(ctx: ControllerContext): TopologyMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'topo_controller_' });

  const instances = (): Observed[] =>
    ctx.workers.all().filter((w) => w.alive).flatMap((w) => [...w.reported.values()].map((report) => ({ workerId: w.workerId, report })));
  const labelsOf = ({ workerId, report: r }: Observed): Labels =>
    ({ computation: r.computation, instance: String(r.index), worker: workerId, version: String(r.version) });

  /** A metric whose values are read from the latest heartbeats when scraped. */
  const snapshot = (name: string, help: string, type: MetricType, values: () => Value[]): void => {
    registry.registerMetric({
      name, help, type, aggregator: 'sum',
      get: () => ({ name, help, type, values: values(), aggregator: 'sum' }),
      reset: () => undefined,
    } as unknown as Parameters<Registry['registerMetric']>[0]);
  };
  const perInstance = (name: string, help: string, type: MetricType, value: (m: InstanceMetrics) => number | undefined): void =>
    snapshot(name, help, type, () => instances().flatMap((o) => {
      const v = value(o.report.metrics);
      return v === undefined ? [] : [{ labels: labelsOf(o), value: v }];
    }));
  const perOutlet = (name: string, help: string, value: (o: NonNullable<InstanceMetrics['outlets']>[number]) => number): void =>
    snapshot(name, help, 'counter', () => instances().flatMap((o) =>
      (o.report.metrics.outlets ?? []).map((out) => ({ labels: { ...labelsOf(o), stream: out.stream }, value: value(out) }))));
  const perWorker = (name: string, help: string, type: MetricType, value: (p: ProcessMetrics) => number): void =>
    snapshot(name, help, type, () => ctx.workers.all().flatMap((w) => (w.alive && w.process ? [{ labels: { worker: w.workerId }, value: value(w.process) }] : [])));
  const seconds = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : ms / 1_000);

  perInstance('topo_records_in_total', 'Records handed to processRecord.', 'counter', (m) => m.recordsIn);
  perOutlet('topo_records_out_total', 'Records produced, per output stream.', (o) => o.records);
  perInstance('topo_errors_total', 'processRecord and processTimer calls that threw.', 'counter', (m) => m.errors);
  perInstance('topo_dead_letters_total', 'Records and raw messages sent to the dead-letter stream.', 'counter', (m) => m.deadLetters);
  perInstance('topo_malformed_messages_total', 'Messages on an input subject that were not valid batches.', 'counter', (m) => m.malformed);
  perInstance('topo_duplicates_total', 'At-least-once input records skipped as duplicates.', 'counter', (m) => m.duplicates ?? 0);
  perInstance('topo_permission_denied_total', 'Publishes and subscriptions the server refused to the instance\'s NATS user.', 'counter', (m) => m.permissionDenied ?? 0);
  perInstance('topo_checkpoint_failures_total', 'Checkpoints that could not be stored.', 'counter', (m) => m.checkpointFailures ?? 0);
  perInstance('topo_busy_seconds_total', 'Time spent in callbacks (rate() of it is the busy share of each second).', 'counter', (m) => seconds(m.busyTotalMs));
  perInstance('topo_idle_seconds_total', 'Time spent waiting for input.', 'counter', (m) => seconds(m.idleTotalMs));
  perInstance('topo_backpressured_seconds_total', 'Time input waited because output was blocked (credit or a pause).', 'counter', (m) => seconds(m.backpressuredTotalMs));
  perOutlet('topo_credit_stall_seconds_total', 'Time output to a stream waited for its consumers\' credit.', (o) => o.creditStallMs / 1_000);
  perInstance('topo_queue_depth_batches', 'Input batches received and not yet processed.', 'gauge', (m) => m.queueDepth);
  perInstance('topo_state_bytes', 'Size of the keyed state and timers in the last checkpoint (msgpack bytes).', 'gauge', (m) => m.checkpointBytes);
  perInstance('topo_checkpoint_age_seconds', 'Time since the last checkpoint was stored.', 'gauge', (m) => seconds(m.checkpointAgeMs));
  perInstance('topo_records_since_checkpoint', 'Records processed since the last checkpoint (lost with the worker on at-most-once input).', 'gauge', (m) => m.sinceCheckpoint);
  snapshot('topo_processing_latency_seconds', 'Processing time per record: a batch\'s callback time over its records, one observation per batch.', 'histogram',
    () => instances().flatMap((o) => latencyValues(labelsOf(o), o.report.metrics)));

  snapshot('topo_worker_up', 'Whether the worker holds a live lease (1) or missed it (0).', 'gauge',
    () => ctx.workers.all().map((w) => ({ labels: { worker: w.workerId }, value: w.alive ? 1 : 0 })));
  perWorker('topo_worker_resident_memory_bytes', 'Resident set size of the worker process.', 'gauge', (p) => p.rssBytes);
  perWorker('topo_worker_heap_used_bytes', 'V8 heap in use in the worker process.', 'gauge', (p) => p.heapUsedBytes);
  perWorker('topo_worker_cpu_seconds_total', 'CPU time (user and system) of the worker process.', 'counter', (p) => (p.cpuUserMicros + p.cpuSystemMicros) / 1e6);
  perWorker('topo_worker_event_loop_lag_seconds', 'p99 of the worker\'s event-loop delay since its previous heartbeat.', 'gauge', (p) => p.eventLoopLagMs.p99 / 1_000);
  perWorker('topo_worker_event_loop_lag_max_seconds', 'Longest event-loop delay of the worker since its previous heartbeat.', 'gauge', (p) => p.eventLoopLagMs.max / 1_000);

  const swapPause = new Histogram({
    name: 'topo_swap_pause_seconds', help: 'How long a swap, canary, promote, rollback, move, fuse or split held the upstreams paused.',
    labelNames: ['computation'], buckets: PAUSE_BOUNDS, registers: [registry],
  });
  const scalePause = new Histogram({
    name: 'topo_scale_pause_seconds', help: 'How long a scale held the upstreams paused.',
    labelNames: ['computation'], buckets: PAUSE_BOUNDS, registers: [registry],
  });

  return {
    registry,
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    observeHistory(entry) {
      if (entry.pauseMs === undefined || !Number.isFinite(entry.pauseMs) || entry.pauseMs < 0) return;
      const h = SCALE_ACTIONS.has(entry.action) ? scalePause : SWAP_ACTIONS.has(entry.action) ? swapPause : undefined;
      h?.observe({ computation: entry.name }, entry.pauseMs / 1_000);
    },
  };
}

/** One instance's latency histogram as Prometheus buckets (cumulative, `le` in seconds), sum and count. */
function latencyValues(labels: Labels, m: InstanceMetrics): Value[] {
  const counts = m.latencyBuckets;
  if (!counts) return [];
  const out: Value[] = [];
  let cumulative = 0;
  for (let i = 0; i < LATENCY_BOUNDS.length; i++) {
    cumulative += counts[i] ?? 0;
    out.push({ metricName: 'topo_processing_latency_seconds_bucket', labels: { ...labels, le: String(LATENCY_BOUNDS[i]) }, value: cumulative });
  }
  for (let i = LATENCY_BOUNDS.length; i < counts.length; i++) cumulative += counts[i]!;
  out.push({ metricName: 'topo_processing_latency_seconds_bucket', labels: { ...labels, le: '+Inf' }, value: cumulative });
  out.push({ metricName: 'topo_processing_latency_seconds_sum', labels, value: (m.latencySumUs ?? 0) / 1e6 });
  out.push({ metricName: 'topo_processing_latency_seconds_count', labels, value: cumulative });
  return out;
}
