#!/usr/bin/env node
/**
 * Writes the JSON Schema (draft 2020-12) of every protocol v1 message next to
 * this file, one `<message>.json` each, from the zod schemas in
 * ../schemas.ts (the truth; these files are for other languages).
 *
 *   node protocol/schemas/generate.mjs          # (re)write the files
 *   node protocol/schemas/generate.mjs --check  # exit 1 if a committed file differs or is missing/extra
 *
 * The project has no TypeScript runner, so schemas.ts is bundled with esbuild
 * (zod included) into memory and imported from a data: URL.
 * test/schemas.test.ts fails when the committed files differ from the schemas.
 */
import { readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');

const bundled = await build({
  entryPoints: [join(here, '..', 'schemas.ts')],
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  write: false,
  logLevel: 'error',
});
const { jsonSchemas } = await import(`data:text/javascript;base64,${Buffer.from(bundled.outputFiles[0].contents).toString('base64')}`);

const wanted = new Map(Object.entries(jsonSchemas()).map(([name, schema]) => [`${name}.json`, `${JSON.stringify(schema, null, 2)}\n`]));
const present = readdirSync(here).filter((f) => f.endsWith('.json'));
let bad = 0;
for (const [file, text] of wanted) {
  const path = join(here, file);
  let old;
  try {
    old = readFileSync(path, 'utf8');
  } catch {
    old = undefined;
  }
  if (old === text) continue;
  if (check) {
    console.error(`${file}: ${old === undefined ? 'missing' : 'differs from the schemas'}`);
    bad++;
  } else {
    writeFileSync(path, text);
    console.log(`wrote ${file}`);
  }
}
for (const file of present.filter((f) => !wanted.has(f))) {
  if (check) {
    console.error(`${file}: no schema of that name`);
    bad++;
  } else {
    unlinkSync(join(here, file));
    console.log(`removed ${file}`);
  }
}
if (check && bad) {
  console.error('run `node protocol/schemas/generate.mjs` and commit the result');
  process.exit(1);
}
