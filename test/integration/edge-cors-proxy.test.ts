// The ingress's edge towards browsers and proxies, on buildApp with its real dependencies (real Redis, nothing started):
// CORS is off by default and allowed per listed origin only; trustProxy trusts exactly one hop of X-Forwarded-For.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { buildApp } from '../../src/http/app.ts';
import { parseConfig } from '../../src/config/load.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createRedisKeys } from '../../src/queue/keys.ts';
import { CompletionQueue } from '../../src/queue/completion-queue.ts';
import { ReplyBus } from '../../src/queue/reply-bus.ts';
import { AdmissionGate } from '../../src/admission/gate.ts';
import { CORS_EXPOSED_HEADERS } from '../../src/http/plugins/cors.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';

const ALLOWED = 'https://app.example.com';
const OTHER = 'https://evil.example.net';

const logger = pino({ level: 'silent' });
const opened: { close(): Promise<unknown> }[] = [];

/** The ingress app for these server settings, plus a probe route showing the client address it derived. */
async function appWith(server: Record<string, unknown>): Promise<FastifyInstance> {
  const redisUrl = inject('redisUrl');
  const prefix = uniquePrefix('edge-cors');
  const config = parseConfig(testConfig(redisUrl, prefix, 0, 'http://127.0.0.1:9/v1', { server: { host: '127.0.0.1', port: 0, ...server } }));
  const keys = createRedisKeys(prefix);
  const commands = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const subscriber = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new CompletionQueue({ connection: commands, keys, keepCompletedSeconds: 60, keepFailedSeconds: 60 });
  const bus = new ReplyBus({ subscriber, commands, channel: keys.replyChannel('edge'), queue: queue.queue, logger });
  const admission = new AdmissionGate({ redis: commands, keys, config, logger });
  const metrics = createMetrics({ defaultMetrics: false });
  const app = await buildApp({ config, logger, metrics, bus, queue, admission, instanceId: 'edge', notReadyReason: () => undefined });
  app.get('/probe/ip', async (request) => ({ ip: request.ip }));
  opened.push(app, { close: () => queue.close() }, { close: async () => { commands.disconnect(); subscriber.disconnect(); } });
  return app;
}

let corsOff: FastifyInstance;
let corsOn: FastifyInstance;
let proxied: FastifyInstance;

beforeAll(async () => {
  corsOff = await appWith({});
  corsOn = await appWith({ cors: { origins: [ALLOWED] } });
  proxied = await appWith({ trustProxy: true });
});

afterAll(async () => {
  for (const item of opened) await item.close();
});

const preflight = (app: FastifyInstance, origin: string) =>
  app.inject({
    method: 'OPTIONS',
    url: '/v1/chat/completions',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os' },
  });

describe('CORS', () => {
  it('is off by default: a preflight is a 404 in OpenAI shape and no answer carries a CORS header', async () => {
    const answer = await preflight(corsOff, ALLOWED);
    expect(answer.statusCode).toBe(404);
    expect(answer.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    const models = await corsOff.inject({ url: '/v1/models', headers: { origin: ALLOWED, authorization: `Bearer ${TENANT_KEY}` } });
    expect(models.statusCode).toBe(200);
    expect(models.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('answers the preflight of a listed origin without a key: that origin, the methods, the asked headers, no credentials', async () => {
    const answer = await preflight(corsOn, ALLOWED);
    expect(answer.statusCode).toBe(204);
    expect(answer.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(String(answer.headers['access-control-allow-methods'])).toContain('POST');
    expect(answer.headers['access-control-allow-headers']).toBe('authorization, content-type, x-stainless-os');
    expect(answer.headers['access-control-max-age']).toBe('600');
    expect(answer.headers['access-control-allow-credentials']).toBeUndefined();
    expect(String(answer.headers.vary)).toMatch(/origin/i);
  });

  it('lets a listed origin read answers, errors included, and the headers an SDK needs', async () => {
    const ok = await corsOn.inject({ url: '/v1/models', headers: { origin: ALLOWED, authorization: `Bearer ${TENANT_KEY}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(String(ok.headers['access-control-expose-headers']).split(', ')).toEqual([...CORS_EXPOSED_HEADERS]);
    const refused = await corsOn.inject({ url: '/v1/models', headers: { origin: ALLOWED } });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['access-control-allow-origin']).toBe(ALLOWED);
  });

  it('gives an origin not listed nothing: its preflight is a 404 and its answers carry no CORS header', async () => {
    const answer = await preflight(corsOn, OTHER);
    expect(answer.statusCode).toBe(404);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    const models = await corsOn.inject({ url: '/v1/models', headers: { origin: OTHER, authorization: `Bearer ${TENANT_KEY}` } });
    expect(models.statusCode).toBe(200);
    expect(models.headers['access-control-allow-origin']).toBeUndefined();
    expect(String(models.headers.vary)).toMatch(/origin/i);
  });
});

describe('trustProxy', () => {
  const probe = (app: FastifyInstance, forwardedFor?: string) =>
    app.inject({ url: '/probe/ip', remoteAddress: '10.0.0.2', headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } });

  it('takes the address the proxy appended to X-Forwarded-For, not one the client wrote before it', async () => {
    // nginx's $proxy_add_x_forwarded_for: whatever the client sent, then the address nginx saw.
    expect((await probe(proxied, '6.6.6.6, 203.0.113.7')).json()).toEqual({ ip: '203.0.113.7' });
    expect((await probe(proxied, '203.0.113.7')).json()).toEqual({ ip: '203.0.113.7' });
  });

  it('uses the peer address when there is no X-Forwarded-For, and ignores the header when trustProxy is off', async () => {
    expect((await probe(proxied)).json()).toEqual({ ip: '10.0.0.2' });
    expect((await probe(corsOff, '6.6.6.6')).json()).toEqual({ ip: '10.0.0.2' });
  });
});
