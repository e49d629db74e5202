// Reads the token counts of a finished answer (an OpenAI usage object, or the usage at the end of a JSON body) and
// prices them from the config. Pure: no I/O; a body is never parsed whole (an embeddings answer can be megabytes).
import type { ModelPrice } from '../config/schema.ts';
import type { CompletionResult } from '../queue/jobs.ts';

export interface TokenCounts {
  prompt: number;
  completion: number;
  /** The part of `prompt` the provider served from its prompt cache. */
  cached: number;
}

/** Chat/completions/embeddings (`prompt_tokens`…) and Responses (`input_tokens`…) usage objects alike; undefined when none. */
export function tokensOfUsage(usage: unknown): TokenCounts | undefined {
  if (usage === null || typeof usage !== 'object') return undefined;
  const u = usage as Record<string, unknown>;
  const prompt = count(u['prompt_tokens']) ?? count(u['input_tokens']);
  const completion = count(u['completion_tokens']) ?? count(u['output_tokens']);
  if (prompt === undefined && completion === undefined) return undefined;
  const details = (u['prompt_tokens_details'] ?? u['input_tokens_details']) as Record<string, unknown> | null | undefined;
  const cached = details !== null && typeof details === 'object' ? (count(details['cached_tokens']) ?? 0) : 0;
  return { prompt: prompt ?? 0, completion: completion ?? 0, cached: Math.min(cached, prompt ?? 0) };
}

/**
 * The usage object of a JSON answer's text. OpenAI-shaped answers put it last: only the text from the last `"usage":`
 * (not inside a string: no backslash before it) to its closing brace is parsed.
 */
export function tokensOfBody(body: string): TokenCounts | undefined {
  let at = body.lastIndexOf('"usage"');
  while (at > 0 && body[at - 1] === '\\') at = body.lastIndexOf('"usage"', at - 1);
  if (at === -1) return undefined;
  const open = body.indexOf('{', at);
  // `"usage": null` or a usage far from its key is not a usage object.
  if (open === -1 || !/^"usage"\s*:\s*$/.test(body.slice(at, open))) return undefined;
  const close = matchingBrace(body, open);
  if (close === -1) return undefined;
  try {
    return tokensOfUsage(JSON.parse(body.slice(open, close + 1)));
  } catch {
    return undefined;
  }
}

/** The tokens of a job's result: none for an error, a stream's usage when the client asked for it. */
export function tokensOfResult(result: CompletionResult): TokenCounts | undefined {
  if (result.kind === 'body') return tokensOfBody(result.body);
  if (result.kind === 'stream') return tokensOfUsage(result.usage);
  return undefined;
}

/** US dollars for these tokens at `price` (per million tokens); 0 without a price. */
export function costUsd(tokens: TokenCounts, price: ModelPrice | undefined): number {
  if (price === undefined) return 0;
  const uncached = tokens.prompt - tokens.cached;
  return (uncached * price.input + tokens.cached * (price.cachedInput ?? price.input) + tokens.completion * price.output) / 1_000_000;
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
}

/** Index of the `}` closing the object opened at `open`, skipping strings; -1 when the text ends first. */
function matchingBrace(text: string, open: number): number {
  let depth = 0;
  let inString = false;
  // A usage object is small: give up past a few kilobytes rather than walk a large body.
  const end = Math.min(text.length, open + 8_192);
  for (let i = open; i < end; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{') {
      depth++;
    } else if (c === '}' && --depth === 0) {
      return i;
    }
  }
  return -1;
}
