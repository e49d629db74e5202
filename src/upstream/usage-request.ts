// Token budgets need the upstream's usage, which a stream reports only when asked (stream_options.include_usage).
// When the tenant's budget wants it and the client did not ask, the worker asks on its behalf and keeps the extra
// usage chunk from the client: the client's stream stays exactly what it asked for. Never changes the caller's body.
import type { Endpoint } from '../config/schema.ts';

/** Bodies whose include_usage the broker added (compared by identity: the object the call is made with). */
const forced = new WeakSet<object>();

/** The body to call with: the client's own when it already asks for usage, else a copy that does. */
export function withUsageRequested(endpoint: Endpoint, body: Record<string, unknown>): Record<string, unknown> {
  if (endpoint !== 'chat.completions' && endpoint !== 'completions') return body;
  const options = body.stream_options;
  const asked = options !== null && typeof options === 'object' && (options as { include_usage?: unknown }).include_usage === true;
  if (asked) return body;
  const copy = { ...body, stream_options: { ...(options !== null && typeof options === 'object' ? options : {}), include_usage: true } };
  forced.add(copy);
  return copy;
}

/** Whether this SSE payload is the usage-only chunk the broker asked for and the client did not (choices empty). */
export function isForcedUsageChunk(body: object, data: string): boolean {
  return forced.has(body) && data.includes('"usage":{') && data.includes('"choices":[]');
}
