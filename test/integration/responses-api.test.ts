// POST /v1/responses through an in-process Spillway (ingress + worker, real Redis) to the mock upstream behind a
// recording proxy: native (the mock's own /v1/responses) and bridged (its chat completions, and Anthropic's Messages
// through the anthropic adapter), JSON and streamed,
// stored (GET, replay, input items, DELETE, tenant isolation), chained by previous_response_id, and the errors.
// Every body and event is validated against OpenAI's OpenAPI description (skipped, saying so, where absent).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { newInstanceId } from '../../src/roles/context.ts';
import { startWorker } from '../../src/roles/worker.ts';
import { startIngress } from '../../src/roles/ingress.ts';
import { runShutdown, type ShutdownStep } from '../../src/roles/shutdown.ts';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { TENANT_KEY, testConfig } from '../support/spillway-cluster.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';
import { startRecordingProxy, type RecordingProxy } from '../support/recording-proxy.ts';
import { conform, parseSse, streamProblems } from '../support/responses.ts';

const OTHER_KEY = 'sk-test-other-0123456789';
const sha = (key: string) => `sha256:${createHash('sha256').update(key).digest('hex')}`;
type Json = Record<string, unknown>;

let mock: MockUpstream;
let proxy: RecordingProxy;
let baseUrl: string;
const steps: ShutdownStep[] = [];

beforeAll(async () => {
  mock = await startMockUpstream();
  proxy = await startRecordingProxy(mock.url);
  const config = parseConfig(
    testConfig(inject('redisUrl'), uniquePrefix('responses'), 0, mock.url, {
      logging: { level: 'silent' },
      providers: [
        { id: 'native', type: 'openai', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000 },
        { id: 'bridge', type: 'openai', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000, responses: 'bridged' },
        { id: 'claude', type: 'anthropic', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000 },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'native', model: 'mock-native' }] },
        { name: 'bridged-mini', route: [{ provider: 'bridge', model: 'mock-chat' }] },
        { name: 'claude-bridged', route: [{ provider: 'claude', model: 'claude-mock' }] },
      ],
      tenants: [
        { id: 'acme', keys: [sha(TENANT_KEY)] },
        { id: 'other', keys: [sha(OTHER_KEY)] },
      ],
    }),
  );
  const logger = createLogger('silent');
  const ctx = { config, logger, metrics: createMetrics({ defaultMetrics: false }), instanceId: newInstanceId() };
  steps.push(...(await startWorker(ctx)).steps);
  const ingress = await startIngress(ctx);
  steps.unshift(...ingress.steps);
  baseUrl = ingress.url;
});

afterAll(async () => {
  await runShutdown(steps, createLogger('silent'));
  await proxy?.close();
  await mock?.close();
});

function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, key = TENANT_KEY): Promise<Response> {
  return fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function json(response: Response, status = 200): Promise<Json> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  return JSON.parse(text) as Json;
}

const outputText = (response: Json) =>
  (response.output as Json[]).flatMap((item) => (item.type === 'message' ? (item.content as Json[]) : [])).map((part) => part.text).join('');

/** The upstream requests recorded since `from` for one path. */
const recorded = (from: number, path: string) => proxy.requests.slice(from).filter((r) => r.path.startsWith(path));

