// The pool-wide nudge channel that circuit breakers and deployment pauses share, on a real redis-server: another
// worker's nudge is applied, this worker's own is skipped, a malformed one is logged and ignored, other channels on
// the same subscriber are left alone, state is read again after the subscriber reconnects, and close() stops it all.
import { afterEach, expect, inject, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { z } from 'zod';
import { NudgeChannel } from '../../src/upstream/nudges.ts';
import { uniquePrefix } from '../support/redis.ts';
import { waitFor } from '../support/wait.ts';

const Schema = z.object({ n: z.number(), from: z.string() });
const connections: Redis[] = [];

afterEach(() => {
  for (const redis of connections.splice(0)) redis.disconnect();
});

function connect(): Redis {
  const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  connections.push(redis);
  return redis;
}

it('applies the pool\'s nudges and no others, reads the state again after a reconnect, and stops at close', async () => {
  const channel = `${uniquePrefix('nudges')}:channel`;
  const subscriber = connect();
  const publisher = connect();
  const subscriberId = await subscriber.client('ID');
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
  const applied: number[] = [];
  let resyncs = 0;
  const nudges = new NudgeChannel({
    subscriber,
    channel,
    schema: Schema,
    instanceId: 'me',
    logger,
    what: 'test',
    onNudge: (nudge) => void applied.push(nudge.n),
    resync: async () => void resyncs++,
  });
  await nudges.start();
  expect(resyncs).toBe(1);

  await publisher.publish(channel, JSON.stringify({ n: 1, from: 'me' }));
  await publisher.publish(channel, 'not json');
  await publisher.publish(channel, JSON.stringify({ n: 'two', from: 'other' }));
  await subscriber.subscribe(`${channel}:else`);
  await publisher.publish(`${channel}:else`, JSON.stringify({ n: 3, from: 'other' }));
  await publisher.publish(channel, JSON.stringify({ n: 4, from: 'other' }));
  await waitFor(() => applied.length > 0, { what: 'the other worker\'s nudge' });
  expect(applied).toEqual([4]);
  expect(warnings).toEqual(['malformed test nudge ignored', 'malformed test nudge ignored']);

  // The subscriber's connection is cut: nudges sent meanwhile are lost, so the state is read again once it is back.
  await publisher.client('KILL', 'ID', String(subscriberId));
  await waitFor(() => resyncs === 2, { what: 'the resync after the reconnect' });

  await nudges.close();
  await nudges.close();
  await publisher.publish(channel, JSON.stringify({ n: 5, from: 'other' }));
  // A round trip on the subscriber's connection: anything published before it has been delivered by now.
  await subscriber.ping();
  expect(applied).toEqual([4]);
});
