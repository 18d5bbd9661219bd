import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Builds dist/ once: integration tests spawn dist/controller.mjs and dist/worker.mjs.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The test machine has 2 cores and every cluster test runs several processes.
    maxWorkers: 2,
  },
});
