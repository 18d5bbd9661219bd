/**
 * Client library tests that need no controller: bundling and metadata checks,
 * NATS URL resolution, and tap / logs / dead letters against a real nats-server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { bundleComputation } from '../runtime/client/bundle.js';
import { TopoClient, isMalformed, type LogEntry, type TapItem } from '../runtime/client/client.js';
import { NO_TOPOLOGY_MESSAGE, resolveNatsUrl, writeRunInfo } from '../runtime/client/runInfo.js';
import { startNatsServer, type StartedNats } from '../runtime/transport/natsServer.js';
import {
  InvalidMetadataError, ModuleLoadError, NotFoundError, encodeBatch, jsStreams, packr, subjects, type DeadLetter,
} from '../protocol/index.js';

const fixture = (name: string): string => join(import.meta.dirname, 'fixtures', name);
const scratch = mkdtempSync(join(tmpdir(), 'topo-client-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function scratchFile(name: string, text: string): string {
  const file = join(scratch, name);
  writeFileSync(file, text);
  return file;
}

describe('bundleComputation', () => {
  it('bundles a computation into one self-contained artifact with its sha and normalized metadata', async () => {
    const b = await bundleComputation(fixture('cli-picky.ts'));
    expect(b.lang).toBe('ts');
    expect(b.sha).toBe(createHash('sha256').update(b.code).digest('hex'));
    expect(b.metadata).toEqual({ name: 'picky', istreams: [{ stream: 'ticks', grouping: 'shuffle' }], ostreams: ['even-ticks'] });
    const code = new TextDecoder().decode(b.code);
    // The SDK and zod are inlined: no import of a relative path or of an npm package remains.
    expect(code).not.toMatch(/from\s+["']\.{1,2}\//);
    expect(code).not.toMatch(/from\s+["']zod["']/);
  });

  it('gives the same sha for the same source', async () => {
    const [a, b] = await Promise.all([bundleComputation(fixture('cli-ticker.ts')), bundleComputation(fixture('cli-ticker.ts'))]);
    expect(a.sha).toBe(b.sha);
  });

  it('keeps InvalidMetadataError (naming the field) when defineComputation rejects metadata at import', async () => {
    const err = await bundleComputation(fixture('cli-bad-metadata.ts')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidMetadataError);
    expect((err as Error).message).toContain('ostreams[1]');
  });

  it('rejects a file without a computation as default export', async () => {
    const err = await bundleComputation(fixture('cli-no-default.ts')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModuleLoadError);
    expect((err as Error).message).toContain('has no default export made by defineComputation');
  });

  it('turns an error thrown at import into ModuleLoadError naming the file', async () => {
    const file = scratchFile('throws.ts', 'throw new Error("boom at import");\nexport default 1;\n');
    const err = await bundleComputation(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModuleLoadError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain('boom at import');
  });

  it('turns a syntax error into ModuleLoadError naming the file and line', async () => {
    const file = scratchFile('syntax.ts', 'export default {\n  name: "x",\n');
    const err = await bundleComputation(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModuleLoadError);
    expect((err as Error).message).toMatch(/cannot bundle .*syntax\.ts: syntax\.ts:3:/);
  });

  it('names a missing file', async () => {
    const err = await bundleComputation(join(scratch, 'missing.ts')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModuleLoadError);
    expect((err as Error).message).toContain('missing.ts: no such file');
  });
});

describe('resolveNatsUrl', () => {
  const project = join(scratch, 'project');
  const nested = join(project, 'src', 'deep');
  beforeAll(() => {
    mkdirSync(nested, { recursive: true });
    writeRunInfo(join(project, '.topo'), {
      natsUrl: 'nats://from-run-json:1',
      startedAt: 1,
      pids: { controller: 1, workers: [] },
      ownsNats: false,
      dir: join(project, '.topo'),
      logDir: join(project, '.topo', 'logs'),
    });
  });

  it('prefers the flag, then TOPO_NATS_URL, then .topo/run.json in the folder or a parent', () => {
    const env = { TOPO_NATS_URL: 'nats://from-env:2' };
    expect(resolveNatsUrl({ flag: 'nats://from-flag:3', env, cwd: nested })).toBe('nats://from-flag:3');
    expect(resolveNatsUrl({ env, cwd: nested })).toBe('nats://from-env:2');
    expect(resolveNatsUrl({ env: {}, cwd: nested })).toBe('nats://from-run-json:1');
    expect(resolveNatsUrl({ env: {}, cwd: project })).toBe('nats://from-run-json:1');
  });

  it('says how to start a topology when there is none', () => {
    const lonely = mkdtempSync(join(tmpdir(), 'topo-lonely-'));
    try {
      expect(() => resolveNatsUrl({ env: {}, cwd: lonely })).toThrow(NO_TOPOLOGY_MESSAGE);
    } finally {
      rmSync(lonely, { recursive: true, force: true });
    }
  });
});

describe('reading streams with a real nats-server', () => {
  let nats: StartedNats;
  let client: TopoClient;

  beforeAll(async () => {
    nats = await startNatsServer({ storeDir: join(scratch, 'nats') });
    client = await TopoClient.connect(nats.url);
    const jsm = await jetstreamManager(client.nc);
    await jsm.streams.add({ name: jsStreams.logs, subjects: [subjects.logEverything], max_msgs: 10_000 });
    await jsm.streams.add({ name: jsStreams.deadLetters, subjects: [subjects.deadLetterAll], max_msgs: 10_000 });
  });
  afterAll(async () => {
    await client?.close();
    await nats?.stop();
  });

  it('tap yields every record of every partition, and malformed messages as such', async () => {
    const ac = new AbortController();
    const seen: TapItem[] = [];
    const done = (async () => {
      for await (const item of client.tap('words', { signal: ac.signal })) {
        seen.push(item);
        if (seen.length === 4) ac.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 50)); // let the subscription reach the server
    const recs: [string, unknown, number, number][] = [['a', { n: 1 }, 1000, 1], ['b', 'two', 1001, 2]];
    client.nc.publish(subjects.data('words', 3), encodeBatch({ v: 1, src: 'p-0', stream: 'words', bseq: 1, recs }));
    client.nc.publish(subjects.data('words', 7), new Uint8Array([0xc1, 0x00]));
    client.nc.publish(subjects.data('other', 1), encodeBatch({ v: 1, src: 'p-0', stream: 'other', bseq: 1, recs }));
    client.nc.publish(subjects.data('words', 9), encodeBatch({ v: 1, src: 'p-1', stream: 'words', bseq: 1, recs: [['c', null, 1002, 1, 't-1']] }));
    await done;
    expect(seen.filter((i) => !isMalformed(i))).toEqual([
      { stream: 'words', partition: 3, producer: 'p-0', key: 'a', value: { n: 1 }, timestamp: 1000, seq: 1 },
      { stream: 'words', partition: 3, producer: 'p-0', key: 'b', value: 'two', timestamp: 1001, seq: 2 },
      { stream: 'words', partition: 9, producer: 'p-1', key: 'c', value: null, timestamp: 1002, seq: 1, trace: 't-1' },
    ]);
    const bad = seen.filter(isMalformed);
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ subject: 'topo.data.words.7', partition: 7 });
  });

  it('tap ends when its signal aborts while it is still starting (Ctrl-C right after `topo tap` printed its notice)', async () => {
    // CI saw `topo tap nosuch` ignore SIGINT: the abort came while the tap looked up its stream's type, before it listened for it.
    for (const start of [(s: AbortSignal) => client.tap('words', { signal: s }), (s: AbortSignal) => client.tapTrace('4bf92f3577b34da6a3ce929d0e0e4736', { signal: s })]) {
      const ac = new AbortController();
      const first = start(ac.signal).next();
      ac.abort();
      const ended = await Promise.race([first, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 3_000))]);
      expect(ended).toEqual({ done: true, value: undefined });
    }
  });

  it('tap rejects a stream name that is not subject-safe', async () => {
    const it = client.tap('bad.name')[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toThrow(/invalid stream name/);
  });

  it('logs returns the last N lines of one computation, then follows new ones', async () => {
    const line = (i: number, index = 0): string => JSON.stringify({ level: 30, time: 1000 + i, msg: `line ${i}`, index });
    for (let i = 1; i <= 5; i++) client.nc.publish(subjects.log('alpha', i % 2), line(i, i % 2));
    client.nc.publish(subjects.log('beta', 0), line(99));
    client.nc.publish(subjects.log('alpha', 0), 'not json');
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 50));

    const last3: LogEntry[] = [];
    for await (const e of client.logs('alpha', { lines: 3 })) last3.push(e);
    expect(last3.map((e) => e.line.msg)).toEqual(['line 4', 'line 5', 'not json']);
    expect(last3.map((e) => e.index)).toEqual([0, 1, 0]);

    const all: LogEntry[] = [];
    for await (const e of client.logs('alpha', { lines: 1000 })) all.push(e);
    expect(all).toHaveLength(6);

    const ac = new AbortController();
    const followed: string[] = [];
    const done = (async () => {
      for await (const e of client.logs('alpha', { lines: 1, follow: true, signal: ac.signal })) {
        followed.push(String(e.line.msg));
        if (followed.length === 2) ac.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    client.nc.publish(subjects.log('alpha', 1), line(6, 1));
    await done;
    expect(followed).toEqual(['not json', 'line 6']);
  });

  it('without follow, returns exactly the last N lines even while new ones keep arriving', async () => {
    for (let i = 0; i < 20; i++) client.nc.publish(subjects.log('busy', 0), JSON.stringify({ level: 30, time: i, msg: `old ${i}` }));
    await client.nc.flush();
    let n = 0;
    const timer = setInterval(() => client.nc.publish(subjects.log('busy', 0), JSON.stringify({ level: 30, time: Date.now(), msg: `new ${n++}` })), 1);
    try {
      const got: LogEntry[] = [];
      for await (const e of client.logs('busy', { lines: 5 })) got.push(e);
      expect(got).toHaveLength(5);
      expect(got.map((e) => e.seq)).toEqual([...got.map((e) => e.seq)].sort((a, b) => a - b));
    } finally {
      clearInterval(timer);
    }
  });

  it('dead letters are filtered by computation; undecodable ones are reported', async () => {
    const dl = (computation: string, n: number): DeadLetter => ({
      computation, instanceId: `${computation}-0-x`, stream: 'in', reason: 'processRecord threw', error: `bad ${n}`, at: 2000 + n,
      record: { key: `k${n}`, value: { n }, ts: 2000 + n, seq: n },
    });
    client.nc.publish(subjects.deadLetter('gamma'), packr.pack(dl('gamma', 1)));
    client.nc.publish(subjects.deadLetter('delta'), packr.pack(dl('delta', 2)));
    client.nc.publish(subjects.deadLetter('gamma'), new Uint8Array([0xc1]));
    client.nc.publish(subjects.deadLetter('gamma'), packr.pack(dl('gamma', 3)));
    await client.nc.flush();
    await new Promise((r) => setTimeout(r, 50));

    const gamma = [];
    for await (const d of client.deadLetters('gamma')) gamma.push(d);
    expect(gamma.filter((d) => !isMalformed(d)).map((d) => (d as DeadLetter).error)).toEqual(['bad 1', 'bad 3']);
    expect(gamma.filter(isMalformed)).toHaveLength(1);

    const everyone = [];
    for await (const d of client.deadLetters()) everyone.push(d);
    expect(everyone).toHaveLength(4);
  });

  it('says the controller is missing when the log stream does not exist', async () => {
    const other = await startNatsServer({ storeDir: join(scratch, 'nats-empty') });
    const c = await TopoClient.connect(other.url);
    try {
      const err = await (async () => {
        for await (const _ of c.logs('alpha')) void _;
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as Error).message).toContain('TOPO_LOGS');
    } finally {
      await c.close();
      await other.stop();
    }
  });

  it('status and deploy fail clearly when no controller answers', async () => {
    await expect(client.status({ timeoutMs: 500 })).rejects.toThrow(/controller/);
    await expect(client.deployFile(fixture('cli-ticker.ts'), { timeoutMs: 500 })).rejects.toThrow(/topo\.api\.deploy/);
  });
});
