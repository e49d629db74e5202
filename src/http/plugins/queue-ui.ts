// The queue UI: Bull Board at /admin/queues over the ingress's own BullMQ queues, behind the admin key (HTTP Basic,
// the key as the password). Read-only: it must never retry, clean, pause, promote or add a job, nor show a prompt.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { adminKeyRequired } from '../../errors.ts';
import { toOpenAIError } from '../../openai/errors.ts';
import { createAdminKeyCheck, presentedKey } from './auth.ts';

export const QUEUE_UI_PATH = '/admin/queues';

export interface QueueUiOptions {
  /** `admin.keys` of the config; the caller mounts nothing when there is none. */
  keys: readonly string[];
  queues: readonly Queue[];
}

/**
 * Mounts Bull Board in its own scope, whose onRequest hook refuses (401 + Basic challenge) before any board route,
 * static file or API call runs. Read-only because a broker's jobs have someone waiting on them: a retried job calls
 * (and pays) the upstream again for a client that already had its error, a cleaned or emptied waiting job leaves its
 * client with a lost job, and a paused queue stalls every tenant. Bull Board enforces it server-side (405).
 */
export async function registerQueueUi(app: FastifyInstance, options: QueueUiOptions): Promise<void> {
  const isAdminKey = createAdminKeyCheck(options.keys);
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUE_UI_PATH);
  createBullBoard({
    queues: options.queues.map((queue, i) => boardQueue(queue, shardLabel(options.queues, i))),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Spillway queues' } },
  });
  await app.register(async (admin) => {
    admin.addHook('onRequest', (request, reply, done) => {
      const key = presentedAdminKey(request);
      if (key !== undefined && isAdminKey(key)) {
        done();
        return;
      }
      // Answered here rather than thrown: a thrown error would reach Bull Board's own error handler and shape.
      const { statusCode, headers, body } = toOpenAIError(adminKeyRequired());
      void reply.code(statusCode).headers(headers).send(body);
    });
    await admin.register(serverAdapter.registerPlugin(), { prefix: QUEUE_UI_PATH });
  });
}

/**
 * Bull Board keys its queues by name, and the shards of a queue share one (each has its own Redis prefix): with
 * several, each is shown as `shard<i>-<name>`, i its index among the queues of that name.
 */
function shardLabel(queues: readonly Queue[], index: number): string {
  const name = queues[index]?.name;
  const same = queues.filter((q) => q.name === name);
  return same.length > 1 ? `shard${same.indexOf(queues[index] as Queue)}-` : '';
}

function boardQueue(queue: Queue, prefix: string): BullMQAdapter {
  const adapter = new BullMQAdapter(queue, { readOnlyMode: true, prefix });
  // Job data holds the tenant's request body and the return value its answer: tenant data, not an operator's to
  // read. The board shows the envelope (tenant, model, request id, deadline…) and the body's size only.
  adapter.setFormatter('data', hideBody);
  adapter.setFormatter('returnValue', hideBody);
  return adapter;
}

function hideBody(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || !('body' in value)) return value;
  const { body } = value as { body: unknown };
  const size = Buffer.byteLength(typeof body === 'string' ? body : (JSON.stringify(body) ?? ''));
  return { ...value, body: `(hidden: ${size} bytes)` };
}

const BASIC = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i;

/** The key from HTTP Basic (the password; the user name is ignored), else from Bearer / api-key as on the API. */
function presentedAdminKey(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization;
  const basic = authorization === undefined ? null : BASIC.exec(authorization);
  if (basic === null) return presentedKey(request.headers);
  const credentials = Buffer.from(basic[1] ?? '', 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  return colon < 0 ? undefined : credentials.slice(colon + 1) || undefined;
}
