/**
 * The durable bench's measurements (bundled into dist/bench/durable.mjs by
 * bench/run.mjs): at-least-once one-hop, the hand-written JetStream
 * baseline, the checkpointed counter, and recovery after kill -9.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { nextMessage } from '../raw/run.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalTopology, type LocalTopology } from '../../runtime/client/launcher.js';
import { TopoClient } from '../../runtime/client/client.js';
import { ensureDataStreams } from '../../runtime/controller/infrastructure.js';
import { backoffDelay, settingsFromEnv } from '../../runtime/supervisor/supervisor.js';
import { ensureLocalAuth } from '../../runtime/transport/auth.js';
import { connectNats } from '../../runtime/transport/connect.js';
import { startNatsServer, type StartedNats } from '../../runtime/transport/natsServer.js';
import { MAX_ACK_PENDING } from '../../runtime/worker/jetstream.js';
import { MAX_BATCH_RECORDS } from '../../runtime/worker/producer.js';
import { decodeBatch, subjects } from '../../protocol/index.js';
import type { CaseResult } from '../results.js';
import { checkPlacement, runPipeline, runTopoCase } from '../topo/harness.js';
import type { JsConfig, JsConsumerMessage, JsPublisherMessage } from './js-config.js';
import { RECOVERY_STREAMS, TICK_COUNTER, TICKS, type TickCount } from './streams.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type DurableKind = 'alo-one-hop' | 'amo-one-hop' | 'counter';

export interface DurableCaseOptions {
  root: string;
  kind: DurableKind;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
  /** TOPO_CHECKPOINT_MS of the workers (counter only; the one-hop cases run with the default). */
  checkpointMs?: number;
}

/** One run of a topo pipeline of the durable bench on a fresh local topology (auth on, as `topo up`). */
export async function runDurableCase(o: DurableCaseOptions): Promise<CaseResult> {
  if (o.kind === 'amo-one-hop') return runTopoCase({ root: o.root, kind: 'one-hop', count: o.count, timeoutMs: o.timeoutMs, log: o.log, auth: true });
  const files = o.kind === 'alo-one-hop'
    ? [join(o.root, 'bench', 'durable', 'source-alo.ts'), join(o.root, 'bench', 'durable', 'sink-alo.ts')]
    : [join(o.root, 'bench', 'topo', 'source.ts'), join(o.root, 'bench', 'durable', 'counter.ts')];
  const env: NodeJS.ProcessEnv = { TOPO_AUTOPILOT: '0' };
  if (o.checkpointMs !== undefined) env.TOPO_CHECKPOINT_MS = String(o.checkpointMs);
  return runPipeline({
    label: o.kind, workers: files.length, count: o.count, timeoutMs: o.timeoutMs, log: o.log, auth: true, env,
    async setup(client) {
      for (const f of files) await client.deployFile(f);
      return checkPlacement(client);
    },
  });
}

export interface JsBaselineOptions {
  /** dist/bench: where durable-js-publisher.mjs and durable-js-consumer.mjs are. */
  here: string;
  count: number;
  timeoutMs: number;
  log: (line: string) => void;
}

/** The stream name of the hand-written baseline (`TOPO_DATA_bench-js`: a worker's user may use its subjects and consumers). */
const JS_STREAM = 'bench-js';

/**
 * The hand-written JetStream baseline: a nats-server with topo's auth (operator JWT, the config and
 * creds `topo up` makes), the stream created as topo's controller creates an at-least-once stream,
 * then a consumer and a publisher process, each with a worker's restricted creds.
 */
