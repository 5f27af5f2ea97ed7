import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests that spawn the daemon use the built worker (dist/daemon/worker.js): build first.
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: keep parallelism modest so timing-sensitive tests are not starved.
    maxWorkers: 2,
  },
});
