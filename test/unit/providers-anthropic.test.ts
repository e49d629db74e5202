// Contract tests of the anthropic adapter, with payloads written from Anthropic's public Messages API reference
// (request body, Message object, streaming events, error shapes): OpenAI in, Messages out, and back, every OpenAI
// shape checked against OpenAI's own OpenAPI description.
import { existsSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dispatcher } from 'undici';
import type OpenAI from 'openai';
import { ProviderSchema } from '../../src/config/schema.ts';
import { createProviderRuntime, type ProviderRuntime } from '../../src/upstream/dispatcher.ts';
import { buildAnthropicRequest } from '../../src/upstream/providers/anthropic/request.ts';
import { translateAnthropicJson } from '../../src/upstream/providers/anthropic/response.ts';
import { readAnthropicStream } from '../../src/upstream/providers/anthropic/stream.ts';
import { failureFromAnthropicResponse } from '../../src/upstream/providers/anthropic/errors.ts';
import type { UpstreamFailure } from '../../src/upstream/providers/openai/errors.ts';
import type { UpstreamRequest } from '../../src/upstream/providers/adapter.ts';
import { loadOpenApi, validateComponent, type OpenApiDoc } from '../integration/support-openapi.ts';

const SPEC = new URL('../../../shared/openai-openapi/openapi.yaml', import.meta.url);
let doc: OpenApiDoc | undefined;
let provider: ProviderRuntime;

beforeAll(() => {
  doc = existsSync(SPEC) ? loadOpenApi(SPEC) : undefined;
  const config = ProviderSchema.parse({ id: 'claude', type: 'anthropic', baseUrl: 'https://api.anthropic.com/v1', apiKey: 'sk-ant-secret', defaultMaxTokens: 1024 });
  provider = createProviderRuntime(config, config.baseUrl!);
});
afterAll(() => provider.pool.close());

function conforms(component: string, value: unknown): void {
  if (doc !== undefined) expect(validateComponent(doc, component, value)).toEqual([]);
}

function built(body: Record<string, unknown>): UpstreamRequest & { json: Record<string, unknown> } {
  const request = buildAnthropicRequest(provider, 'chat.completions', body, 'claude-sonnet-4-5', { 'x-request-id': 'req-1' });
  if (!('path' in request)) throw new Error(`refused: ${request.detail}`);
  return { ...request, json: JSON.parse(request.body) as Record<string, unknown> };
}

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather in a given location',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

describe('request: OpenAI chat body → Messages API', () => {
  it('posts to {baseUrl}/messages with x-api-key and anthropic-version, never a Bearer header', () => {
    const request = built({ model: 'claude', messages: [{ role: 'user', content: 'Hello' }] });
    expect(request.path).toBe('/v1/messages');
    expect(request.headers).toMatchObject({ 'x-api-key': 'sk-ant-secret', 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'x-request-id': 'req-1' });
    expect(request.headers.authorization).toBeUndefined();
  });

  it('moves system and developer messages to `system`, keeps the turns, and sets the configured max_tokens when the client sets none', () => {
    const { json } = built({
      model: 'claude',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in English.' }] },
        { role: 'user', content: 'Hello' },
        { role: 'assistant', content: 'Hi.' },
        { role: 'user', content: [{ type: 'text', text: 'How are you?' }] },
      ],
      temperature: 0.2,
      stop: 'END',
      user: 'u-42',
      stream_options: { include_usage: true },
      seed: 7,
    });
    expect(json).toEqual({
      model: 'claude-sonnet-4-5',
      system: 'You are terse.\n\nAnswer in English.',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Hello' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'Hi.' }] },
        { role: 'user', content: [{ type: 'text', text: 'How are you?' }] },
      ],
      max_tokens: 1024,
      temperature: 0.2,
      stop_sequences: ['END'],
      metadata: { user_id: 'u-42' },
    });
  });

  it("takes the client's max_completion_tokens (or max_tokens) over the default", () => {
    expect(built({ model: 'c', messages: [{ role: 'user', content: 'x' }], max_tokens: 50 }).json.max_tokens).toBe(50);
    expect(built({ model: 'c', messages: [{ role: 'user', content: 'x' }], max_tokens: 50, max_completion_tokens: 70 }).json.max_tokens).toBe(70);
  });

  it('turns tools into input_schema tools, tool calls into tool_use blocks and tool answers into one user turn of tool_result blocks', () => {
    const { json } = built({
      model: 'claude',
      messages: [
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } },
            { id: 'toolu_02', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Rome"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_01', content: '18C' },
        { role: 'tool', tool_call_id: 'toolu_02', content: '24C' },
      ],
      tools: [WEATHER_TOOL],
      tool_choice: 'required',
      parallel_tool_calls: false,
    });
    expect(json.tools).toEqual([
      { name: 'get_weather', description: 'Get the current weather in a given location', input_schema: WEATHER_TOOL.function.parameters },
    ]);
    expect(json.tool_choice).toEqual({ type: 'any', disable_parallel_tool_use: true });
    expect(json.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { location: 'Paris' } },
          { type: 'tool_use', id: 'toolu_02', name: 'get_weather', input: { location: 'Rome' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_01', content: '18C' },
          { type: 'tool_result', tool_use_id: 'toolu_02', content: '24C' },
        ],
      },
    ]);
  });

  it('maps a named tool_choice to {type: tool, name}, and images to image blocks', () => {
    const { json } = built({
      model: 'claude',
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }, { type: 'text', text: 'What is this?' }] }],
      tools: [WEATHER_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    expect(json.tool_choice).toEqual({ type: 'tool', name: 'get_weather' });
    expect(json.messages).toEqual([
      { role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }, { type: 'text', text: 'What is this?' }] },
    ]);
  });

  it('refuses what it cannot carry out as asked with a 400 naming the field, sending nothing: n > 1, bad tool arguments, embeddings', () => {
    const refusal = (body: Record<string, unknown>, endpoint: 'chat.completions' | 'embeddings' = 'chat.completions') =>
      buildAnthropicRequest(provider, endpoint, body, 'claude', {}) as UpstreamFailure;
    expect(refusal({ model: 'c', messages: [{ role: 'user', content: 'x' }], n: 2 })).toMatchObject({ kind: 'refused', status: 400, retryable: false, clientError: { param: 'n', type: 'invalid_request_error' } });
    const badArgs = { model: 'c', messages: [{ role: 'assistant', tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: 'not json' } }] }] };
    expect(refusal(badArgs).clientError?.param).toBe('messages[0].tool_calls[0].function.arguments');
    expect(refusal({ model: 'e', input: 'x' }, 'embeddings')).toMatchObject({ kind: 'refused', status: 400, clientError: { param: 'model' } });
  });
});

