// The Responses bridge's JSON side, pure: request validation (OpenAI-shaped 400s naming the parameter), a Responses
// body as a chat body (instructions, input items, the earlier turns, tools, tool_choice, text.format), a chat answer
// as a Response, the native body with the conversation inlined, and input items as the API lists them. Every body
// the bridge makes for a client is validated against OpenAI's OpenAPI description (skipped, saying so, when absent).
import { describe, expect, it } from 'vitest';
import { parseResponsesRequest } from '../../src/openai/responses-schemas.ts';
import { SpillwayError } from '../../src/errors.ts';
import { isRefusal, toChatRequest } from '../../src/responses/request.ts';
import { responseFromChatCompletion } from '../../src/responses/response.ts';
import { nativeRequestBody } from '../../src/responses/native.ts';
import { listInputItems } from '../../src/responses/input-items.ts';
import { inputItemsOf } from '../../src/responses/store.ts';
import { conform } from '../support/responses.ts';


function rejection(body: unknown): SpillwayError {
  try {
    parseResponsesRequest(body);
  } catch (err) {
    expect(err).toBeInstanceOf(SpillwayError);
    return err as SpillwayError;
  }
  throw new Error('expected the body to be refused');
}

describe('request validation', () => {
  it('keeps the client object and reads model, stream, store (default true), background and previous_response_id', () => {
    const body = { model: 'm', input: 'hi', some_future_field: { a: 1 }, previous_response_id: 'resp_1' };
    const parsed = parseResponsesRequest(body);
    expect(parsed.body).toBe(body);
    expect(parsed).toMatchObject({ model: 'm', stream: false, store: true, background: false, previousResponseId: 'resp_1' });
    expect(parseResponsesRequest({ model: 'm', input: [], store: false, stream: true }).store).toBe(false);
  });

  it('a body without input is a 400 naming input as missing', () => {
    const err = rejection({ model: 'm' });
    expect(err).toMatchObject({ statusCode: 400, type: 'invalid_request_error', param: 'input', code: 'missing_required_parameter' });
  });

  it('wrong types and values are 400s naming the parameter down to the item', () => {
    expect(rejection({ model: 'm', input: 42 })).toMatchObject({ statusCode: 400, param: 'input', code: 'invalid_value' });
    expect(rejection({ model: 'm', input: [{ role: 'robot', content: 'x' }] })).toMatchObject({ param: 'input[0].role', code: 'invalid_value' });
    expect(rejection({ model: 'm', input: [{ type: 'function_call_output', output: 'x' }] })).toMatchObject({ param: 'input[0].call_id', code: 'missing_required_parameter' });
    expect(rejection({ model: 'm', input: 'x', tools: [{ type: 'function' }] })).toMatchObject({ param: 'tools[0].name' });
    expect(rejection({ model: 'm', input: 'x', max_output_tokens: 8 })).toMatchObject({ param: 'max_output_tokens' });
    expect(rejection({ model: 'm', input: 'x', text: { format: { type: 'json_schema', name: 'n' } } })).toMatchObject({ param: 'text.format.schema' });
    expect(rejection({ model: '', input: 'x' })).toMatchObject({ param: 'model' });
    expect(rejection([1, 2])).toMatchObject({ statusCode: 400, param: null });
  });

  it('item types the broker does not read pass untouched', () => {
    expect(() => parseResponsesRequest({ model: 'm', input: [{ type: 'reasoning', id: 'rs_1', summary: [] }, { type: 'web_search_call', id: 'ws' }] })).not.toThrow();
  });
});

