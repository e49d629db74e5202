// The Responses API as one more endpoint of each provider adapter: native builds the provider's /responses request,
// bridged its chat request (or refuses, naming the parameter, without sending anything), other endpoints are untouched;
// the default mode per provider type, and the config refusing a native Anthropic.
import { afterAll, describe, expect, it } from 'vitest';
import { ProviderSchema } from '../../src/config/schema.ts';
import { parseConfig } from '../../src/config/load.ts';
import { closeProviderRuntimes, createProviderRuntime, type ProviderRuntime } from '../../src/upstream/dispatcher.ts';
import { openaiAdapter } from '../../src/upstream/providers/openai/index.ts';
import { azureOpenAIAdapter } from '../../src/upstream/providers/azure-openai/index.ts';
import { anthropicAdapter } from '../../src/upstream/providers/anthropic/index.ts';
import { defaultResponsesMode, withResponses } from '../../src/responses/adapter.ts';
import { withResponsesContext } from '../../src/responses/context.ts';
import { testConfig } from '../support/spillway-cluster.ts';

const runtimes: ProviderRuntime[] = [];
const runtime = (fields: Record<string, unknown>) => {
  const config = ProviderSchema.parse({ id: 'p', apiKey: 'sk-x', ...fields });
  const r = createProviderRuntime(config, String(fields.baseUrl));
  runtimes.push(r);
  return r;
};
afterAll(() => closeProviderRuntimes(runtimes));

const context = { id: 'resp_0123', createdAt: 1 };
const body = withResponsesContext({ model: 'public', input: 'hello', instructions: 'Be brief.' }, context);

describe('native', () => {
  it('sends the body to the provider /responses with the provider model', () => {
    const provider = runtime({ type: 'openai', baseUrl: 'http://upstream.test/v1' });
    const request = withResponses(openaiAdapter, 'native').buildRequest(provider, 'responses', body, 'gpt-x', {});
    expect(request).toMatchObject({ path: '/v1/responses', headers: { authorization: 'Bearer sk-x' } });
    expect(JSON.parse((request as { body: string }).body)).toEqual({ model: 'gpt-x', input: 'hello', instructions: 'Be brief.' });
  });

  it("Azure's Responses API is under /openai, not a deployment, with the api-version", () => {
    const provider = runtime({ type: 'azure-openai', baseUrl: 'http://resource.test', apiVersion: '2025-04-01-preview' });
    const request = withResponses(azureOpenAIAdapter, 'native').buildRequest(provider, 'responses', body, 'my-deployment', {});
    expect(request).toMatchObject({ path: '/openai/responses?api-version=2025-04-01-preview', headers: { 'api-key': 'sk-x' } });
    expect(JSON.parse((request as { body: string }).body).model).toBe('my-deployment');
  });
});

describe('bridged', () => {
  it("sends the translated chat body to the provider's chat completions", () => {
    const provider = runtime({ type: 'openai', baseUrl: 'http://upstream.test/v1' });
    const request = withResponses(openaiAdapter, 'bridged').buildRequest(provider, 'responses', body, 'gpt-x', {});
    expect(request).toMatchObject({ path: '/v1/chat/completions' });
    expect(JSON.parse((request as { body: string }).body)).toEqual({
      model: 'gpt-x',
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }],
    });
  });

  it('refuses what chat cannot carry as a client 400 naming the parameter, sending nothing', () => {
    const provider = runtime({ type: 'openai', baseUrl: 'http://upstream.test/v1' });
    const refused = withResponses(openaiAdapter, 'bridged').buildRequest(provider, 'responses', withResponsesContext({ model: 'm', input: 'x', tools: [{ type: 'file_search' }] }, context), 'gpt-x', {});
    expect(refused).toMatchObject({ kind: 'refused', status: 400, retryable: false, clientError: { param: 'tools[0].type', type: 'invalid_request_error' } });
  });

  it('over Anthropic: serves responses through its chat translation, and speaks the Messages API', () => {
    const adapter = withResponses(anthropicAdapter, 'bridged');
    expect(adapter.serves('responses')).toBe(true);
    expect(adapter.serves('embeddings')).toBe(false);
    const provider = runtime({ type: 'anthropic', baseUrl: 'http://anthropic.test/v1' });
    const request = adapter.buildRequest(provider, 'responses', body, 'claude-x', {});
    expect(request).toMatchObject({ path: '/v1/messages' });
    expect(JSON.parse((request as { body: string }).body)).toMatchObject({ model: 'claude-x', system: 'Be brief.', messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }] });
  });

  it('leaves every other endpoint to the wrapped adapter', () => {
    const provider = runtime({ type: 'openai', baseUrl: 'http://upstream.test/v1' });
    const chat = { model: 'public', messages: [{ role: 'user', content: 'hi' }] };
    expect(withResponses(openaiAdapter, 'bridged').buildRequest(provider, 'chat.completions', chat, 'gpt-x', {})).toEqual(openaiAdapter.buildRequest(provider, 'chat.completions', chat, 'gpt-x', {}));
    expect(withResponses(openaiAdapter, 'bridged').translateJson?.('{"a":1}', 'chat.completions', 'gpt-x')).toBe('{"a":1}');
  });
});

describe('mode', () => {
  it('follows the provider type by default', () => {
    expect(['openai', 'mock', 'azure-openai', 'anthropic'].map(defaultResponsesMode)).toEqual(['native', 'native', 'bridged', 'bridged']);
  });

  it('a native Anthropic provider is a configuration error naming the field', () => {
    const config = testConfig('redis://127.0.0.1:6379', 'p', 0, 'http://mock.test/v1', {
      providers: [{ id: 'claude', type: 'anthropic', baseUrl: 'http://anthropic.test/v1', responses: 'native' }],
      models: [{ name: 'c', route: [{ provider: 'claude', model: 'claude-x' }] }],
    });
    expect(() => parseConfig(config)).toThrow(/providers\.0\.responses|providers\[0\]\.responses/);
  });
});