export async function runJsBaseline(o: JsBaselineOptions): Promise<CaseResult> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-bench-js-'));
  let nats: StartedNats | undefined;
  const children: ChildProcess[] = [];
  let failed = false;
  try {
    const auth = await ensureLocalAuth(join(dir, 'auth'));
    nats = await startNatsServer({ storeDir: join(dir, 'nats'), logFile: join(dir, 'nats.log'), configFile: auth.serverConfig });
    const admin = await connectNats(nats.url, { name: 'bench-js-admin', creds: auth.adminCreds });
    try {
      await ensureDataStreams(admin, [JS_STREAM]);
    } finally {
      await admin.close();
    }
    const base = {
      url: nats.url, stream: `TOPO_DATA_${JS_STREAM}`, subjectPrefix: `topo.data.${JS_STREAM}`, partitions: 32, count: o.count,
      batch: MAX_BATCH_RECORDS, ackEveryMs: 1_000, pullBatch: 256, maxAckPending: MAX_ACK_PENDING,
    };
    const cfg = async (id: string): Promise<string> =>
      JSON.stringify({ ...base, creds: await auth.workerCreds(id), inboxPrefix: `_INBOX.${id}` } satisfies JsConfig);
    const consumer = fork(join(o.here, 'durable-js-consumer.mjs'), [await cfg('w-2')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(consumer);
    const ready = await nextMessage<JsConsumerMessage>(consumer, 'js consumer start', 15_000);
    if (ready.type !== 'ready') throw new Error(`js consumer: unexpected message ${JSON.stringify(ready)}`);
    const done = nextMessage<JsConsumerMessage>(consumer, 'js consumer', o.timeoutMs);
    done.catch(() => undefined);
    const publisher = fork(join(o.here, 'durable-js-publisher.mjs'), [await cfg('w-1')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(publisher);
    const pub = await nextMessage<JsPublisherMessage>(publisher, 'js publisher', o.timeoutMs);
    const d = await done;
    if (d.type !== 'done') throw new Error(`js consumer: unexpected message ${JSON.stringify(d)}`);
    const seconds = (d.lastMs - d.firstMs) / 1000;
    const notes = [`${pub.messages.toLocaleString('en-US')} messages of <= ${MAX_BATCH_RECORDS} records`];
    if (pub.retries) notes.push(`${pub.retries} publish retries`);
    return { records: d.received, expected: o.count, lost: Math.max(0, o.count - d.received), seconds, rate: seconds > 0 ? d.received / seconds : 0, notes };
  } catch (err) {
    failed = true;
    throw new Error(`${(err as Error).message} (nats log kept in ${dir})`, { cause: err });
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await nats?.stop();
    if (!failed) rmSync(dir, { recursive: true, force: true });
  }
}

export interface RecoveryOptions {
  root: string;
  kills: number;
  log: (line: string) => void;
}

export interface RecoverySample {
  /** SIGKILL sent -> the first output record counted by the restarted instance arrived at the harness's tap. */
  ms: number;
  /** The controller's `lastRecovery.ms` after it (from the dead process's last heartbeat to the instance's assign answered). */
  controllerMs?: number;
  /** The supervisor-like delay before the worker was started again. */
  restartDelayMs: number;
  /** SIGKILL sent -> the controller's status shows the restarted worker alive (what startWorker waits for). */
  registeredMs: number;
  worker: string;
}

export interface RecoveryResult {
  samples: RecoverySample[];
  /** Records the tap saw in all, and how long the run took. */
  records: number;
  seconds: number;
  notes: string[];
}

/** Output must have flowed from the live instance this long before a kill (at least one checkpoint after a restart). */
const STEADY_MS = 2_500;
const RECOVERY_TIMEOUT_MS = 30_000;

/**
 * Recovery after kill -9: ticks (10,000 records/s) -> tick-counter (key-grouped, 1 instance), both
 * at-least-once, on 2 workers. Each kill: SIGKILL the worker running the counter, start it again
 * after the delay `topo up`'s supervisor waits before a first restart (backoffDelay(1) of its
 * default settings), and time, from outside, the SIGKILL to the first output record whose pid
 * (in the record's value) is not the killed process's.
 */
export async function runRecovery(o: RecoveryOptions): Promise<RecoveryResult> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-bench-recovery-'));
  let topo: LocalTopology | undefined;
  let client: TopoClient | undefined;
  let failed = false;
  const t0 = Date.now();
  const settings = settingsFromEnv(process.env);
  try {
    topo = await startLocalTopology({ dir, workers: 2, env: { TOPO_AUTOPILOT: '0' } });
    client = await TopoClient.connect(topo.natsUrl, { name: 'topo-bench-recovery', creds: topo.credsFile });
    await client.deployFile(join(o.root, 'bench', 'durable', 'tick-counter.ts'));
    await client.deployFile(join(o.root, 'bench', 'durable', 'ticks.ts'));
    const notes = await checkPlacement(client);
    let records = 0;
    let pid = 0;
    let pidSince = 0;
    let victim = 0;
    let firstNew: number | undefined;
    const sub = client.nc.subscribe(subjects.dataAll(RECOVERY_STREAMS.out), {
      callback: (_err, msg) => {
        const now = performance.now();
        for (const rec of decodeBatch(msg.data).recs) {
          records++;
          const p = (rec[1] as TickCount).pid;
          if (p !== pid) {
            pid = p;
            pidSince = now;
          }
          if (victim && p !== victim && firstNew === undefined) firstNew = now;
        }
      },
    });
    const samples: RecoverySample[] = [];
    try {
      const deadline = Date.now() + 30_000;
      while (!(pid && performance.now() - pidSince > STEADY_MS)) {
        if (Date.now() > deadline) throw new Error(`no output from ${TICK_COUNTER} after 30 s (${records} records)`);
        await sleep(100);
      }
      for (let k = 1; k <= o.kills; k++) {
        while (performance.now() - pidSince < STEADY_MS) await sleep(100);
        const status = await client.status();
        const workerId = status.computations.find((c) => c.name === TICK_COUNTER)?.instances[0]?.workerId;
        if (!workerId) throw new Error(`${TICK_COUNTER} has no instance before kill ${k}`);
        const n = Number(workerId.replace(/^w-/, ''));
        const workerPid = status.workers.find((w) => w.workerId === workerId)?.pid;
        if (workerPid !== pid) notes.push(`kill ${k}: the counter's output came from pid ${pid}, its worker ${workerId} has pid ${workerPid}`);
        const restartDelayMs = backoffDelay(1, settings);
        const victimPid = pid;
        victim = pid;
        firstNew = undefined;
        const killedAt = performance.now();
        const killedAtWall = Date.now();
        await topo.killWorker(n, 'SIGKILL');
        await sleep(restartDelayMs);
        const started = topo.startWorker(n).then(() => performance.now() - killedAt);
        started.catch(() => undefined);
        const until = performance.now() + RECOVERY_TIMEOUT_MS;
        while (firstNew === undefined && performance.now() < until) await sleep(5);
        const registeredMs = await started;
        if (firstNew === undefined) throw new Error(`kill ${k}: no record from a restarted ${TICK_COUNTER} within ${RECOVERY_TIMEOUT_MS / 1000} s`);
        const ms = firstNew - killedAt;
        victim = 0;
        const after = (await client.status()).computations.find((c) => c.name === TICK_COUNTER)?.lastRecovery;
        const sample: RecoverySample = {
          ms, restartDelayMs, registeredMs, worker: workerId,
          ...(after && after.at >= killedAtWall ? { controllerMs: after.ms } : {}),
        };
        samples.push(sample);
        o.log(`recovery kill ${k}/${o.kills}: ${workerId} (pid ${victimPid}) killed, restarted after ${restartDelayMs} ms, registered again after ${Math.round(registeredMs)} ms; first record of the restarted instance ${Math.round(ms)} ms after the SIGKILL${sample.controllerMs !== undefined ? ` (controller lastRecovery ${sample.controllerMs} ms)` : ''}`);
      }
    } finally {
      sub.unsubscribe();
    }
    return { samples, records, seconds: (Date.now() - t0) / 1000, notes };
  } catch (err) {
    failed = true;
    const logs = topo ? ` (logs kept in ${topo.logDir})` : '';
    throw new Error(`recovery: ${(err as Error).message}${logs}`, { cause: err });
  } finally {
    await client?.close().catch(() => undefined);
    await topo?.stop().catch(() => undefined);
    if (!failed) rmSync(dir, { recursive: true, force: true });
  }
}
