// The output and error files' line format, exactly as OpenAI writes it: `{id, custom_id, response: {status_code,
// request_id, body}, error}`. Answers go to the output file, failures to the error file. Pure; never re-serialises an
// upstream body that is valid JSON (its bytes go into the line as they came).
import { createHash } from 'node:crypto';
import type { CompletionResult } from '../queue/jobs.ts';
import type { LineUsage } from './batch-store.ts';

export interface LineOutput {
  /** `o`: the output file; `e`: the error file. */
  kind: 'o' | 'e';
  /** The line, JSON, without its newline. */
  text: string;
  usage: LineUsage;
}

const NO_USAGE: LineUsage = { input: 0, cached: 0, output: 0, reasoning: 0, total: 0 };

/** `batch_req_` and 32 hex digits, the same for every run of one line. */
export function lineRequestId(batchId: string, line: number): string {
  return `batch_req_${createHash('sha256').update(`${batchId}\n${line}`).digest('hex').slice(0, 32)}`;
}

/** The line for a request that ran: the upstream's answer (output file) or its error (error file). */
export function lineForResult(batchId: string, line: number, customId: string, requestId: string, result: CompletionResult): LineOutput {
  const head = `{"id":${JSON.stringify(lineRequestId(batchId, line))},"custom_id":${JSON.stringify(customId)},"response":{"status_code":`;
  if (result.kind === 'body') {
    let parsed: unknown;
    let body = result.body;
    try {
      parsed = JSON.parse(result.body);
    } catch {
      // Not JSON (a provider's quirk): carried as a string, so the line stays valid JSON.
      body = JSON.stringify(result.body);
    }
    const ok = result.status >= 200 && result.status < 300;
    return {
      kind: ok ? 'o' : 'e',
      text: `${head}${result.status},"request_id":${JSON.stringify(requestId)},"body":${body}},"error":null}`,
      usage: ok ? usageOf(parsed) : NO_USAGE,
    };
  }
  if (result.kind === 'stream') {
    // Validation refuses stream: true; a stream reaching here has no body to write.
    return lineForError(batchId, line, customId, 'stream_not_supported', 'A batch request cannot stream its answer.');
  }
  const body = JSON.stringify({ error: result.error });
  return { kind: 'e', text: `${head}${result.status},"request_id":${JSON.stringify(requestId)},"body":${body}},"error":null}`, usage: NO_USAGE };
}

/** The error file's line for a request that never ran (the batch expired before it): `response` null. */
export function lineForError(batchId: string, line: number, customId: string, code: string, message: string): LineOutput {
  const text = JSON.stringify({ id: lineRequestId(batchId, line), custom_id: customId, response: null, error: { code, message } });
  return { kind: 'e', text, usage: NO_USAGE };
}

/** Token counts from an answer's `usage`, in the chat/completions/embeddings shape or the Responses shape. */
export function usageOf(body: unknown): LineUsage {
  const usage = (body as { usage?: unknown } | null)?.usage;
  if (usage === null || typeof usage !== 'object') return NO_USAGE;
  const u = usage as Record<string, unknown>;
  const n = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0);
  const detail = (key: string, field: string) => n((u[key] as Record<string, unknown> | undefined)?.[field]);
  const input = n(u.input_tokens) || n(u.prompt_tokens);
  const output = n(u.output_tokens) || n(u.completion_tokens);
  return {
    input,
    cached: detail('input_tokens_details', 'cached_tokens') || detail('prompt_tokens_details', 'cached_tokens'),
    output,
    reasoning: detail('output_tokens_details', 'reasoning_tokens') || detail('completion_tokens_details', 'reasoning_tokens'),
    total: n(u.total_tokens) || input + output,
  };
}
