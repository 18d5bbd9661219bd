/**
 * Turns a computation source file into ONE self-contained ESM artifact (the
 * SDK and every npm dependency inlined, node builtins left as imports), then
 * imports that artifact here to read and validate its metadata. The same bytes
 * are what a worker runs, so what we validate is what gets deployed.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Message } from 'esbuild';
import { isComputation } from '../../sdk/index.js';
import { InvalidMetadataError, ModuleLoadError, validateMetadata, type Lang, type NormalizedMetadata } from '../../protocol/index.js';

export interface BundledComputation {
  code: Uint8Array;
  /** sha256 hex of `code`: the artifact's name in the object store. */
  sha: string;
  metadata: NormalizedMetadata;
  lang: Lang;
}

// esbuild's ESM output turns `require()` calls of bundled CommonJS packages
// into a shim that needs a real `require` in scope.
const REQUIRE_BANNER = "import { createRequire as __topoCreateRequire } from 'node:module';\nconst require = __topoCreateRequire(import.meta.url);";

function formatEsbuildMessage(m: Message): string {
  const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : '';
  return `${where}${m.text}`;
}

/** Bundles `file` with esbuild; throws ModuleLoadError naming the file and the first error. */
export async function bundleFile(file: string): Promise<Uint8Array> {
  const abs = resolve(file);
  if (!existsSync(abs)) throw new ModuleLoadError(`${file}: no such file`);
  try {
    const result = await build({
      entryPoints: [abs],
      // Paths in the bundle's comments are relative to the file's folder, so the
      // sha does not depend on where `topo deploy` was run from.
      absWorkingDir: dirname(abs),
      bundle: true,
      write: false,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      banner: { js: REQUIRE_BANNER },
      // `import tweetProto from './tweet.proto'` gives the file's text, for typed streams (sdk/typed.ts protoType).
      loader: { '.proto': 'text' },
      logLevel: 'silent',
    });
    const out = result.outputFiles[0];
    if (!out) throw new ModuleLoadError(`${file}: esbuild produced no output`);
    return out.contents;
  } catch (err) {
    if (err instanceof ModuleLoadError) throw err;
    const errors = (err as { errors?: Message[] }).errors;
    const first = errors?.[0];
    const more = errors && errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? 's' : ''})` : '';
    const detail = first ? formatEsbuildMessage(first) : (err as Error).message;
    throw new ModuleLoadError(`cannot bundle ${file}: ${detail}${more}`, { cause: err });
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Imports bundled code from a temporary .mjs file and returns its default
 * export. Errors thrown by the module keep their class when they are topo
 * errors (matched by name/code: the bundle has its own copy of the classes).
 */
export async function importBundle(code: Uint8Array, file: string): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'topo-bundle-'));
  const tmp = join(dir, 'computation.mjs');
  writeFileSync(tmp, code);
  try {
    const mod = (await import(pathToFileURL(tmp).href)) as { default?: unknown };
    return mod.default;
  } catch (err) {
    const e = err as { name?: unknown; code?: unknown; message?: unknown; detail?: unknown };
    if (e && (e.name === 'InvalidMetadataError' || e.code === 'INVALID_METADATA')) {
      throw new InvalidMetadataError(String(e.message), { detail: e.detail, cause: err });
    }
    const message = err instanceof Error ? err.message : String(err);
    throw new ModuleLoadError(`${file} failed to load: ${message}`, { cause: err });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bundles, fingerprints, imports and validates a computation file. */
export async function bundleComputation(file: string): Promise<BundledComputation> {
  const code = await bundleFile(file);
  const exported = await importBundle(code, file);
  if (!isComputation(exported)) {
    throw new ModuleLoadError(`${file} has no default export made by defineComputation`);
  }
  const metadata = validateMetadata(exported);
  return { code, sha: sha256Hex(code), metadata, lang: 'ts' };
}
