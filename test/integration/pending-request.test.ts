// PendingRequest on a real Fastify server and real HTTP clients: every order of reply messages (duplicate and newer
// heads, gaps, stale attempts), the deadline, the keep-alive of a queued stream, a slow reader, a lost job and a drain.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Fastify, { type FastifyInstance } from 'fastify';
import { PendingRequest, type AbandonReason } from '../../src/http/pending-request.ts';
import { errorHandlerPlugin } from '../../src/http/plugins/error-handler.ts';
import type { ReplyMessage } from '../../src/queue/replies.ts';
import { waitFor } from '../support/wait.ts';

interface Held {
  pending: PendingRequest;
  abandoned: AbandonReason[];
  finished: number;
}

interface Params {
  stream?: boolean;
  deadlineMs?: number;
  keepAliveMs?: number;
  bufferLimitBytes?: number;
}

let app: FastifyInstance;
let baseUrl: string;
const held = new Map<string, Held>();
let nextId = 0;

beforeAll(async () => {
  app = Fastify({ forceCloseConnections: true });
  await app.register(errorHandlerPlugin, { bodyLimitBytes: 1024 * 1024 });
  // The same shape as the completion routes: hold the request on a PendingRequest, answer what it settles with.
  app.post<{ Params: { id: string }; Body: Params }>('/hold/:id', async (request, reply) => {
    const p = request.body;
    const entry: Held = { pending: undefined as unknown as PendingRequest, abandoned: [], finished: 0 };
    entry.pending = new PendingRequest({
      reply,
      stream: p.stream ?? false,
      deadline: Date.now() + (p.deadlineMs ?? 30_000),
      requestId: request.id,
      keepAliveMs: p.keepAliveMs ?? 60_000,
      bufferLimitBytes: p.bufferLimitBytes ?? 1024 * 1024,
      onAbandon: (reason) => entry.abandoned.push(reason),
      onFinish: () => entry.finished++,
    });
    held.set(request.params.id, entry);
    const settled = await entry.pending.settled;
    if (settled.kind === 'streamed') return reply;
    return reply.code(settled.status).header('content-type', 'application/json').send(settled.body);
  });
  baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await app.close();
});

