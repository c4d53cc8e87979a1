import { describe, expect, it } from "vitest";
import { SseParser, readSse } from "../src/api/sse";

function streamOf(...pieces: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
}

describe("SseParser", () => {
  it("reads id, event and data, and dispatches at a blank line", () => {
    const parser = new SseParser();
    const events = parser.feed('id: 1-0\nevent: queued\ndata: {"a":1}\n\n');
    expect(events).toEqual([{ id: "1-0", event: "queued", data: '{"a":1}' }]);
    expect(parser.lastEventId).toBe("1-0");
  });

  it("holds an event split anywhere across chunks, CRLF split between its CR and LF too", () => {
    const text = "id: 7-1\r\nevent: token\r\ndata: {\"text\":\"Hel\"}\r\n\r\n";
    for (let cut = 1; cut < text.length; cut += 1) {
      const parser = new SseParser();
      const events = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      expect(events, `cut at ${cut}`).toEqual([{ id: "7-1", event: "token", data: '{"text":"Hel"}' }]);
    }
  });

  it("skips comments (keep-alives), joins data lines, defaults the type to message", () => {
    const parser = new SseParser();
    const events = parser.feed(": keep-alive\n\ndata: one\ndata: two\n\ndata:no-space\r\r\n");
    expect(events).toEqual([
      { id: "", event: "message", data: "one\ntwo" },
      { id: "", event: "message", data: "no-space" },
    ]);
  });

  it("keeps the last id for later events and ignores an event with no data", () => {
    const parser = new SseParser();
    const events = parser.feed("id: 5-0\nevent: nothing\n\ndata: x\n\n");
    expect(events).toEqual([{ id: "5-0", event: "message", data: "x" }]);
  });

  it("drops an event the stream cut before its blank line", async () => {
    const events = [];
    for await (const e of readSse(streamOf("data: [DONE]\n\n", "data: partial"))) events.push(e);
    expect(events.map((e) => e.data)).toEqual(["[DONE]"]);
  });

  it("decodes UTF-8 split inside a character", async () => {
    const bytes = new TextEncoder().encode("data: café ✓\n\n");
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const b of bytes) controller.enqueue(new Uint8Array([b]));
        controller.close();
      },
    });
    const events = [];
    for await (const e of readSse(body)) events.push(e.data);
    expect(events).toEqual(["café ✓"]);
  });
});