describe.each([
  ['native', 'gpt-4o-mini', '/v1/responses'],
  ['bridged', 'bridged-mini', '/v1/chat/completions'],
  ['bridged over Anthropic', 'claude-bridged', '/v1/messages'],
])('%s', (_mode, model, upstreamPath) => {
  it('answers JSON with a conforming Response, stored under its id', async () => {
    const before = proxy.requests.length;
    const response = await json(await call('POST', '/v1/responses', { model, input: 'hello', instructions: 'Be brief.' }, { 'x-mock-chunks': '3' }));
    expect(response).toMatchObject({ object: 'response', status: 'completed', instructions: 'Be brief.' });
    expect(outputText(response)).toBe('tok1 tok2 tok3');
    expect(conform('Response', response)).toEqual([]);
    expect(recorded(before, upstreamPath)).toHaveLength(1);
    expect(await json(await call('GET', `/v1/responses/${String(response.id)}`))).toEqual(response);
  });

  it('streams typed events (event: lines, sequence numbers, no [DONE]) ending in response.completed', async () => {
    const response = await call('POST', '/v1/responses', { model, input: 'hello', stream: true }, { 'x-mock-chunks': '4' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const parsed = parseSse(await response.text());
    expect(streamProblems(parsed)).toEqual([]);
    const types = parsed.events.map((e) => e.data.type);
    expect(types.slice(0, 2)).toEqual(['response.created', 'response.in_progress']);
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(4);
    const completed = parsed.events.at(-1)!.data;
    expect(completed.type).toBe('response.completed');
    const final = completed.response as Json;
    expect(outputText(final)).toBe('tok1 tok2 tok3 tok4');
    expect(final.usage).toMatchObject({ output_tokens: 4 });
    // Stored before the client saw the end: retrievable at once.
    expect(await json(await call('GET', `/v1/responses/${String(final.id)}`))).toEqual(final);
  });

  it('a tool call is a function_call item, streamed with argument deltas', async () => {
    const tools = [{ type: 'function', name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const response = await json(await call('POST', '/v1/responses', { model, input: 'weather?', tools }));
    // Claude may say something before its tool_use block: the call is the last item either way.
    expect((response.output as Json[]).at(-1)).toMatchObject({ type: 'function_call', name: 'weather', arguments: '{"city":"tok1"}', status: 'completed' });
    expect(conform('Response', response)).toEqual([]);
    const parsed = parseSse(await (await call('POST', '/v1/responses', { model, input: 'weather?', tools, stream: true })).text());
    expect(streamProblems(parsed)).toEqual([]);
    expect(parsed.events.find((e) => e.event === 'response.function_call_arguments.done')?.data).toMatchObject({ name: 'weather', arguments: '{"city":"tok1"}' });
  });

  it('a stream broken mid-way ends with a conforming error event (after response.failed when bridged)', async () => {
    const response = await call('POST', '/v1/responses', { model, input: 'hello', stream: true }, { 'x-mock-chunks': '8', 'x-mock-fault': 'reset-mid-stream' });
    const parsed = parseSse(await response.text());
    expect(streamProblems(parsed)).toEqual([]);
    const last = parsed.events.at(-1)!;
    expect(last).toMatchObject({ event: 'error', data: { type: 'error', code: 'stream_interrupted' } });
    if (model !== 'gpt-4o-mini') expect(parsed.events.at(-2)!.data).toMatchObject({ type: 'response.failed', response: { status: 'failed' } });
  });

  it('max_output_tokens cutting the answer gives incomplete with incomplete_details', async () => {
    const response = await json(await call('POST', '/v1/responses', { model, input: 'long', max_output_tokens: 16 }, { 'x-mock-chunks': '40' }));
    expect(response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect(conform('Response', response)).toEqual([]);
  });
});

describe('conversations', () => {
  it('a bridged second turn carries the first turn to the upstream', async () => {
    const first = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'my name is Ada' }, { 'x-mock-chunks': '2' }));
    const before = proxy.requests.length;
    const second = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'what is my name?', previous_response_id: first.id }));
    expect(second.previous_response_id).toBe(first.id);
    const [upstream] = recorded(before, '/v1/chat/completions');
    expect((upstream!.body as Json).messages).toEqual([
      { role: 'user', content: 'my name is Ada' },
      { role: 'assistant', content: 'tok1 tok2' },
      { role: 'user', content: 'what is my name?' },
    ]);
    // Input items are this request's own, not the earlier turn's.
    const items = await json(await call('GET', `/v1/responses/${String(second.id)}/input_items`));
    expect(conform('ResponseItemList', items)).toEqual([]);
    expect((items.data as Json[]).map((item) => item.content)).toEqual([[{ type: 'input_text', text: 'what is my name?' }]]);
  });

  it('a native second turn forwards previous_response_id to the upstream that holds the first', async () => {
    const first = await json(await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'one' }));
    const before = proxy.requests.length;
    await json(await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'two', previous_response_id: first.id }));
    expect(recorded(before, '/v1/responses')[0]!.body).toMatchObject({ input: 'two', previous_response_id: first.id });
  });

  it('a native turn after a bridged one gets the conversation inlined, no previous_response_id', async () => {
    const first = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'one' }, { 'x-mock-chunks': '1' }));
    const before = proxy.requests.length;
    await json(await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'two', previous_response_id: first.id }));
    const body = recorded(before, '/v1/responses')[0]!.body as Json;
    expect(body.previous_response_id).toBeUndefined();
    expect(body.input).toEqual([{ role: 'user', content: 'one' }, { role: 'assistant', content: 'tok1' }, { role: 'user', content: 'two' }]);
  });
});

