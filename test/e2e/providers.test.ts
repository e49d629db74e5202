// The official openai client talking to Spillway (1 ingress, 2 worker processes, real Redis) whose models route to a
// mock speaking the Anthropic Messages API and to one speaking Azure OpenAI: chat as JSON and as a stream, tool calls
// included (a whole tool loop with the SDK's runTools), errors in OpenAI's shape.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, type MockUpstream } from '../../src/mock-upstream/index.ts';
import { startCluster, TENANT_KEY, type Cluster } from '../support/spillway-cluster.ts';

let anthropic: MockUpstream;
let azure: MockUpstream;
let cluster: Cluster;
let client: OpenAI;

beforeAll(async () => {
  [anthropic, azure] = await Promise.all([startMockUpstream({ chunks: 5, apiKey: 'sk-ant-upstream' }), startMockUpstream({ chunks: 5, apiKey: 'azure-upstream' })]);
  cluster = await startCluster({
    redisUrl: inject('redisUrl'),
    workers: 2,
    config: {
      providers: [
        { id: 'claude', type: 'anthropic', baseUrl: anthropic.url, apiKey: 'sk-ant-upstream', defaultMaxTokens: 256 },
        { id: 'azure', type: 'azure-openai', baseUrl: azure.origin, apiKey: 'azure-upstream', apiVersion: '2024-10-21' },
      ],
      models: [
        { name: 'claude-sonnet', route: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
        { name: 'gpt-4o', route: [{ provider: 'azure', model: 'gpt-4o-prod' }] },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${cluster.baseUrl}/v1`, apiKey: TENANT_KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await Promise.all([anthropic?.close(), azure?.close()]);
});

const WORDS = 'tok1 tok2 tok3 tok4 tok5';
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

describe.each([
  ['a mock speaking the Anthropic Messages API', 'claude-sonnet', 'claude-sonnet-4-5'],
  ['a mock speaking Azure OpenAI', 'gpt-4o', 'gpt-4o-prod'],
])('through Spillway to %s', (_name, model, upstreamModel) => {
  it('answers a chat completion as JSON', async () => {
    const completion = await client.chat.completions.create({ model, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }] });
    expect(completion).toMatchObject({ object: 'chat.completion', model: upstreamModel, choices: [{ message: { role: 'assistant', content: WORDS }, finish_reason: 'stop' }] });
    expect(completion.usage?.completion_tokens).toBe(5);
  });

  it('streams a chat completion, usage on the last chunk', async () => {
    const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }], stream: true, stream_options: { include_usage: true }, max_tokens: 3 });
    let text = '';
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('tok1 tok2 tok3');
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(3);
  });

  it('answers a tool call as JSON, then the answer to the tool result', async () => {
    const first = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weather] });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe('tool_calls');
    expect(call).toMatchObject({ type: 'function', function: { name: 'get_weather' } });
    expect(JSON.parse((call as { function: { arguments: string } }).function.arguments)).toEqual({ city: 'tok1' });
    const second = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Weather in Paris?' }, first.choices[0]!.message, { role: 'tool', tool_call_id: call!.id, content: '18C and sunny' }],
      tools: [weather],
    });
    expect(second.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: WORDS } });
  });

  it("runs a whole streamed tool loop with the SDK's runTools: tool call, tool result, final answer", async () => {
    const calls: unknown[] = [];
    const runner = client.chat.completions.runTools({
      model,
      stream: true,
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: weather.function.description,
            parameters: weather.function.parameters,
            parse: JSON.parse,
            function: (args: unknown) => {
              calls.push(args);
              return '18C and sunny';
            },
          },
        },
      ],
    });
    expect(await runner.finalContent()).toBe(WORDS);
    expect(calls).toEqual([{ city: 'tok1' }]);
  });

  it('relays an upstream 400 as an OpenAI BadRequestError', async () => {
    const failing = client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-mock-status': '400' } });
    await expect(failing).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });
});

it('a prompt refused by Azure content filtering reaches the client as a 400 with code content_filter', async () => {
  const refused = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-mock-fault': 'content-filter' } }).catch((err: unknown) => err);
  expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
  expect(refused).toMatchObject({ status: 400, code: 'content_filter', param: 'prompt' });
});