describe('a Responses body as a chat body', () => {
  it('instructions become the system message, a string input the user message, settings carry over', () => {
    const chat = toChatRequest({ model: 'm', instructions: 'Be brief.', input: 'hello', temperature: 0.3, max_output_tokens: 50, metadata: { a: 'b' }, store: true, stream: true });
    expect(chat).toEqual({
      model: 'm',
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }],
      temperature: 0.3,
      max_completion_tokens: 50,
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('earlier turns come first, then input items: parts, developer as system, function calls joined to their assistant message, outputs as tool messages', () => {
    const history = [{ role: 'user', content: 'turn one' }, { role: 'assistant', content: 'answer one' }];
    const chat = toChatRequest(
      {
        model: 'm',
        input: [
          { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'rules' }] },
          { role: 'user', content: [{ type: 'input_text', text: 'look: ' }, { type: 'input_image', image_url: 'https://x/i.png', detail: 'low' }] },
          { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{"a":1}' },
          { type: 'function_call', call_id: 'c2', name: 'g', arguments: '{}' },
          { type: 'function_call_output', call_id: 'c1', output: 'one' },
          { type: 'reasoning', id: 'rs_1', summary: [] },
        ],
      },
      history,
    );
    expect(isRefusal(chat)).toBe(false);
    expect((chat as { messages: unknown[] }).messages).toEqual([
      { role: 'user', content: 'turn one' },
      { role: 'assistant', content: 'answer one' },
      { role: 'system', content: 'rules' },
      { role: 'user', content: [{ type: 'text', text: 'look: ' }, { type: 'image_url', image_url: { url: 'https://x/i.png', detail: 'low' } }] },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
          { id: 'c2', type: 'function', function: { name: 'g', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'one' },
    ]);
  });

  it('function tools, tool_choice and text.format translate; parallel_tool_calls only with tools', () => {
    const parameters = { type: 'object', properties: { city: { type: 'string' } } };
    const chat = toChatRequest({
      model: 'm',
      input: 'x',
      tools: [{ type: 'function', name: 'weather', description: 'd', parameters, strict: true }],
      tool_choice: { type: 'function', name: 'weather' },
      parallel_tool_calls: false,
      text: { format: { type: 'json_schema', name: 'out', schema: { type: 'object' }, strict: true } },
    }) as Record<string, unknown>;
    expect(chat.tools).toEqual([{ type: 'function', function: { name: 'weather', description: 'd', parameters, strict: true } }]);
    expect(chat.tool_choice).toEqual({ type: 'function', function: { name: 'weather' } });
    expect(chat.parallel_tool_calls).toBe(false);
    expect(chat.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'out', schema: { type: 'object' }, strict: true } });
    expect((toChatRequest({ model: 'm', input: 'x', parallel_tool_calls: true }) as Record<string, unknown>).parallel_tool_calls).toBeUndefined();
    expect((toChatRequest({ model: 'm', input: 'x', text: { format: { type: 'json_object' } } }) as Record<string, unknown>).response_format).toEqual({ type: 'json_object' });
  });

  it('what chat cannot express is refused naming the parameter, never dropped', () => {
    expect(toChatRequest({ model: 'm', input: 'x', tools: [{ type: 'web_search' }] })).toMatchObject({ refused: true, param: 'tools[0].type' });
    expect(toChatRequest({ model: 'm', input: [{ type: 'computer_call_output', call_id: 'c' }] })).toMatchObject({ refused: true, param: 'input[0].type' });
    expect(toChatRequest({ model: 'm', input: [{ type: 'item_reference', id: 'msg_x' }] })).toMatchObject({ refused: true, param: 'input[0].id' });
    expect(toChatRequest({ model: 'm', input: 'x', tool_choice: { type: 'file_search' } })).toMatchObject({ refused: true, param: 'tool_choice.type' });
  });
});

