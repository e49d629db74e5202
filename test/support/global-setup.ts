// Vitest global setup: one redis-server for the whole run (unless REDIS_URL is given); tests use their own prefixes.
// Tests that kill or restart Redis start their own with startRedisServer().
import type { TestProject } from 'vitest/node';
import { startRedisServer } from './redis.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL);
    return async () => undefined;
  }
  const server = await startRedisServer();
  project.provide('redisUrl', server.url);
  return () => server.close();
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
