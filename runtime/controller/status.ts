/** Assembles StatusReply from desired state (KV copy) and the latest heartbeats. */
import type { ComputationRecord, ComputationStatus, InstanceStatus, Placement, StatusReply, WorkerStatus } from '../../protocol/index.js';
import type { ControllerContext } from './context.js';
import { incidentsOf } from './incidents.js';
import { fusionGroups } from './fusion.js';
import { bridgesOf } from './bridges.js';

const ZERO_METRICS = { recordsIn: 0, recordsOut: 0, errors: 0, deadLetters: 0, malformed: 0 };

function instanceStatus(ctx: ControllerContext, rec: ComputationRecord, p: Placement): InstanceStatus {
  const worker = ctx.workers.get(p.workerId);
  const report = worker?.alive ? worker.reported.get(p.instanceId) : undefined;
  if (report) return { ...report, workerId: p.workerId, ...ctx.workers.rates(p.workerId, p.instanceId) };
  // Expected but not (yet) reported: being started, or waiting for a live worker.
  const waiting = !worker?.alive;
  return {
    instanceId: p.instanceId, computation: rec.name, version: rec.version, index: p.index, count: rec.instances,
    state: 'starting', metrics: { ...ZERO_METRICS }, workerId: p.workerId, inPerSec: 0, outPerSec: 0,
    ...(waiting ? { lastError: `worker ${p.workerId} is not alive; waiting for a live ${rec.lang} worker` } : {}),
  };
}

export function computationStatus(ctx: ControllerContext, rec: ComputationRecord): ComputationStatus {
  const instances = [...rec.placements].sort((a, b) => a.index - b.index).map((p) => instanceStatus(ctx, rec, p));
  let inPerSec = 0, outPerSec = 0, errors = 0, deadLetters = 0, duplicates = 0, permissionDenied = 0;
  const streamsOutPerSec: Record<string, number> = {};
  for (const i of instances) {
    for (const [stream, r] of Object.entries(ctx.workers.streamRates(i.workerId, i.instanceId))) streamsOutPerSec[stream] = (streamsOutPerSec[stream] ?? 0) + r;
    inPerSec += i.inPerSec;
    outPerSec += i.outPerSec;
    errors += i.metrics.errors;
    deadLetters += i.metrics.deadLetters;
    duplicates += i.metrics.duplicates ?? 0;
    permissionDenied += i.metrics.permissionDenied ?? 0;
  }
  return {
    name: rec.name, version: rec.version, sha: rec.sha, lang: rec.lang,
    istreams: rec.metadata.istreams, ostreams: rec.metadata.ostreams,
    ...(rec.metadata.delivery ? { atLeastOnce: Object.keys(rec.metadata.delivery) } : {}),
    ...(duplicates ? { duplicates } : {}),
    ...(permissionDenied ? { permissionDenied } : {}),
    instances, inPerSec, outPerSec, errors, deadLetters,
    ...(Object.keys(streamsOutPerSec).length ? { streamsOutPerSec } : {}),
    ...incidentFields(ctx, rec.name),
    ...(rec.fusion ? { group: rec.fusion.group } : {}),
    ...(rec.noFuse ? { noFuse: true } : {}),
  };
}

function incidentFields(ctx: ControllerContext, name: string): Pick<ComputationStatus, 'stuckCount' | 'coolDown' | 'lostSinceCheckpoint' | 'lastRecovery'> {
  const incidents = incidentsOf(ctx);
  const stuckCount = incidents.stuckCount(name);
  const coolDown = incidents.coolDownOf(name);
  const lost = incidents.lostSinceCheckpoint(name);
  const recovery = incidents.lastRecovery(name);
  return {
    ...(stuckCount ? { stuckCount } : {}), ...(coolDown ? { coolDown } : {}), ...(lost ? { lostSinceCheckpoint: lost } : {}),
    ...(recovery ? { lastRecovery: recovery } : {}),
  };
}

export function workerStatuses(ctx: ControllerContext): WorkerStatus[] {
  return ctx.workers.all().map((w) => ctx.workers.status(w)).sort((a, b) => a.workerId.localeCompare(b.workerId));
}

export function status(ctx: ControllerContext): StatusReply {
  return {
    natsUrl: ctx.natsUrl,
    ...(ctx.httpUrl ? { httpUrl: ctx.httpUrl } : {}),
    workers: workerStatuses(ctx),
    computations: ctx.store.all().sort((a, b) => a.name.localeCompare(b.name)).map((rec) => computationStatus(ctx, rec)),
    ...(fusionGroups(ctx).length ? { fusion: fusionGroups(ctx) } : {}),
    ...(incidentsOf(ctx).total ? { stuck: { total: incidentsOf(ctx).total, recent: [...incidentsOf(ctx).recent] } } : {}),
    // Registered producers and consumers outside the controller (bridges.ts).
    ...(bridgesOf(ctx).size ? { bridges: bridgesOf(ctx).status() } : {}),
  };
}
