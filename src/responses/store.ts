// Stored responses (`store: true`): each response with its input items and the chain of responses before it, per
// tenant, under the tenant's hash tag and with a TTL; an index from output item ids to their response, for
// `item_reference`. Never reads another tenant's keys: a foreign id is simply not found.
import { z } from 'zod';
import type { Cluster, Redis } from 'ioredis';
import type { RedisKeys } from '../queue/keys.ts';
import type { ResponseItem } from './context.ts';
import { joinText, record } from './request.ts';

/** Longest conversation rebuilt from previous_response_id; older turns fall off (like a context window would). */
export const MAX_CHAIN = 1_000;

const StoredResponseSchema = z.strictObject({
  v: z.literal(1),
  response: z.record(z.string(), z.unknown()),
  /** This request's input items as the client sent them (a string input as one user message). */
  input: z.array(z.record(z.string(), z.unknown())),
  /** Ids of the earlier responses of the conversation, oldest first (this one's previous is last). */
  chain: z.array(z.string()),
  /** Served by a native upstream, which holds it under its id too. */
  native: z.boolean(),
});

export type StoredResponse = z.infer<typeof StoredResponseSchema>;

export class ResponseStore {
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;
  private readonly ttlSeconds: number;

  constructor(options: { redis: Redis | Cluster; keys: RedisKeys; ttlSeconds: number }) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.ttlSeconds = options.ttlSeconds;
  }

  /** One MULTI in the tenant's slot: the response and an index entry per output item. */
  async save(tenant: string, stored: StoredResponse): Promise<void> {
    const keys = this.keys.tenantKeys(tenant);
    const id = String(stored.response.id);
    const multi = this.redis.multi().set(keys.response(id), JSON.stringify(stored), 'EX', this.ttlSeconds);
    for (const item of outputOf(stored.response)) {
      if (typeof item.id === 'string' && item.id !== '') multi.set(keys.responseItem(item.id), id, 'EX', this.ttlSeconds);
    }
    const results = await multi.exec();
    const failed = results?.find(([err]) => err !== null);
    if (failed) throw failed[0];
  }

  async get(tenant: string, id: string): Promise<StoredResponse | undefined> {
    return parse(await this.redis.get(this.keys.tenantKeys(tenant).response(id)));
  }

  /** Replaces the response of a stored entry (a background response finishing, or cancelled); false when gone. */
  async update(tenant: string, id: string, response: Record<string, unknown>): Promise<boolean> {
    const stored = await this.get(tenant, id);
    if (stored === undefined) return false;
    await this.save(tenant, { ...stored, response });
    return true;
  }

  /** Whether it existed. Its item index entries expire on their own (they point to nothing now). */
  async delete(tenant: string, id: string): Promise<boolean> {
    return (await this.redis.del(this.keys.tenantKeys(tenant).response(id))) > 0;
  }

  /**
   * The conversation up to and including `previous`: every turn's input and output items, oldest first, in a form
   * any upstream accepts as input (ids of the broker's own items dropped). Deleted or expired turns are skipped.
   */
  async conversation(tenant: string, previous: StoredResponse): Promise<ResponseItem[]> {
    const keys = this.keys.tenantKeys(tenant);
    const earlier = previous.chain.length === 0 ? [] : await this.redis.mget(...previous.chain.map((id) => keys.response(id)));
    const items: ResponseItem[] = [];
    for (const stored of [...earlier.map(parse), previous]) {
      if (stored === undefined) continue;
      items.push(...stored.input, ...historyOutput(stored.response));
    }
    return items;
  }

  /** The stored output items named by `item_reference`s (by item id); ids not found are absent from the map. */
  async resolveItems(tenant: string, itemIds: readonly string[]): Promise<Map<string, ResponseItem>> {
    const found = new Map<string, ResponseItem>();
    if (itemIds.length === 0) return found;
    const keys = this.keys.tenantKeys(tenant);
    const responseIds = await this.redis.mget(...itemIds.map((id) => keys.responseItem(id)));
    const unique = [...new Set(responseIds.filter((id): id is string => id !== null))];
    if (unique.length === 0) return found;
    const stored = await this.redis.mget(...unique.map((id) => keys.response(id)));
    for (const entry of stored.map(parse)) {
      for (const item of outputOf(entry?.response)) if (typeof item.id === 'string' && itemIds.includes(item.id)) found.set(item.id, item);
    }
    return found;
  }
}

/** A request's input as items: a string is one user message. */
export function inputItemsOf(input: unknown): ResponseItem[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  return Array.isArray(input) ? input.map(record) : [];
}

function outputOf(response: unknown): ResponseItem[] {
  const output = record(response).output;
  return Array.isArray(output) ? output.map(record) : [];
}

/**
 * Output items as input for a later turn: messages as assistant text, function calls as themselves without the
 * item id (an upstream that never saw the broker's ids would refuse them). Reasoning and built-in tool items are left
 * out: they only mean something to the upstream that made them, which is asked by previous_response_id instead.
 */
function historyOutput(response: unknown): ResponseItem[] {
  const items: ResponseItem[] = [];
  for (const item of outputOf(response)) {
    if (item.type === 'message') {
      const content = Array.isArray(item.content) ? item.content.map(record) : [];
      // A refusal is what the assistant said on that turn: carried as its text.
      const text = joinText(content.filter((p) => p.type === 'output_text')) || content.map((p) => (typeof p.refusal === 'string' ? p.refusal : '')).join('');
      if (text !== '') items.push({ role: 'assistant', content: text });
    } else if (item.type === 'function_call') {
      items.push({ type: 'function_call', call_id: item.call_id, name: item.name, arguments: item.arguments });
    }
  }
  return items;
}

function parse(text: string | null): StoredResponse | undefined {
  if (text === null) return undefined;
  try {
    const result = StoredResponseSchema.safeParse(JSON.parse(text));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}
