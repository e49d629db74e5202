// The worker's side of the response cache: stores the answer a job's call produced (a JSON body, or a stream's data
// payloads kept while it was relayed) and replays a stale entry the way the client asked for it, JSON or stream.
// Never stores an error, a non-200 answer or a stream cut short; never lets a cache failure fail the job.
import type { Logger } from 'pino';
import type { CacheDirective } from '../cache/directive.ts';
import type { CachedAnswer, ResponseCache } from '../cache/response-cache.ts';
import type { CompletionResult } from '../queue/jobs.ts';
import type { JobReplies } from '../queue/reply-publisher.ts';
import type { StreamCapture } from './attempt.ts';

/** Stores a successful answer under the job's cache key (releasing its single flight); a failure is logged, not thrown. */
export async function storeAnswer(cache: ResponseCache, logger: Logger, directive: CacheDirective, result: CompletionResult, capture: StreamCapture | undefined): Promise<void> {
  let answer: CachedAnswer | undefined;
  if (result.kind === 'body' && result.status === 200) answer = { kind: 'body', status: 200, body: result.body };
  else if (result.kind === 'stream' && capture !== undefined && !capture.overflow) answer = { kind: 'stream', status: 200, chunks: capture.chunks };
  try {
    // A store over the entry cap releases the flight by itself, like a release without an answer.
    if (answer === undefined) await cache.release(directive);
    else await cache.store(directive, answer);
  } catch (err) {
    logger.warn({ err: String(err) }, 'storing an answer in the response cache failed');
  }
}

/** Sends a cached answer through the job's replies: a stream as a stream (head, then its chunks), a body as the result. */
export function replayCached(answer: CachedAnswer, replies: JobReplies, headers: Record<string, string>): CompletionResult {
  if (answer.kind === 'body') return { kind: 'body', status: answer.status, body: answer.body, headers };
  replies.head(answer.status, { 'content-type': 'text/event-stream; charset=utf-8', ...headers });
  for (const data of answer.chunks) replies.chunk(data);
  return { kind: 'stream', chunks: replies.chunkCount };
}
