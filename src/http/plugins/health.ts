// Liveness (/health), readiness (/ready: Redis reachable and answering, not draining) and Prometheus (/metrics).
// No auth: these are for the orchestrator and the scraper, and reveal nothing about tenants or keys.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Registry } from 'prom-client';

export interface HealthOptions {
  registry: Registry;
  /** Undefined when ready; otherwise the reason (shown in the /ready body). */
  notReadyReason: () => string | undefined;
}

export const healthPlugin = fp(
  async (app: FastifyInstance, options: HealthOptions) => {
    app.get('/health', async () => ({ status: 'ok' }));
    app.get('/ready', async (_request, reply) => {
      const reason = options.notReadyReason();
      if (reason !== undefined) return reply.code(503).send({ status: 'not_ready', reason });
      return { status: 'ready' };
    });
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', options.registry.contentType);
      return options.registry.metrics();
    });
  },
  { name: 'spillway-health' },
);
