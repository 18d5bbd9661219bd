/**
 * The artifact of a Python computation (runtime/client/hostedBundle.ts,
 * protocol/artifacts.ts): the file, the modules of its folder it imports
 * (transitively) so it runs on a worker as it does here, a fingerprint that
 * does not depend on the order they were found in, and clear errors.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeHostedArtifact, encodeHostedArtifact } from '../protocol/artifacts.js';
import { bundlePython, siblingModules } from '../runtime/client/hostedBundle.js';

const dir = mkdtempSync(join(tmpdir(), 'topo-py-artifact-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const write = (name: string, code: string): string => {
  writeFileSync(join(dir, name), code);
  return join(dir, name);
};

describe('a Python artifact', () => {
  it('takes along the modules of its folder that it imports, and theirs, and nothing else', () => {
    write('helpers.py', 'import os\nfrom shapes import Circle\n');
    write('shapes.py', 'import math  # stdlib: not here\n');
    write('tools.py', 'X = 1\n');
    write('unused.py', 'Y = 2\n');
    const main = write('main.py', [
      'import json, tools as t',
      'from helpers import thing',
      'from topo import Computation',
      '    import shapes  # indented (inside a function): still an import',
      'text = "import unused"  # a string, not an import statement',
    ].join('\n'));
    const mods = siblingModules(main, readFileSync(main, 'utf8'));
    expect(Object.keys(mods).sort()).toEqual(['helpers.py', 'shapes.py', 'tools.py']);
  });

  it('has the same bytes whatever order its modules were found in', () => {
    const a = encodeHostedArtifact({ lang: 'python', file: 'm.py', code: 'x', modules: { 'b.py': 'b', 'a.py': 'a' } });
    const b = encodeHostedArtifact({ lang: 'python', file: 'm.py', code: 'x', modules: { 'a.py': 'a', 'b.py': 'b' } });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(decodeHostedArtifact(a)).toEqual({ lang: 'python', file: 'm.py', code: 'x', modules: { 'a.py': 'a', 'b.py': 'b' } });
    expect(() => decodeHostedArtifact(new TextEncoder().encode('{"lang":"python","file":"../x.py","code":""}'))).toThrow(/file: must be a \.py file name/);
    expect(() => decodeHostedArtifact(new TextEncoder().encode('{"lang":"python","file":"m.py","code":"","modules":{"/etc/x.py":""}}'))).toThrow(/modules/);
  });

  it('is made from a real file with its modules; a missing interpreter or file is a clear error', () => {
    write('lib_counter.py', 'from topo import Computation, Metadata\n\nclass Base(Computation):\n    def metadata(self):\n        return Metadata(name="counted", istreams=["in"], ostreams=["out"])\n\n    def process_record(self, ctx, r):\n        pass\n');
    const file = write('counted.py', 'from lib_counter import Base\n\nclass Counted(Base):\n    pass\n');
    const b = bundlePython(file);
    expect(b.lang).toBe('python');
    expect(b.metadata).toEqual({ name: 'counted', istreams: [{ stream: 'in', grouping: 'shuffle' }], ostreams: ['out'] });
    expect(Object.keys(decodeHostedArtifact(b.code).lang === 'python' ? (decodeHostedArtifact(b.code) as { modules?: object }).modules ?? {} : {})).toEqual(['lib_counter.py']);
    expect(() => bundlePython(file, { python: '/nowhere/python3' })).toThrow(/the Python interpreter "\/nowhere\/python3" was not found/);
    expect(() => bundlePython(join(dir, 'missing.py'))).toThrow(/missing\.py: no such file/);
  });
});
