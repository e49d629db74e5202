// GET /v1/responses/{id}/input_items: a stored request's input items as the API lists them (each with an id and a
// status, messages with typed content parts), paginated the way OpenAI's lists are. Pure.
import type { ResponseItem } from './context.ts';
import { record } from './request.ts';

type Json = Record<string, unknown>;

export interface ListOptions {
  /** 1 to 100; default 20. */
  limit: number;
  /** OpenAI's default is `desc`: the newest item first. */
  order: 'asc' | 'desc';
  /** An item id: list the items after it (in the chosen order). */
  after: string | undefined;
}

/** A stable id for an input item that has none: the same on every listing. */
function inputItemId(prefix: string, responseId: string, index: number): string {
  return `${prefix}_${responseId.replace(/^resp_/, '')}i${index.toString(16)}`;
}

export function toItemResource(item: ResponseItem, responseId: string, index: number): Json {
  const type = item.type ?? 'message';
  if (type === 'message') {
    const id = typeof item.id === 'string' ? item.id : inputItemId('msg', responseId, index);
    if (item.role === 'assistant') {
      const parts = typeof item.content === 'string' ? [{ type: 'output_text', text: item.content }] : Array.isArray(item.content) ? item.content.map(record) : [];
      const content = parts.map((p) => (p.type === 'output_text' || p.type === 'input_text' ? { annotations: [], logprobs: [], ...p, type: 'output_text' } : p));
      return { id, type: 'message', role: 'assistant', status: 'completed', content };
    }
    const content = typeof item.content === 'string' ? [{ type: 'input_text', text: item.content }] : item.content;
    return { id, type: 'message', role: item.role, status: 'completed', content };
  }
  if (type === 'function_call') return { ...item, id: typeof item.id === 'string' ? item.id : inputItemId('fc', responseId, index), status: item.status ?? 'completed' };
  if (type === 'function_call_output') return { ...item, id: typeof item.id === 'string' ? item.id : inputItemId('fco', responseId, index), status: item.status ?? 'completed' };
  return typeof item.id === 'string' ? item : { ...item, id: inputItemId('item', responseId, index) };
}

/** A ResponseItemList page. `undefined` when `after` names no item of this response. */
export function listInputItems(items: readonly ResponseItem[], responseId: string, options: ListOptions): Json | undefined {
  const resources = items.map((item, i) => toItemResource(item, responseId, i));
  if (options.order === 'desc') resources.reverse();
  let start = 0;
  if (options.after !== undefined) {
    const at = resources.findIndex((r) => r.id === options.after);
    if (at === -1) return undefined;
    start = at + 1;
  }
  const data = resources.slice(start, start + options.limit);
  return {
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: start + data.length < resources.length,
  };
}