describe('response: Message → chat.completion', () => {
  it('joins text blocks, turns tool_use into tool_calls and stop_reason into finish_reason, and counts usage the OpenAI way', () => {
    // A Message as the API reference shows it, with a tool_use block after the text.
    const message = {
      id: 'msg_013Zva2CMHLNnXjNJJKqJ2EF',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5-20250929',
      content: [
        { type: 'text', text: "I'll check the weather." },
        { type: 'tool_use', id: 'toolu_01A09q90qw90lq917835lq9', name: 'get_weather', input: { location: 'San Francisco, CA' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 2095, output_tokens: 503, cache_creation_input_tokens: 0, cache_read_input_tokens: 100 },
    };
    const out = JSON.parse(translateAnthropicJson(JSON.stringify(message), 'chat.completions', 'claude-sonnet-4-5') as string) as Record<string, unknown>;
    expect(out).toMatchObject({
      id: 'msg_013Zva2CMHLNnXjNJJKqJ2EF',
      object: 'chat.completion',
      model: 'claude-sonnet-4-5-20250929',
      choices: [
        {
          index: 0,
          finish_reason: 'tool_calls',
          message: {
            role: 'assistant',
            content: "I'll check the weather.",
            tool_calls: [{ id: 'toolu_01A09q90qw90lq917835lq9', type: 'function', function: { name: 'get_weather', arguments: '{"location":"San Francisco, CA"}' } }],
          },
        },
      ],
      usage: { prompt_tokens: 2195, completion_tokens: 503, total_tokens: 2698, prompt_tokens_details: { cached_tokens: 100 } },
    });
    conforms('CreateChatCompletionResponse', out);
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
  ])('stop_reason %s becomes finish_reason %s', (stopReason, finishReason) => {
    const message = { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [{ type: 'text', text: 'hi' }], stop_reason: stopReason, usage: { input_tokens: 1, output_tokens: 1 } };
    const out = JSON.parse(translateAnthropicJson(JSON.stringify(message), 'chat.completions', 'm') as string) as { choices: Array<{ finish_reason: string }> };
    expect(out.choices[0]?.finish_reason).toBe(finishReason);
  });

  it('a 200 that is not a Message is a protocol failure, not an answer', () => {
    expect(translateAnthropicJson('{"type":"error","error":{"type":"api_error","message":"x"}}', 'chat.completions', 'm')).toMatchObject({ kind: 'protocol' });
    expect(translateAnthropicJson('<html>', 'chat.completions', 'm')).toMatchObject({ kind: 'protocol', retryable: true });
  });
});

/** SSE as the API streams it: a text block, a tool_use block streamed as input_json_delta pieces, pings, message_delta, message_stop. */
const STREAM = [
  ['message_start', { type: 'message_start', message: { id: 'msg_014p7gG3wDgGV9EUtLvnow3U', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 472, output_tokens: 2 } } }],
  ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
  ['ping', { type: 'ping' }],
  ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Okay, let me' } }],
  ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: ' check.' } }],
  ['content_block_stop', { type: 'content_block_stop', index: 0 }],
  ['content_block_start', { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', name: 'get_weather', input: {} } }],
  ['content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '' } }],
  ['content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"location": "San Fra' } }],
  ['content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: 'ncisco, CA"}' } }],
  ['content_block_stop', { type: 'content_block_stop', index: 1 }],
  ['message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 89 } }],
  ['message_stop', { type: 'message_stop' }],
] as const;

function sse(events: ReadonlyArray<readonly [string, unknown]>): Dispatcher.ResponseData['body'] {
  const text = events.map(([name, data]) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`).join('');
  // Split mid-event on purpose: the reader must not depend on network chunk boundaries.
  const cut = Math.floor(text.length / 3);
  return Readable.from([Buffer.from(text.slice(0, cut)), Buffer.from(text.slice(cut))]) as unknown as Dispatcher.ResponseData['body'];
}

async function translate(events: ReadonlyArray<readonly [string, unknown]>, body: Record<string, unknown> = {}) {
  const chunks: OpenAI.ChatCompletionChunk[] = [];
  const end = await readAnthropicStream(sse(events), 1 << 20, { body, model: 'claude-sonnet-4-5' }, (data) => chunks.push(JSON.parse(data) as OpenAI.ChatCompletionChunk));
  return { end, chunks };
}

describe('stream: Messages events → chat.completion.chunk', () => {
  it('relays the role, text deltas, the tool call (id and name, then argument pieces) and the finish reason, ending at message_stop', async () => {
    const { end, chunks } = await translate(STREAM);
    expect(end).toBe('done');
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: 'msg_014p7gG3wDgGV9EUtLvnow3U', object: 'chat.completion.chunk', model: 'claude-sonnet-4-5-20250929' });
      conforms('CreateChatCompletionStreamResponse', chunk);
    }
    const deltas = chunks.map((c) => c.choices[0]!);
    expect(deltas[0]).toMatchObject({ delta: { role: 'assistant', content: '' }, finish_reason: null });
    expect(deltas.map((d) => d.delta.content ?? '').join('')).toBe('Okay, let me check.');
    const toolDeltas = deltas.flatMap((d) => d.delta.tool_calls ?? []);
    expect(toolDeltas[0]).toEqual({ index: 0, id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', type: 'function', function: { name: 'get_weather', arguments: '' } });
    expect(toolDeltas.every((t) => t.index === 0)).toBe(true);
    expect(toolDeltas.map((t) => t.function?.arguments).join('')).toBe('{"location": "San Francisco, CA"}');
    expect(deltas.at(-1)).toMatchObject({ delta: {}, finish_reason: 'tool_calls' });
    expect(chunks.some((c) => c.usage !== undefined)).toBe(false);
  });

  it('with stream_options.include_usage, ends with a usage chunk without choices', async () => {
    const { chunks } = await translate(STREAM, { stream_options: { include_usage: true } });
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 472, completion_tokens: 89, total_tokens: 561 } });
    conforms('CreateChatCompletionStreamResponse', chunks.at(-1));
  });

  it('an error event mid-stream ends the stream as a retryable overload; a stream without message_stop ends as `ended`', async () => {
    const overloaded = await translate([...STREAM.slice(0, 4), ['error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }]]);
    expect(overloaded.end).toMatchObject({ kind: 'status', status: 503, retryable: true });
    expect(overloaded.chunks).toHaveLength(2);
    expect((await translate(STREAM.slice(0, -1))).end).toBe('ended');
  });
});

describe('errors: Anthropic error bodies → normalised failures', () => {
  const body = (type: string, message: string) => JSON.stringify({ type: 'error', error: { type, message } });

  it('a 400 invalid_request_error is the client\'s: relayed with its message, not retried', () => {
    expect(failureFromAnthropicResponse(400, {}, body('invalid_request_error', 'messages: field required'))).toMatchObject({
      status: 400,
      retryable: false,
      clientError: { message: 'messages: field required', type: 'invalid_request_error' },
    });
  });

  it('a 413 request_too_large is shown in OpenAI vocabulary', () => {
    expect(failureFromAnthropicResponse(413, {}, body('request_too_large', 'Request exceeds the maximum allowed number of bytes.')).clientError?.type).toBe('invalid_request_error');
  });

  it("529 overloaded_error is retried and treated as a 503; a 429's retry-after is honoured", () => {
    expect(failureFromAnthropicResponse(529, {}, body('overloaded_error', 'Overloaded'))).toMatchObject({ status: 503, retryable: true, clientError: undefined });
    expect(failureFromAnthropicResponse(429, { 'retry-after': '12' }, body('rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit'))).toMatchObject({
      status: 429,
      retryable: true,
      retryAfterMs: 12_000,
    });
  });

  it('401 authentication_error is the operator\'s problem, never relayed as the client\'s', () => {
    expect(failureFromAnthropicResponse(401, {}, body('authentication_error', 'invalid x-api-key'))).toMatchObject({ status: 401, retryable: false, clientError: undefined });
  });
});
