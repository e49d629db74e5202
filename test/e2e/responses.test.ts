// The Responses API end to end through real processes (1 ingress, 2 workers, real Redis) to a mock upstream behind a
// recording proxy, driven by the clients that call /v1/responses by default: the official openai client
// (responses.create JSON and stream, the responses.stream helper) and the Vercel AI SDK's default OpenAI provider
// (generateText, streamText, a tool-call round trip), each against a native and a bridged deployment. Every body and
// event those clients received is validated against OpenAI's OpenAPI description (skipped, saying so, where absent).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';
import { startRecordingProxy, type RecordingProxy } from '../support/recording-proxy.ts';
import { conform, parseSse, streamProblems } from '../support/responses.ts';
import { waitFor } from '../support/wait.ts';

type Json = Record<string, unknown>;

let upstream: MockUpstream;
let proxy: RecordingProxy;
let cluster: Cluster;
/** Every answer a client received from Spillway, as text, with its content type. */
const received: Array<Promise<{ url: string; type: string; text: string }>> = [];

/** A fetch that keeps a copy of each answer for the conformance checks; the client reads the original. */
const recordingFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  const copy = response.clone();
  received.push(copy.text().then((text) => ({ url: String(input instanceof Request ? input.url : input), type: copy.headers.get('content-type') ?? '', text }), () => ({ url: '', type: 'aborted', text: '' })));
  return response;
};

beforeAll(async () => {
  upstream = await startMockUpstream();
  proxy = await startRecordingProxy(upstream.url);
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      providers: [
        { id: 'native', type: 'openai', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000 },
        { id: 'bridge', type: 'openai', baseUrl: proxy.url, apiKey: 'sk-upstream', timeoutMs: 30_000, responses: 'bridged' },
      ],
      models: [
        { name: 'native-model', route: [{ provider: 'native', model: 'mock-native' }] },
        { name: 'bridged-model', route: [{ provider: 'bridge', model: 'mock-chat' }] },
      ],
    },
  });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await proxy?.close();
  await upstream?.close();
});

/** Every recorded /v1/responses answer conforms: a JSON Response, or a stream of ResponseStreamEvents. */
async function expectAllConforming(): Promise<void> {
  const answers = (await Promise.all(received.splice(0))).filter((a) => a.url.includes('/v1/responses'));
  expect(answers.length).toBeGreaterThan(0);
  for (const answer of answers) {
    if (answer.type.startsWith('text/event-stream')) expect(streamProblems(parseSse(answer.text))).toEqual([]);
    else if (answer.type.startsWith('application/json')) expect(conform('Response', JSON.parse(answer.text))).toEqual([]);
  }
}

const weather = { type: 'object' as const, properties: { city: { type: 'string' as const } }, required: ['city'], additionalProperties: false };

