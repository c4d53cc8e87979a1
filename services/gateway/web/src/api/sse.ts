/**
 * Server-Sent Events read with fetch(): EventSource cannot send an Authorization
 * header, so the app reads the response body itself. SseParser follows the HTML
 * standard's event-stream rules (lines end in CR, LF or CRLF, also across chunks;
 * `:` comments such as keep-alives are skipped; `data:` lines join with "\n"; an
 * event is dispatched at a blank line; `id:` sets the last event id).
 */

export interface SseEvent {
  /** The event's type: its `event:` field, "message" without one. */
  event: string;
  data: string;
  /** The last event id seen so far (what Last-Event-ID resumes from). */
  id: string;
}

export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private type = "";
  lastEventId = "";

  /** The events completed by this piece of the stream. */
  feed(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end: number;
      let next: number;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF: wait for more.
        if (cr === this.buffer.length - 1) break;
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      const event = this.line(this.buffer.slice(start, end));
      if (event) out.push(event);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** The end of the stream: a trailing lone CR ends its line; an unfinished event is dropped. */
  end(): SseEvent[] {
    const out = this.buffer.endsWith("\r") ? this.feed("\n") : [];
    this.buffer = "";
    this.data = [];
    this.type = "";
    return out;
  }

  private line(line: string): SseEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    return null;
  }

  private dispatch(): SseEvent | null {
    const data = this.data;
    const type = this.type;
    this.data = [];
    this.type = "";
    if (data.length === 0) return null;
    return { event: type || "message", data: data.join("\n"), id: this.lastEventId };
  }
}

/** The events of a response body, as they arrive. */
export async function* readSse(body: ReadableStream<Uint8Array>, parser = new SseParser()): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    finished = true;
    yield* parser.feed(decoder.decode());
    yield* parser.end();
  } finally {
    // Left early (the caller stopped reading): close the connection.
    if (!finished) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
