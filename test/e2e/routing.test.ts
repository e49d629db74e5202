// The fallback chain with real processes and the official openai client: primary down → the next deployment answers;
// the route exhausted → the model fallback answers; everything down → the stale cache answers; nothing cached → a 502
// naming every deployment tried. Each answer says which deployment gave it (x-spillway-deployment) after how many calls.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';

let primary: MockUpstream;
let secondary: MockUpstream;
let claude: MockUpstream;
let cluster: Cluster;
let client: OpenAI;

beforeAll(async () => {
  [primary, secondary, claude] = await Promise.all([startMockUpstream(), startMockUpstream(), startMockUpstream()]);
  // Breakers off: this file is about the route, not about when a breaker opens (test/e2e/breakers.test.ts).
  const breakerOff = { circuitBreaker: { enabled: false } };
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      worker: { concurrency: 8, maxAttempts: 2 },
      providers: [
        { id: 'primary', type: 'openai', baseUrl: primary.url, ...breakerOff },
        { id: 'secondary', type: 'openai', baseUrl: secondary.url, ...breakerOff },
        { id: 'claude', type: 'openai', baseUrl: claude.url, ...breakerOff },
      ],
      models: [
        {
          name: 'gpt-4.1',
          route: [{ provider: 'primary', model: 'gpt-4.1-primary' }, { provider: 'secondary', model: 'gpt-4.1-secondary' }],
          fallbacks: ['claude-sonnet'],
          // Never a fresh hit (1 ms), but kept 10 minutes as the last fallback.
          cache: { enabled: true, ttlMs: 1, maxStaleMs: 600_000 },
        },
        { name: 'claude-sonnet', route: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await Promise.all([primary, secondary, claude].map((m) => m?.close()));
});

async function ask(content: string): Promise<{ headers: Headers; body: OpenAI.Chat.Completions.ChatCompletion }> {
  const { data, response } = await client.chat.completions.create({ model: 'gpt-4.1', messages: [{ role: 'user', content }] }).withResponse();
  return { headers: response.headers, body: data };
}

describe('the fallback chain', () => {
  it('next deployment, then model fallback, then the stale cache, then a 502 naming what was tried', async () => {
    const prompt = 'What is the capital of France?';
    const healthy = await ask(prompt);
    expect(healthy.headers.get('x-spillway-deployment')).toBe('primary/gpt-4.1-primary');
    expect(healthy.headers.get('x-spillway-attempts')).toBe('1');
    expect(healthy.body.model).toBe('gpt-4.1-primary');

    // Primary down → the next deployment of the route answers.
    primary.setOutage({ status: 500 });
    const second = await ask(prompt);
    expect(second.headers.get('x-spillway-deployment')).toBe('secondary/gpt-4.1-secondary');
    expect(second.headers.get('x-spillway-attempts')).toBe('2');

    // The whole route down → the model fallback answers.
    secondary.setOutage({ status: 503 });
    const fallback = await ask(prompt);
    expect(fallback.headers.get('x-spillway-deployment')).toBe('claude/claude-sonnet-4-5');
    expect(fallback.headers.get('x-spillway-attempts')).toBe('3');
    expect(fallback.body.model).toBe('claude-sonnet-4-5');
    expect(fallback.headers.get('x-spillway-cache')).toBeNull();

    // Everything down → the last answer stored for this request, marked stale.
    claude.setOutage('reset');
    const stale = await ask(prompt);
    expect(stale.headers.get('x-spillway-cache')).toBe('stale');
    expect(stale.body).toEqual(fallback.body);

    // Nothing cached for this request → 502 naming every deployment tried.
    let error: unknown;
    try {
      await ask('A question never asked before');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(OpenAI.APIError);
    const apiError = error as InstanceType<typeof OpenAI.APIError>;
    expect(apiError.status).toBe(502);
    for (const deployment of ['primary/gpt-4.1-primary', 'secondary/gpt-4.1-secondary', 'claude/claude-sonnet-4-5']) expect(apiError.message).toContain(deployment);
  });
});
