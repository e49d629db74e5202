// The reply protocol between worker and ingress: every message kind survives an encode/decode round trip, and
// anything malformed decodes to undefined (the reader drops it instead of trusting its TypeScript type).
import { describe, expect, it } from 'vitest';
import { decodeReply, encodeReply, isStoredDone, type WireReplyMessage } from '../../src/queue/replies.ts';

const MESSAGES: Record<string, WireReplyMessage> = {
  head: { k: 'head', j: 'job-1', a: 1, status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8' } },
  chunk: { k: 'chunk', j: 'job-1', a: 1, seq: 3, data: ['{"id":"c","choices":[]}', '{"x":"line\\nbreak"}'] },
  'done (JSON body)': { k: 'done', j: 'job-2', a: 0, result: { kind: 'body', status: 200, body: '{"object":"chat.completion"}' } },
  'done (stream, with usage)': { k: 'done', j: 'job-3', a: 2, result: { kind: 'stream', chunks: 12, usage: { total_tokens: 20 } } },
  'done (stream, no usage)': { k: 'done', j: 'job-3', a: 2, result: { kind: 'stream', chunks: 0 } },
  'done (pointer to a stored body)': { k: 'done', j: 'job-5', a: 1, result: { kind: 'stored', status: 200, key: '{spillway}:stored-reply:job-5', bytes: 45_000_000 } },
  error: {
    k: 'error',
    j: 'job-4',
    a: 1,
    status: 503,
    headers: { 'retry-after': '2' },
    error: { message: 'overloaded', type: 'server_error', param: null, code: 'upstream_overloaded' },
  },
};

describe('round trip', () => {
  it.each(Object.entries(MESSAGES))('a %s message decodes to an equal message', (_kind, message) => {
    const raw = encodeReply(message);
    expect(typeof raw).toBe('string');
    expect(decodeReply(raw)).toEqual(message);
  });

  it('an encoded message is compact JSON of the message itself', () => {
    expect(JSON.parse(encodeReply(MESSAGES.head!))).toEqual(MESSAGES.head);
  });
});

describe('malformed input decodes to undefined', () => {
  // The plain JSON form of each message (the compact chunk form is covered below).
  const valid = (kind: string): Record<string, unknown> => structuredClone(MESSAGES[kind]!) as Record<string, unknown>;

  it.each(['', 'not json', '{"k":"head"', 'null', '42', '"head"', '[]'])('raw text %j', (raw) => {
    expect(decodeReply(raw)).toBeUndefined();
  });

  const shapes: Array<[string, Record<string, unknown>]> = [
    ['an unknown kind', { ...valid('head'), k: 'hello' }],
    ['a missing job id', { ...valid('head'), j: undefined }],
    ['an empty job id', { ...valid('head'), j: '' }],
    ['a negative attempt', { ...valid('head'), a: -1 }],
    ['a fractional status', { ...valid('head'), status: 200.5 }],
    ['a header that is not a string', { ...valid('head'), headers: { 'retry-after': 2 } }],
    ['an unknown field (strict objects)', { ...valid('head'), extra: true }],
    ['a chunk with no data', { ...valid('chunk'), data: [] }],
    ['a chunk with a negative seq', { ...valid('chunk'), seq: -1 }],
    ['a chunk whose data is a string', { ...valid('chunk'), data: 'x' }],
    ['a done carrying an error result', { ...valid('done (JSON body)'), result: { kind: 'error', status: 500, headers: {}, error: MESSAGES.error } }],
    ['a done with an unknown result kind', { ...valid('done (JSON body)'), result: { kind: 'other' } }],
    ['a done whose body is an object', { ...valid('done (JSON body)'), result: { kind: 'body', status: 200, body: {} } }],
    ['a stored pointer without a key', { ...valid('done (JSON body)'), result: { kind: 'stored', status: 200, bytes: 1 } }],
    ['a stored pointer carrying the body too', { ...valid('done (JSON body)'), result: { kind: 'stored', status: 200, key: 'k', bytes: 1, body: 'x' } }],
    ['an error without a code', { ...valid('error'), error: { message: 'm', type: 't', param: null } }],
    ['an error whose code is a number', { ...valid('error'), error: { message: 'm', type: 't', param: null, code: 5 } }],
  ];

  it.each(shapes)('%s', (_what, shape) => {
    expect(decodeReply(JSON.stringify(shape))).toBeUndefined();
  });
});

describe('the compact chunk form', () => {
  const payloads = ['{"id":"c1","choices":[{"delta":{"content":"Hi \\"there\\""}}]}', '{"id":"c1","choices":[]}'];

  it('carries SSE payloads verbatim, one per line after a JSON header, and decodes them back', () => {
    const raw = encodeReply({ k: 'chunk', j: 'job-9', a: 1, seq: 4, data: payloads });
    expect(raw.split('\n').slice(1)).toEqual(payloads);
    expect(decodeReply(raw)).toEqual({ k: 'chunk', j: 'job-9', a: 1, seq: 4, data: payloads });
  });

  it('falls back to plain JSON when a payload has a newline of its own', () => {
    const data = ['first line\nsecond line'];
    const raw = encodeReply({ k: 'chunk', j: 'job-9', a: 1, seq: 0, data });
    expect(raw).not.toContain('\n');
    expect(decodeReply(raw)).toEqual({ k: 'chunk', j: 'job-9', a: 1, seq: 0, data });
  });

  it.each([
    ['a header of another kind', `${JSON.stringify({ k: 'head', j: 'j', a: 1, status: 200, headers: {} })}\nx`],
    ['a header without seq', `${JSON.stringify({ k: 'chunk', j: 'j', a: 1 })}\nx`],
    ['a header that is not JSON', '{"k":"chunk",\nx'],
  ])('rejects %s', (_what, raw) => {
    expect(decodeReply(raw)).toBeUndefined();
  });
});

describe('stored bodies', () => {
  it('only a done that points to a stored body is told apart (the reply bus resolves it; sinks never see it)', () => {
    const kinds = Object.entries(MESSAGES).filter(([, m]) => isStoredDone(m)).map(([kind]) => kind);
    expect(kinds).toEqual(['done (pointer to a stored body)']);
  });
});
