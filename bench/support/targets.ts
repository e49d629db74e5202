// What a scenario sends and where: the same chat request, direct to the mock upstream or through Spillway.
// The two paths differ only in origin, the model name Spillway routes on and Spillway's API key.

export type TargetName = 'direct' | 'spillway';

export interface Target {
  name: TargetName;
  /** http://127.0.0.1:PORT */
  origin: string;
  /** The public model name (Spillway routes on it; the mock echoes it). */
  model: string;
  headers: Readonly<Record<string, string>>;
}

/** Mock upstream behaviour, sent as x-mock-* headers (Spillway forwards them: `server.forwardHeaders`). */
export interface MockBehaviour {
  latencyMs?: number;
  chunks?: number;
  chunkDelayMs?: number;
}

export interface PreparedRequest {
  origin: string;
  path: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
}

export const CHAT_PATH = '/v1/chat/completions';

export function chatRequest(target: Target, options: { stream: boolean; mock: MockBehaviour }): PreparedRequest {
  const headers: Record<string, string> = { ...target.headers, 'content-type': 'application/json' };
  if (options.mock.latencyMs !== undefined) headers['x-mock-latency-ms'] = String(options.mock.latencyMs);
  if (options.mock.chunks !== undefined) headers['x-mock-chunks'] = String(options.mock.chunks);
  if (options.mock.chunkDelayMs !== undefined) headers['x-mock-chunk-delay-ms'] = String(options.mock.chunkDelayMs);
  const body = {
    model: target.model,
    messages: [
      { role: 'system', content: 'You are a terse assistant.' },
      { role: 'user', content: 'Say hello to the benchmark in a few words.' },
    ],
    ...(options.stream ? { stream: true } : {}),
  };
  return { origin: target.origin, path: CHAT_PATH, method: 'POST', headers, body: JSON.stringify(body) };
}
