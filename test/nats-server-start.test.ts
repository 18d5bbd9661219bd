/**
 * Starting nats-server on ports found free: one taken meanwhile (CI saw a server exit at once,
 * "nats-server exited with 1 before listening", another process having got its port) is tried again on others.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { freePort, startNatsServer } from '../runtime/transport/natsServer.js';

const scratch = mkdtempSync(join(tmpdir(), 'topo-nats-start-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A port some other process (here: this one) listens on. */
async function takenPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, server };
}

describe('startNatsServer', () => {
  it('starts on other free ports when the monitoring port it picked was taken before the server bound it', async () => {
    const taken = await takenPort();
    let picks = 0;
    // The client port free, the monitoring port taken: the server exits before listening (nothing else answers on its client port).
    const pickPort = async (): Promise<number> => (++picks === 2 ? taken.port : freePort());
    const nats = await startNatsServer({ storeDir: join(scratch, 'a'), pickPort });
    try {
      expect(picks).toBeGreaterThan(2);
      expect(nats.monitorUrl).not.toContain(`:${taken.port}`);
      const nc = await connect({ servers: nats.url });
      await nc.flush();
      await nc.close();
    } finally {
      await nats.stop();
      taken.server.close();
    }
  });

  it('gives up on a port it was given, saying the server exited', async () => {
    const taken = await takenPort();
    try {
      await expect(startNatsServer({ storeDir: join(scratch, 'b'), monitorPort: taken.port, port: await freePort() })).rejects.toThrow(/exited with 1 before listening/);
    } finally {
      taken.server.close();
    }
  });
});
