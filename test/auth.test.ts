/**
 * NATS auth of a local topology (runtime/transport/auth.ts, protocol/permissions.ts):
 * the server refuses anonymous clients, a worker's credential can neither call
 * the API nor write KV, and `topo up` keeps its secrets under .topo/auth (0600).
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, subjects } from '../protocol/index.js';
import { workerInboxPrefix } from '../protocol/permissions.js';
import { TopoClient } from '../runtime/client/client.js';
import { resolveNatsCreds, writeRunInfo } from '../runtime/client/runInfo.js';
import { parseControllerArgs } from '../runtime/controller/args.js';
import { connectNats } from '../runtime/transport/connect.js';
import { runTopo, startCluster, waitFor, type Cluster } from './harness.js';

const fixture = (name: string): string => join(import.meta.dirname, 'fixtures', name);

describe('a topology with auth on (the harness cluster)', () => {
  let cluster: Cluster;
  let worker: NatsConnection;
  const refused: string[] = [];

  beforeAll(async () => {
    cluster = await startCluster({ workers: 2 });
    const creds = await cluster.topology.workerCredsFile(1);
    expect(creds).toBeDefined();
    worker = await connectNats(cluster.url, {
      name: 'auth-test worker-1', creds: creds!, inboxPrefix: workerInboxPrefix('w-1'), onAsyncError: (err) => refused.push(err.message),
    });
  });
  afterAll(async () => {
    await worker?.close().catch(() => undefined);
    await cluster?.stop();
  });

  it('refuses an anonymous client with a one-line hint to pass --creds', async () => {
    const r = await runTopo(['status', '--nats', cluster.url], { env: { TOPO_NATS_CREDS: '' } });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/authorization violation at nats:\/\/127\.0\.0\.1:\d+: this server needs credentials; pass --creds FILE/);
  });

  it('names a missing creds file in one line', async () => {
    const r = await runTopo(['status', '--nats', cluster.url, '--creds', '/nonexistent/admin.creds'], { env: { TOPO_NATS_CREDS: '' } });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('topo: cannot read NATS credentials file /nonexistent/admin.creds: no such file (pass --creds FILE or set TOPO_NATS_CREDS)');
  });

  it('refuses credentials the server did not issue', async () => {
    const other = mkdtempSync(join(tmpdir(), 'topo-auth-foreign-'));
    try {
      const { ensureLocalAuth } = await import('../runtime/transport/auth.js');
      const foreign = await ensureLocalAuth(other);
      const r = await runTopo(['status', '--nats', cluster.url, '--creds', foreign.adminCreds]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/authorization violation at .*: the credentials in .*admin\.creds were refused; pass --creds FILE/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('the admin creds work from the CLI', async () => {
    const r = await runTopo(['status', '--json', '--nats', cluster.url, '--creds', cluster.creds], { env: { TOPO_NATS_CREDS: '' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.split('\n')[0] ?? '{}').workers).toHaveLength(2);
  });

  it('a worker credential cannot deploy, kill or call any topo.api subject: the server refuses the request', async () => {
    const asWorker = await TopoClient.connect(cluster.url, {
      name: 'auth-test worker-as-client', creds: (await cluster.topology.workerCredsFile(2))!, inboxPrefix: workerInboxPrefix('w-2'),
    });
    try {
      // Even its upload of the artifact is refused; the request itself too.
      await expect(asWorker.deployFile(fixture('cli-ticker.ts'))).rejects.toThrow(/Permissions Violation for Publish to "\$JS\.API\.STREAM\.PURGE\.OBJ_topo_artifacts"/);
      await expect(asWorker.nc.request(subjects.api('deploy'), '{}', { timeout: 2_000 })).rejects.toThrow(/Permissions Violation for Publish to "topo\.api\.deploy"/);
      await expect(asWorker.kill('anything')).rejects.toThrow(/Permissions Violation for Publish to "topo\.api\.kill"/);
      await expect(asWorker.status({ timeoutMs: 2_000 })).rejects.toThrow(/Permissions Violation for Publish to "topo\.api\.status"/);
    } finally {
      await asWorker.close();
    }
    expect((await cluster.client.status()).computations).toEqual([]);
  });

  it('KV buckets can be written by the admin only: every put and delete of a worker is refused', async () => {
    const admin = new Kvm(cluster.client.nc);
    const w = new Kvm(worker);
    for (const bucket of [buckets.state, buckets.workers, buckets.history]) {
      const kv = await w.open(bucket);
      await expect(kv.put('probe.auth', 'from a worker'), bucket).rejects.toThrow(/Permissions Violation for Publish to "\$KV\./);
      await expect(kv.delete('probe.auth'), bucket).rejects.toThrow(/Permissions Violation/);
    }
    const state = await admin.open(buckets.state);
    await state.put('probe.auth', 'from the admin');
    // A worker still reads the desired state it needs.
    expect((await (await w.open(buckets.state)).get('probe.auth'))?.string()).toBe('from the admin');
    await state.purge('probe.auth');
    await expect((await w.open(buckets.state)).purge('comp.x')).rejects.toThrow(/Permissions Violation/);
  });

  it('a worker reads artifacts but cannot put any', async () => {
    const { name, sha } = await cluster.client.deployFile(fixture('cli-ticker.ts'));
    const store = await new Objm(worker).open(buckets.artifacts);
    expect((await store.getBlob(sha))?.length).toBeGreaterThan(100);
    await expect(store.putBlob({ name: 'evil' }, new Uint8Array([1, 2, 3]))).rejects.toThrow(/Permissions Violation/);
    await cluster.client.kill(name);
  });

  it("a worker cannot listen on another worker's control subject", async () => {
    const before = refused.length;
    worker.subscribe(subjects.workerControl('w-2'));
    worker.subscribe(subjects.api('deploy'));
    worker.subscribe('_INBOX.>'); // every other client's replies
    await waitFor(() => refused.length >= before + 3, { what: 'three subscription violations' });
    expect(refused.slice(before).join('\n')).toMatch(/Permissions Violation for Subscription to "_INBOX\.>"/);
    expect(refused.slice(before).join('\n')).toMatch(/Permissions Violation for Subscription to "topo\.worker\.ctl\.w-2"/);
    expect(refused.slice(before).join('\n')).toMatch(/Permissions Violation for Subscription to "topo\.api\.deploy"/);
    // Its own is fine (the worker process of w-1 holds it too: a plain subscription, no queue).
    expect(refused.slice(before).join('\n')).not.toMatch(/w-1/);
  });
});

describe('topo up in a fresh folder', () => {
  let cwd = '';
  beforeAll(() => void (cwd = mkdtempSync(join(tmpdir(), 'topo-auth-up-'))));
  afterAll(async () => {
    await runTopo(['down'], { cwd });
    rmSync(cwd, { recursive: true, force: true });
  });

  it('keeps its keys and creds under .topo/auth, mode 0600, and later commands find the admin creds through run.json', async () => {
    const up = await runTopo(['up', '--workers', '1'], { cwd, timeoutMs: 60_000 });
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const run = JSON.parse(readFileSync(join(cwd, '.topo', 'run.json'), 'utf8')) as { credsFile?: string; natsUrl: string };
    expect(run.credsFile).toBe(join(cwd, '.topo', 'auth', 'admin.creds'));
    for (const f of ['admin.creds', 'keys.json', 'nats-server.conf', 'worker-w-1.creds']) {
      expect((statSync(join(cwd, '.topo', 'auth', f)).mode & 0o777).toString(8), f).toBe('600');
    }
    expect((statSync(join(cwd, '.topo', 'auth')).mode & 0o777).toString(8)).toBe('700');
    // Seeds live in keys.json and the creds files only: the server config has public JWTs.
    expect(readFileSync(join(cwd, '.topo', 'auth', 'nats-server.conf'), 'utf8')).not.toMatch(/\bS[OAU][A-Z2-7]{50,}/);

    const status = await runTopo(['status', '--json'], { cwd });
    expect(status.stderr).toBe('');
    expect(JSON.parse(status.stdout.split('\n')[0] ?? '{}').workers[0]).toMatchObject({ workerId: 'w-1', alive: true });

    const anonymous = await runTopo(['status', '--nats', run.natsUrl], { cwd: tmpdir() });
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toMatch(/authorization violation/);
  });

  it('topo up --no-auth starts a server that takes anonymous clients (the escape hatch)', async () => {
    const open = mkdtempSync(join(tmpdir(), 'topo-auth-noauth-'));
    try {
      const up = await runTopo(['up', '--workers', '1', '--no-auth'], { cwd: open, timeoutMs: 60_000 });
      expect(up.code).toBe(0);
      const run = JSON.parse(readFileSync(join(open, '.topo', 'run.json'), 'utf8')) as { credsFile?: string; natsUrl: string };
      expect(run.credsFile).toBeUndefined();
      const status = await runTopo(['status', '--json', '--nats', run.natsUrl], { cwd: tmpdir() });
      expect(status.stderr).toBe('');
      expect(status.code).toBe(0);
    } finally {
      await runTopo(['down'], { cwd: open });
      rmSync(open, { recursive: true, force: true });
    }
  });
});

describe('where credentials come from', () => {
  it('the controller takes --creds and --tls-* (or leaves them to TOPO_NATS_CREDS / TOPO_NATS_TLS_*)', () => {
    expect(parseControllerArgs(['--nats', 'nats://x:1', '--creds', '/a.creds', '--tls-ca=/ca.pem'], {})).toEqual({ natsUrl: 'nats://x:1', creds: '/a.creds', tls: { ca: '/ca.pem' } });
    expect(parseControllerArgs(['--nats', 'nats://x:1'], { TOPO_NATS_CREDS: '/env.creds' })).toEqual({ natsUrl: 'nats://x:1' });
    expect(() => parseControllerArgs(['--nats', 'nats://x:1', '--creds'], {})).toThrow(/--creds needs a file/);
  });

  it('the CLI: --creds > TOPO_NATS_CREDS > the admin creds of run.json when its topology runs at that URL', () => {
    const project = mkdtempSync(join(tmpdir(), 'topo-auth-creds-'));
    try {
      writeRunInfo(join(project, '.topo'), {
        natsUrl: 'nats://127.0.0.1:1', startedAt: 0, pids: { controller: 1, workers: [] }, ownsNats: true,
        dir: join(project, '.topo'), logDir: join(project, '.topo', 'logs'), credsFile: '/from/run.json/admin.creds',
      });
      expect(resolveNatsCreds('nats://127.0.0.1:1', { flag: '/flag.creds', env: { TOPO_NATS_CREDS: '/env.creds' }, cwd: project })).toBe('/flag.creds');
      expect(resolveNatsCreds('nats://127.0.0.1:1', { env: { TOPO_NATS_CREDS: '/env.creds' }, cwd: project })).toBe('/env.creds');
      expect(resolveNatsCreds('nats://127.0.0.1:1', { env: {}, cwd: project })).toBe('/from/run.json/admin.creds');
      // Another server than the one run.json describes: its admin creds are not offered to it.
      expect(resolveNatsCreds('nats://elsewhere:4222', { env: {}, cwd: project })).toBeUndefined();
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });

  it('a creds file parses into its JWT and the 32-byte seed the watchdog thread signs with', async () => {
    const { ensureLocalAuth, credsParts } = await import('../runtime/transport/auth.js');
    const dir = mkdtempSync(join(tmpdir(), 'topo-auth-parts-'));
    try {
      const auth = await ensureLocalAuth(dir);
      const parts = credsParts(readFileSync(await auth.workerCreds('w-9'), 'utf8'));
      expect(parts.jwt.split('.')).toHaveLength(3);
      expect(parts.seed).toHaveLength(32);
      expect(() => credsParts('not a creds file')).toThrow(/not a NATS user \.creds file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
