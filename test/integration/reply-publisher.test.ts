// The worker's reply writer against real Redis: what travels over pub/sub (never a message past inlineReplyBytes
// that can be avoided: a large body is stored under a key, a burst of chunks is split) and how a reply that reaches
// no subscriber is signalled (a stream cannot be delivered intact; a final JSON publish reaching nobody is fine).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { createPatientConnection, waitForRedis } from '../../src/roles/redis.ts';
import { ReplyPublisher } from '../../src/queue/reply-publisher.ts';
import { createRedisKeys, type RedisKeys } from '../../src/queue/keys.ts';
import { decodeReply, type WireReplyMessage } from '../../src/queue/replies.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

let keys: RedisKeys;
let redis: Redis;
let listener: Redis;
const instanceId = 'publisher-test';
/** Raw messages received on the instance's channel, in order. */
const received: string[] = [];

beforeAll(async () => {
  keys = createRedisKeys(uniquePrefix('publisher'));
  redis = createPatientConnection(inject('redisUrl'), 'test-publisher', { autoPipelining: true });
  listener = new Redis(inject('redisUrl'));
  listener.on('message', (_channel: string, raw: string) => received.push(raw));
  await Promise.all([waitForRedis(redis, 10_000), listener.subscribe(keys.replyChannel(instanceId))]);
});

afterAll(() => {
  redis?.disconnect();
  listener?.disconnect();
});

function messagesOf(jobId: string): WireReplyMessage[] {
  return received.map((raw) => decodeReply(raw)).filter((m): m is WireReplyMessage => m !== undefined && m.j === jobId);
}

describe('final answers', () => {
  it('a JSON body over inlineReplyBytes is stored with a TTL; only a pointer is published and kept as the return value', async () => {
    const publisher = new ReplyPublisher(redis, keys, { inlineReplyBytes: 1_000, storedReplyTtlSeconds: 45 });
    const jobId = randomUUID();
    const body = JSON.stringify({ object: 'list', data: 'é'.repeat(3_000) });
    const outcome = await publisher.forJob(jobId, 2, instanceId).done({ kind: 'body', status: 200, body });
    const pointer = { kind: 'stored', status: 200, key: keys.storedReply(jobId), bytes: Buffer.byteLength(body) };
    expect(outcome).toEqual({ returnValue: pointer });
    await waitFor(() => messagesOf(jobId).length === 1, { what: 'the pointer' });
    expect(messagesOf(jobId)).toEqual([{ k: 'done', j: jobId, a: 2, result: pointer }]);
    expect(received.find((raw) => raw.includes(jobId))!.length).toBeLessThan(1_000);
    expect(await redis.get(keys.storedReply(jobId))).toBe(body);
    const ttl = await redis.ttl(keys.storedReply(jobId));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(45);
  });

  it('the size check counts bytes: a body short in characters but long in UTF-8 is stored', async () => {
    const publisher = new ReplyPublisher(redis, keys, { inlineReplyBytes: 1_000, storedReplyTtlSeconds: 45 });
    // 400 characters, 1,200 bytes.
    const outcome = await publisher.forJob(randomUUID(), 1, instanceId).done({ kind: 'body', status: 200, body: '€'.repeat(400) });
    expect(outcome.returnValue.kind).toBe('stored');
  });

  it('a body within inlineReplyBytes travels inline and is its own return value (no key, no extra round trip)', async () => {
    const publisher = new ReplyPublisher(redis, keys, { inlineReplyBytes: 1_000, storedReplyTtlSeconds: 45 });
    const jobId = randomUUID();
    const result = { kind: 'body' as const, status: 200, body: '{"object":"chat.completion"}' };
    expect(await publisher.forJob(jobId, 1, instanceId).done(result)).toEqual({ returnValue: result });
    await waitFor(() => messagesOf(jobId).length === 1, { what: 'the done message' });
    expect(messagesOf(jobId)).toEqual([{ k: 'done', j: jobId, a: 1, result }]);
    expect(await redis.exists(keys.storedReply(jobId))).toBe(0);
  });

  it('an async job (no reply channel) keeps its body as the return value, stored nowhere else', async () => {
    const publisher = new ReplyPublisher(redis, keys, { inlineReplyBytes: 100, storedReplyTtlSeconds: 45 });
    const jobId = randomUUID();
    const result = { kind: 'body' as const, status: 200, body: 'x'.repeat(1_000) };
    expect(await publisher.forJob(jobId, 1, null).done(result)).toEqual({ returnValue: result });
    expect(await redis.exists(keys.storedReply(jobId))).toBe(0);
  });
});

describe('streams', () => {
  it('a burst of chunks is split so that no chunk message batches more than inlineReplyBytes', async () => {
    const publisher = new ReplyPublisher(redis, keys, { inlineReplyBytes: 1_000, storedReplyTtlSeconds: 45 });
    const jobId = randomUUID();
    const replies = publisher.forJob(jobId, 1, instanceId);
    const events = Array.from({ length: 50 }, (_, i) => `{"n":${i},"pad":"${'p'.repeat(90)}"}`);
    replies.head(200, {});
    for (const e of events) replies.chunk(e); // all in one turn of the event loop
    await replies.done({ kind: 'stream', chunks: events.length });
    await waitFor(() => messagesOf(jobId).some((m) => m.k === 'done'), { what: 'the stream to end' });
    const chunks = messagesOf(jobId).flatMap((m) => (m.k === 'chunk' ? [m] : []));
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) expect(c.data.join('').length).toBeLessThan(1_000 + events[0]!.length);
    expect(chunks.flatMap((c) => c.data)).toEqual(events);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => chunks.slice(0, i).reduce((n, c) => n + c.data.length, 0)));
  });

  it('a head that reaches no subscriber is signalled once, and nothing more of that stream is published', async () => {
    const publisher = new ReplyPublisher(redis, keys);
    const jobId = randomUUID();
    let unheard = 0;
    const replies = publisher.forJob(jobId, 1, 'nobody-listens', { onUnheard: () => unheard++ });
    replies.head(200, {});
    await waitFor(() => replies.unheard, { what: 'the head to reach nobody' });
    replies.chunk('{"a":1}');
    replies.chunk('{"a":2}');
    await replies.error({ kind: 'error', status: 503, headers: {}, error: { message: 'm', type: 'server_error', param: null, code: 'job_lost' } });
    expect(unheard).toBe(1);
  });

  it('a stream whose replies are heard is never signalled', async () => {
    const publisher = new ReplyPublisher(redis, keys);
    let unheard = 0;
    const replies = publisher.forJob(randomUUID(), 1, instanceId, { onUnheard: () => unheard++ });
    replies.head(200, {});
    replies.chunk('{"a":1}');
    await replies.done({ kind: 'stream', chunks: 1 });
    expect(replies.unheard).toBe(false);
    expect(unheard).toBe(0);
  });

  it('a final JSON answer that reaches nobody is not signalled (its return value serves reconciliation)', async () => {
    const publisher = new ReplyPublisher(redis, keys);
    let unheard = 0;
    const replies = publisher.forJob(randomUUID(), 1, 'nobody-listens', { onUnheard: () => unheard++ });
    const result = { kind: 'body' as const, status: 200, body: '{}' };
    expect(await replies.done(result)).toEqual({ returnValue: result });
    expect(unheard).toBe(0);
  });
});
