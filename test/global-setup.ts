/**
 * Vitest global setup: build dist/ once before any test spawns the runtime,
 * and make one auth folder (operator, accounts, admin creds) that every
 * cluster of the run shares (test/harness.ts), removed at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildRuntime } from '../runtime/client/paths.js';
import { ensureLocalAuth } from '../runtime/transport/auth.js';

export default async function setup(): Promise<() => void> {
  await buildRuntime({ quiet: true });
  const authDir = mkdtempSync(join(tmpdir(), 'topo-test-auth-'));
  await ensureLocalAuth(authDir); // here, once: test processes making it at the same time would race
  process.env.TOPO_TEST_AUTH_DIR = authDir;
  return () => {
    if (process.env.TOPO_KEEP_TEST_DIRS !== '1') rmSync(authDir, { recursive: true, force: true });
  };
}
