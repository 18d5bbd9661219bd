/**
 * Fetches computation artifacts from the Object Store by sha256, checks the
 * fingerprint, caches them on disk and imports them. One module per sha is
 * shared by every instance of that version in this worker.
 */
import { watchCallbacks } from './watchdog.js';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ObjectStore } from '@nats-io/obj';
import { isComputation, type Computation } from '../../sdk/index.js';
import { ModuleLoadError, NotFoundError, InvalidMetadataError, validateMetadata, type NormalizedMetadata } from '../../protocol/index.js';

export class ArtifactCache {
  private readonly loaded = new Map<string, Promise<Computation>>();
  constructor(
    private readonly store: ObjectStore,
    private readonly dir: string,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /** The file an artifact is cached in once loaded (a thread imports it from there: runtime/runners/thread.ts). */
  fileOf(sha: string): string {
    return join(this.dir, `${sha}.mjs`);
  }

  load(sha: string): Promise<Computation> {
    let p = this.loaded.get(sha);
    if (!p) {
      p = this.fetchAndImport(sha);
      this.loaded.set(sha, p);
      p.catch(() => this.loaded.delete(sha));
    }
    return p;
  }

  private async fetchAndImport(sha: string): Promise<Computation> {
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new NotFoundError(`artifact id "${sha}" is not a sha256 hex digest`);
    const file = join(this.dir, `${sha}.mjs`);
    if (!existsSync(file) || sha256(readFileSync(file)) !== sha) {
      const bytes = await this.store.getBlob(sha);
      if (!bytes) throw new NotFoundError(`artifact ${sha.slice(0, 12)} is not in the object store`);
      const actual = sha256(bytes);
      if (actual !== sha) throw new ModuleLoadError(`artifact ${sha.slice(0, 12)} is corrupt: its sha256 is ${actual.slice(0, 12)}`);
      writeFileSync(file, bytes);
    }
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (err) {
      if ((err as { code?: string })?.code === 'INVALID_METADATA' || (err as Error)?.name === 'InvalidMetadataError') {
        throw new InvalidMetadataError((err as Error).message, { detail: (err as { detail?: unknown }).detail });
      }
      throw new ModuleLoadError(`artifact ${sha.slice(0, 12)} failed to load: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    const comp = mod.default;
    if (!isComputation(comp)) {
      throw new ModuleLoadError(`artifact ${sha.slice(0, 12)} has no default export made by defineComputation`);
    }
    // Callbacks note themselves for the stuck-callback watchdog (no-op without one).
    return watchCallbacks(comp);
  }
}

/**
 * Checks that the module's own metadata is what the controller assigned.
 * Hints are left out: they are advice, not wiring, and a message schema that
 * does not carry them yet must not make every hinted artifact "differ".
 */
export function checkMetadata(comp: Computation, expected: NormalizedMetadata): void {
  const { hints: _a, ...actual } = validateMetadata(comp);
  const { hints: _e, ...wanted } = expected;
  if (JSON.stringify(actual) !== JSON.stringify(wanted)) {
    throw new InvalidMetadataError(
      `artifact metadata ${JSON.stringify(actual)} differs from the deployed metadata ${JSON.stringify(wanted)}`,
    );
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
