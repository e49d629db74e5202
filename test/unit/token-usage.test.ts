// Token counts read from answers (usage objects and JSON bodies, without parsing a body whole) and their price.
import { describe, expect, it } from 'vitest';
import { costUsd, tokensOfBody, tokensOfResult, tokensOfUsage } from '../../src/usage/token-usage.ts';

describe('token counts of an answer', () => {
  it('reads chat usage with cached prompt tokens, and Responses usage under its own names', () => {
    expect(tokensOfUsage({ prompt_tokens: 100, completion_tokens: 20, total_tokens: 120, prompt_tokens_details: { cached_tokens: 40 } })).toEqual({ prompt: 100, completion: 20, cached: 40 });
    expect(tokensOfUsage({ input_tokens: 7, output_tokens: 3, input_tokens_details: { cached_tokens: 0 } })).toEqual({ prompt: 7, completion: 3, cached: 0 });
    expect(tokensOfUsage({ prompt_tokens: 9, total_tokens: 9 })).toEqual({ prompt: 9, completion: 0, cached: 0 });
    expect(tokensOfUsage(null)).toBeUndefined();
    expect(tokensOfUsage({ total_tokens: 5 })).toBeUndefined();
  });

  it("reads the usage at the end of a JSON body, not a look-alike inside the answer's text", () => {
    const body = JSON.stringify({
      id: 'x',
      choices: [{ message: { content: 'the "usage": {"prompt_tokens": 999} is a trap' } }],
      usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 },
    });
    expect(tokensOfBody(body)).toEqual({ prompt: 12, completion: 5, cached: 0 });
    expect(tokensOfBody(JSON.stringify({ choices: [{ message: { content: 'usage' } }], usage: null }))).toBeUndefined();
    expect(tokensOfBody('{"data":[]}')).toBeUndefined();
  });

  it('counts a body or a stream with usage, and nothing for an error', () => {
    expect(tokensOfResult({ kind: 'body', status: 200, body: '{"usage":{"prompt_tokens":1,"completion_tokens":2}}' })).toEqual({ prompt: 1, completion: 2, cached: 0 });
    expect(tokensOfResult({ kind: 'stream', chunks: 3, usage: { prompt_tokens: 4, completion_tokens: 5 } })).toEqual({ prompt: 4, completion: 5, cached: 0 });
    expect(tokensOfResult({ kind: 'stream', chunks: 3 })).toBeUndefined();
    expect(tokensOfResult({ kind: 'error', status: 502, headers: {}, error: { message: 'm', type: 't', param: null, code: null } })).toBeUndefined();
  });
});

describe('cost of tokens', () => {
  it('prices uncached prompt, cached prompt and completion tokens per million', () => {
    // 60 uncached × $2.50 + 40 cached × $1.25 + 20 × $10 per million.
    expect(costUsd({ prompt: 100, completion: 20, cached: 40 }, { input: 2.5, output: 10, cachedInput: 1.25 })).toBeCloseTo((60 * 2.5 + 40 * 1.25 + 20 * 10) / 1e6, 12);
    // No cached price: cached tokens cost the input price.
    expect(costUsd({ prompt: 100, completion: 0, cached: 40 }, { input: 2, output: 8 })).toBeCloseTo(200 / 1e6, 12);
    expect(costUsd({ prompt: 100, completion: 20, cached: 0 }, undefined)).toBe(0);
  });
});
