// The JSONL reader the batch driver resumes from: line numbers and byte offsets as the file has them (multi-byte text,
// CRLF, blank lines, lines split across chunks), so reading again from an offset yields exactly the lines after it.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readLines, LineTooLongError, MAX_LINE_BYTES, type InputLine } from '../../src/batches/input-lines.ts';

async function collect(stream: Readable, offset?: number, firstLine?: number): Promise<InputLine[]> {
  const out: InputLine[] = [];
  for await (const line of readLines(stream, offset, firstLine)) out.push(line);
  return out;
}

/** The file cut into chunks of `size` bytes, as a storage stream would deliver it. */
function chunked(bytes: Buffer, size: number): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  return Readable.from(chunks);
}

describe('readLines', () => {
  const text = '{"a":"é"}\r\n\n{"b":"日本"}\n   \n{"c":3}';
  const bytes = Buffer.from(text);

  it('numbers lines as the file does, skipping blank ones, with the byte offsets of each line', async () => {
    for (const size of [1, 3, 7, 1024]) {
      const lines = await collect(chunked(bytes, size));
      expect(lines.map((l) => [l.line, l.text])).toEqual([
        [1, '{"a":"é"}'],
        [3, '{"b":"日本"}'],
        [5, '{"c":3}'],
      ]);
      for (const l of lines) expect(bytes.subarray(l.offset, l.next).toString().replace(/\r?\n$/, '')).toBe(l.text);
    }
  });

  it('drops the byte-order mark a Windows tool writes at the start of the file, and only there', async () => {
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":1}\n\uFEFF{"b":2}\n')]);
    const lines = await collect(chunked(withBom, 2));
    expect(lines.map((l) => l.text)).toEqual(['{"a":1}', '\uFEFF{"b":2}']);
    expect(lines[0]!.offset).toBe(0);
  });

  it('resumes from a line\'s offset with the lines after it, numbered as before', async () => {
    const all = await collect(chunked(bytes, 5));
    const second = all[1]!;
    const resumed = await collect(chunked(bytes.subarray(second.offset), 4), second.offset, second.line);
    expect(resumed).toEqual(all.slice(1));
  });

  it('refuses a line longer than the limit instead of buffering it', async () => {
    const huge = Readable.from((function* () {
      for (let sent = 0; sent <= MAX_LINE_BYTES; sent += 1024 * 1024) yield Buffer.alloc(1024 * 1024, 0x61);
    })());
    await expect(collect(huge)).rejects.toBeInstanceOf(LineTooLongError);
  });
});
