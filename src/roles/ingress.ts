// Composition root of the ingress role: Redis connections, queue producer, reply bus, Fastify app, listening.
// Shutdown: not ready → stop accepting and let in-flight requests finish (grace) → close the bus, queue, Redis.
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../http/app.ts';
import { createRedisKeys } from '../queue/keys.ts';
import { CompletionQueue } from '../queue/completion-queue.ts';
import { ReplyBus } from '../queue/reply-bus.ts';
import { createFailFastConnection, createPatientConnection, waitForRedis } from './redis.ts';
import type { RoleContext, RunningRole } from './context.ts';

export interface RunningIngress extends RunningRole {
  app: FastifyInstance;
  /** http://host:port the server listens on. */
  url: string;
}

export async function startIngress(ctx: RoleContext): Promise<RunningIngress> {
  const { config, logger } = ctx;
  const keys = createRedisKeys(config.redis.prefix);
  const command = createFailFastConnection(config.redis.url, 'spillway-ingress');
  const subscriber = createPatientConnection(config.redis.url, 'spillway-ingress-replies');
  command.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  subscriber.on('error', (err) => logger.warn({ err: err.message }, 'redis subscriber error'));
  // Subscribe only once ready: a SUBSCRIBE racing ioredis's ready check (INFO) breaks the connection.
  await Promise.all([waitForRedis(command, 30_000), waitForRedis(subscriber, 30_000)]);

  const queue = new CompletionQueue({
    connection: command,
    keys,
    keepCompletedSeconds: config.jobs.keepCompletedSeconds,
    keepFailedSeconds: config.jobs.keepFailedSeconds,
  });
  const bus = new ReplyBus({ subscriber, channel: keys.replyChannel(ctx.instanceId), queue: queue.queue, logger });
  await bus.start();

  let draining = false;
  const app = await buildApp({
    ...ctx,
    bus,
    queue,
    notReadyReason: () => {
      if (draining) return 'draining';
      if (command.status !== 'ready') return 'redis unavailable';
      if (subscriber.status !== 'ready') return 'reply channel unavailable';
      return undefined;
    },
  });
  const address = await app.listen({ host: config.server.host, port: config.server.port, backlog: config.server.listenBacklog });
  logger.info({ address, instanceId: ctx.instanceId }, 'ingress listening');

  const grace = config.server.shutdownGraceMs;
  return {
    app,
    url: address,
    steps: [
      {
        name: 'http server (in-flight requests)',
        close: async () => {
          draining = true;
          // Keep-alive connections whose last response finished during the drain would hold close() open
          // until their idle timeout: close them as soon as they go idle.
          const reaper = setInterval(() => app.server.closeIdleConnections(), 200);
          try {
            await app.close();
          } finally {
            clearInterval(reaper);
          }
        },
        timeoutMs: grace,
        force: () => app.server.closeAllConnections(),
      },
      { name: 'reply bus', close: () => bus.close(), timeoutMs: 2_000 },
      { name: 'queue', close: () => queue.close(), timeoutMs: 2_000 },
      { name: 'redis', close: () => Promise.all([command.quit(), subscriber.quit()]), timeoutMs: 2_000, force: () => { command.disconnect(); subscriber.disconnect(); } },
    ],
  };
}
