// What Azure OpenAI adds to OpenAI's answers, as the mock speaks it: content-filter verdicts in the JSON answer and
// in a first stream chunk of their own (no choices, empty id and model), and the content_filter error of a refused prompt.
// Pure; the OpenAI bodies themselves come from bodies.ts.

const SAFE = { filtered: false, severity: 'safe' };
const VERDICTS = { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE };
const PROMPT_FILTER_RESULTS = [{ prompt_index: 0, content_filter_results: VERDICTS }];

/** The OpenAI answer with Azure's verdicts on the prompt and on each choice. */
export function withFilterResults(json: string): string {
  const body = JSON.parse(json) as { choices?: Array<Record<string, unknown>> };
  for (const choice of body.choices ?? []) choice['content_filter_results'] = VERDICTS;
  return JSON.stringify({ ...body, prompt_filter_results: PROMPT_FILTER_RESULTS });
}

/** Azure's stream: first a chunk that only carries the prompt's verdicts, then OpenAI's chunks. */
export function* withFilterChunk(frames: Iterable<string>): Generator<string, void, undefined> {
  yield `data: ${JSON.stringify({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: PROMPT_FILTER_RESULTS })}\n\n`;
  yield* frames;
}

/** The 400 Azure answers when its content filter refuses a prompt (x-mock-fault: content-filter). */
export function contentFilterErrorBody(): string {
  return JSON.stringify({
    error: {
      message:
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
      type: null,
      param: 'prompt',
      code: 'content_filter',
      status: 400,
      innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { ...VERDICTS, violence: { filtered: true, severity: 'high' } } },
    },
  });
}
