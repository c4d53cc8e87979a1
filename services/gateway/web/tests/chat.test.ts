import { describe, expect, it } from "vitest";
import { ApiClient } from "../src/api/client";
import { ChatFailed, CompletionReader, askStreaming, parseCitations } from "../src/api/chat";
import { ApiError } from "../src/api/errors";
import { FakeApi, Stream, json, settle } from "./fakeApi";

const CITATION = { n: 1, document_id: "d1", filename: "manual.pdf", page: 12, snippet: "Hold it.", score: 0.7 };

function chunk(content: string | null, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const delta = content === null ? {} : { content };
  return { id: "chatcmpl-job42", object: "chat.completion.chunk", choices: [{ index: 0, delta }], ...extra };
}

describe("CompletionReader", () => {
  it("takes the job id from the first chunk, the text piece by piece, the documind field at the end", () => {
    const jobs: string[] = [];
    const pieces: string[] = [];
    const reader = new CompletionReader({ onJob: (j) => jobs.push(j), onText: (p) => pieces.push(p) });
    reader.feed(JSON.stringify({ ...chunk(null), choices: [{ delta: { role: "assistant", content: "" } }] }));
    reader.feed(JSON.stringify(chunk("Hold the ")));
    reader.feed(JSON.stringify(chunk("button [1].")));
    reader.feed(
      JSON.stringify(chunk(null, { documind: { job_id: "job42", mode: "extractive", citations: [CITATION] } })),
    );
    expect(reader.feed("[DONE]")).toBe(true);
    expect(jobs).toEqual(["job42"]);
    expect(pieces).toEqual(["Hold the ", "button [1]."]);
    expect(reader.final).toEqual({
      jobId: "job42",
      answer: "Hold the button [1].",
      mode: "extractive",
      abstained: false,
      citations: [CITATION],
      standaloneQuestion: null,
    });
  });

  it("takes the job id from the first chunk's documind field, which is no final answer", () => {
    const jobs: string[] = [];
    const reader = new CompletionReader({ onJob: (j) => jobs.push(j) });
    const first = { id: "other", choices: [{ delta: { role: "assistant", content: "" } }], documind: { job_id: "j7" } };
    reader.feed(JSON.stringify(first));
    expect(jobs).toEqual(["j7"]);
    expect(reader.final).toBeNull();
    // Told once, whatever comes after.
    reader.setJob("j8");
    reader.feed(JSON.stringify(chunk("x")));
    expect(jobs).toEqual(["j7"]);
  });

  it("reads the abstained flag, and infers it from a server that does not send it", () => {
    const said = new CompletionReader();
    said.feed(JSON.stringify(chunk(null, { documind: { mode: "llm:smol", abstained: true, citations: [CITATION] } })));
    expect(said.final?.abstained).toBe(true);
    const older = new CompletionReader();
    older.feed(JSON.stringify(chunk(null, { documind: { mode: "extractive", citations: [] } })));
    expect(older.final?.abstained).toBe(true);
    // A server that says only whether the documents answer it.
    const flagged = new CompletionReader();
    flagged.feed(JSON.stringify(chunk(null, { documind: { mode: "extractive", answerable: false, citations: [CITATION] } })));
    expect(flagged.final?.abstained).toBe(true);
    const answered = new CompletionReader();
    answered.feed(JSON.stringify(chunk(null, { documind: { mode: "extractive", answerable: true, citations: [] } })));
    expect(answered.final?.abstained).toBe(false);
  });

  it("keeps a citation's offsets in the page when they are well-formed", () => {
    const [exact, none, bad] = parseCitations([
      { ...CITATION, n: 1, char_start: 40, char_end: 48 },
      { ...CITATION, n: 2 },
      { ...CITATION, n: 3, char_start: 9, char_end: 4 },
    ]);
    expect(exact).toMatchObject({ char_start: 40, char_end: 48 });
    expect(none?.char_start).toBeUndefined();
    expect(bad?.char_start).toBeUndefined();
  });

  it("prefers the stored answer when the stream's text differs", () => {
    const reader = new CompletionReader();
    reader.feed(JSON.stringify(chunk("First try")));
    reader.feed(JSON.stringify(chunk(null, { documind: { mode: "llm:smol", citations: [], answer: "Stored" } })));
    expect(reader.final?.answer).toBe("Stored");
    expect(reader.final?.mode).toBe("llm:smol");
  });

  it("turns an error frame into ChatFailed, cancelled when the job was", () => {
    const reader = new CompletionReader();
    const frame = JSON.stringify({ error: { message: "cancelled", type: "cancelled_error", code: "job_cancelled" } });
    expect(() => reader.feed(frame)).toThrowError(ChatFailed);
    try {
      reader.feed(frame);
    } catch (error) {
      expect((error as ChatFailed).cancelled).toBe(true);
    }
  });

  it("keeps only well-formed citations, in order", () => {
    const cited = parseCitations([{ ...CITATION, n: 2 }, { n: "x" }, null, CITATION]);
    expect(cited.map((c) => c.n)).toEqual([1, 2]);
  });
});