describe.each(['native-model', 'bridged-model'])('%s', (model) => {
  const client = () => new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, fetch: recordingFetch });
  const ai = () => createOpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, fetch: recordingFetch, headers: { 'x-mock-chunks': '5' } });

  it('openai responses.create answers JSON, with the headers every queued answer carries', async () => {
    const { data: response, response: raw } = await client()
      .responses.create({ model, input: 'hello', instructions: 'Be brief.' }, { headers: { 'x-mock-chunks': '3' } })
      .withResponse();
    // As a chat completion's: the deployment that answered, the attempts it took, the time it waited in the queue.
    expect(raw.headers.get('x-spillway-deployment')).toBe(model === 'native-model' ? 'native/mock-native' : 'bridge/mock-chat');
    expect(raw.headers.get('x-spillway-attempts')).toBe('1');
    expect(Number(raw.headers.get('x-spillway-queue-wait-ms'))).toBeGreaterThanOrEqual(0);
    expect(response.status).toBe('completed');
    expect(response.output_text).toBe('tok1 tok2 tok3');
    expect(response.usage?.output_tokens).toBe(3);
    expect((await client().responses.retrieve(response.id)).id).toBe(response.id);
    await expectAllConforming();
  });

  it('openai responses.create with stream: true yields the typed events', async () => {
    const stream = await client().responses.create({ model, input: 'hello', stream: true }, { headers: { 'x-mock-chunks': '4' } });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(text).toBe('tok1 tok2 tok3 tok4');
    await expectAllConforming();
  });

  it('openai responses.stream helper accumulates the final response, tool calls included', async () => {
    const deltas: string[] = [];
    const stream = client().responses.stream({ model, input: 'hello' }, { headers: { 'x-mock-chunks': '3' } }).on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(deltas.join('')).toBe('tok1 tok2 tok3');
    expect(final.output_text).toBe('tok1 tok2 tok3');
    const withTool = await client()
      .responses.stream({ model, input: 'weather in Paris?', tools: [{ type: 'function', name: 'weather', parameters: weather, strict: true }] })
      .finalResponse();
    expect(withTool.output).toEqual([expect.objectContaining({ type: 'function_call', name: 'weather', arguments: '{"city":"tok1"}' })]);
    await expectAllConforming();
  });

  it('AI SDK generateText and streamText through the default provider (the Responses API)', async () => {
    const generated = await generateText({ model: ai()(model), prompt: 'hello' });
    expect(generated.text).toBe('tok1 tok2 tok3 tok4 tok5');
    expect(generated.usage.outputTokens).toBe(5);
    const streamed = streamText({ model: ai()(model), prompt: 'hello' });
    let text = '';
    for await (const part of streamed.textStream) text += part;
    expect(text).toBe('tok1 tok2 tok3 tok4 tok5');
    expect((await streamed.response).id).toMatch(/^resp_/);
    await expectAllConforming();
  });

  it('AI SDK tool-call round trip: the tool runs, its result goes back, the model answers', async () => {
    const before = proxy.requests.length;
    const calls: unknown[] = [];
    const result = await generateText({
      model: ai()(model),
      prompt: 'What is the weather in Paris?',
      tools: {
        weather: tool({
          description: 'The weather in a city',
          inputSchema: jsonSchema<{ city: string }>(weather),
          execute: async (input) => {
            calls.push(input);
            return { city: input.city, sky: 'clear' };
          },
        }),
      },
      stopWhen: stepCountIs(3),
    });
    expect(calls).toEqual([{ city: 'tok1' }]);
    expect(result.steps).toHaveLength(2);
    expect(result.text).toBe('tok1 tok2 tok3 tok4 tok5');
    // The second upstream call carried the call and its output.
    const second = JSON.stringify(proxy.requests.slice(before)[1]?.body);
    expect(second).toContain('call_');
    expect(second).toContain('sky');
    await expectAllConforming();
  });
});

describe('across turns and failures', () => {
  const client = () => new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0, fetch: recordingFetch });

  it('a bridged two-turn conversation with previous_response_id: the second upstream call carries the first turn', async () => {
    const first = await client().responses.create({ model: 'bridged-model', input: 'my name is Ada' }, { headers: { 'x-mock-chunks': '2' } });
    const before = proxy.requests.length;
    const second = await client().responses.create({ model: 'bridged-model', input: 'what is my name?', previous_response_id: first.id });
    expect(second.previous_response_id).toBe(first.id);
    expect((proxy.requests[before]!.body as Json).messages).toEqual([
      { role: 'user', content: 'my name is Ada' },
      { role: 'assistant', content: 'tok1 tok2' },
      { role: 'user', content: 'what is my name?' },
    ]);
    await expectAllConforming();
  });

  it('a client that aborts a streaming response has its upstream call aborted', async () => {
    const controller = new AbortController();
    const stream = await client().responses.create(
      { model: 'bridged-model', input: 'hello', stream: true },
      { signal: controller.signal, headers: { 'x-mock-tag': 'e2e-resp-abort', 'x-mock-chunks': '400', 'x-mock-chunk-delay-ms': '25' } },
    );
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') break; // leaving the loop aborts the request
    }
    await waitFor(() => upstream.stats().byTag['e2e-resp-abort']?.aborted === 1, { what: 'the upstream call to be aborted' });
    expect(upstream.stats().byTag['e2e-resp-abort']?.completed).toBe(0);
    void received.splice(0);
  });

  it('bad input and unknown ids are OpenAI-shaped 400/404 errors the client raises', async () => {
    const failures: Array<[() => Promise<unknown>, number, string | null]> = [
      [() => client().responses.create({ model: 'native-model' } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming), 400, 'input'],
      [() => client().responses.create({ model: 'no-such-model', input: 'x' }), 404, 'model'],
      [() => client().responses.create({ model: 'bridged-model', input: 'x', previous_response_id: 'resp_unknown' }), 400, 'previous_response_id'],
      [() => client().responses.retrieve('resp_unknown'), 404, null],
    ];
    for (const [call, status, param] of failures) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
      expect((err as InstanceType<typeof OpenAI.APIError>).param ?? null).toBe(param);
    }
    void received.splice(0);
  });
});
