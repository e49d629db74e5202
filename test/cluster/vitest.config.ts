// `npm run test:cluster`: Spillway end to end on a real Redis Cluster (3 masters + 3 replicas of redis-server, started
// per file by test/support/redis-cluster.ts). Not part of `npm test`: each file forms a cluster of its own.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/cluster/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    // Six redis-server processes and a Spillway per file: one file at a time on a small machine.
    maxWorkers: 1,
    pool: 'forks',
  },
});
