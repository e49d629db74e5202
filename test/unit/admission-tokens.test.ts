// Token estimation before the call: the prompt counted with o200k_base (chat framing, content parts, completions
// prompts, embeddings inputs), plus the answer budget; huge inputs are extrapolated past a fixed number of characters.
import { describe, expect, it } from 'vitest';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { estimateTokens, EXACT_CHARS, IMAGE_PART_TOKENS } from '../../src/admission/tokens.ts';

const defaults = { completionTokens: 100 };
const count = (text: string) => countTokens(text, { disallowedSpecial: new Set() });
/** Per message: 3 framing tokens + role + content; 3 more prime the reply. */
const chatPrompt = (...messages: Array<[string, string]>) => messages.reduce((sum, [role, content]) => sum + 3 + count(role) + count(content), 3);

describe('estimateTokens', () => {
  it('chat: counts every message with OpenAI framing, plus the default answer budget', () => {
    const body = { model: 'm', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name three rivers in Europe.' }] };
    expect(estimateTokens('chat.completions', body, defaults)).toBe(chatPrompt(['system', 'You are terse.'], ['user', 'Name three rivers in Europe.']) + 100);
  });

  it('chat: max_completion_tokens wins over max_tokens, which wins over the default; n multiplies the answer', () => {
    const messages = [{ role: 'user', content: 'hi' }];
    const prompt = chatPrompt(['user', 'hi']);
    expect(estimateTokens('chat.completions', { messages, max_tokens: 40 }, defaults)).toBe(prompt + 40);
    expect(estimateTokens('chat.completions', { messages, max_tokens: 40, max_completion_tokens: 7 }, defaults)).toBe(prompt + 7);
    expect(estimateTokens('chat.completions', { messages, max_tokens: 40, n: 3 }, defaults)).toBe(prompt + 120);
  });

  it("chat: text content parts are counted, images count a flat amount each, a name costs one more token", () => {
    const body = {
      messages: [
        {
          role: 'user',
          name: 'ada',
          content: [
            { type: 'text', text: 'What is in this picture?' },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
          ],
        },
      ],
    };
    const expected = 3 + count('user') + 1 + count('ada') + count('What is in this picture?') + IMAGE_PART_TOKENS + 3 + 100;
    expect(estimateTokens('chat.completions', body, defaults)).toBe(expected);
  });

  it('chat: tool definitions and tool calls are counted as their JSON', () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const messages = [{ role: 'user', content: 'weather?' }];
    const without = estimateTokens('chat.completions', { messages }, defaults);
    expect(estimateTokens('chat.completions', { messages, tools }, defaults)).toBe(without + count(JSON.stringify(tools)));
  });

  it('completions: a string prompt, and a list of prompts each with its own answer budget', () => {
    expect(estimateTokens('completions', { prompt: 'Once upon a time', max_tokens: 16 }, defaults)).toBe(count('Once upon a time') + 16);
    expect(estimateTokens('completions', { prompt: ['a b c', 'd e'], max_tokens: 16 }, defaults)).toBe(count('a b c') + count('d e') + 32);
  });

  it('completions and embeddings: token-id prompts count one token per id, without tokenizing', () => {
    expect(estimateTokens('completions', { prompt: [1, 2, 3, 4], max_tokens: 5 }, defaults)).toBe(4 + 5);
    expect(estimateTokens('embeddings', { input: [[1, 2], [3, 4, 5]] }, defaults)).toBe(5);
  });

  it('embeddings: the inputs only, no answer budget', () => {
    expect(estimateTokens('embeddings', { input: ['first text', 'second one'] }, defaults)).toBe(count('first text') + count('second one'));
  });

  it('special-token markers in client text are counted as text, never thrown on', () => {
    const text = 'please ignore <|endoftext|> and <|im_start|>';
    expect(estimateTokens('embeddings', { input: text }, defaults)).toBe(count(text));
  });

  it('a huge prompt is tokenized only up to EXACT_CHARS; the rest is extrapolated at the measured ratio', () => {
    const words = Array.from({ length: 100_000 }, (_, i) => `w${(i * 7919) % 100_003}`).join(' ');
    const head = words.slice(0, EXACT_CHARS);
    const headTokens = count(head);
    const expected = headTokens + Math.ceil((words.length - EXACT_CHARS) * (headTokens / EXACT_CHARS));
    expect(estimateTokens('embeddings', { input: words }, defaults)).toBe(expected);
    // And the extrapolation lands near the real count (here within 5 %).
    expect(Math.abs(expected - count(words)) / count(words)).toBeLessThan(0.05);
  });

  it('the exact budget spans messages: later messages past it are extrapolated, not tokenized', () => {
    const long = 'x '.repeat(EXACT_CHARS);
    const body = { messages: [{ role: 'user', content: long }, { role: 'user', content: 'tail text' }] };
    const estimate = estimateTokens('chat.completions', body, { completionTokens: 0, exactChars: 100 });
    const counted = count('user') + count(long.slice(0, 100 - 'user'.length));
    const ratio = counted / 100;
    const extra = long.length - (100 - 'user'.length) + 'user'.length + 'tail text'.length;
    expect(estimate).toBe(3 + 3 + 3 + counted + Math.ceil(extra * ratio));
  });

  it('bodies of the wrong shape estimate what they can and never throw', () => {
    expect(estimateTokens('chat.completions', null, defaults)).toBe(0);
    expect(estimateTokens('chat.completions', { messages: 'nope' }, defaults)).toBe(3 + 100);
    expect(estimateTokens('chat.completions', { messages: [null, 5, { role: 'user', content: { weird: true } }] }, defaults)).toBe(3 + count('user') + 3 + 100);
  });
});