/** Starts a held request; resolves once the server holds it. */
async function hold(params: Params = {}): Promise<{ id: string; entry: Held; response: Promise<Response> }> {
  const id = String(nextId++);
  const response = fetch(`${baseUrl}/hold/${id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(params) });
  const entry = await waitFor(() => held.get(id), { what: `request ${id} to be held` });
  return { id, entry, response };
}

const head = (a = 1): ReplyMessage => ({ k: 'head', j: 'job', a, status: 200, headers: {} });
const chunk = (seq: number, data: string[], a = 1): ReplyMessage => ({ k: 'chunk', j: 'job', a, seq, data });
const doneStream = (chunks: number, a = 1): ReplyMessage => ({ k: 'done', j: 'job', a, result: { kind: 'stream', chunks } });
const error = (status: number, code: string, a = 1, headers: Record<string, string> = {}): ReplyMessage => ({
  k: 'error',
  j: 'job',
  a,
  status,
  headers,
  error: { message: `failed: ${code}`, type: 'api_error', param: null, code },
});

/** The SSE `data:` payloads of a finished stream, and its comment lines. */
function parseSse(text: string): { data: string[]; comments: number } {
  const lines = text.split('\n');
  return { data: lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)), comments: lines.filter((l) => l.startsWith(':')).length };
}

describe('JSON answers', () => {
  it('answers the done body with its status', async () => {
    const { entry, response } = await hold();
    entry.pending.onMessage({ k: 'done', j: 'job', a: 1, result: { kind: 'body', status: 200, body: '{"ok":true}' } });
    const res = await response;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect(entry.finished).toBe(1);
    expect(entry.abandoned).toEqual([]);
  });

  it('answers an error reply with its status, OpenAI error body and Retry-After', async () => {
    const { entry, response } = await hold();
    entry.pending.onMessage(error(503, 'upstream_overloaded', 1, { 'retry-after': '7' }));
    const res = await response;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(await res.json()).toEqual({ error: { message: 'failed: upstream_overloaded', type: 'api_error', param: null, code: 'upstream_overloaded' } });
  });

  it('answers 504 at the deadline and cancels the job', async () => {
    const { entry, response } = await hold({ deadlineMs: 200 });
    const res = await response;
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: { type: 'timeout_error', code: 'deadline_exceeded' } });
    expect(entry.abandoned).toEqual(['deadline']);
  });

  it('answers 503 job_lost when the broker lost the job, and cancels it', async () => {
    const { entry, response } = await hold();
    entry.pending.onLost('job_missing');
    const res = await response;
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ error: { code: 'job_lost' } });
    expect(entry.abandoned).toEqual(['job_missing']);
  });

  it('ignores every message after the answer', async () => {
    const { entry, response } = await hold();
    entry.pending.onMessage({ k: 'done', j: 'job', a: 1, result: { kind: 'body', status: 200, body: '{"first":1}' } });
    entry.pending.onMessage(error(500, 'late'));
    entry.pending.onLost('draining');
    expect(await (await response).json()).toEqual({ first: 1 });
    expect(entry.finished).toBe(1);
    expect(entry.abandoned).toEqual([]);
  });
});

describe('streams', () => {
  it('relays head, batched chunks and done as SSE ending with [DONE]', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(head());
    entry.pending.onMessage(chunk(0, ['{"a":1}', '{"a":2}']));
    entry.pending.onMessage(chunk(2, ['{"a":3}']));
    entry.pending.onMessage(doneStream(3));
    const res = await response;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(parseSse(await res.text()).data).toEqual(['{"a":1}', '{"a":2}', '{"a":3}', '[DONE]']);
  });

  it('starts the stream on a first chunk whose head was lost, and ignores a repeated head of the same attempt', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(chunk(0, ['{"a":1}']));
    entry.pending.onMessage(head());
    entry.pending.onMessage(chunk(1, ['{"a":2}']));
    entry.pending.onMessage(doneStream(2));
    expect(parseSse(await (await response).text()).data).toEqual(['{"a":1}', '{"a":2}', '[DONE]']);
    expect(entry.abandoned).toEqual([]);
  });

  it('ends the stream with an error event when a newer attempt sends a head (the worker was lost)', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(head(1));
    entry.pending.onMessage(chunk(0, ['{"a":1}'], 1));
    entry.pending.onMessage(head(2));
    const { data } = parseSse(await (await response).text());
    expect(data[0]).toBe('{"a":1}');
    expect(JSON.parse(data[1]!)).toMatchObject({ error: { code: 'stream_interrupted' } });
    expect(data).not.toContain('[DONE]');
    expect(entry.abandoned).toEqual(['stream_broken']);
  });

  it('ends the stream with an error event at a gap in the chunk numbers', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(chunk(0, ['{"a":1}']));
    entry.pending.onMessage(chunk(2, ['{"a":3}']));
    const { data } = parseSse(await (await response).text());
    expect(data).toHaveLength(2);
    expect(JSON.parse(data[1]!)).toMatchObject({ error: { code: 'stream_interrupted' } });
    expect(entry.abandoned).toEqual(['stream_broken']);
  });

  it('ends the stream with an error event when done counts more chunks than arrived', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(chunk(0, ['{"a":1}']));
    entry.pending.onMessage(doneStream(2));
    const { data } = parseSse(await (await response).text());
    expect(JSON.parse(data.at(-1)!)).toMatchObject({ error: { code: 'stream_interrupted' } });
  });

  it('ignores an error from an older attempt, and the healthy stream completes', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(head(2));
    entry.pending.onMessage(chunk(0, ['{"a":1}'], 2));
    entry.pending.onMessage(error(502, 'job_failed', 1));
    entry.pending.onMessage(chunk(1, ['{"a":2}'], 2));
    entry.pending.onMessage(doneStream(2, 2));
    expect(parseSse(await (await response).text()).data).toEqual(['{"a":1}', '{"a":2}', '[DONE]']);
    expect(entry.abandoned).toEqual([]);
  });

  it('answers an error before any event with its own HTTP status, not as an event', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(error(429, 'rate_limit_exceeded'));
    const res = await response;
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
  });

  it('ends a started stream with an error event at the deadline', async () => {
    const { entry, response } = await hold({ stream: true, deadlineMs: 300 });
    entry.pending.onMessage(chunk(0, ['{"a":1}']));
    const res = await response;
    expect(res.status).toBe(200);
    const { data } = parseSse(await res.text());
    expect(JSON.parse(data.at(-1)!)).toMatchObject({ error: { code: 'deadline_exceeded' } });
    expect(entry.abandoned).toEqual(['deadline']);
  });
});

describe('a stream that waits', () => {
  it('gets its head and keep-alive comments while queued, then its answer', async () => {
    const { entry, response } = await hold({ stream: true, keepAliveMs: 40 });
    // The head reaches the client before any reply message: the response resolves while the job still waits.
    const res = await response;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes(': keep-alive')) text += decoder.decode((await reader.read()).value);
    entry.pending.onMessage(head());
    entry.pending.onMessage(chunk(0, ['{"a":1}']));
    entry.pending.onMessage(doneStream(1));
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const parsed = parseSse(text);
    expect(parsed.comments).toBeGreaterThan(0);
    expect(parsed.data).toEqual(['{"a":1}', '[DONE]']);
  });

  it('after a keep-alive head, an error travels as an SSE error event', async () => {
    const { entry, response } = await hold({ stream: true, keepAliveMs: 40 });
    const res = await response;
    expect(res.status).toBe(200);
    entry.pending.onMessage(error(503, 'upstream_overloaded'));
    const { data } = parseSse(await res.text());
    expect(data.map((d) => JSON.parse(d) as unknown)).toEqual([{ error: { message: 'failed: upstream_overloaded', type: 'api_error', param: null, code: 'upstream_overloaded' } }]);
  });

  it('a JSON request waits silently: no keep-alive bytes', async () => {
    const { entry, response } = await hold({ keepAliveMs: 20 });
    await new Promise((resolve) => setTimeout(resolve, 150)); // several keep-alive intervals pass with the request held
    entry.pending.onMessage({ k: 'done', j: 'job', a: 1, result: { kind: 'body', status: 200, body: '{"ok":1}' } });
    expect(await (await response).text()).toBe('{"ok":1}');
  });
});

describe('ending a stream early', () => {
  it('a drain ends an open stream with an SSE error event and cancels its job', async () => {
    const { entry, response } = await hold({ stream: true });
    entry.pending.onMessage(chunk(0, ['{"a":1}']));
    entry.pending.onLost('draining');
    const { data } = parseSse(await (await response).text());
    expect(JSON.parse(data.at(-1)!)).toMatchObject({ error: { type: 'server_error', code: 'server_shutting_down' } });
    expect(entry.abandoned).toEqual(['draining']);
  });

  it('a client that goes away cancels the job', async () => {
    const controller = new AbortController();
    const id = String(nextId++);
    const response = fetch(`${baseUrl}/hold/${id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ stream: true }),
      signal: controller.signal,
    }).catch((err: unknown) => err);
    const entry = await waitFor(() => held.get(id));
    controller.abort();
    await response;
    await waitFor(() => entry.abandoned.includes('client_closed'), { what: 'the abandon on client close' });
    expect(entry.finished).toBe(1);
  });

  it('a client that stops reading is cut off past the buffer limit, and its job cancelled', async () => {
    const id = String(nextId++);
    const body = JSON.stringify({ stream: true, bufferLimitBytes: 256 * 1024 });
    // A raw socket that sends the request and then never reads: the kernel's buffers fill, then the ingress's.
    const socket = connect(Number(new URL(baseUrl).port), '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(`POST /hold/${id} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    socket.pause();
    const entry = await waitFor(() => held.get(id));
    const payload = JSON.stringify({ pad: 'x'.repeat(64 * 1024) });
    let seq = 0;
    // Bounded: far more than the socket buffers and the limit together can hold.
    while (!entry.abandoned.includes('slow_reader') && seq < 4_000) {
      entry.pending.onMessage(chunk(seq, [payload]));
      seq++;
      if (seq % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(entry.abandoned).toEqual(['slow_reader']);
    expect(entry.finished).toBe(1);
    socket.destroy();
  });
});
