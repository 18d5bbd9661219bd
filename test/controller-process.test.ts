/**
 * The controller as a process: bundled like dist/controller.mjs, started with
 * --nats, creates the control-plane stores idempotently, exits 0 on
 * SIGTERM/SIGINT and 2 on missing arguments.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, jsStreams, subjects, type StatusReply } from '../protocol/index.js';
import { connectNats } from '../runtime/transport/connect.js';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import { call } from '../runtime/transport/rpc.js';

let dir: string;
let bundle: string;
let nats: StartedNats;
let client: NatsConnection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'topo-controller-proc-'));
  bundle = join(dir, 'controller.mjs');
  // Self-contained bundle (no externals): it runs from a temp dir without node_modules next to it.
  await build({
    entryPoints: [join(import.meta.dirname, '../runtime/controller/main.ts')],
    outfile: bundle, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error',
    banner: { js: "import { createRequire as __topoCreateRequire } from 'node:module'; const require = __topoCreateRequire(import.meta.url);" },
  });
  nats = await startNatsServer({ storeDir: join(dir, 'js') });
  client = await connectNats(nats.url, { name: 'controller-process test' });
});

afterAll(async () => {
  await client?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  stderr: string;
}

function runController(args: string[], env: NodeJS.ProcessEnv = {}) {
  const { TOPO_NATS_URL: _ignored, ...base } = process.env;
  const child = spawn(process.execPath, [bundle, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  return { child, exited, stderr: () => stderr };
}

async function waitForStatus(): Promise<StatusReply> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await call<StatusReply>(client, subjects.api('status'), {}, 500);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe('controller process', () => {
  it('exits 2 with a clear message when no NATS URL is given', async () => {
    const { exited } = runController([]);
    const { code, stderr } = await exited;
    expect(code).toBe(2);
    expect(stderr).toContain('pass --nats URL or set TOPO_NATS_URL');
  });

  it('creates buckets and bounded streams, restarts idempotently and exits 0 on SIGTERM and SIGINT', async () => {
    const first = runController(['--nats', nats.url]);
    const status = await waitForStatus();
    expect(status.natsUrl).toBe(nats.url);
    // Bundled away from the package, it still serves metrics; its web UI page says why it is missing.
    expect((await fetch(`${status.httpUrl}/metrics`)).status).toBe(200);
    const page = await fetch(`${status.httpUrl}/`);
    expect(page.status).toBe(404);
    expect(await page.text()).toContain('the web UI is not available: cannot find the topo package root');

    const jsm = await jetstreamManager(client);
    const logs = await jsm.streams.info(jsStreams.logs);
    expect(logs.config).toMatchObject({ subjects: ['topo.log.>'], max_msgs_per_subject: 2000, max_age: 3_600 * 1e9, storage: 'file' });
    const dlq = await jsm.streams.info(jsStreams.deadLetters);
    expect(dlq.config).toMatchObject({ subjects: ['topo.dlq.>'], max_msgs: 100_000, max_age: 24 * 3_600 * 1e9 });
    const kvm = new Kvm(client);
    expect((await (await kvm.open(buckets.history)).status()).history).toBe(10);
    await kvm.open(buckets.state);
    await kvm.open(buckets.workers);

    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);

    // Second start over existing stores, URL from the environment.
    const second = runController([], { TOPO_NATS_URL: nats.url });
    expect((await waitForStatus()).computations).toEqual([]);
    second.child.kill('SIGINT');
    const { code, stderr } = await second.exited;
    expect(code).toBe(0);
    expect(stderr).toContain('topo controller stopped');
  });

  it('sends stop to every live registered worker when it is shut down (topo down), unless TOPO_KEEP_WORKERS=1', async () => {
    // A fake foreign worker: answers control requests and records them, registers once, heartbeats.
    const fakeWorker = async (workerId: string) => {
      const ops: string[] = [];
      const sub = client.subscribe(subjects.workerControl(workerId), {
        callback: (_err, msg) => {
          ops.push((JSON.parse(new TextDecoder().decode(msg.data)) as { op: string }).op);
          msg.respond(new TextEncoder().encode(JSON.stringify({ ok: true })));
        },
      });
      const hello = { workerId, host: 'elsewhere', pid: 4242, lang: 'python', startedAt: Date.now() };
      await call(client, subjects.register, hello, 2_000);
      const hb = () => client.publish(subjects.heartbeat(workerId), JSON.stringify({ ...hello, at: Date.now(), instances: [] }));
      hb();
      const timer = setInterval(hb, 200);
      return { ops, close: () => { clearInterval(timer); sub.unsubscribe(); } };
    };

    for (const [signal, env, expected] of [['SIGTERM', {}, ['stop']], ['SIGINT', { TOPO_KEEP_WORKERS: '1' }, []]] as const) {
      const ctl = runController(['--nats', nats.url], { TOPO_LOG_LEVEL: 'info', ...env });
      await waitForStatus();
      const w = await fakeWorker(`native-${signal}`);
      const dead = await fakeWorker(`gone-${signal}`);
      dead.close(); // registered, lease still live, but nobody answers: the controller must not hang on it
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      ctl.child.kill(signal);
      const { code, stderr } = await ctl.exited;
      w.close();
      expect(code).toBe(0);
      expect(w.ops).toEqual(expected);
      expect(Date.now() - t0).toBeLessThan(8_000);
      if (expected.length) {
        expect(stderr).toContain(`worker native-${signal} acknowledged stop`);
        expect(stderr).toContain(`worker gone-${signal} did not acknowledge stop`);
      } else {
        expect(stderr).not.toContain('sending stop');
      }
    }
  });
});
