// The output and error files' lines (OpenAI's batch output format) and the Batch object: what a finished line writes,
// the usage it adds, the ids derived from the batch, and the object's nulls for what has not happened.
import { describe, expect, it } from 'vitest';
import { lineForError, lineForResult, lineRequestId, usageOf } from '../../src/batches/line-output.ts';
import { outputFileIdOf } from '../../src/batches/output-files.ts';
import { toPublicBatch, type BatchRecord } from '../../src/batches/batch-record.ts';
import { bitSet } from '../../src/batches/feeder.ts';
import { FILE_ID_PATTERN } from '../../src/files/file-object.ts';

describe('output lines', () => {
  it('writes an answer into the output file with the upstream body untouched, byte for byte', () => {
    const body = '{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":2}},  "x": 1.50}';
    const out = lineForResult('batch_1', 3, 'my-id', 'batch_req_x', { kind: 'body', status: 200, body });
    expect(out.kind).toBe('o');
    expect(out.text).toBe(`{"id":"${lineRequestId('batch_1', 3)}","custom_id":"my-id","response":{"status_code":200,"request_id":"batch_req_x","body":${body}},"error":null}`);
    expect(JSON.parse(out.text)).toMatchObject({ custom_id: 'my-id', response: { status_code: 200, body: { x: 1.5 } }, error: null });
    expect(out.usage).toEqual({ input: 7, cached: 2, output: 3, reasoning: 0, total: 10 });
  });

  it('writes an upstream error into the error file with its status and OpenAI error body', () => {
    const out = lineForResult('batch_1', 4, 'x"y', 'req', { kind: 'error', status: 400, headers: {}, error: { message: 'bad', type: 'invalid_request_error', param: 'messages', code: null } });
    expect(out.kind).toBe('e');
    expect(JSON.parse(out.text)).toEqual({
      id: lineRequestId('batch_1', 4),
      custom_id: 'x"y',
      response: { status_code: 400, request_id: 'req', body: { error: { message: 'bad', type: 'invalid_request_error', param: 'messages', code: null } } },
      error: null,
    });
  });

  it('keeps a line valid JSON when the upstream body is not', () => {
    const out = lineForResult('b', 1, 'c', 'r', { kind: 'body', status: 200, body: 'not json' });
    expect(JSON.parse(out.text).response.body).toBe('not json');
  });

  it('writes a request that never ran with response null and the error', () => {
    expect(JSON.parse(lineForError('b', 9, 'c', 'batch_expired', 'too late').text)).toEqual({ id: lineRequestId('b', 9), custom_id: 'c', response: null, error: { code: 'batch_expired', message: 'too late' } });
  });

  it('reads usage in the Responses shape too', () => {
    expect(usageOf({ usage: { input_tokens: 5, output_tokens: 6, total_tokens: 11, output_tokens_details: { reasoning_tokens: 4 } } })).toEqual({ input: 5, cached: 0, output: 6, reasoning: 4, total: 11 });
    expect(usageOf({})).toEqual({ input: 0, cached: 0, output: 0, reasoning: 0, total: 0 });
  });

  it('derives the same ids on every attempt, distinct per line and per file kind', () => {
    expect(lineRequestId('b', 1)).toBe(lineRequestId('b', 1));
    expect(lineRequestId('b', 1)).not.toBe(lineRequestId('b', 2));
    expect(outputFileIdOf('b', 'output')).toMatch(FILE_ID_PATTERN);
    expect(outputFileIdOf('b', 'output')).not.toBe(outputFileIdOf('b', 'error'));
  });

  it('reads a Redis bitmap as SETBIT numbers its bits', () => {
    const bitmap = Buffer.from([0b10000001, 0b01000000]);
    expect([0, 1, 7, 8, 9, 100].map((n) => bitSet(bitmap, n))).toEqual([true, false, true, false, true, false]);
  });
});

describe('the Batch object', () => {
  it('answers null for what has not happened and epoch seconds for what has', () => {
    const record: BatchRecord = {
      id: 'batch_0123', tenant: 't', status: 'in_progress', endpoint: 'chat.completions', inputFileId: 'file-x', completionWindow: '24h',
      createdAt: 1_700_000_000_500, expiresAt: 1_700_086_400_500, inProgressAt: 1_700_000_001_999, total: 3, completed: 1, failed: 0,
      usage: { input: 1, cached: 0, output: 2, reasoning: 0, total: 3 }, headers: { 'x-mock-latency-ms': '5' }, requestId: 'r', cursorLine: 2, cursorOffset: 10, segments: 0, pendingBytes: 0,
    };
    const batch = toPublicBatch(record);
    expect(batch).toMatchObject({ object: 'batch', endpoint: '/v1/chat/completions', status: 'in_progress', created_at: 1_700_000_000, in_progress_at: 1_700_000_001, expires_at: 1_700_086_400 });
    expect([batch.output_file_id, batch.error_file_id, batch.completed_at, batch.cancelled_at, batch.errors, batch.metadata]).toEqual([null, null, null, null, null, null]);
    expect(batch.request_counts).toEqual({ total: 3, completed: 1, failed: 0 });
    expect(JSON.stringify(batch)).not.toContain('x-mock');
    expect(Object.keys(batch)).not.toContain('tenant');
  });
});
