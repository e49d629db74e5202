// OpenAI's rate-limit headers and the tenant 429: durations written as OpenAI writes them, retry headers, and the
// x-should-retry rule (false when the SDKs would ignore Retry-After and retry too early). Pure.
import { describe, expect, it } from 'vitest';
import { formatDuration, rateLimitHeaders, retryHeaders, SDK_MAX_HONOURED_RETRY_MS } from '../../src/admission/headers.ts';
import { queueOverloaded, tenantRateLimited } from '../../src/admission/rate-limit-error.ts';
import { toOpenAIError } from '../../src/openai/errors.ts';
import type { AdmissionResult } from '../../src/admission/admit.ts';

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [0.2, '1ms'],
    [120, '120ms'],
    [999, '999ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [17_280, '17.28s'],
    [60_000, '1m0s'],
    [360_000, '6m0s'],
    [61_001, '1m1.001s'],
    [3_600_000, '1h0m0s'],
    [3_723_500, '1h2m3.5s'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

const rateLimit = { requests: { limit: 60, remaining: 59, resetMs: 1000 }, tokens: { limit: 90_000, remaining: 89_000, resetMs: 666.7 } };

describe('rateLimitHeaders', () => {
  it('an admitted request of a limited tenant carries both budgets', () => {
    expect(rateLimitHeaders({ decision: 'now', priority: 1, rateLimit })).toEqual({
      'x-ratelimit-limit-requests': '60',
      'x-ratelimit-remaining-requests': '59',
      'x-ratelimit-reset-requests': '1s',
      'x-ratelimit-limit-tokens': '90000',
      'x-ratelimit-remaining-tokens': '89000',
      'x-ratelimit-reset-tokens': '667ms',
    });
  });

  it('a tenant without budgets gets no rate-limit headers; one with rpm only gets only the request headers', () => {
    expect(rateLimitHeaders({ decision: 'now', priority: 1, rateLimit: {} })).toEqual({});
    expect(Object.keys(rateLimitHeaders({ decision: 'delay', delayMs: 5, priority: 1, rateLimit: { requests: rateLimit.requests } }))).toEqual([
      'x-ratelimit-limit-requests',
      'x-ratelimit-remaining-requests',
      'x-ratelimit-reset-requests',
    ]);
  });

  it('a refusal adds retry-after in whole seconds rounded up and retry-after-ms', () => {
    const headers = rateLimitHeaders({ decision: 'reject', retryAfterMs: 1_200, binding: 'requests', priority: 1, rateLimit });
    expect(headers).toMatchObject({ 'retry-after': '2', 'retry-after-ms': '1200' });
    expect(headers['x-should-retry']).toBeUndefined();
  });
});

describe('retryHeaders: x-should-retry', () => {
  it('is absent up to the longest wait the SDKs honour (they sleep retry-after-ms and retry once it can succeed)', () => {
    expect(retryHeaders(SDK_MAX_HONOURED_RETRY_MS)['x-should-retry']).toBeUndefined();
  });

  it('is false beyond it: the SDK would ignore the header and retry within seconds, before any slot frees', () => {
    expect(retryHeaders(SDK_MAX_HONOURED_RETRY_MS + 1)).toEqual({ 'retry-after': '61', 'retry-after-ms': '60001', 'x-should-retry': 'false' });
  });
});

describe('the tenant 429 and the shed 503', () => {
  const refused: Extract<AdmissionResult, { decision: 'reject' }> = { decision: 'reject', retryAfterMs: 2_500, binding: 'tokens', priority: 1, rateLimit };

  it("is OpenAI's rate_limit_error / rate_limit_exceeded with every header", () => {
    const reply = toOpenAIError(tenantRateLimited('acme', refused));
    expect(reply.statusCode).toBe(429);
    expect(reply.body).toEqual({
      error: {
        message: 'Rate limit reached for tenant acme on tokens per min (TPM): Limit 90000. Please try again in 2.5s.',
        type: 'rate_limit_error',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
    expect(reply.headers).toMatchObject({ 'retry-after': '3', 'retry-after-ms': '2500', 'x-ratelimit-limit-tokens': '90000', 'x-ratelimit-limit-requests': '60' });
  });

  it('a shed request is a 503 server_error with Retry-After', () => {
    const reply = toOpenAIError(queueOverloaded(90_000, 30_000));
    expect(reply.statusCode).toBe(503);
    expect(reply.body.error).toMatchObject({ type: 'server_error', code: 'server_overloaded', param: null });
    expect(reply.headers).toEqual({ 'retry-after': '30', 'retry-after-ms': '30000' });
  });
});