describe('stored responses', () => {
  it('replays a stored response as a conforming stream, and lists, deletes and forgets it', async () => {
    const response = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'hi' }));
    const id = String(response.id);
    const replay = await call('GET', `/v1/responses/${id}?stream=true`);
    const parsed = parseSse(await replay.text());
    expect(streamProblems(parsed)).toEqual([]);
    expect(parsed.events.at(-1)!.data).toMatchObject({ type: 'response.completed', response: { id } });
    expect(await json(await call('DELETE', `/v1/responses/${id}`))).toEqual({ id, object: 'response', deleted: true });
    const gone = await json(await call('GET', `/v1/responses/${id}`), 404);
    expect(conform('ErrorResponse', gone)).toEqual([]);
    await json(await call('DELETE', `/v1/responses/${id}`), 404);
  });

  it("another tenant's response is not found, nor usable as previous_response_id", async () => {
    const response = await json(await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'mine' }));
    const id = String(response.id);
    await json(await call('GET', `/v1/responses/${id}`, undefined, {}, OTHER_KEY), 404);
    await json(await call('GET', `/v1/responses/${id}/input_items`, undefined, {}, OTHER_KEY), 404);
    await json(await call('DELETE', `/v1/responses/${id}`, undefined, {}, OTHER_KEY), 404);
    const refused = await json(await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'x', previous_response_id: id }, {}, OTHER_KEY), 400);
    expect(refused).toMatchObject({ error: { param: 'previous_response_id', code: 'previous_response_not_found' } });
    expect(await json(await call('GET', `/v1/responses/${id}`))).toMatchObject({ id });
  });

  it("an item_reference resolves this tenant's stored items only: another tenant's item is refused, native and bridged", async () => {
    const mine = await json(await call('POST', '/v1/responses', { model: 'gpt-4o-mini', input: 'remember this' }));
    const itemId = String((mine.output as Json[])[0]!.id);
    for (const model of ['gpt-4o-mini', 'bridged-mini']) {
      const before = proxy.requests.length;
      await json(await call('POST', '/v1/responses', { model, input: [{ type: 'item_reference', id: itemId }, { role: 'user', content: 'and now?' }] }));
      // The item itself goes upstream, not its id.
      expect(JSON.stringify(proxy.requests.slice(before).map((r) => r.body))).toContain(outputText(mine));
      const refused = await json(await call('POST', '/v1/responses', { model, input: [{ type: 'item_reference', id: itemId }] }, {}, OTHER_KEY), 400);
      expect(refused).toMatchObject({ error: { type: 'invalid_request_error', param: 'input[0].id', code: 'item_not_found' } });
    }
  });

  it('a conversation longer than a request body may be is refused with a clear error, not queued', async () => {
    // The test server's body limit is 256 KB: two turns of 150 KB make a history of over 300 KB.
    const big = 'lorem ipsum '.repeat(12_500);
    const first = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: big }));
    const second = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: big, previous_response_id: first.id }));
    const before = mock.stats().received;
    const refused = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'and?', previous_response_id: second.id }), 400);
    expect(refused).toMatchObject({ error: { type: 'invalid_request_error', param: 'previous_response_id', code: 'conversation_too_long' } });
    expect(mock.stats().received).toBe(before);
  });

  it('store: false keeps nothing', async () => {
    const response = await json(await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'hi', store: false }));
    expect(response.store).toBe(false);
    await json(await call('GET', `/v1/responses/${String(response.id)}`), 404);
  });
});

describe('errors', () => {
  it.each<[string, Json, number, Json]>([
    ['no input', { model: 'gpt-4o-mini' }, 400, { param: 'input', code: 'missing_required_parameter' }],
    ['a wrong input type', { model: 'gpt-4o-mini', input: 7 }, 400, { param: 'input' }],
    ['a wrong role', { model: 'gpt-4o-mini', input: [{ role: 'robot', content: 'x' }] }, 400, { param: 'input[0].role' }],
    ['an unknown model', { model: 'no-such-model', input: 'x' }, 404, { param: 'model', code: 'model_not_found' }],
    ['an unknown previous_response_id', { model: 'gpt-4o-mini', input: 'x', previous_response_id: 'resp_nope' }, 400, { param: 'previous_response_id' }],
    ['a conversation', { model: 'gpt-4o-mini', input: 'x', conversation: 'conv_1' }, 400, { param: 'conversation' }],
    ['a built-in tool on a bridged model', { model: 'bridged-mini', input: 'x', tools: [{ type: 'web_search' }] }, 400, { param: 'tools[0].type' }],
  ])('%s is an OpenAI-shaped error, never a 500', async (_what, body, status, error) => {
    const answer = await json(await call('POST', '/v1/responses', body), status);
    expect(answer.error).toMatchObject({ type: 'invalid_request_error', ...error });
    expect(conform('ErrorResponse', answer)).toEqual([]);
  });

  it('a client that aborts a streaming response has its upstream call aborted', async () => {
    const response = await call('POST', '/v1/responses', { model: 'bridged-mini', input: 'hello', stream: true }, { 'x-mock-tag': 'resp-abort', 'x-mock-chunks': '200', 'x-mock-chunk-delay-ms': '50' });
    const reader = response.body!.getReader();
    await reader.read(); // the first events are flowing
    await reader.cancel();
    await waitFor(() => mock.stats().byTag['resp-abort']?.aborted === 1, { what: 'the upstream call to be aborted' });
    expect(mock.stats().byTag['resp-abort']?.completed).toBe(0);
  });
});