describe('a chat answer as a Response', () => {
  const chat = (message: Record<string, unknown>, finish_reason: string) => ({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    model: 'upstream-model',
    choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason }],
    usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10, completion_tokens_details: { reasoning_tokens: 1 } },
  });
  const body = { model: 'gpt-4o-mini', input: 'hi', instructions: 'Be brief.', metadata: { k: 'v' }, temperature: 0.5 };

  it('text becomes one completed message with usage, the request echoed, and conforms to Response', () => {
    const response = responseFromChatCompletion(chat({ content: 'tok1 tok2' }, 'stop'), body, 'resp_abc', 100, 101);
    expect(response).toMatchObject({
      id: 'resp_abc',
      object: 'response',
      status: 'completed',
      created_at: 100,
      completed_at: 101,
      model: 'upstream-model',
      instructions: 'Be brief.',
      metadata: { k: 'v' },
      temperature: 0.5,
      output: [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'tok1 tok2', annotations: [] }] }],
      usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10, output_tokens_details: { reasoning_tokens: 1 } },
    });
    expect(conform('Response', response)).toEqual([]);
  });

  it('tool calls become function_call items and conform', () => {
    const response = responseFromChatCompletion(
      chat({ content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"tok1"}' } }] }, 'tool_calls'),
      body,
      'resp_abc',
      100,
      101,
    );
    expect(response.output).toEqual([{ id: expect.stringMatching(/^fc_/), type: 'function_call', status: 'completed', call_id: 'call_1', name: 'weather', arguments: '{"city":"tok1"}' }]);
    expect(conform('Response', response)).toEqual([]);
  });

  it('a length stop is incomplete with incomplete_details, and conforms', () => {
    const response = responseFromChatCompletion(chat({ content: 'tok1' }, 'length'), body, 'resp_abc', 100, 101);
    expect(response).toMatchObject({ status: 'incomplete', completed_at: null, incomplete_details: { reason: 'max_output_tokens' } });
    expect(conform('Response', response)).toEqual([]);
  });
});

describe('the native body', () => {
  const items = [{ role: 'user', content: 'one' }, { role: 'assistant', content: 'two' }];

  it('is the client body when the previous response is held by the upstream (or there is none)', () => {
    const body = { model: 'm', input: 'three', previous_response_id: 'resp_up' };
    expect(nativeRequestBody(body, { id: 'resp_x', createdAt: 1, previous: { id: 'resp_up', native: true, items } })).toBe(body);
    expect(nativeRequestBody(body, undefined)).toBe(body);
  });

  it('inlines the conversation and drops previous_response_id when the previous response was bridged', () => {
    const body = { model: 'm', input: 'three', previous_response_id: 'resp_br' };
    expect(nativeRequestBody(body, { id: 'resp_x', createdAt: 1, previous: { id: 'resp_br', native: false, items } })).toEqual({
      model: 'm',
      input: [...items, { role: 'user', content: 'three' }],
    });
  });
});

describe('input items', () => {
  const input = inputItemsOf([
    { role: 'user', content: 'hello' },
    { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'hi' }] },
    { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' },
    { type: 'function_call_output', call_id: 'c1', output: 'ok' },
  ]);

  it('are listed newest first by default with stable ids, and the page conforms to ResponseItemList', () => {
    const page = listInputItems(input, 'resp_abc', { limit: 20, order: 'desc', after: undefined })!;
    const data = page.data as Array<Record<string, unknown>>;
    expect(data.map((item) => item.type)).toEqual(['function_call_output', 'function_call', 'message', 'message']);
    expect(listInputItems(input, 'resp_abc', { limit: 20, order: 'desc', after: undefined })).toEqual(page);
    expect(page).toMatchObject({ object: 'list', has_more: false, first_id: data[0]!.id, last_id: data[3]!.id });
    expect(conform('ResponseItemList', page)).toEqual([]);
  });

  it('page with limit and after, in either order', () => {
    const first = listInputItems(input, 'resp_abc', { limit: 2, order: 'asc', after: undefined })!;
    expect(first.has_more).toBe(true);
    const second = listInputItems(input, 'resp_abc', { limit: 2, order: 'asc', after: first.last_id as string })!;
    expect((second.data as Array<Record<string, unknown>>).map((item) => item.type)).toEqual(['function_call', 'function_call_output']);
    expect(second.has_more).toBe(false);
    expect(listInputItems(input, 'resp_abc', { limit: 2, order: 'asc', after: 'nope' })).toBeUndefined();
  });

  it('a string input is one user message', () => {
    expect(inputItemsOf('hi')).toEqual([{ role: 'user', content: 'hi' }]);
  });
});