describe("askStreaming", () => {
  it("posts the conversation to the OpenAI route with stream and the key, and streams the answer", async () => {
    const api = new FakeApi();
    const stream = new Stream();
    api.on("POST", "/v1/chat/completions", (_r, init) => stream.response(init.signal));
    const pieces: string[] = [];
    const client = new ApiClient("dm_k_secret", () => {}, api.fetch);
    const history = [
      { role: "user" as const, content: "What is it?" },
      { role: "assistant" as const, content: "A device [1]." },
      { role: "user" as const, content: "How do I reset it?" },
    ];
    const done = askStreaming(client, "docs", history, { onText: (p) => pieces.push(p) });
    stream.data(chunk("Hold"));
    await settle();
    expect(pieces).toEqual(["Hold"]);
    stream.data(chunk(" it [1]."));
    stream.data(chunk(null, { documind: { job_id: "job42", mode: "extractive", citations: [CITATION] } }));
    stream.data("[DONE]");
    const answer = await done;
    expect(answer.answer).toBe("Hold it [1].");
    const sent = api.requests[0];
    expect(sent?.headers.get("Authorization")).toBe("Bearer dm_k_secret");
    expect(sent?.body).toEqual({ model: "docs", messages: history, stream: true });
  });

  it("knows the job from the response's header, before any chunk (so Stop can cancel it)", async () => {
    const api = new FakeApi();
    const stream = new Stream();
    api.on("POST", "/v1/chat/completions", (_r, init) =>
      stream.response(init.signal, { "X-DocuMind-Job-Id": "job42" }),
    );
    const jobs: string[] = [];
    const client = new ApiClient("k", () => {}, api.fetch);
    const done = askStreaming(client, "docs", [{ role: "user", content: "q" }], { onJob: (j) => jobs.push(j) });
    await settle();
    expect(jobs).toEqual(["job42"]);
    stream.data(chunk(null, { documind: { job_id: "job42", mode: "extractive", abstained: true, citations: [] } }));
    stream.data("[DONE]");
    expect((await done).abstained).toBe(true);
    expect(jobs).toEqual(["job42"]);
  });

  it("reports a refusal before the stream (a full queue) as ApiError with Retry-After", async () => {
    const api = new FakeApi();
    api.on("POST", "/v1/chat/completions", () =>
      json({ error: { message: "the queue is full", type: "server_error", code: "overloaded" } }, 503, {
        "Retry-After": "7",
      }),
    );
    const client = new ApiClient("k", () => {}, api.fetch);
    const failure = askStreaming(client, "docs", [{ role: "user", content: "q" }]);
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(failure).rejects.toMatchObject({ status: 503, retryAfterS: 7, detail: "the queue is full" });
  });
});
