// The nesting check run before JSON.parse: counts arrays and objects outside strings, exactly to the limit.
import { describe, expect, it } from 'vitest';
import { exceedsDepth } from '../../src/http/plugins/json-body.ts';

const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

describe('exceedsDepth', () => {
  it('accepts nesting exactly at the limit and refuses one level more', () => {
    expect(exceedsDepth(nested(128), 128)).toBe(false);
    expect(exceedsDepth(nested(129), 128)).toBe(true);
    expect(exceedsDepth(`{"a":${nested(127)}}`, 128)).toBe(false);
    expect(exceedsDepth(`{"a":${nested(128)}}`, 128)).toBe(true);
  });

  it('measures depth, not the number of containers', () => {
    const wide = `[${Array.from({ length: 1000 }, () => '{"a":[1,{"b":[]}]}').join(',')}]`;
    // [ { [ { [ : five levels, a thousand times over
    expect(exceedsDepth(wide, 5)).toBe(false);
    expect(exceedsDepth(wide, 4)).toBe(true);
  });

  it('refuses 10,000 levels without recursion', () => {
    expect(exceedsDepth(nested(10_000), 128)).toBe(true);
  });

  it('ignores brackets inside strings, escaped quotes and backslashes included', () => {
    expect(exceedsDepth(`{"s":"${'['.repeat(300)}"}`, 2)).toBe(false);
    expect(exceedsDepth(`{"s":"a\\"${'{'.repeat(300)}"}`, 2)).toBe(false);
    // A string ending in an escaped backslash closes there: the brackets after it count.
    expect(exceedsDepth(`{"s":"a\\\\","t":${nested(5)}}`, 5)).toBe(true);
    expect(exceedsDepth(`{"s":"a\\\\","t":${nested(4)}}`, 5)).toBe(false);
  });

  it('leaves malformed JSON to the parser (no throw, no false refusal)', () => {
    expect(exceedsDepth('{"unterminated', 1)).toBe(false);
    expect(exceedsDepth(']]]]', 1)).toBe(false);
  });
});
