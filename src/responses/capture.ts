// A reply sink in front of a waiting Responses request: it spots the stream's terminal event (response.completed,
// .incomplete, .failed), hands its response to `onTerminal` (the store) and only then lets the event through, so a
// client that saw a response end can at once build on it (previous_response_id). Never alters or drops a message.
import type { ReplySink, LostReason } from '../queue/reply-bus.ts';
import type { CompletionResult } from '../queue/jobs.ts';
import type { ReplyMessage } from '../queue/replies.ts';

const TERMINAL_EVENTS = ['"type":"response.completed"', '"type":"response.incomplete"', '"type":"response.failed"'];

/** The response carried by a terminal event among `payloads`, or undefined. */
export function terminalResponse(payloads: readonly string[]): Record<string, unknown> | undefined {
  for (const payload of payloads) {
    if (!TERMINAL_EVENTS.some((marker) => payload.includes(marker))) continue;
    try {
      const event = JSON.parse(payload) as { response?: unknown };
      if (event.response !== null && typeof event.response === 'object') return event.response as Record<string, unknown>;
    } catch {
      // not an event the relay would have parsed either: let it through untouched
    }
  }
  return undefined;
}

export class TerminalCapture implements ReplySink {
  private readonly inner: ReplySink;
  private readonly onTerminal: (response: Record<string, unknown>) => Promise<void>;
  /** Set once a terminal event waits for its save: every later message queues behind it, in order. */
  private tail: Promise<void> | undefined;

  constructor(inner: ReplySink, onTerminal: (response: Record<string, unknown>) => Promise<void>) {
    this.inner = inner;
    this.onTerminal = onTerminal;
  }

  onMessage(message: ReplyMessage): void {
    if (this.tail !== undefined) {
      this.tail = this.tail.then(() => this.inner.onMessage(message));
      return;
    }
    const response = message.k === 'chunk' ? terminalResponse(message.data) : undefined;
    if (response === undefined) return this.inner.onMessage(message);
    // onTerminal never rejects (it logs its own failure): the answer goes out stored or not.
    this.tail = this.onTerminal(response).then(() => this.inner.onMessage(message));
  }

  onFinishedUnseen(result: CompletionResult | undefined, attempt: number, failedReason: string | undefined): void {
    if (this.tail === undefined) return this.inner.onFinishedUnseen(result, attempt, failedReason);
    this.tail = this.tail.then(() => this.inner.onFinishedUnseen(result, attempt, failedReason));
  }

  /** At once: a lost job or a drain does not wait for a save. */
  onLost(reason: LostReason): void {
    this.inner.onLost(reason);
  }
}
