// The bridge's stream side: a state machine that turns chat.completion.chunk payloads into the Responses API's typed
// events, each with its sequence_number: created, in_progress, output items (a message's text and refusal parts,
// function calls with argument deltas), then completed, incomplete (length, content filter) or failed. Pure: it
// only returns event payloads; it never reorders, drops or invents model output.
import { outputItemId, type ResponseItem } from './context.ts';
import { record } from './request.ts';
import { functionCallItem, messageItem, outcomeOf, responseShell, textPart, usageFromChat, withUsage } from './response.ts';

type Json = Record<string, unknown>;

export interface StreamTranslatorOptions {
  /** The client's Responses request: its settings are echoed in every response snapshot. */
  body: Json;
  id: string;
  /** Epoch seconds. */
  createdAt: number;
  /** Epoch seconds, for completed_at; injectable for tests. */
  now?: () => number;
}

interface OpenMessage {
  outputIndex: number;
  id: string;
  /** The content part being streamed: text first, then a refusal if one comes. */
  part: { kind: 'text'; text: string } | { kind: 'refusal'; refusal: string } | undefined;
  content: Json[];
}

interface OpenCall {
  outputIndex: number;
  id: string;
  callId: string;
  name: string;
  args: string;
}

export class ResponsesStreamTranslator {
  private readonly options: StreamTranslatorOptions;
  private seq = 0;
  private started = false;
  private finished = false;
  private model: string;
  /** Output items by output index; an open item's entry is replaced when it is done. */
  private readonly output: ResponseItem[] = [];
  private message: OpenMessage | undefined;
  /** Open function calls by the chat chunk's tool_calls index. */
  private readonly calls = new Map<number, OpenCall>();
  private finishReason: unknown = null;
  private usage: Json | null = null;

  constructor(options: StreamTranslatorOptions) {
    this.options = options;
    this.model = String(options.body.model ?? '');
  }

  /** Whether any event has been produced (a failure before that is the caller's to retry). */
  get hasStarted(): boolean {
    return this.started;
  }

  /** The events for one chat.completion.chunk payload. */
  push(data: string): string[] {
    if (this.finished) return [];
    let chunk: Json;
    try {
      chunk = record(JSON.parse(data));
    } catch {
      return []; // not JSON: nothing a chat stream would send, nothing to translate
    }
    const events: string[] = [];
    if (!this.started) {
      if (typeof chunk.model === 'string' && chunk.model !== '') this.model = chunk.model;
      this.start(events);
    }
    if (chunk.usage !== undefined && chunk.usage !== null) this.usage = usageFromChat(chunk.usage);
    const choice = record(Array.isArray(chunk.choices) ? chunk.choices[0] : undefined);
    const delta = record(choice.delta);
    if (typeof delta.content === 'string' && delta.content !== '') this.text(events, delta.content);
    if (typeof delta.refusal === 'string' && delta.refusal !== '') this.refusal(events, delta.refusal);
    if (Array.isArray(delta.tool_calls)) for (const call of delta.tool_calls) this.toolCall(events, record(call));
    if (choice.finish_reason !== undefined && choice.finish_reason !== null) this.finishReason = choice.finish_reason;
    return events;
  }

  /** The closing events once the chat stream ended with [DONE]: items done, then completed or incomplete. */
  finish(): string[] {
    if (this.finished) return [];
    const events: string[] = [];
    if (!this.started) this.start(events);
    const { status, incomplete } = outcomeOf(this.finishReason);
    this.closeAll(events, status === 'completed' ? 'completed' : 'incomplete');
    this.finished = true;
    const response = {
      ...this.snapshot(status),
      completed_at: status === 'completed' ? (this.options.now?.() ?? Math.floor(Date.now() / 1000)) : null,
      incomplete_details: incomplete,
      ...withUsage(this.usage),
    };
    this.emit(events, { type: status === 'completed' ? 'response.completed' : 'response.incomplete', response });
    return events;
  }

  /** The closing event of a stream that broke after it started: response.failed with the error. */
  fail(message: string): string[] {
    if (this.finished || !this.started) return [];
    this.finished = true;
    const events: string[] = [];
    const response = { ...this.snapshot('failed'), error: { code: 'server_error', message }, ...withUsage(this.usage) };
    this.emit(events, { type: 'response.failed', response });
    return events;
  }

  private start(events: string[]): void {
    this.started = true;
    this.emit(events, { type: 'response.created', response: this.snapshot('in_progress') });
    this.emit(events, { type: 'response.in_progress', response: this.snapshot('in_progress') });
  }

  private text(events: string[], delta: string): void {
    const message = this.openMessage(events);
    if (message.part?.kind !== 'text') {
      this.closePart(events, message);
      message.part = { kind: 'text', text: '' };
      this.emit(events, { type: 'response.content_part.added', ...this.at(message), part: textPart('') });
    }
    message.part.text += delta;
    this.emit(events, { type: 'response.output_text.delta', ...this.at(message), delta, logprobs: [] });
  }

