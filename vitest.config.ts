import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Their own suites (npm run test:browser, npm run test:deploy): they need Debian's chromium and nginx.
    // test/cluster (npm run test:cluster) starts a 6-node Redis Cluster per file.
    exclude: [...configDefaults.exclude, 'test/browser/**', 'test/deploy/**', 'test/cluster/**'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: e2e files spawn several processes each; running two files at once is plenty.
    maxWorkers: 2,
    pool: 'forks',
  },
});
