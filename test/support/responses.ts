// Shared by the Responses API tests: OpenAI's OpenAPI description read in place (absent: conformance checks are
// skipped and the run says so), and a parser for the Responses SSE framing (`event:` + `data:`, no [DONE]).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadOpenApi, validateComponent, type OpenApiDoc } from '../integration/support-openapi.ts';

export const SPEC = new URL('../../../shared/openai-openapi/openapi.yaml', import.meta.url);
export const SPEC_PRESENT = existsSync(SPEC);
if (!SPEC_PRESENT) console.warn(`Responses conformance checks skipped: ${fileURLToPath(SPEC)} is absent`);

let doc: OpenApiDoc | undefined;

/** Problems of `value` against the named component schema; [] when the description is absent (checks skipped). */
export function conform(name: string, value: unknown): string[] {
  if (!SPEC_PRESENT) return [];
  doc ??= loadOpenApi(SPEC);
  return validateComponent(doc, name, value);
}

export interface SseEvent {
  /** The `event:` line's name; undefined when the block had none. */
  event: string | undefined;
  data: Record<string, unknown>;
}

export interface ParsedSse {
  events: SseEvent[];
  /** Whether a `data: [DONE]` came (a Responses stream never sends one). */
  done: boolean;
  /** Comment lines (`: keep-alive`), ignored by clients. */
  comments: number;
}

export function parseSse(text: string): ParsedSse {
  const events: SseEvent[] = [];
  let done = false;
  let comments = 0;
  for (const block of text.split('\n\n')) {
    if (block.trim() === '') continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) comments++;
      else if (line.startsWith('event: ')) event = line.slice('event: '.length);
      else if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
    }
    if (data.length === 0) continue;
    if (data.join('\n') === '[DONE]') done = true;
    else events.push({ event, data: JSON.parse(data.join('\n')) as Record<string, unknown> });
  }
  return { events, done, comments };
}

/** Every event names itself by its type, conforms to ResponseStreamEvent, and sequence numbers run 0, 1, 2… */
export function streamProblems(parsed: ParsedSse): string[] {
  const problems: string[] = [];
  if (parsed.done) problems.push('a Responses stream must not end with data: [DONE]');
  parsed.events.forEach(({ event, data }, i) => {
    if (event !== data.type) problems.push(`event ${i}: SSE name ${String(event)} is not its type ${String(data.type)}`);
    if (data.sequence_number !== i) problems.push(`event ${i}: sequence_number ${String(data.sequence_number)}`);
    problems.push(...conform('ResponseStreamEvent', data).map((p) => `event ${i} (${String(data.type)}): ${p}`));
  });
  return problems;
}
