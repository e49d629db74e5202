// The ingress's one reply channel subscription, plain (SUBSCRIBE, single Redis) or sharded (SSUBSCRIBE on the master
// owning the channel's slot, Redis Cluster), and the events that mean replies may have been lost meanwhile. Never
// interprets a message: the reply bus does.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type Cluster } from 'ioredis';
import { keySlot } from './key-slot.ts';

export interface ReplySubscriptionOptions {
  /** Plain: the subscriber connection. Sharded: a Cluster, used to find the slot's master and as the source of its credentials. */
  subscriber: Redis | Cluster;
  channel: string;
  onMessage(raw: string): void;
  /** The subscription is gone: replies published from now on are lost until `onBack`. */
  onLost(): void;
  /** Replies may have been lost (a reconnect, a re-subscription, a new master somewhere): time to reconcile. */
  onBack(): void;
}

export interface ReplySubscription {
  /** Subscribes (again); resolves once Redis has confirmed it. Rejects while it cannot be (the bus retries). */
  confirm(): Promise<void>;
  /** Whether the subscription's connection can carry commands now. */
  readonly usable: boolean;
  close(): Promise<void>;
}

/** SUBSCRIBE on one connection, which ioredis reconnects and re-subscribes by itself. */
export function createPlainSubscription(options: ReplySubscriptionOptions & { subscriber: Redis }): ReplySubscription {
  const { subscriber, channel } = options;
  let started = false;
  const onMessage = (from: string, raw: string) => {
    if (from === channel) options.onMessage(raw);
  };
  // The first 'ready' is the initial connect; later ones are reconnects.
  const onBack = () => {
    if (started) options.onBack();
  };
  const onLost = () => {
    if (started) options.onLost();
  };
  subscriber.on('message', onMessage);
  subscriber.on('ready', onBack);
  subscriber.on('close', onLost);
  return {
    confirm: async () => {
      await subscriber.subscribe(channel);
      started = true;
    },
    get usable() {
      return subscriber.status === 'ready';
    },
    close: async () => {
      subscriber.off('message', onMessage);
      subscriber.off('ready', onBack);
      subscriber.off('close', onLost);
      await subscriber.unsubscribe(channel).catch(() => undefined);
    },
  };
}

/**
 * SSUBSCRIBE on a connection of its own to the master that owns the channel's slot (asked with CLUSTER SLOTS). When that
 * connection breaks, or the server drops the subscription (a failover demotes its master: Redis sends `sunsubscribe`,
 * or answers MOVED), it finds the slot's master again and re-subscribes there. Not ioredis's `shardedSubscribers`: its
 * subscriber group removes its listeners before the server's `sunsubscribe` arrives, which crashes the process.
 * A change of masters anywhere in the cluster is reported too (a job added to a master that died before its replica had
 * it is gone, and no reply will ever say so).
 */
export function createShardedSubscription(options: ReplySubscriptionOptions & { subscriber: Cluster }): ReplySubscription {
  const { subscriber: cluster, channel } = options;
  const slot = keySlot(channel);
  let connection: Redis | undefined;
  let subscribed = false;
  let establishing: Promise<void> | undefined;
  let started = false;
  let closed = false;

  /** The current connection lost its subscription: report it once and find the slot's master again. */
  const drop = (from: Redis) => {
    if (from !== connection || closed) return;
    connection = undefined;
    from.disconnect();
    if (subscribed) {
      subscribed = false;
      options.onLost();
    }
    void establish();
  };
  const connect = async (): Promise<Redis> => {
    const [host, port] = await masterOf(cluster, slot);
    const next = new Redis({
      ...cluster.options.redisOptions,
      host,
      port,
      connectionName: 'spillway-ingress-replies',
      // This module reconnects (to whichever node then owns the slot), never ioredis.
      retryStrategy: () => null,
      lazyConnect: true,
    });
    next.on('smessage', (from: string, raw: string) => {
      if (from === channel && next === connection) options.onMessage(raw);
    });
    // A connection error, or the server's own `sunsubscribe` (ioredis reports it as an error: no command awaited it).
    next.on('error', () => drop(next));
    next.on('close', () => drop(next));
    connection = next;
    await next.connect();
    await next.ssubscribe(channel);
    return next;
  };
  const establish = (): Promise<void> => {
    establishing ??= (async () => {
      for (let attempt = 0; !closed; attempt++) {
        try {
          const next = await connect();
          if (next !== connection) continue; // dropped while subscribing
          subscribed = true;
          if (started) options.onBack();
          return;
        } catch {
          if (connection !== undefined) {
            connection.disconnect();
            connection = undefined;
          }
          await sleep(Math.min(100 * 2 ** attempt, 2_000), undefined, { ref: false });
        }
      }
    })().finally(() => {
      establishing = undefined;
    });
    return establishing;
  };

  let masters = mastersOf(cluster);
  const onRefresh = () => {
    const now = mastersOf(cluster);
    if (now === masters) return;
    masters = now;
    if (started) options.onBack();
  };
  cluster.on('refresh', onRefresh);

  return {
    confirm: async () => {
      if (!subscribed || connection === undefined) await establish();
      const current = connection;
      if (current === undefined || !subscribed) throw new Error('reply channel not subscribed');
      try {
        await current.ssubscribe(channel);
      } catch (err) {
        drop(current); // MOVED: the slot has a new master
        throw err;
      }
      started = true;
    },
    get usable() {
      return subscribed && connection?.status === 'ready';
    },
    close: async () => {
      closed = true;
      cluster.off('refresh', onRefresh);
      const last = connection;
      connection = undefined;
      if (last !== undefined) {
        await last.sunsubscribe(channel).catch(() => undefined);
        last.disconnect();
      }
    },
  };
}

/** The host and port of the master serving `slot`, from CLUSTER SLOTS (asked of any node the client knows). */
async function masterOf(cluster: Cluster, slot: number): Promise<[string, number]> {
  const ranges = await cluster.cluster('SLOTS');
  const range = ranges.find(([from, to]) => slot >= from && slot <= to);
  const master = range?.[2];
  if (master === undefined) throw new Error(`no master serves slot ${slot}`);
  return [master[0], Number(master[1])];
}

/** Which nodes serve as masters, as the cluster client last learnt: changes when a replica is promoted. */
function mastersOf(cluster: Cluster): string {
  return cluster
    .nodes('master')
    .map((node) => `${node.options.host}:${node.options.port}`)
    .sort()
    .join(',');
}
