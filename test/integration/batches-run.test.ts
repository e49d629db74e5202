// The Batch API through an in-process Spillway (ingress + worker, real Redis, real mock upstream) with the official
// `openai` client: a batch runs every line once and its output answers each custom_id; a bad input file fails
// validation naming its lines; lines the upstream refuses land in the error file; objects match OpenAI's OpenAPI
// description (read from ../shared/openai-openapi, skipped with a message where absent).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startBatchHarness, type BatchHarness } from './batches-harness.ts';
import { calledTool, parseJsonl, toolLine } from './batches-harness-lines.ts';
import { loadOpenApi, validate, validateComponent, type OpenApiDoc } from './support-openapi.ts';

const SPEC = new URL('../../../shared/openai-openapi/openapi.yaml', import.meta.url);
const SPEC_PRESENT = existsSync(SPEC);
let spec: OpenApiDoc | undefined;

let h: BatchHarness;

beforeAll(async () => {
  h = await startBatchHarness({
    redisUrl: inject('redisUrl'),
    config: (mockUrl) => ({
      providers: [
        { id: 'mock', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value' },
        // The same mock, told by a provider header to refuse every request with a 400: the lines routed here fail.
        { id: 'refusing', type: 'openai', baseUrl: mockUrl, apiKey: 'sk-upstream-secret-value', headers: { 'x-mock-status': '400' } },
      ],
      models: [
        { name: 'gpt-4o-mini', route: [{ provider: 'mock', model: 'mock-chat' }] },
        { name: 'gpt-4o-mini-refused', route: [{ provider: 'refusing', model: 'mock-chat' }] },
        { name: 'text-embedding-3-small', route: [{ provider: 'mock', model: 'mock-embed' }], endpoints: ['embeddings'] },
      ],
    }),
  });
  if (SPEC_PRESENT) spec = loadOpenApi(SPEC);
  else console.warn(`Batch and File objects not checked against the OpenAPI description: ${fileURLToPath(SPEC)} is absent`);
});

afterAll(async () => {
  await h?.close();
});

/** OpenAI's schema types the ids and times of what has not happened yet as plain strings and integers, while its own
 * answers (and its examples) send null for them: the object is checked with its null fields dropped. */
function withoutNulls(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null));
}

describe('a batch of chat requests', () => {
  it('runs every line once and answers each custom_id with its own request\'s answer', async () => {
    const lines = Array.from({ length: 60 }, (_, i) => toolLine(i));
    const before = h.mock.stats().completed;
    const fileId = await h.upload(lines);
    const created = await h.client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'nightly' } });
    expect(created).toMatchObject({ object: 'batch', status: 'validating', input_file_id: fileId, endpoint: '/v1/chat/completions', metadata: { run: 'nightly' } });
    const done = await h.waitForStatus(created.id, ['completed', 'failed']);
    expect(done.status, JSON.stringify(done.errors)).toBe('completed');
    expect(done.request_counts).toEqual({ total: 60, completed: 60, failed: 0 });
    expect(done.error_file_id).toBeNull();
    expect(done.usage?.total_tokens).toBeGreaterThan(0);
    expect(done.completed_at).toBeGreaterThanOrEqual(done.in_progress_at!);
    const output = parseJsonl(await h.content(done.output_file_id!));
    expect(output).toHaveLength(60);
    for (const line of output) {
      expect(line.id).toMatch(/^batch_req_[0-9a-f]{32}$/);
      expect(line.error).toBeNull();
      expect(line.response?.status_code).toBe(200);
      expect(calledTool(line), line.custom_id).toBe(line.custom_id.replace('req-', 'answer_'));
    }
    expect(new Set(output.map((l) => l.custom_id)).size).toBe(60);
    expect(h.mock.stats().completed - before).toBe(60);

    const outputFile = await h.client.files.retrieve(done.output_file_id!);
    expect(outputFile).toMatchObject({ purpose: 'batch_output', filename: `${created.id}_output.jsonl` });
    if (spec !== undefined) {
      expect(validateComponent(spec, 'Batch', withoutNulls(done as unknown as Record<string, unknown>))).toEqual([]);
      expect(validateComponent(spec, 'OpenAIFile', withoutNulls(outputFile as unknown as Record<string, unknown>))).toEqual([]);
      const list = await h.client.batches.list({ limit: 1 });
      const page = { object: 'list', data: list.data.map((b) => withoutNulls(b as unknown as Record<string, unknown>)), has_more: list.has_more };
      expect(validateComponent(spec, 'ListBatchesResponse', page)).toEqual([]);
      expect(validate(spec, { $ref: '#/components/schemas/CreateChatCompletionResponse' }, output[0]!.response!.body, '$')).toEqual([]);
    }
  });

  it('runs an embeddings batch the same way', async () => {
    const lines = ['a', 'b', 'c'].map((word) => JSON.stringify({ custom_id: `emb-${word}`, method: 'POST', url: '/v1/embeddings', body: { model: 'text-embedding-3-small', input: word } }));
    const created = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/embeddings', completion_window: '24h' });
    const done = await h.waitForStatus(created.id, ['completed', 'failed']);
    expect(done.request_counts).toEqual({ total: 3, completed: 3, failed: 0 });
    const output = parseJsonl(await h.content(done.output_file_id!));
    expect(output.map((l) => l.custom_id).sort()).toEqual(['emb-a', 'emb-b', 'emb-c']);
    expect(output.every((l) => l.response?.body.object === 'list')).toBe(true);
  });
});

