#!/usr/bin/env node
// The `topo` command: rebuilds dist/ when the sources are newer (quietly),
// then runs the bundled CLI.
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
try {
  const { buildRuntime } = await import('./build.mjs');
  await buildRuntime({ quiet: true });
} catch (err) {
  process.stderr.write(`topo: cannot build the runtime (${err?.message ?? err}); run \`npm run setup\`\n`);
  process.exit(1);
}
await import(pathToFileURL(join(root, 'dist', 'cli.mjs')).href);
