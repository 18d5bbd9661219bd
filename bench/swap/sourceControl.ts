/**
 * Driving the bench's tick source (bench/swap/source.ts) from a harness: its
 * control records, and waiting after a stop until every tick it sent has
 * arrived (or arrivals stall). Shared by the swap bench and the live bench.
 */
import type { TopoClient } from '../../runtime/client/client.js';
import { encodeBatch, subjects, PROTOCOL_VERSION } from '../../protocol/index.js';
import { SWAP_BENCH, type SourceControl, type SourceReport } from './streams.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function publishControl(client: TopoClient, c: SourceControl, seq: number, src: string): void {
  client.nc.publish(
    subjects.data(SWAP_BENCH.control, 0),
    encodeBatch({ v: PROTOCOL_VERSION, src, stream: SWAP_BENCH.control, bseq: seq, recs: [['control', c, Date.now(), seq]] }),
  );
}

/** Stops the source, waits for its last report, then for every tick up to it (until `stallMs` without progress). */
export async function stopAndSettle(
  client: TopoClient, src: string, o: { report: () => SourceReport | undefined; received: () => number; behind: (lastTick: number) => number; stallMs: number },
): Promise<number> {
  publishControl(client, { op: 'stop' }, 2, src);
  const stopAt = Date.now();
  while (!o.report()) {
    if (Date.now() - stopAt > 10_000) throw new Error('the source did not report its last tick within 10 s of the stop');
    await sleep(50);
  }
  const lastTick = o.report()!.lastTick;
  let lastTotal = o.received();
  let progressAt = Date.now();
  while (o.behind(lastTick) > 0) {
    if (o.received() !== lastTotal) {
      lastTotal = o.received();
      progressAt = Date.now();
    } else if (Date.now() - progressAt > o.stallMs) break;
    await sleep(50);
  }
  return lastTick;
}