describe('validation before any line runs', () => {
  it('fails a file with bad lines, naming each bad line, and runs none of them', async () => {
    const before = h.mock.stats().received;
    const lines = [
      toolLine(1),
      '{"custom_id": "req-2", "method": "POST", "url": ',
      JSON.stringify({ custom_id: 'req-3', method: 'POST', url: '/v1/embeddings', body: { model: 'gpt-4o-mini', input: 'x' } }),
      toolLine(1),
      toolLine(5, 'no-such-model'),
      JSON.stringify({ method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] } }),
      toolLine(7),
    ];
    const created = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const failed = await h.waitForStatus(created.id, ['failed', 'completed']);
    expect(failed.status).toBe('failed');
    expect(failed.failed_at).not.toBeNull();
    const errors = failed.errors!.data!.map((e) => ({ line: e.line, code: e.code, param: e.param }));
    expect(errors).toEqual([
      { line: 2, code: 'invalid_json_line', param: null },
      { line: 3, code: 'invalid_url', param: 'url' },
      { line: 4, code: 'duplicate_custom_id', param: 'custom_id' },
      { line: 5, code: 'model_not_found', param: 'body.model' },
      { line: 6, code: 'missing_required_parameter', param: 'custom_id' },
    ]);
    for (const e of failed.errors!.data!) expect(e.message).toContain(`Line ${e.line}`);
    expect(failed.output_file_id).toBeNull();
    expect(h.mock.stats().received).toBe(before);
  });

  it('fails an empty file', async () => {
    const created = await h.client.batches.create({ input_file_id: await h.upload(['', '  ']), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const failed = await h.waitForStatus(created.id, ['failed', 'completed']);
    expect(failed.errors!.data!.map((e) => e.code)).toEqual(['empty_file']);
  });

  it('refuses at creation what the request itself gets wrong, in OpenAI\'s error shape', async () => {
    const fileId = await h.upload([toolLine(1)]);
    const attempts: Array<[Record<string, unknown>, string]> = [
      [{ input_file_id: fileId, endpoint: '/v1/images/generations', completion_window: '24h' }, 'endpoint'],
      [{ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '48h' }, 'completion_window'],
      [{ input_file_id: 'file-doesnotexist000000000000', endpoint: '/v1/chat/completions', completion_window: '24h' }, 'input_file_id'],
      [{ endpoint: '/v1/chat/completions', completion_window: '24h' }, 'input_file_id'],
    ];
    for (const [body, param] of attempts) {
      const response = await fetch(`${h.baseUrl}/v1/batches`, { method: 'POST', headers: { authorization: `Bearer ${h.apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const answer = (await response.json()) as { error: { param: string; type: string } };
      expect(response.status, JSON.stringify(answer)).toBe(400);
      expect(answer.error).toMatchObject({ type: 'invalid_request_error', param });
    }
  });
});

describe('lines the upstream refuses', () => {
  it('completes the batch with those lines in the error file, in OpenAI\'s error line format', async () => {
    const lines = Array.from({ length: 15 }, (_, i) => toolLine(i, i % 3 === 2 ? 'gpt-4o-mini-refused' : 'gpt-4o-mini'));
    const created = await h.client.batches.create({ input_file_id: await h.upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await h.waitForStatus(created.id, ['completed', 'failed']);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 15, completed: 10, failed: 5 });
    const output = parseJsonl(await h.content(done.output_file_id!));
    const errors = parseJsonl(await h.content(done.error_file_id!));
    expect(output.map((l) => l.custom_id).sort()).toEqual(lines.map((_, i) => i).filter((i) => i % 3 !== 2).map((i) => `req-${i}`).sort());
    expect(errors.map((l) => l.custom_id).sort()).toEqual(['req-11', 'req-14', 'req-2', 'req-5', 'req-8']);
    for (const line of errors) {
      expect(line.error).toBeNull();
      expect(line.response?.status_code).toBe(400);
      expect(line.response?.body).toMatchObject({ error: { type: 'invalid_request_error' } });
    }
    const errorFile = await h.client.files.retrieve(done.error_file_id!);
    expect(errorFile).toMatchObject({ purpose: 'batch_output', filename: `${created.id}_error.jsonl` });
  });
});
