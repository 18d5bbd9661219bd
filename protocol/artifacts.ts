/**
 * Artifacts of hosted operators (PROTOCOL.md, "Hosted operators"): a small
 * JSON document in the object store, named by the sha256 of its bytes like a
 * TS bundle. A `python` artifact carries the source file (and optionally the
 * class and interpreter), a `cmd` artifact the command line and its folder.
 */
import { z } from 'zod';

/** A Python source file's base name. */
const pyFile = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,127}\.py$/, { error: 'must be a .py file name (letters, digits, "_", "-", ".")' });
const className = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, { error: 'must be a Python class name' });

export const pythonArtifactSchema = z.object({
  lang: z.literal('python'),
  file: pyFile,
  code: z.string().max(16 * 1024 * 1024),
  /** Modules of the file's folder that it imports (and that they import), by file name: written next to it. */
  modules: z.record(pyFile, z.string().max(16 * 1024 * 1024)).optional(),
  class: className.optional(),
  /** The interpreter given at deploy (`--python`); else the worker's TOPO_PYTHON, else its .topo/python. */
  interpreter: z.string().min(1).max(4096).optional(),
});

export const commandArtifactSchema = z.object({
  lang: z.literal('cmd'),
  /** Run with /bin/sh -c. */
  command: z.string().min(1).max(8192),
  /** Absolute folder it runs in. */
  cwd: z.string().startsWith('/', { error: 'must be an absolute path' }).max(4096),
});

export const hostedArtifactSchema = z.discriminatedUnion('lang', [pythonArtifactSchema, commandArtifactSchema]);

export type PythonArtifact = z.output<typeof pythonArtifactSchema>;
export type CommandArtifact = z.output<typeof commandArtifactSchema>;
export type HostedArtifact = z.output<typeof hostedArtifactSchema>;

/** The artifact's bytes: JSON with its fields in a fixed order, so the same inputs give the same sha. */
export function encodeHostedArtifact(a: HostedArtifact): Uint8Array {
  const ordered = a.lang === 'python'
    ? {
      lang: a.lang, file: a.file, code: a.code,
      ...(a.modules && Object.keys(a.modules).length ? { modules: Object.fromEntries(Object.entries(a.modules).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) } : {}),
      ...(a.class !== undefined ? { class: a.class } : {}), ...(a.interpreter !== undefined ? { interpreter: a.interpreter } : {}),
    }
    : { lang: a.lang, command: a.command, cwd: a.cwd };
  return new TextEncoder().encode(JSON.stringify(ordered));
}

/** Parses an artifact's bytes; throws an Error naming what is wrong. */
export function decodeHostedArtifact(bytes: Uint8Array): HostedArtifact {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new Error(`not a JSON artifact: ${(err as Error).message}`);
  }
  const r = hostedArtifactSchema.safeParse(raw);
  if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || 'artifact'}: ${i.message}`).join('; '));
  return r.data;
}
