/**
 * Typed streams (PROTOCOL.md, "Typed streams"): protobuf declarations in the
 * metadata, the encode/decode and its errors, the test kit doing the same as
 * production, the conflict rule and the diff; then end to end on a real
 * cluster: a typed producer feeding a typed consumer, garbage on the typed
 * stream dead-lettered with reason "type mismatch" while everything else is
 * processed, conflicting deploys refused, and `topo swap --dry-run` showing a
 * type change.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BadRequestError, InvalidMetadataError, encodeBatch, packr, subjects, validateMetadata,
  type ComputationRecord, type NormalizedMetadata,
} from '../protocol/index.js';
import { isMalformed, type TapRecord } from '../runtime/client/client.js';
import { decodeBatch } from '../protocol/index.js';
import { StreamType, StreamTypes, checkTypeDecls, describeProto, typeLabel } from '../protocol/types.js';
import { defineComputation } from '../sdk/index.js';
import { protoType } from '../sdk/typed.js';
import { createTestContext } from '../sdk/testing/index.js';
import { checkTypeConflicts, metadataDiff, typesDiff } from '../runtime/controller/diff.js';
import { renderDiff } from '../runtime/cli/swapFormat.js';
import { runTopo, waitFor } from './harness.js';
import { tapStream, type Tap, perTest } from './swap-helpers.js';

const fx = (f: string): string => join(import.meta.dirname, 'fixtures', f);
const TWEET_PROTO = readFileSync(fx('typed-tweet.proto'), 'utf8');
const TWEET_V2_PROTO = readFileSync(fx('typed-tweet-v2.proto'), 'utf8');
const tweet = describeProto(TWEET_PROTO, 'demo.Tweet');
const tweetV2 = describeProto(TWEET_V2_PROTO, 'demo.Tweet');

const sample = { text: 'hello', user: { id: 42, name: 'ann' }, tags: ['a', 'b'], kind: 'RETWEET', counts: { likes: 3 }, score: 1.5 };

describe('type declarations in the metadata', () => {
  it('describes a .proto as a self-contained descriptor with its sha256 as the fingerprint, the same every time', () => {
    expect(tweet.message).toBe('demo.Tweet');
    expect(tweet.fingerprint).toBe(createHash('sha256').update(Buffer.from(tweet.descriptor, 'base64')).digest('hex'));
    expect(describeProto(TWEET_PROTO, 'demo.Tweet')).toEqual(tweet);
    expect(tweetV2.fingerprint).not.toBe(tweet.fingerprint);
    // protoType reads a path too (where the file is), and gives the same declaration.
    expect(protoType(fx('typed-tweet.proto'), 'demo.Tweet')).toEqual(tweet);
    expect(() => describeProto(TWEET_PROTO, 'demo.Nope')).toThrow(/defines no message demo.Nope \(messages: demo.User, demo.Tweet\)/);
    expect(() => describeProto('message {', 'demo.Tweet')).toThrow(/cannot parse the .proto of demo.Tweet/);
  });

  it('normalizes types (sorted, only when declared) and rejects a type on a stream the computation does not use', () => {
    const plain = validateMetadata({ name: 'a', istreams: ['x'], ostreams: ['y'] });
    expect('types' in plain).toBe(false);
    expect(validateMetadata({ name: 'a', istreams: ['x'], ostreams: ['y'], types: {} })).toEqual(plain);
    const typed = validateMetadata({ name: 'a', istreams: ['x'], ostreams: ['y'], types: { y: tweet, x: tweetV2 } });
    expect(Object.keys(typed.types!)).toEqual(['x', 'y']);
    expect(typed.types!.y).toEqual(tweet);
    expect(() => validateMetadata({ name: 'a', istreams: ['x'], ostreams: [], types: { z: tweet } })).toThrow(
      /types.z: stream "z" is neither an istream nor an ostream/,
    );
    expect(() => validateMetadata({ name: 'a', istreams: ['x'], ostreams: [], types: { x: { ...tweet, descriptor: 'not base64!' } } })).toThrow(
      /types.x.descriptor: must be a base64 FileDescriptorSet/,
    );
    expect(() => validateMetadata({ name: 'a', istreams: ['x'], ostreams: [], types: { x: { ...tweet, message: 'no spaces' } } })).toThrow(
      /types.x.message/,
    );
  });

  it('checks what zod cannot: the fingerprint and that the descriptor holds the message', () => {
    const m = (decl: typeof tweet) => ({ name: 'a', istreams: [], ostreams: ['y'], types: { y: decl } });
    expect(() => checkTypeDecls(m(tweet))).not.toThrow();
    expect(() => checkTypeDecls(m({ ...tweet, fingerprint: tweetV2.fingerprint }))).toThrow(InvalidMetadataError);
    expect(() => checkTypeDecls(m({ ...tweet, fingerprint: tweetV2.fingerprint }))).toThrow(/types.y: fingerprint .* is not the sha256 of the descriptor/);
    expect(() => checkTypeDecls(m({ ...tweet, message: 'demo.Other' }))).toThrow(/types.y: the descriptor defines no message demo.Other/);
  });
});

describe('encode and decode', () => {
  const t = new StreamType('tweets', tweet);

  it('round-trips a message: .proto field names, proto3 defaults, 64-bit integers as numbers, enums by name', () => {
    const bytes = t.encode(sample);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(t.decode(bytes)).toEqual({ ...sample, blob: Buffer.alloc(0) });
    expect(t.decode(t.encode({}))).toEqual({ text: '', user: null, tags: [], kind: 'TWEET', counts: {}, blob: Buffer.alloc(0), score: 0 });
    // Enums by number, 64-bit integers as strings of digits, bytes given as bytes: all accepted.
    expect(t.decode(t.encode({ kind: 2, user: { id: '9007199254740991' }, blob: Buffer.from('zz') }))).toMatchObject({
      kind: 'REPLY', user: { id: 9007199254740991 }, blob: Buffer.from('zz'),
    });
    // Bytes already holding the encoding pass as they are (a hosted operator's SDK encodes itself).
    expect(t.encode(bytes)).toBe(bytes);
    // Smaller than the msgpack encoding of the same value.
    expect(bytes.length).toBeLessThan(packr.pack(sample).length);
  });

  it('a value that does not fit throws, naming the stream, the type and the field', () => {
    const fit = (v: unknown) => () => t.encode(v);
    expect(fit({ ...sample, user: { id: 'x' } })).toThrow(
      'produceRecord("tweets"): value does not fit demo.Tweet: user.id: expected a 64-bit integer (a safe integer or a string of digits), got "x"',
    );
    expect(fit({ text: 5 })).toThrow('produceRecord("tweets"): value does not fit demo.Tweet: text: expected a string, got number 5');
    expect(fit({ txet: 'typo' })).toThrow(/demo.Tweet: txet: no such field in demo.Tweet \(fields: text, user, tags, kind, counts, blob, score\)/);
    expect(fit({ tags: 'a' })).toThrow(/demo.Tweet: tags: expected an array \(repeated string\), got "a"/);
    expect(fit({ tags: ['a', 1] })).toThrow(/demo.Tweet: tags\[1\]: expected a string, got number 1/);
    expect(fit({ kind: 'QUOTE' })).toThrow(/kind: expected a demo.Kind value \(TWEET, RETWEET, REPLY\), got "QUOTE"/);
    expect(fit({ counts: { likes: 1.5 } })).toThrow(/counts\["likes"\]: expected a 32-bit integer, got number 1.5/);
    expect(fit('a string')).toThrow(/demo.Tweet: \(value\): expected an object \(message demo.Tweet\), got "a string"/);
    expect(fit(Buffer.from([0xff, 0xff, 0xff]))).toThrow(/produceRecord\("tweets"\): bytes given are not a valid demo.Tweet/);
  });

  it('a record that does not decode says which stream, which type and what failed', () => {
    expect(() => t.decode({ text: 'a map' })).toThrow(
      `stream "tweets" is typed ${typeLabel(tweet)}: expected its protobuf encoding (msgpack bin), got an object`,
    );
    expect(() => t.decode(Buffer.from([0xff, 0xff, 0xff]))).toThrow(
      new RegExp(`^stream "tweets" is typed demo.Tweet \\(fingerprint ${tweet.fingerprint.slice(0, 12)}\\): the record does not decode as demo.Tweet: `),
    );
  });

  it('StreamTypes is absent for untyped metadata and leaves untyped streams of a typed computation alone', () => {
    expect(StreamTypes.of({})).toBeUndefined();
    expect(StreamTypes.of({ types: {} })).toBeUndefined();
    const ts = StreamTypes.of({ types: { tweets: tweet } })!;
    const v = { any: 'thing' };
    expect(ts.encode('other', v)).toBe(v);
    expect(ts.decode('other', v)).toBe(v);
    expect(ts.decode('tweets', ts.encode('tweets', sample))).toMatchObject(sample);
  });
});

describe('the test kit does what production does', () => {
  const comp = defineComputation({
    name: 'kit-typed',
    istreams: ['tweets'],
    ostreams: ['out', 'raw'],
    types: { tweets: tweet, out: tweet },
    processRecord(ctx, record) {
      const v = record.value as { text: string; user: { id: number } | null };
      if (v.text === 'bad') ctx.produceRecord('out', record.key, { text: 7 });
      ctx.produceRecord('out', record.key, { text: v.text.toUpperCase(), user: v.user });
      ctx.produceRecord('raw', record.key, { seen: v });
    },
  });

  it('decodes what it sends, encodes what is produced, and throws a value that does not fit from produceRecord', async () => {
    const kit = createTestContext(comp);
    await kit.send('tweets', 'k', sample);
    const [out, raw] = kit.takeOutputs();
    expect(out!.value).toEqual({ text: 'HELLO', user: { id: 42, name: 'ann' }, tags: [], kind: 'TWEET', counts: {}, blob: Buffer.alloc(0), score: 0 });
    // An untyped stream is msgpack as before; the record it saw was the decoded message (defaults filled in).
    expect((raw!.value as { seen: Record<string, unknown> }).seen).toMatchObject(sample);
    await expect(kit.send('tweets', 'k', { text: 'bad' })).rejects.toThrow(
      'produceRecord("out"): value does not fit demo.Tweet: text: expected a string, got number 7',
    );
    await expect(kit.send('tweets', 'k', { text: 1 })).rejects.toThrow('send("tweets", "k"): value does not fit demo.Tweet: text: expected a string, got number 1');
    // Bytes are taken as the encoding, as on the wire.
    await kit.send('tweets', 'k', new StreamType('tweets', tweet).encode({ text: 'wire' }));
    expect(kit.takeOutputs()[0]!.value).toMatchObject({ text: 'WIRE' });
  });

  it('defineComputation rejects a type on an undeclared stream', () => {
    expect(() =>
      defineComputation({ name: 'bad', istreams: ['a'], ostreams: [], types: { b: tweet } as never, processRecord() {} }),
    ).toThrow(/types.b: stream "b" is neither an istream nor an ostream/);
  });
});

function rec(metadata: NormalizedMetadata, extra: Partial<ComputationRecord> = {}): ComputationRecord {
  return { name: metadata.name, version: 1, sha: 'a'.repeat(64), lang: 'ts', metadata, instances: 1, placements: [], deployedAt: 0, ...extra };
}

describe('conflicts and the diff', () => {
  const producer = validateMetadata({ name: 'prod', istreams: [], ostreams: ['tweets'], types: { tweets: tweet } });
  const consumer = validateMetadata({ name: 'cons', istreams: ['tweets'], ostreams: ['out'], types: { tweets: tweet } });
  const untyped = validateMetadata({ name: 'plain', istreams: ['tweets'], ostreams: [] });
  const otherType = validateMetadata({ name: 'cons', istreams: ['tweets'], ostreams: ['out'], types: { tweets: tweetV2 } });

  it('accepts the same type and refuses another type, or none, naming both computations, the stream and both types', () => {
    expect(() => checkTypeConflicts(consumer, [rec(producer)])).not.toThrow();
    expect(() => checkTypeConflicts(untyped, [rec(validateMetadata({ name: 'p2', istreams: [], ostreams: ['tweets'] }))])).not.toThrow();
    expect(() => checkTypeConflicts(otherType, [rec(producer)])).toThrow(BadRequestError);
    expect(() => checkTypeConflicts(otherType, [rec(producer)])).toThrow(
      `type conflict: stream "tweets": "cons" reads it as ${typeLabel(tweetV2)}, but "prod" v1 produces it as ${typeLabel(tweet)}`,
    );
    expect(() => checkTypeConflicts(untyped, [rec(producer), rec(consumer)])).toThrow(
      new RegExp(`"plain" reads it as untyped \\(msgpack\\), but "prod" v1 produces it as demo.Tweet .*; stream "tweets": "plain" reads it as untyped \\(msgpack\\), but "cons" v1 reads it as demo.Tweet`),
    );
    // Its own running version is replaced by a full swap, but runs beside a canary.
    expect(() => checkTypeConflicts(otherType, [rec(consumer)])).not.toThrow();
    expect(() => checkTypeConflicts(otherType, [rec(consumer)], { self: true })).toThrow(/"cons" reads it as .* but "cons" v1 reads it as/);
  });

  it('diffs types added, removed and changed per stream, and renders them', () => {
    const v2 = validateMetadata({ name: 'cons', istreams: ['tweets'], ostreams: ['out'], types: { out: tweet, tweets: tweetV2 } });
    const d = typesDiff(consumer, v2)!;
    const ref = (x: typeof tweet) => ({ message: x.message, fingerprint: x.fingerprint });
    expect(d).toEqual({ added: [{ stream: 'out', to: ref(tweet) }], removed: [], changed: [{ stream: 'tweets', from: ref(tweet), to: ref(tweetV2) }] });
    expect(typesDiff(v2, untyped)).toEqual({ added: [], removed: [{ stream: 'out', from: ref(tweet) }, { stream: 'tweets', from: ref(tweetV2) }], changed: [] });
    expect(typesDiff(consumer, consumer)).toBeUndefined();
    expect('types' in metadataDiff(consumer, consumer, [])).toBe(false);
    const lines = renderDiff(metadataDiff(consumer, v2, []));
    const fp = (x: typeof tweet) => x.fingerprint.slice(0, 12);
    expect(lines).toContain(`types added:        out: demo.Tweet (fingerprint ${fp(tweet)})`);
    expect(lines).toContain(`types changed:      tweets: demo.Tweet (fingerprint ${fp(tweet)}) -> demo.Tweet (fingerprint ${fp(tweetV2)})`);
    expect(renderDiff(metadataDiff(v2, untyped, []))).toContain(
      `types removed:      out: demo.Tweet (fingerprint ${fp(tweet)}) -> untyped (msgpack), tweets: demo.Tweet (fingerprint ${fp(tweetV2)}) -> untyped (msgpack)`,
    );
  });
});

// ---- end to end -------------------------------------------------------------------------

const run = perTest();
const taps = run.taps;

interface Seen { n: number; idType: string; text: string; tags: number; kind: string; likes: number; score: number }

describe('typed streams on a real cluster', () => {
  it('a typed producer feeds a typed consumer; garbage is dead-lettered as a type mismatch; conflicts are refused; a dry run shows a type change', async () => {
    const c = (await run.cluster({ workers: 2 }));
    const seen = await tapStream(c.client, 'typed-seen', (key, value) => ({ key, ...(value as Seen) }));
    taps.push(seen as Tap<unknown>);
    await c.client.deployFile(fx('typed-consumer.ts'));
    const status = await c.client.status();
    expect(status.computations.find((x) => x.name === 'typed-consumer')).toBeDefined();

    // `topo tap` of the typed stream decodes its values as the type; what does not decode says why.
    const ac = new AbortController();
    const tapped: TapRecord[] = [];
    const tapIt = c.client.tap('typed-tweets', { signal: ac.signal });
    const firstTapped = tapIt.next();
    await c.client.nc.flush();
    const tapping = (async () => {
      for (let r = await firstTapped; !r.done; r = await tapIt.next()) if (!isMalformed(r.value)) tapped.push(r.value);
    })();

    // Garbage on the typed stream, published raw: a msgpack map, and bytes that are no demo.Tweet.
    const garbage = encodeBatch({
      v: 1, src: 'garbage-producer', stream: 'typed-tweets', bseq: 1,
      recs: [['g1', { text: 'not protobuf' }, Date.now(), 1], ['g2', Buffer.from([0xff, 0xff, 0xff]), Date.now(), 2]],
    });
    c.client.nc.publish(subjects.data('typed-tweets', 3), garbage);
    await c.client.nc.flush();

    await c.client.deployFile(fx('typed-source.ts'));
    await waitFor(() => seen.records.length >= 300, { what: () => `300 records on typed-seen (got ${seen.records.length})`, timeoutMs: 20_000 });
    // Every record of the source came through decoded, once (it goes on at one per 100 ms after the first 300).
    const ns = seen.records.map((r) => r.n).sort((a, b) => a - b);
    expect(ns.slice(0, 300)).toEqual([...Array(300).keys()].map((i) => i + 1));
    expect(new Set(ns).size).toBe(ns.length);
    await waitFor(() => tapped.length >= 302, { what: () => `302 tapped records on typed-tweets (got ${tapped.length})` });
    ac.abort();
    await tapping;
    expect(tapped.find((t) => t.key === 'g1')!.typeError).toMatch(/^stream "typed-tweets" is typed demo.Tweet \(fingerprint [0-9a-f]{12}\): expected its protobuf encoding/);
    expect(tapped.find((t) => t.key === 'g2')!.typeError).toMatch(/does not decode as demo.Tweet/);
    const t7 = tapped.find((t) => !t.typeError && (t.value as { user: { id: number } }).user.id === 7)!;
    expect(t7.value).toMatchObject({ text: 'tweet 7', user: { id: 7, name: 'user1' }, kind: 'RETWEET' });
    const r7 = seen.records.find((r) => r.n === 7)!;
    expect(r7).toEqual({ key: 'k0', n: 7, idType: 'number', text: 'tweet 7', tags: 2, kind: 'RETWEET', likes: 7, score: 3.5 });
    expect(seen.records.find((r) => r.n === 8)!.kind).toBe('TWEET');

    // Bridges outside the topology apply the type too: a registered producer's values are encoded (one that does not
    // fit is refused at produce), a registered consumer gets them decoded.
    const watcher = c.client.consume('typed-tweets', { group: 'typed-watchers' });
    await watcher.ready;
    const bridge = await c.client.producer({ streams: ['typed-tweets'] });
    try {
      await expect(bridge.produce('typed-tweets', 'b2', { txet: 'typo' })).rejects.toThrow(/produce\("typed-tweets"\): value does not fit demo.Tweet: txet: no such field/);
      await bridge.produce('typed-tweets', 'b1', { text: 'from a bridge', user: { id: 9999, name: 'b' }, tags: [], kind: 'REPLY' });
      await bridge.flush();
      await waitFor(() => seen.records.some((r) => r.n === 9999 && r.text === 'from a bridge' && r.kind === 'REPLY'), { what: 'the bridge\'s record decoded by typed-consumer' });
      for (;;) {
        const r = (await watcher.next())!;
        expect(r.typeError).toBeUndefined();
        expect(r.value).toHaveProperty('text');
        if ((r.value as { user: { id: number } }).user.id === 9999) break;
      }
    } finally {
      await watcher.close();
      await bridge.close();
    }

    const letters = await waitFor(async () => {
      const out = [];
      for await (const d of c.client.deadLetters('typed-consumer')) out.push(d);
      return out.length >= 2 ? out : undefined;
    }, { what: 'two dead letters of typed-consumer' });
    expect(letters).toHaveLength(2);
    const byKey = new Map(letters.map((d) => [(d as { record?: { key: string } }).record?.key, d as { reason: string; error: string; stream: string }]));
    expect(byKey.get('g1')).toMatchObject({
      reason: 'type mismatch', stream: 'typed-tweets',
      error: `stream "typed-tweets" is typed ${typeLabel(tweet)}: expected its protobuf encoding (msgpack bin), got an object`,
    });
    expect(byKey.get('g2')!.reason).toBe('type mismatch');
    expect(byKey.get('g2')!.error).toMatch(/^stream "typed-tweets" is typed demo.Tweet \(fingerprint [0-9a-f]{12}\): the record does not decode as demo.Tweet: /);
    // Nothing else changed: still running, no errors, two dead letters.
    const consumer = await waitFor(async () => {
      const s = (await c.client.status()).computations.find((x) => x.name === 'typed-consumer');
      return s && s.deadLetters === 2 ? s : undefined;
    }, { what: 'typed-consumer status with 2 dead letters' });
    expect(consumer.errors).toBe(0);
    expect(consumer.instances.every((i) => i.state === 'running')).toBe(true);

    // Conflicting deploys are refused, naming both computations, the stream and both types.
    const refused = c.client.deployFile(fx('typed-reader-v2.ts'));
    await expect(refused).rejects.toThrow(BadRequestError);
    await expect(c.client.deployFile(fx('typed-reader-v2.ts'))).rejects.toThrow(
      `type conflict: stream "typed-tweets": "typed-reader-v2" reads it as ${typeLabel(tweetV2)}, but "typed-consumer" v1 reads it as ${typeLabel(tweet)}; ` +
        `stream "typed-tweets": "typed-reader-v2" reads it as ${typeLabel(tweetV2)}, but "typed-source" v1 produces it as ${typeLabel(tweet)}`,
    );
    await expect(c.client.deployFile(fx('typed-untyped-reader.ts'))).rejects.toThrow(
      /"typed-untyped-reader" reads it as untyped \(msgpack\), but "typed-consumer" v1 reads it as demo.Tweet/,
    );
    expect((await c.client.status()).computations.map((x) => x.name).sort()).toEqual(['typed-consumer', 'typed-source']);

    // Dry runs: a type added on typed-seen is shown (text and --json); a conflicting type change is refused.
    const dry = await runTopo(['swap', 'typed-consumer', fx('typed-consumer-v2.ts'), '--dry-run', '--nats', c.url]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('types added:');
    expect(dry.stdout).toMatch(/types added: +typed-seen: demo.Seen \(fingerprint [0-9a-f]{12}\)/);
    const json = await runTopo(['swap', 'typed-consumer', fx('typed-consumer-v2.ts'), '--dry-run', '--json', '--nats', c.url]);
    expect(json.code, json.stderr).toBe(0);
    const diff = (JSON.parse(json.stdout) as { diff: { types?: { added: { stream: string; to: { message: string } }[] } } }).diff;
    expect(diff.types!.added).toEqual([{ stream: 'typed-seen', to: { message: 'demo.Seen', fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/) } }]);
    const conflict = await runTopo(['swap', 'typed-source', fx('typed-source-v2.ts'), '--dry-run', '--nats', c.url]);
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain(`type conflict: stream "typed-tweets": "typed-source" produces it as ${typeLabel(tweetV2)}, but "typed-consumer" v1 reads it as ${typeLabel(tweet)}`);

    // The swap itself (the consumer may be fused with the source by now): its output becomes typed: protobuf bytes on
    // the wire, which a tap (started after the swap: it looks the type up) shows decoded.
    const before = seen.records.length;
    const swapped = await runTopo(['swap', 'typed-consumer', fx('typed-consumer-v2.ts'), '--nats', c.url], { timeoutMs: 60_000 });
    expect(swapped.code, swapped.stderr).toBe(0);
    const wire: unknown[] = [];
    const sub = c.client.nc.subscribe(subjects.dataAll('typed-seen'), { callback: (_e, m) => void wire.push(...decodeBatch(m.data).recs.map((r) => r[1])) });
    const decoded = await tapStream(c.client, 'typed-seen', (_key, value) => value);
    taps.push(decoded);
    const got = await waitFor(() => decoded.records[0], { what: 'a typed record on typed-seen after the swap' });
    const bytes = await waitFor(() => wire[0], { what: 'a typed record on the wire' });
    sub.unsubscribe();
    expect(bytes).toBeInstanceOf(Uint8Array);
    const seenType = new StreamType('typed-seen', validateMetadata({ name: 'x', istreams: [], ostreams: ['typed-seen'], types: { 'typed-seen': protoType(fx('typed-seen.proto'), 'demo.Seen') } }).types!['typed-seen']!);
    expect(seenType.decode(bytes)).toHaveProperty('n');
    const after = got as { n: number };
    expect(after.n).toBeGreaterThan(300);
    expect(after).toEqual({ n: after.n, text: `tweet ${after.n}`, tags: 2, kind: after.n % 2 ? 'RETWEET' : 'TWEET' });
    expect(seen.records.length).toBeGreaterThan(before);
  }, 120_000);
});
