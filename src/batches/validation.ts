// Checks a batch's input file line by line before any line runs: JSON, custom_id (present, unique), method, url (the
// batch's endpoint), and the body as the endpoint's route would check it (model known, allowed, serving the endpoint).
// Reads the file as a stream; keeps only a digest per custom_id, never the file.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Endpoint, TenantConfig } from '../config/schema.ts';
import type { Router } from '../catalogue/catalogue.ts';
import { parseRequestBody } from '../openai/schemas.ts';
import { ENDPOINT_PATHS } from '../queue/job-object.ts';
import { SpillwayError } from '../errors.ts';
import type { BatchError } from './batch-record.ts';
import { LineTooLongError, readLines } from './input-lines.ts';

/** Errors listed on a failed batch (the rest are not read: the file has to be fixed anyway). */
export const MAX_REPORTED_ERRORS = 100;
const MAX_CUSTOM_ID_CHARS = 512;

/** One line of an input file, as it runs. */
export interface BatchRequest {
  customId: string;
  body: Record<string, unknown>;
  /** The public model name (body.model). */
  model: string;
}

export interface LineContext {
  endpoint: Endpoint;
  tenant: TenantConfig;
  router: Router;
}

/** Parses and checks one line; the problem found first when it is not a valid request. */
export function checkLine(text: string, line: number, ctx: LineContext): BatchRequest | BatchError {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return problem('invalid_json_line', `Line ${line} is not valid JSON.`, null, line);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return problem('invalid_json_line', `Line ${line} is not a JSON object.`, null, line);
  const entry = value as Record<string, unknown>;
  const customId = entry.custom_id;
  if (typeof customId !== 'string' || customId === '') return problem('missing_required_parameter', `Line ${line}: 'custom_id' must be a non-empty string.`, 'custom_id', line);
  if (customId.length > MAX_CUSTOM_ID_CHARS) return problem('invalid_value', `Line ${line}: 'custom_id' is longer than ${MAX_CUSTOM_ID_CHARS} characters.`, 'custom_id', line);
  if (entry.method !== 'POST') return problem('invalid_value', `Line ${line}: 'method' must be "POST".`, 'method', line);
  const path = ENDPOINT_PATHS[ctx.endpoint]!;
  if (entry.url !== path) {
    return problem('invalid_url', `Line ${line}: 'url' is ${JSON.stringify(entry.url ?? null)}, but this batch's endpoint is ${path}: every line must use it.`, 'url', line);
  }
  let parsed;
  try {
    parsed = parseRequestBody(ctx.endpoint, entry.body);
  } catch (err) {
    if (!(err instanceof SpillwayError)) throw err;
    return problem(err.code ?? 'invalid_request', `Line ${line}: ${err.message}`, err.param === null ? 'body' : `body.${err.param}`, line);
  }
  if (parsed.stream) return problem('invalid_value', `Line ${line}: 'body.stream' must be false or absent: a batch returns whole answers.`, 'body.stream', line);
  const model = ctx.router.model(parsed.model);
  if (model === undefined) return problem('model_not_found', `Line ${line}: the model \`${parsed.model}\` does not exist or you do not have access to it.`, 'body.model', line);
  if (ctx.tenant.models !== undefined && !ctx.tenant.models.includes(model.name)) {
    return problem('model_not_allowed', `Line ${line}: your API key does not have access to the model \`${model.name}\`.`, 'body.model', line);
  }
  if (!ctx.router.servesEndpoint(model, ctx.endpoint)) {
    return problem('model_not_supported', `Line ${line}: the model \`${model.name}\` is not supported by the ${path} endpoint.`, 'body.model', line);
  }
  return { customId, body: parsed.body, model: model.name };
}

export type ValidationOutcome =
  | { valid: true; total: number; model: string | undefined }
  | { valid: false; errors: BatchError[] };

/** Validates a whole input file, streaming: every line a valid request, custom_ids unique, 1..maxLines requests. */
export async function validateInput(stream: Readable, ctx: LineContext, maxLines: number): Promise<ValidationOutcome> {
  const errors: BatchError[] = [];
  // A 20-byte digest per custom_id: 50,000 lines cost about 3 MB, whatever the ids' length.
  const seen = new Map<string, number>();
  let total = 0;
  let model: string | undefined;
  try {
    for await (const { line, text } of readLines(stream)) {
      total++;
      if (total > maxLines) {
        errors.push(problem('too_many_lines', `The input file has more than ${maxLines} requests.`, null, line));
        break;
      }
      const checked = checkLine(text, line, ctx);
      if ('code' in checked) {
        errors.push(checked);
      } else {
        const digest = createHash('sha1').update(checked.customId).digest('base64');
        const first = seen.get(digest);
        if (first !== undefined) errors.push(problem('duplicate_custom_id', `Line ${line}: custom_id ${JSON.stringify(checked.customId)} was already used on line ${first}.`, 'custom_id', line));
        else seen.set(digest, line);
        model ??= checked.model;
      }
      if (errors.length >= MAX_REPORTED_ERRORS) break;
    }
  } catch (err) {
    if (!(err instanceof LineTooLongError)) throw err;
    errors.push(problem('line_too_long', err.message, null, err.line));
  } finally {
    stream.destroy();
  }
  if (errors.length > 0) return { valid: false, errors };
  if (total === 0) return { valid: false, errors: [problem('empty_file', 'The input file has no requests.', null, null)] };
  return { valid: true, total, model };
}

function problem(code: string, message: string, param: string | null, line: number | null): BatchError {
  return { code, message, param, line };
}
