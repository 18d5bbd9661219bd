/**
 * What each NATS identity of a topology may publish and subscribe to
 * (PROTOCOL.md, "Identities and permissions"). Built from subjects.ts so the
 * allow lists cannot drift from the subjects the code uses.
 *
 * The admin identity (CLI, controller, bridges run by the operator) has no
 * allow list: everything in the topo account. A worker gets only what a
 * worker does: it can not call `topo.api.>` (deploy, kill, ...), can not
 * publish to `$KV.>` but `$KV.topo_checkpoints.>` (so it can not write any control-plane bucket), and can only read
 * the control-plane buckets and the artifact store through the JetStream API, except
 * `topo_checkpoints`, where its instances keep their state checkpoints.
 */
import { atLeastOnceNames, buckets, subjects } from './subjects.js';

export interface SubjectPermissions {
  publish: string[];
  subscribe: string[];
}

const kvStream = (bucket: string): string => `KV_${bucket}`;
const objStream = (bucket: string): string => `OBJ_${bucket}`;

/** JetStream API requests that read a stream (info, direct/last-message get, ordered consumers) and nothing else. */
export function readStreamApi(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
  ];
}

/**
 * Replies to a worker's own requests (and its JetStream consumers' deliveries)
 * come on `<this>.>`: it connects with this inbox prefix, so it can not
 * subscribe to the replies of other clients (`_INBOX.>`).
 */
export const workerInboxPrefix = (workerId: string): string => `_INBOX.${workerId}`;

/** A worker process `workerId`: heartbeats, registration, its own control subject, the data plane, reading KV and artifacts. */
export function workerPermissions(workerId: string): SubjectPermissions {
  return {
    publish: [
      subjects.register,
      subjects.heartbeat(workerId),
      subjects.stuck(workerId),
      // A swap whose controller vanished is rolled back by the worker that held it: it pauses the
      // upstream instances on their workers (worker.ts, abortBySelf), so a worker may call peers' control subjects.
      subjects.workerControl('*'),
      'topo.data.>',
      'topo.fc.>',
      'topo.log.>',
      'topo.dlq.>',
      '$JS.API.INFO',
      ...readStreamApi(kvStream(buckets.state)),
      ...readStreamApi(objStream(buckets.artifacts)),
      // State snapshots handed over by a swap: the old instance's worker writes them, the new one reads them.
      ...readStreamApi(objStream(buckets.snapshots)),
      `$JS.API.STREAM.CREATE.${objStream(buckets.snapshots)}`,
      `$JS.API.STREAM.PURGE.${objStream(buckets.snapshots)}`,
      `$O.${buckets.snapshots}.>`,
      // State checkpoints (PROTOCOL.md, "Checkpoints"): its instances write and read them; the one bucket a worker writes.
      ...readStreamApi(kvStream(buckets.checkpoints)),
      `$KV.${buckets.checkpoints}.>`,
      // At-least-once streams (PROTOCOL.md, "Delivery"): durable consumers per partition on TOPO_DATA_<stream>, created,
      // listed, pulled, acked and deleted by the instances reading them. A stream name is one subject token, so these
      // cannot name TOPO_DATA_ alone: consumer requests on any stream (the data subjects themselves are allowed above).
      '$JS.API.CONSUMER.CREATE.*',
      '$JS.API.CONSUMER.CREATE.*.>',
      '$JS.API.CONSUMER.DURABLE.CREATE.*.*',
      '$JS.API.CONSUMER.INFO.*.*',
      '$JS.API.CONSUMER.DELETE.*.*',
      '$JS.API.CONSUMER.LIST.*',
      '$JS.API.CONSUMER.NAMES.*',
      '$JS.API.CONSUMER.MSG.NEXT.*.*',
      '$JS.ACK.>',
    ],
    subscribe: [
      subjects.workerControl(workerId),
      'topo.data.>',
      'topo.fc.>',
      subjects.tapInterestAll,
      `${workerInboxPrefix(workerId)}.>`,
    ],
  };
}

/** The whole account, for identities that have no allow list (admin). */
export const ALL_SUBJECTS: SubjectPermissions = { publish: ['>'], subscribe: ['>'] };

/** Replies to an instance's own requests (at-least-once publishes, pulls) come on `<this>.>` of its own connection. */
export const instanceInboxPrefix = (instanceId: string): string => `_INBOX.${instanceId}`;

/** What a computation instance's own connection needs to read and write its streams (its Assignment, boiled down). */
export interface InstanceScope {
  instanceId: string;
  computation: string;
  index: number;
  istreams: string[];
  ostreams: string[];
}

/**
 * One computation instance's own user (PROTOCOL.md, "Identities and permissions"): subscribe to its
 * istreams' data subjects and publish on its ostreams', plus its credits, logs and dead letters and,
 * for at-least-once streams, the JetStream requests on those streams only. Nothing of the control plane:
 * no KV, no artifacts, no worker or API subjects. A publish to any other stream is refused by the server.
 */
export function instancePermissions(s: InstanceScope): SubjectPermissions {
  const js = (stream: string) => atLeastOnceNames.stream(stream);
  return {
    publish: [
      ...s.ostreams.map((o) => subjects.dataAll(o)),
      // Credits go to the producers of its istreams, whose ids it learns from their batches.
      subjects.credit('*'),
      subjects.log(s.computation, s.index),
      subjects.deadLetter(s.computation),
      '$JS.API.INFO',
      ...s.ostreams.map((o) => `$JS.API.STREAM.INFO.${js(o)}`),
      ...s.istreams.flatMap((i) => [
        `$JS.API.STREAM.INFO.${js(i)}`,
        `$JS.API.CONSUMER.*.${js(i)}`,
        `$JS.API.CONSUMER.*.${js(i)}.>`,
        `$JS.API.CONSUMER.DURABLE.CREATE.${js(i)}.*`,
        `$JS.API.CONSUMER.MSG.NEXT.${js(i)}.*`,
        `$JS.ACK.${js(i)}.>`,
      ]),
    ],
    subscribe: [
      ...s.istreams.map((i) => subjects.dataAll(i)),
      // Its producers' credits: topo.fc.<producer id>, and a restarted instance continues its predecessor's id.
      subjects.credit('*'),
      `${instanceInboxPrefix(s.instanceId)}.>`,
    ],
  };
}
