/** Runs one raw baseline measurement: subscriber and publisher in two child processes. */
import { fork, type ChildProcess } from 'node:child_process';
import type { CaseResult } from '../results.js';
import type { PublisherMessage, RawConfig, RunnerMessage, SubscriberMessage } from './config.js';

/** After the publisher is done, how long the subscriber gets before it is asked to report. */
const END_GRACE_MS = 10_000;

/** The next IPC message of a child process, or an error naming `what` when it exits or stays silent for timeoutMs. */
export function nextMessage<T>(child: ChildProcess, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: T): void => {
      cleanup();
      resolve(m);
    };
    const onExit = (code: number | null, sig: string | null): void => {
      cleanup();
      reject(new Error(`${what}: process exited with ${sig ?? code}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

export interface RawScripts {
  publisher: string;
  subscriber: string;
}

export async function runRawCase(scripts: RawScripts, cfg: RawConfig, timeoutMs: number): Promise<CaseResult> {
  const arg = JSON.stringify(cfg);
  const sub = fork(scripts.subscriber, [arg], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let pub: ChildProcess | undefined;
  try {
    const ready = await nextMessage<SubscriberMessage>(sub, 'raw subscriber start', 10_000);
    if (ready.type !== 'ready') throw new Error(`raw subscriber: unexpected message ${JSON.stringify(ready)}`);
    const subDone = nextMessage<SubscriberMessage>(sub, 'raw subscriber', timeoutMs + END_GRACE_MS * 2);
    subDone.catch(() => undefined);
    pub = fork(scripts.publisher, [arg], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const pubDone = await nextMessage<PublisherMessage>(pub, 'raw publisher', timeoutMs);
    const grace = setTimeout(() => sub.send({ type: 'report', expected: pubDone.sent } satisfies RunnerMessage), END_GRACE_MS);
    const done = await subDone.finally(() => clearTimeout(grace));
    if (done.type !== 'done') throw new Error(`raw subscriber: unexpected message ${JSON.stringify(done)}`);
    const seconds = (done.lastMs - done.firstMs) / 1000;
    const notes: string[] = [];
    if (done.disconnects + pubDone.disconnects > 0) notes.push(`${done.disconnects + pubDone.disconnects} disconnect(s)`);
    return {
      records: done.received,
      expected: done.expected,
      lost: Math.max(0, done.expected - done.received),
      seconds,
      rate: seconds > 0 ? done.received / seconds : 0,
      notes,
    };
  } finally {
    for (const c of [sub, pub]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
