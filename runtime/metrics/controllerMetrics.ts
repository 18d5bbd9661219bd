/**
 * Prometheus metrics of a topology, served by the controller on /metrics: every
 * instance's figures come from its worker's heartbeats (so operators in any
 * language are observed alike), collected at scrape time.
 */
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import type { InstanceReport } from '../../protocol/index.js';
import type { ControllerContext } from '../controller/context.js';

const INSTANCE_LABELS = ['computation', 'instance', 'worker', 'version'] as const;

export interface TopologyMetrics {
  readonly registry: Registry;
  /** The exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

export function topologyMetrics(ctx: ControllerContext): TopologyMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'topo_controller_' });
  const live = (): { workerId: string; report: InstanceReport }[] =>
    ctx.workers.all().filter((w) => w.alive).flatMap((w) => [...w.reported.values()].map((report) => ({ workerId: w.workerId, report })));
  const labels = (workerId: string, r: InstanceReport): Record<(typeof INSTANCE_LABELS)[number], string> =>
    ({ computation: r.computation, instance: String(r.index), worker: workerId, version: String(r.version) });
  const instanceCounter = (name: string, help: string, value: (r: InstanceReport) => number | undefined): void => {
    new Counter({
      name, help, labelNames: INSTANCE_LABELS, registers: [registry],
      collect() {
        this.reset();
        for (const { workerId, report } of live()) this.inc(labels(workerId, report), value(report) ?? 0);
      },
    });
  };
  instanceCounter('topo_records_in_total', 'Records handed to processRecord.', (r) => r.metrics.recordsIn);
  instanceCounter('topo_records_out_total', 'Records produced.', (r) => r.metrics.recordsOut);
  return {
    registry,
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}
