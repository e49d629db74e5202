// Contract tests of the azure-openai adapter, with payloads written from Azure OpenAI's public REST reference: the
// deployment URL with api-version, the api-key header, the error and content-filter shapes, the filter-only first chunk.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dispatcher } from 'undici';
import { ProviderSchema } from '../../src/config/schema.ts';
import { createProviderRuntime, type ProviderRuntime } from '../../src/upstream/dispatcher.ts';
import { buildAzureRequest } from '../../src/upstream/providers/azure-openai/request.ts';
import { failureFromAzureResponse } from '../../src/upstream/providers/azure-openai/errors.ts';
import { readAzureStream } from '../../src/upstream/providers/azure-openai/stream.ts';
import { azureHealthProbe } from '../../src/upstream/providers/azure-openai/health.ts';

let provider: ProviderRuntime;
beforeAll(() => {
  const config = ProviderSchema.parse({ id: 'azure', type: 'azure-openai', baseUrl: 'https://contoso.openai.azure.com', apiKey: 'azure-secret', apiVersion: '2024-10-21' });
  provider = createProviderRuntime(config, config.baseUrl!);
});
afterAll(() => provider.pool.close());

describe('request', () => {
  it('posts to /openai/deployments/{deployment}/chat/completions?api-version=… with the api-key header, never a Bearer one', () => {
    const request = buildAzureRequest(provider, 'chat.completions', { model: 'gpt-4o', messages: [], stream: true }, 'gpt-4o-prod', { 'x-request-id': 'r' });
    expect(request.path).toBe('/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21');
    expect(request.headers).toMatchObject({ 'api-key': 'azure-secret', accept: 'text/event-stream', 'x-request-id': 'r' });
    expect(request.headers.authorization).toBeUndefined();
    expect(JSON.parse(request.body)).toMatchObject({ model: 'gpt-4o-prod', stream: true });
  });

  it('serves embeddings and text completions on their deployment paths; a deployment name is URL-encoded', () => {
    expect(buildAzureRequest(provider, 'embeddings', { input: 'x' }, 'embed', {}).path).toBe('/openai/deployments/embed/embeddings?api-version=2024-10-21');
    expect(buildAzureRequest(provider, 'completions', { prompt: 'x' }, 'my deployment', {}).path).toBe('/openai/deployments/my%20deployment/completions?api-version=2024-10-21');
  });

  it('probes health at /openai/models with the api-version and the key', () => {
    expect(azureHealthProbe(provider, undefined)).toEqual({ path: '/openai/models?api-version=2024-10-21', headers: { accept: 'application/json', 'api-key': 'azure-secret' } });
  });
});

describe('errors', () => {
  it('a prompt refused by the content filter is a 400 relayed to the client with code content_filter, not retried', () => {
    const body = JSON.stringify({
      error: {
        message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        type: null,
        param: 'prompt',
        code: 'content_filter',
        status: 400,
        innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { violence: { filtered: true, severity: 'high' } } },
      },
    });
    expect(failureFromAzureResponse(400, {}, body)).toMatchObject({
      status: 400,
      retryable: false,
      clientError: { type: 'invalid_request_error', param: 'prompt', code: 'content_filter', message: expect.stringContaining('content management policy') },
      detail: expect.stringContaining('content filter'),
    });
  });

  it("a 429 is retried after Azure's retry-after-ms; a missing deployment (404) is the operator's, never relayed", () => {
    const limited = JSON.stringify({ error: { code: '429', message: 'Requests to the ChatCompletions_Create Operation have exceeded call rate limit.' } });
    expect(failureFromAzureResponse(429, { 'retry-after': '6', 'retry-after-ms': '5500' }, limited)).toMatchObject({ retryable: true, retryAfterMs: 5500 });
    const missing = JSON.stringify({ error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist.' } });
    expect(failureFromAzureResponse(404, {}, missing)).toMatchObject({ status: 404, retryable: false, clientError: undefined });
  });
});

describe('stream', () => {
  it("drops Azure's filter-only first chunk and relays every OpenAI chunk, the usage chunk included", async () => {
    const frames = [
      { choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: { hate: { filtered: false, severity: 'safe' } } }] },
      { choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, content_filter_results: {} }], created: 1, id: 'chatcmpl-1', model: 'gpt-4o', object: 'chat.completion.chunk' },
      { choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: 'stop' }], created: 1, id: 'chatcmpl-1', model: 'gpt-4o', object: 'chat.completion.chunk' },
      { choices: [], created: 1, id: 'chatcmpl-1', model: 'gpt-4o', object: 'chat.completion.chunk', usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } },
    ];
    const text = `${frames.map((f) => `data: ${JSON.stringify(f)}\n\n`).join('')}data: [DONE]\n\n`;
    const relayed: string[] = [];
    const end = await readAzureStream(Readable.from([Buffer.from(text)]) as unknown as Dispatcher.ResponseData['body'], 1 << 20, (data) => relayed.push(data));
    expect(end).toBe('done');
    expect(relayed.map((d) => (JSON.parse(d) as { id: string }).id)).toEqual(['chatcmpl-1', 'chatcmpl-1', 'chatcmpl-1']);
    expect(relayed.at(-1)).toContain('"usage":{');
  });
});
