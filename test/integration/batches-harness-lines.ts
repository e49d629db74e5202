// Input lines and output parsing for the batch tests. Not a test file.

/**
 * A chat request line whose answer names its own request: it offers one tool, `answer_<n>`, and the mock upstream
 * answers every request that offers tools by calling the tool offered. So an output line carries its request's
 * identity in the answer itself, not only in the custom_id Spillway copied.
 */
export function toolLine(n: number, model = 'gpt-4o-mini', url = '/v1/chat/completions'): string {
  return JSON.stringify({
    custom_id: `req-${n}`,
    method: 'POST',
    url,
    body: { model, messages: [{ role: 'user', content: `question ${n}` }], tools: [{ type: 'function', function: { name: `answer_${n}`, parameters: { type: 'object', properties: {} } } }] },
  });
}

export interface OutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

export function parseJsonl(text: string): OutputLine[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as OutputLine);
}

/** The tool the answer called (`answer_<n>`), from a chat completion body. */
export function calledTool(line: OutputLine): string | undefined {
  const choices = line.response?.body.choices as Array<{ message: { tool_calls?: Array<{ function: { name: string } }> } }> | undefined;
  return choices?.[0]?.message.tool_calls?.[0]?.function.name;
}
