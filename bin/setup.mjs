#!/usr/bin/env node
// Makes the checkout runnable: npm dependencies, a nats-server binary, and
// dist/ built. Runs before `npm test` and `npm run demo`; silent when all is in place.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const INSTALL = 'sudo apt-get update && sudo apt-get install -y nats-server';

function run(cmd, args) {
  console.error(`setup: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`setup: \`${cmd} ${args.join(' ')}\` failed${r.error ? `: ${r.error.message}` : ` with exit code ${r.status}`}`);
    process.exit(1);
  }
}

// Same search as runtime/transport/natsServer.ts findNatsServer().
function findNatsServer() {
  if (process.env.TOPO_NATS_SERVER) return existsSync(process.env.TOPO_NATS_SERVER) ? process.env.TOPO_NATS_SERVER : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];
  return dirs.filter(Boolean).map((d) => join(d, 'nats-server')).find((p) => existsSync(p));
}

function onPath(cmd) {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, cmd)));
}

if (!existsSync(join(root, 'node_modules'))) run('npm', ['install']);

if (!findNatsServer()) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && onPath('apt-get')) {
    run('apt-get', ['update']);
    run('apt-get', ['install', '-y', 'nats-server']);
    if (!findNatsServer()) {
      console.error('setup: nats-server is still not found after installing it; set TOPO_NATS_SERVER to its path');
      process.exit(1);
    }
  } else {
    console.error(`setup: nats-server is required and was not found on PATH.\nInstall it with:\n  ${INSTALL}\nor download it from https://github.com/nats-io/nats-server/releases (then put it on PATH or set TOPO_NATS_SERVER).`);
    process.exit(1);
  }
}

const { buildRuntime } = await import(pathToFileURL(join(root, 'bin', 'build.mjs')).href);
try {
  await buildRuntime({ quiet: true });
} catch (err) {
  console.error(`setup: building dist/ failed: ${err?.message ?? err}`);
  process.exit(1);
}

// The Python SDK in a virtual environment of its own (.topo/python), the default interpreter of
// Python computations. Without Python the rest works: a Python deploy then says what is missing.
const venv = join(root, '.topo', 'python');
const venvPython = join(venv, 'bin', 'python');
function pythonReady() {
  return existsSync(venvPython) && spawnSync(venvPython, ['-c', 'import topo, msgpack, nats, nkeys'], { cwd: join(root, 'sdk'), stdio: 'ignore' }).status === 0;
}
if (!pythonReady() && process.env.TOPO_SKIP_PYTHON !== '1') {
  const python = process.env.TOPO_PYTHON_BOOTSTRAP ?? 'python3';
  const step = (cmd, args) => {
    console.error(`setup: ${cmd} ${args.join(' ')}`);
    const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    return r.status === 0;
  };
  const ok = step(python, ['-m', 'venv', venv]) &&
    step(venvPython, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-e', join(root, 'sdk', 'python') + '[test]']);
  if (!ok || !pythonReady()) {
    console.error(`setup: could not create the Python environment in ${venv} (needs ${python} with venv and pip, and PyPI); Python computations will need --python or TOPO_PYTHON`);
  }
}
