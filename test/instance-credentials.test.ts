/**
 * Per-instance NATS users (runtime/controller/instanceCredentials.ts, protocol/permissions.ts
 * instancePermissions): each instance runs on a connection of its own whose user may publish only on
 * its ostreams. A computation that publishes elsewhere through raw NATS (ctx.nats) is refused by the
 * server, and the refusal is logged and counted; a swap or kill revokes the old instance's user.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import type { Subscription } from '@nats-io/transport-node';
import { buckets } from '../protocol/index.js';
import type { InstanceStatus } from '../protocol/control.js';
import { instanceInboxPrefix } from '../protocol/permissions.js';
import { InstanceCredentials, IssuedLedger } from '../runtime/controller/instanceCredentials.js';
import { AccountRevocations, accountSigner } from '../runtime/transport/auth.js';
import { connectNats } from '../runtime/transport/connect.js';
import { runTopo, startCluster, waitFor, type Cluster } from './harness.js';
import { tapStream, type Tap } from './swap-helpers.js';

const fixture = (name: string): string => join(import.meta.dirname, 'fixtures', name);
const NAME = 'perm-rogue';

describe('each instance on a NATS user of its own', () => {
  let cluster: Cluster;
  let secret: Subscription;
  const leaked: string[] = [];
  let out: Tap<{ value: unknown; producer: string }>;

  beforeAll(async () => {
    cluster = await startCluster({ workers: 1 });
    // The admin listens where the computation has no right to publish: nothing may arrive.
    secret = cluster.client.nc.subscribe('topo.data.perm-secret.>', { callback: (_e, m) => { leaked.push(m.subject); } });
    await cluster.client.nc.flush();
    out = await tapStream(cluster.client, 'perm-out', (_key, value, producer) => ({ value, producer }));
    await cluster.client.deployFile(fixture('perm-rogue.ts'));
  });
  afterAll(async () => {
    secret?.unsubscribe();
    await out?.stop();
    await cluster?.stop();
  });

  async function instanceOf(): Promise<InstanceStatus> {
    const c = (await cluster.client.status()).computations.find((x) => x.name === NAME);
    return c!.instances[0]!;
  }

  it('a publish to an undeclared stream or to KV through raw NATS is refused by the server, logged and counted; its own stream flows', async () => {
    const denied = await waitFor(async () => {
      const n = (await instanceOf()).metrics.permissionDenied ?? 0;
      return n >= 10 ? n : undefined;
    }, { what: 'permissionDenied reported in topo status', timeoutMs: 20_000, intervalMs: 250 });
    expect(denied).toBeGreaterThanOrEqual(10);
    // The computation's total, in `topo status` (and its --json).
    const text = await runTopo(['status', '--nats', cluster.url]);
    expect(text.stdout).toMatch(/perm-rogue: \d+ publish\(es\) or subscription\(s\) refused by NATS to its instances' users/);
    const json = await runTopo(['status', '--json', '--nats', cluster.url]);
    expect(JSON.parse(json.stdout).computations[0].permissionDenied).toBeGreaterThanOrEqual(10);
    // Records on its ostream reach their readers (produceRecord, on its own connection).
    await waitFor(() => out.records.length > 10, { what: 'records on perm-out' });
    expect(leaked, 'messages the instance had no right to publish').toEqual([]);
    // Nothing reached the control plane either.
    const state = await new Kvm(cluster.client.nc).open(buckets.state);
    expect((await state.get(`comp.${NAME}`))?.string()).not.toBe('overwritten');

    const lines: string[] = [];
    for await (const e of cluster.client.logs(NAME, { lines: 200 })) lines.push(String(e.line.msg));
    expect(lines.some((l) => l === 'own connection: true'), lines.join('\n')).toBe(true);
    expect(lines.find((l) => l.startsWith('NATS refused')), lines.join('\n'))
      .toMatch(/^NATS refused: Permissions Violation for Publish to "(topo\.data\.perm-secret\.0|\$KV\.topo_state\.comp\.perm-rogue)"/);
  });

  it('a kill revokes the user of the instance it ended', async () => {
    const { instanceId } = await instanceOf();
    await cluster.client.kill(NAME);
    const line = await waitFor(() => cluster.logTail('controller', 400).split('\n').find((l) => l.includes('revoked the NATS user') && l.includes(instanceId)),
      { what: `the controller revoking ${instanceId}'s user`, timeoutMs: 20_000, intervalMs: 250 });
    expect(JSON.parse(line)).toMatchObject({ users: 1, instances: [instanceId] });
  });
});

describe('revoking an ended instance\'s user (the controller\'s InstanceCredentials, on a real nats-server)', () => {
  let cluster: Cluster;
  let dir: string;

  beforeAll(async () => {
    cluster = await startCluster({ workers: 1 });
    // A copy of the auth folder: the revocations are written to its nats-server.conf, not the shared one.
    dir = mkdtempSync(join(tmpdir(), 'topo-revoke-'));
    for (const f of ['keys.json', 'nats-server.conf']) copyFileSync(join(process.env.TOPO_TEST_AUTH_DIR!, f), join(dir, f));
  });
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a minted user may publish only on its ostreams; once its instance is gone it is revoked: its connection is closed and it cannot sign in again', async () => {
    const revocations = AccountRevocations.of(dir)!;
    const log = pino({ level: 'silent' });
    const creds = new InstanceCredentials(accountSigner(dir)!, revocations, (u) => connectNats(cluster.url, { name: 'revoke-test system', credential: u }), log);
    const a = {
      instanceId: 'rev-probe-0-abc123', computation: 'rev-probe', version: 1, sha: 'a'.repeat(64), lang: 'ts' as const, index: 0, count: 1,
      metadata: { name: 'rev-probe', istreams: [], ostreams: ['rev-out'] },
    };
    const credential = await creds.mint(a);
    const got: string[] = [];
    const sub = cluster.client.nc.subscribe('topo.data.>', { callback: (_e, m) => { if (m.subject.includes('rev-')) got.push(m.subject); } });
    await cluster.client.nc.flush();
    const refused: string[] = [];
    const probe = await connectNats(cluster.url, {
      name: 'rev-probe', credential, inboxPrefix: instanceInboxPrefix(a.instanceId), onAsyncError: (e) => refused.push(e.message),
    });
    const closed = probe.closed();
    try {
      probe.publish('topo.data.rev-out.3', 'allowed');
      probe.publish('topo.data.rev-other.3', 'refused');
      await probe.flush();
      await waitFor(() => got.length === 1 && refused.length === 1, { what: 'one publish through, one refused' });
      expect(got).toEqual(['topo.data.rev-out.3']);
      expect(refused[0]).toMatch(/Permissions Violation for Publish to "topo\.data\.rev-other\.3"/);

      // Still placed: nothing is revoked. Gone for long enough: revoked.
      const later = Date.now() + 60_000;
      await creds.sweep(new Set([a.instanceId]), new Set(), later);
      await creds.sweep(new Set([a.instanceId]), new Set(), later + 10_000);
      // Gone from the placements, but its computation is being swapped (the new instances are in none yet).
      await creds.sweep(new Set(), new Set(['rev-probe']), later + 20_000);
      await creds.sweep(new Set(), new Set(['rev-probe']), later + 30_000);
      expect(revocations.has(creds.userOf(a.instanceId)!)).toBe(false);
      const userKey = creds.userOf(a.instanceId)!;
      await creds.sweep(new Set(), new Set(), later + 40_000);
      await creds.sweep(new Set(), new Set(), later + 50_000);
      expect(revocations.has(userKey)).toBe(true);
      expect(creds.revokedCount).toBe(1);
      // The server closes the connection of the revoked user, and refuses it a new one.
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the revoked user is still connected after 10 s')), 10_000))]);
      await expect(connectNats(cluster.url, { name: 'rev-probe again', credential, timeoutMs: 5_000 })).rejects.toThrow(/authorization violation|revoked/i);
      // A restarted server reads the revocation from its config.
      expect(readFileSync(join(dir, 'nats-server.conf'), 'utf8')).toContain('resolver_preload');
      expect(AccountRevocations.of(dir)!.has(userKey)).toBe(true);
    } finally {
      sub.unsubscribe();
      await probe.close().catch(() => undefined);
      await creds.close();
    }
  });

  it('a restarted controller revokes the users its predecessor minted, from their public keys in KV', async () => {
    const revocations = AccountRevocations.of(dir)!;
    const log = pino({ level: 'silent' });
    // A bucket of its own, shaped as topo_state: the cluster's controller keeps its users in the real one.
    const kv = await new Kvm(cluster.client.nc).create('ledger_test');
    const connectSystem = (u: Parameters<typeof connectNats>[1]['credential']) => connectNats(cluster.url, { name: 'ledger-test system', credential: u });
    const meta = (n: string) => ({
      instanceId: `${n}-0-abc123`, computation: n, version: 1, sha: 'a'.repeat(64), lang: 'ts' as const, index: 0, count: 1,
      metadata: { name: n, istreams: [], ostreams: [`${n}-out`] },
    });
    const ended = meta('ledger-ended');
    const kept = meta('ledger-kept');
    const first = new InstanceCredentials(accountSigner(dir)!, revocations, connectSystem, log, new IssuedLedger(kv, log));
    await first.load();
    const credential = await first.mint(ended);
    await first.mint(kept);
    const endedKey = first.userOf(ended.instanceId)!;
    const keptKey = first.userOf(kept.instanceId)!;
    await first.close();
    // Public keys only: never the seed.
    const stored = JSON.stringify((await kv.get(`user.${ended.instanceId}`))?.json());
    expect(stored).toContain(endedKey);
    expect(stored).not.toContain(credential.seed);

    // The next controller knows them (no mint of its own) and revokes the one whose instance is gone.
    const second = new InstanceCredentials(accountSigner(dir)!, AccountRevocations.of(dir)!, connectSystem, log, new IssuedLedger(kv, log));
    try {
      await second.load();
      expect(second.userOf(ended.instanceId)).toBe(endedKey);
      const later = Date.now() + 60_000;
      await second.sweep(new Set([kept.instanceId]), new Set(), later);
      await second.sweep(new Set([kept.instanceId]), new Set(), later + 10_000);
      expect(AccountRevocations.of(dir)!.has(endedKey)).toBe(true);
      expect(AccountRevocations.of(dir)!.has(keptKey)).toBe(false);
      await expect(connectNats(cluster.url, { name: 'ledger-ended again', credential, timeoutMs: 5_000 })).rejects.toThrow(/authorization violation|revoked/i);
      // Revoked: gone from KV; the other stays.
      expect((await kv.get(`user.${ended.instanceId}`))?.operation ?? 'none').not.toBe('PUT');
      expect((await kv.get(`user.${kept.instanceId}`))?.operation).toBe('PUT');
    } finally {
      await second.close();
    }

    // Entries that do not match their schema are skipped, each with an error; good ones kept.
    await kv.put('user.bad-0-x', JSON.stringify({ instanceId: 'other-0-x', userKey: keptKey, computation: 'x', mintedAt: 1 }));
    await kv.put('user.bad-1-x', JSON.stringify({ instanceId: 'bad-1-x', userKey: 'not-a-key', computation: 'x', mintedAt: 1 }));
    await kv.put('user.bad-2-x', '{not json');
    const lines: string[] = [];
    const noisy = pino({ level: 'error' }, { write: (l: string) => void lines.push(l) });
    const loaded = await new IssuedLedger(kv, noisy).load();
    expect([...loaded.keys()]).toEqual([kept.instanceId]);
    expect(lines.filter((l) => l.includes('is not a valid instance user entry'))).toHaveLength(3);
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg).join('\n')).toMatch(/its instanceId is "other-0-x", not "bad-0-x"/);
  });
});
