/**
 * Fetches computation artifacts from the Object Store by sha256, checks the
 * fingerprint, caches them on disk and imports them. One module per sha is
 * shared by every instance of that version in this worker. A hosted
 * operator's artifact (python, cmd: protocol/artifacts.ts) is read, not
 * imported.
 */
import { watchCallbacks } from './watchdog.js';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ObjectStore } from '@nats-io/obj';
import { isComputation, type Computation } from '../../sdk/index.js';
import { ModuleLoadError, NotFoundError, InvalidMetadataError, validateMetadata, type Lang, type NormalizedMetadata } from '../../protocol/index.js';
import { decodeHostedArtifact, type HostedArtifact } from '../../protocol/artifacts.js';

export class ArtifactCache {
  private readonly loaded = new Map<string, Promise<Computation>>();
  private readonly hosted = new Map<string, Promise<HostedArtifact>>();
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

  /** The artifact of a computation in another language (python, cmd), checked against its schema. */
  loadHosted(sha: string, lang: Lang): Promise<HostedArtifact> {
    let p = this.hosted.get(sha);
    if (!p) {
      p = this.fetch(sha, `${sha}.json`).then((bytes) => {
        let a: HostedArtifact;
        try {
          a = decodeHostedArtifact(bytes);
        } catch (err) {
          throw new ModuleLoadError(`artifact ${sha.slice(0, 12)} is not a hosted-operator artifact: ${(err as Error).message}`);
        }
        if (a.lang !== lang) throw new ModuleLoadError(`artifact ${sha.slice(0, 12)} is a ${a.lang} artifact, deployed as ${lang}`);
        return a;
      });
      this.hosted.set(sha, p);
      p.catch(() => this.hosted.delete(sha));
    }
    return p;
  }

  /** The artifact's bytes, from the disk cache when its sha still matches, else from the store (checked, then cached). */
  private async fetch(sha: string, name: string): Promise<Uint8Array> {
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new NotFoundError(`artifact id "${sha}" is not a sha256 hex digest`);
    const file = join(this.dir, name);
    if (existsSync(file)) {
      const cached = readFileSync(file);
      if (sha256(cached) === sha) return cached;
    }
    const bytes = await this.store.getBlob(sha);
    if (!bytes) throw new NotFoundError(`artifact ${sha.slice(0, 12)} is not in the object store`);
    const actual = sha256(bytes);
    if (actual !== sha) throw new ModuleLoadError(`artifact ${sha.slice(0, 12)} is corrupt: its sha256 is ${actual.slice(0, 12)}`);
    writeFileSync(file, bytes);
    return bytes;
  }

  private async fetchAndImport(sha: string): Promise<Computation> {
    const file = join(this.dir, `${sha}.mjs`);
    await this.fetch(sha, `${sha}.mjs`);
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
