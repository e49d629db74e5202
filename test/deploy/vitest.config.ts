// `npm run test:deploy`: the compose topology without Docker (this folder). Needs redis-server, nginx and openssl;
// starts its own Redis (with compose's settings), so no global setup. Processes of its own: one file at a time.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/deploy/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    maxWorkers: 1,
    pool: 'forks',
  },
});
