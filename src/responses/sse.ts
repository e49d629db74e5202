// The Responses API's stream framing: each event goes out as `event: <type>` + `data: <json>`, the stream ends after
// its terminal event with no `data: [DONE]`, and a broker error after the head is an `error` event (ResponseErrorEvent)
// numbered after the last event. Pure string building; never parses a payload beyond its leading `type`.

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** `"type":"…"` leads every event OpenAI (and the bridge) writes; looked for in the first bytes only. */
const TYPE = /"type"\s*:\s*"([A-Za-z0-9._-]+)"/;

function frame(event: string | undefined, data: string): string {
  const lines = data.includes('\n') ? data.split('\n').map((line) => `data: ${line}`).join('\n') : `data: ${data}`;
  return event === undefined ? `${lines}\n\n` : `event: ${event}\n${lines}\n\n`;
}

export const RESPONSES_FRAMING = {
  event(payload: string): string {
    return frame(TYPE.exec(payload.slice(0, 100))?.[1], payload);
  },
  /** Nothing: the terminal event (response.completed, .incomplete, .failed) already told the client it is over. */
  end: '',
  error(body: ErrorBody, sequenceNumber: number): string {
    const { message, param, code } = body.error;
    return frame('error', JSON.stringify({ type: 'error', code: code ?? body.error.type, message, param, sequence_number: sequenceNumber }));
  },
};
