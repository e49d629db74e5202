// Tool use in the mock: when a request offers tools (and does not forbid them, nor already carry the tool's answer),
// the mock calls one with arguments made up from its JSON schema. Pure and deterministic, shared by every format.

type Json = Record<string, unknown>;

/** The one tool call the mock makes: the function named by tool_choice, else the first tool offered. */
export interface ToolCall {
  readonly id: string;
  readonly name: string;
  /** The arguments as a JSON object text, e.g. {"city":"tok1"}. */
  readonly arguments: string;
}

/** OpenAI shapes: `tools[].function.{name,parameters}`, `tool_choice` none | auto | required | {function:{name}}. */
export function openAIToolCall(body: Json, id: string): ToolCall | undefined {
  const tools = list(body['tools'])
    .map((t) => record(record(t)['function']))
    .filter((f) => typeof f['name'] === 'string');
  const messages = list(body['messages']);
  if (tools.length === 0 || body['tool_choice'] === 'none' || record(messages.at(-1))['role'] === 'tool') return undefined;
  const wanted = record(record(body['tool_choice'])['function'])['name'];
  const tool = tools.find((f) => f['name'] === wanted) ?? tools[0]!;
  return { id, name: tool['name'] as string, arguments: JSON.stringify(argumentsFor(tool['parameters'])) };
}

/** Anthropic shapes: `tools[].{name,input_schema}`, `tool_choice` {type: auto | any | tool | none, name}. */
export function anthropicToolCall(body: Json, id: string): ToolCall | undefined {
  const tools = list(body['tools'])
    .map(record)
    .filter((t) => typeof t['name'] === 'string');
  const choice = record(body['tool_choice']);
  const last = list(record(list(body['messages']).at(-1))['content']);
  const answered = last.some((block) => record(block)['type'] === 'tool_result');
  if (tools.length === 0 || choice['type'] === 'none' || answered) return undefined;
  const tool = tools.find((t) => choice['type'] === 'tool' && t['name'] === choice['name']) ?? tools[0]!;
  return { id, name: tool['name'] as string, arguments: JSON.stringify(argumentsFor(tool['input_schema'])) };
}

/** The arguments text in three pieces, as providers stream them: the pieces concatenate to the whole. */
export function argumentPieces(text: string): string[] {
  const third = Math.ceil(text.length / 3);
  return [text.slice(0, third), text.slice(third, 2 * third), text.slice(2 * third)].filter((piece) => piece !== '');
}

/** A value for each declared property: "tok1" for strings, 1 for numbers, true for booleans, empty for the rest. */
function argumentsFor(schema: unknown): Json {
  const out: Json = {};
  for (const [key, raw] of Object.entries(record(record(schema)['properties']))) {
    const type = record(raw)['type'];
    out[key] = type === 'string' ? 'tok1' : type === 'number' || type === 'integer' ? 1 : type === 'boolean' ? true : type === 'array' ? [] : {};
  }
  return out;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function record(value: unknown): Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}