  private refusal(events: string[], delta: string): void {
    const message = this.openMessage(events);
    if (message.part?.kind !== 'refusal') {
      this.closePart(events, message);
      message.part = { kind: 'refusal', refusal: '' };
      this.emit(events, { type: 'response.content_part.added', ...this.at(message), part: { type: 'refusal', refusal: '' } });
    }
    message.part.refusal += delta;
    this.emit(events, { type: 'response.refusal.delta', ...this.at(message), delta });
  }

  private toolCall(events: string[], delta: Json): void {
    const index = typeof delta.index === 'number' ? delta.index : 0;
    const fn = record(delta.function);
    let call = this.calls.get(index);
    if (call === undefined) {
      // A call ends the message before it: chat sends a message's text before its tool calls.
      if (this.message !== undefined) this.closeMessage(events, 'completed');
      const outputIndex = this.output.length;
      call = { outputIndex, id: outputItemId('fc', this.options.id, outputIndex), callId: String(delta.id ?? ''), name: String(fn.name ?? ''), args: '' };
      this.calls.set(index, call);
      this.output.push(functionCallItem(call.id, 'in_progress', call.callId, call.name, ''));
      this.emit(events, { type: 'response.output_item.added', output_index: outputIndex, item: functionCallItem(call.id, 'in_progress', call.callId, call.name, '') });
    }
    if (typeof fn.arguments === 'string' && fn.arguments !== '') {
      call.args += fn.arguments;
      this.emit(events, { type: 'response.function_call_arguments.delta', item_id: call.id, output_index: call.outputIndex, delta: fn.arguments });
    }
  }

  private openMessage(events: string[]): OpenMessage {
    if (this.message !== undefined) return this.message;
    const outputIndex = this.output.length;
    const message: OpenMessage = { outputIndex, id: outputItemId('msg', this.options.id, outputIndex), part: undefined, content: [] };
    this.message = message;
    this.output.push(messageItem(message.id, 'in_progress', []));
    this.emit(events, { type: 'response.output_item.added', output_index: outputIndex, item: messageItem(message.id, 'in_progress', []) });
    return message;
  }

  private closePart(events: string[], message: OpenMessage): void {
    const part = message.part;
    if (part === undefined) return;
    const at = this.at(message);
    const done = part.kind === 'text' ? textPart(part.text) : { type: 'refusal', refusal: part.refusal };
    if (part.kind === 'text') this.emit(events, { type: 'response.output_text.done', ...at, text: part.text, logprobs: [] });
    else this.emit(events, { type: 'response.refusal.done', ...at, refusal: part.refusal });
    this.emit(events, { type: 'response.content_part.done', ...at, part: done });
    message.content.push(done);
    message.part = undefined;
  }

  private closeMessage(events: string[], status: string): void {
    const message = this.message;
    if (message === undefined) return;
    this.closePart(events, message);
    const item = messageItem(message.id, status, message.content);
    this.output[message.outputIndex] = item;
    this.emit(events, { type: 'response.output_item.done', output_index: message.outputIndex, item });
    this.message = undefined;
  }

  /** Closes every open item in output order; an incomplete answer leaves its items incomplete. */
  private closeAll(events: string[], status: string): void {
    const open = [...this.calls.values()].map((call) => ({ index: call.outputIndex, close: () => this.closeCall(events, call, status) }));
    if (this.message !== undefined) open.push({ index: this.message.outputIndex, close: () => this.closeMessage(events, status) });
    for (const item of open.sort((a, b) => a.index - b.index)) item.close();
  }

  private closeCall(events: string[], call: OpenCall, status: string): void {
    this.emit(events, { type: 'response.function_call_arguments.done', item_id: call.id, name: call.name, output_index: call.outputIndex, arguments: call.args });
    const item = functionCallItem(call.id, status, call.callId, call.name, call.args);
    this.output[call.outputIndex] = item;
    this.emit(events, { type: 'response.output_item.done', output_index: call.outputIndex, item });
  }

  private at(message: OpenMessage): Json {
    return { item_id: message.id, output_index: message.outputIndex, content_index: message.content.length };
  }

  private snapshot(status: 'in_progress' | 'completed' | 'incomplete' | 'failed'): Json {
    const shell = responseShell(this.options.body, { id: this.options.id, createdAt: this.options.createdAt, model: this.model, status });
    return { ...shell, output: status === 'in_progress' ? [] : this.output.map((item) => ({ ...item })) };
  }

  /** `type` first, as OpenAI writes its events (the ingress names the SSE event from it), then the sequence number. */
  private emit(events: string[], event: Json): void {
    const { type, ...rest } = event;
    events.push(JSON.stringify({ type, sequence_number: this.seq++, ...rest }));
  }
}
