// Server-sent events framing for OpenAI-style streams: `data: <json>\n\n`, ended by `data: [DONE]`.
// Never buffers: each call returns the bytes to write now.

export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  // nginx: do not buffer this response (first token latency).
  'x-accel-buffering': 'no',
} as const;

export const SSE_DONE = 'data: [DONE]\n\n';

/** One event; `data` is a single line (OpenAI's JSON payloads never contain a raw newline). */
export function sseData(data: string): string {
  return data.includes('\n') ? `${data.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n` : `data: ${data}\n\n`;
}

/** An SSE comment line: clients ignore it; proxies and load balancers see traffic on an idle stream. */
export const SSE_KEEP_ALIVE = ': keep-alive\n\n';
