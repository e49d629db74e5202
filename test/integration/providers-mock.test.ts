// The mock upstream speaking each provider's format, checked against the providers' public API references (what a
// real Anthropic or Azure endpoint accepts and answers), plus the controls the breaker tests drive: gates and outages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { waitFor } from '../support/wait.ts';

let mock: MockUpstream;
const agent = new Agent();
beforeAll(async () => {
  mock = await startMockUpstream({ chunks: 3, apiKey: 'k' });
});
afterAll(async () => {
  await mock.close();
  await agent.close();
});

const ANTHROPIC = { 'x-api-key': 'k', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
const MESSAGE = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] };

async function post(path: string, body: unknown, headers: Record<string, string>) {
  const res = await request(`${mock.origin}${path}`, { method: 'POST', body: JSON.stringify(body), headers, dispatcher: agent });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

describe('Anthropic Messages API (POST /v1/messages)', () => {
  it('answers a Message: a text block, stop_reason, usage', async () => {
    const res = await post('/v1/messages', MESSAGE, ANTHROPIC);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({
      id: expect.stringMatching(/^msg_/),
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'tok1 tok2 tok3' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 2, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 3 },
    });
  });

  it('streams named events in the documented order, ending with message_stop and no [DONE]', async () => {
    const tools = [{ name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
    const res = await post('/v1/messages', { ...MESSAGE, stream: true, tools }, ANTHROPIC);
    const names = [...res.text.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
    expect(names).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      ...Array(4).fill('content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(res.text).not.toContain('[DONE]');
    expect(res.text).toContain('"content_block":{"type":"tool_use"');
    expect(res.text).toContain('"stop_reason":"tool_use"');
  });

  it('refuses what the real API refuses, with its error shape: unknown fields, no max_tokens, a system role, no version header, a wrong key', async () => {
    const refusal = async (body: unknown, headers = ANTHROPIC) => {
      const res = await post('/v1/messages', body, headers);
      return { status: res.status, body: JSON.parse(res.text) as unknown };
    };
    expect(await refusal({ ...MESSAGE, stream_options: { include_usage: true } })).toEqual({
      status: 400,
      body: { type: 'error', error: { type: 'invalid_request_error', message: 'stream_options: Extra inputs are not permitted' } },
    });
    expect((await refusal({ model: 'c', messages: MESSAGE.messages })).body).toMatchObject({ error: { message: 'max_tokens: Field required' } });
    expect((await refusal({ ...MESSAGE, messages: [{ role: 'system', content: 'x' }] })).status).toBe(400);
    expect((await refusal(MESSAGE, { ...ANTHROPIC, 'anthropic-version': undefined } as unknown as typeof ANTHROPIC)).status).toBe(400);
    expect(await refusal(MESSAGE, { ...ANTHROPIC, 'x-api-key': 'wrong' })).toMatchObject({ status: 401, body: { type: 'error', error: { type: 'authentication_error' } } });
  });

  it('injected statuses come in Anthropic shape: 529 overloaded_error', async () => {
    const res = await post('/v1/messages', MESSAGE, { ...ANTHROPIC, 'x-mock-status': '529' });
    expect(res.status).toBe(529);
    expect(JSON.parse(res.text)).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
  });
});

describe('Azure OpenAI (POST /openai/deployments/{deployment}/…?api-version=…)', () => {
  const AZURE = { 'api-key': 'k', 'content-type': 'application/json' };
  const path = '/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21';

  it('answers as the deployment, with content-filter verdicts on the prompt and on each choice', async () => {
    const res = await post(path, { messages: [{ role: 'user', content: 'hi' }] }, AZURE);
    expect(res.status).toBe(200);
    const body = JSON.parse(res.text) as { choices: Array<{ content_filter_results: Record<string, unknown> }> };
    expect(body).toMatchObject({ object: 'chat.completion', model: 'gpt-4o-prod', prompt_filter_results: [{ prompt_index: 0 }] });
    expect(body.choices[0]?.content_filter_results['hate']).toEqual({ filtered: false, severity: 'safe' });
  });

  it("opens a stream with Azure's filter-only chunk", async () => {
    const res = await post(path, { messages: [{ role: 'user', content: 'hi' }], stream: true }, AZURE);
    const first = JSON.parse(res.text.split('\n\n')[0]!.slice('data: '.length)) as Record<string, unknown>;
    expect(first).toMatchObject({ choices: [], id: '', model: '', prompt_filter_results: expect.any(Array) });
    expect(res.text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('needs the api-version and the api-key header; a refused prompt is the content_filter 400', async () => {
    expect((await post('/openai/deployments/d/chat/completions', { messages: [] }, AZURE)).status).toBe(404);
    expect((await post(path, { messages: [] }, { ...AZURE, 'api-key': 'wrong' })).status).toBe(401);
    const filtered = await post(path, { messages: [{ role: 'user', content: 'x' }] }, { ...AZURE, 'x-mock-fault': 'content-filter' });
    expect(filtered.status).toBe(400);
    expect(JSON.parse(filtered.text)).toMatchObject({ error: { code: 'content_filter', param: 'prompt', innererror: { code: 'ResponsibleAIPolicyViolation' } } });
  });
});

describe('controls', () => {
  it('x-mock-gate holds an answer until the gate opens; later requests through that gate pass at once', async () => {
    mock.reset();
    const held = post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'x' }] }, { authorization: 'Bearer k', 'content-type': 'application/json', 'x-mock-gate': 'g1' });
    await waitFor(() => mock.stats().inFlight === 1, { what: 'the gated request to be in flight' });
    expect(mock.stats().completed).toBe(0);
    mock.openGate('g1');
    expect((await held).status).toBe(200);
    const after = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'x' }] }, { authorization: 'Bearer k', 'content-type': 'application/json', 'x-mock-gate': 'g1' });
    expect(after.status).toBe(200);
  });

  it('an outage answers every request and health probe with its status until it ends; probes are counted', async () => {
    mock.reset();
    mock.setOutage({ status: 503 });
    try {
      const chat = await post('/v1/messages', MESSAGE, ANTHROPIC);
      expect(chat.status).toBe(503);
      expect(JSON.parse(chat.text)).toMatchObject({ type: 'error', error: { type: 'api_error' } });
      const probe = await request(`${mock.origin}/openai/models?api-version=2024-10-21`, { headers: { 'api-key': 'k' }, dispatcher: agent });
      await probe.body.dump();
      expect(probe.statusCode).toBe(503);
    } finally {
      mock.setOutage(undefined);
    }
    const probe = await request(`${mock.url}/models`, { headers: { 'x-api-key': 'k' }, dispatcher: agent });
    await probe.body.dump();
    expect(probe.statusCode).toBe(200);
    expect(mock.stats()).toMatchObject({ received: 1, probes: 2 });
  });
});
