/** Vitest global setup: build dist/ once before any test spawns the runtime. */
import { buildRuntime } from '../runtime/client/paths.js';

export default async function setup(): Promise<void> {
  await buildRuntime({ quiet: true });
}
