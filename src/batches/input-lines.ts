// Reads a JSONL input file as a stream of lines with their numbers and byte offsets, from any offset: the driver
// resumes a batch where it was without reading the file again from the start. Never holds more than one line.
import type { Readable } from 'node:stream';

export interface InputLine {
  /** 1-based physical line number (what an editor shows). */
  line: number;
  /** Byte offset of the line's first byte in the file. */
  offset: number;
  /** Byte offset just after the line's newline (where the next line starts). */
  next: number;
  /** The line without its newline (and without a trailing \r). */
  text: string;
}

/** A line longer than this is refused (a request of a batch is well under it; a binary file is not JSONL). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

export class LineTooLongError extends Error {
  readonly line: number;
  constructor(line: number) {
    super(`line ${line} is longer than ${MAX_LINE_BYTES} bytes`);
    this.name = 'LineTooLongError';
    this.line = line;
  }
}

/**
 * The lines of `stream`, which starts at byte `offset` of the file, that byte beginning line `firstLine`. Blank lines
 * are skipped (they are not requests) but counted, so numbers stay the file's own.
 */
export async function* readLines(stream: Readable, offset = 0, firstLine = 1): AsyncGenerator<InputLine> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineStart = offset;
  let line = firstLine;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let from = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, from);
      if (newline === -1) break;
      const piece = chunk.subarray(from, newline);
      const whole = pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
      const next = lineStart + whole.length + 1;
      const text = decode(whole, lineStart === 0);
      if (text.trim() !== '') yield { line, offset: lineStart, next, text };
      line++;
      lineStart = next;
      pending = [];
      pendingBytes = 0;
      from = newline + 1;
    }
    if (from < chunk.length) {
      pending.push(chunk.subarray(from));
      pendingBytes += chunk.length - from;
      if (pendingBytes > MAX_LINE_BYTES) {
        stream.destroy();
        throw new LineTooLongError(line);
      }
    }
  }
  if (pendingBytes > 0) {
    const whole = Buffer.concat(pending);
    const text = decode(whole, lineStart === 0);
    if (text.trim() !== '') yield { line, offset: lineStart, next: lineStart + whole.length, text };
  }
}

/** A line's text, without its CR (CRLF files) and, at the file's start, the byte-order mark Windows tools write. */
function decode(bytes: Buffer, fileStart: boolean): string {
  const decoded = bytes.toString('utf8');
  const text = fileStart && decoded.startsWith('\uFEFF') ? decoded.slice(1) : decoded;
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}
