// Token estimation before the call: the prompt counted with o200k_base (chat framing, content parts, completions
// prompts, embeddings inputs), plus the answer budget; short texts are charged their UTF-8 length (an upper bound),
// huge inputs are extrapolated past a fixed number of characters.
import { describe, expect, it } from 'vitest';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { estimateTokens, EXACT_CHARS, IMAGE_PART_TOKENS, SHORT_TEXT_CHARS, tokenCountCacheSize } from '../../src/admission/tokens.ts';

const defaults = { completionTokens: 100 };
const count = (text: string) => countTokens(text, { disallowedSpecial: new Set() });
/** What a text is charged: its UTF-8 length when short, its tokens otherwise. */
const charge = (text: string) => (text.length <= SHORT_TEXT_CHARS ? Buffer.byteLength(text) : count(text));
/** A text long enough to be tokenized. */
const long = (text: string) => `${text} `.repeat(Math.ceil((SHORT_TEXT_CHARS + 1) / (text.length + 1)));
/** Per message: 3 framing tokens + the role (one token) + content; 3 more prime the reply. */
const chatPrompt = (...messages: Array<[string, string]>) => messages.reduce((sum, [, content]) => sum + 3 + 1 + charge(content), 3);

describe('estimateTokens', () => {
  it('chat: counts every message with OpenAI framing, plus the default answer budget', () => {
    const system = long('You are terse.');
    const body = { model: 'm', messages: [{ role: 'system', content: system }, { role: 'user', content: 'Name three rivers in Europe.' }] };
    expect(estimateTokens('chat.completions', body, defaults)).toBe(3 + 1 + count(system) + 3 + 1 + Buffer.byteLength('Name three rivers in Europe.') + 3 + 100);
  });

  it('a short text is charged its UTF-8 length, never less than its tokens, whatever its script', () => {
    const texts = ['hi', 'Name three rivers in Europe.', '日本の川を三つ挙げてください。', '🙂🙃 emoji 🚀', 'const x = await f(y) ?? 0;', 'aB3$'.repeat(60), 'x'.repeat(SHORT_TEXT_CHARS)];
    for (const text of texts) {
      const charged = estimateTokens('embeddings', { input: text }, defaults);
      expect(charged).toBe(Buffer.byteLength(text));
      expect(charged).toBeGreaterThanOrEqual(count(text));
    }
    // One character more and it is tokenized.
    const tokenized = 'x'.repeat(SHORT_TEXT_CHARS + 1);
    expect(estimateTokens('embeddings', { input: tokenized }, defaults)).toBe(count(tokenized));
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
    const expected = 3 + 1 + 1 + charge('ada') + charge('What is in this picture?') + IMAGE_PART_TOKENS + 3 + 100;
    expect(estimateTokens('chat.completions', body, defaults)).toBe(expected);
  });

  it('chat: tool definitions and tool calls are counted as their JSON', () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const messages = [{ role: 'user', content: 'weather?' }];
    const without = estimateTokens('chat.completions', { messages }, defaults);
    expect(estimateTokens('chat.completions', { messages, tools }, defaults)).toBe(without + charge(JSON.stringify(tools)));
    const many = Array.from({ length: 5 }, (_, i) => ({ ...tools[0], function: { ...tools[0]!.function, name: `tool_${i}` } }));
    expect(estimateTokens('chat.completions', { messages, tools: many }, defaults)).toBe(without + count(JSON.stringify(many)));
  });

  it('completions: a string prompt, and a list of prompts each with its own answer budget', () => {
    const story = long('Once upon a time');
    expect(estimateTokens('completions', { prompt: story, max_tokens: 16 }, defaults)).toBe(count(story) + 16);
    expect(estimateTokens('completions', { prompt: ['a b c', 'd e'], max_tokens: 16 }, defaults)).toBe(charge('a b c') + charge('d e') + 32);
  });

  it('completions and embeddings: token-id prompts count one token per id, without tokenizing', () => {
    expect(estimateTokens('completions', { prompt: [1, 2, 3, 4], max_tokens: 5 }, defaults)).toBe(4 + 5);
    expect(estimateTokens('embeddings', { input: [[1, 2], [3, 4, 5]] }, defaults)).toBe(5);
  });

  it('embeddings: the inputs only, no answer budget', () => {
    expect(estimateTokens('embeddings', { input: ['first text', long('second one')] }, defaults)).toBe(charge('first text') + count(long('second one')));
  });

  it('special-token markers in client text are counted as text, never thrown on', () => {
    const text = long('please ignore <|endoftext|> and <|im_start|>');
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
    const first = 'x '.repeat(EXACT_CHARS);
    const second = long('tail text');
    const body = { messages: [{ role: 'user', content: first }, { role: 'user', content: second }] };
    const estimate = estimateTokens('chat.completions', body, { completionTokens: 0, exactChars: 100 });
    const counted = count(first.slice(0, 100));
    const extra = first.length - 100 + second.length;
    expect(estimate).toBe(3 + (3 + 1) + (3 + 1) + counted + Math.ceil(extra * (counted / 100)));
  });

  it('bodies of the wrong shape estimate what they can and never throw', () => {
    expect(estimateTokens('chat.completions', null, defaults)).toBe(0);
    expect(estimateTokens('chat.completions', { messages: 'nope' }, defaults)).toBe(3 + 100);
    expect(estimateTokens('chat.completions', { messages: [null, 5, { role: 'user', content: { weird: true } }] }, defaults)).toBe(3 + 1 + 3 + 100);
    // A role outside the known ones is counted as text.
    expect(estimateTokens('chat.completions', { messages: [{ role: 'narrator', content: 'x' }] }, defaults)).toBe(3 + charge('narrator') + 1 + 3 + 100);
  });

  it('a text seen before is counted from the cache with the same result, and the cache stays bounded', () => {
    const system = `You are the support assistant of a shop. ${'Answer politely and briefly. '.repeat(100)}`;
    const body = (question: string) => ({ messages: [{ role: 'system', content: system }, { role: 'user', content: question }] });
    const before = tokenCountCacheSize().entries;
    const first = estimateTokens('chat.completions', body('Where is my order?'), defaults);
    // The long system prompt is kept (the short question is charged by size and never tokenized)...
    expect(tokenCountCacheSize().entries).toBe(before + 1);
    // ...and found again, not added twice.
    expect(estimateTokens('chat.completions', body('Where is my order?'), defaults)).toBe(first);
    expect(tokenCountCacheSize().entries).toBe(before + 1);
    expect(first).toBe(chatPrompt(['system', system], ['user', 'Where is my order?']) + 100);
    // Ten thousand texts never seen before, some of them large: counted right, and the cache keeps a few MB at most.
    for (let i = 0; i < 10_000; i++) {
      const question = `Question number ${i}: ${'x'.repeat(i % 7 === 0 ? 4_000 : 10)}`;
      if (i % 1_000 === 0) expect(estimateTokens('chat.completions', body(question), defaults)).toBe(chatPrompt(['system', system], ['user', question]) + 100);
      else estimateTokens('chat.completions', body(question), defaults);
    }
    const size = tokenCountCacheSize();
    expect(size.entries).toBeLessThanOrEqual(2 * 2_048);
    expect(size.chars).toBeLessThanOrEqual(2 * 2_000_000);
  });
});
