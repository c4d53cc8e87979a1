/**
 * A question through the OpenAI-compatible route (POST /v1/chat/completions with
 * stream: true), the conversation's earlier turns sent as messages. Its chunks are
 * Server-Sent Events: the text as it is written (`choices[0].delta.content`), then a
 * last chunk whose `documind` field has the job id, the mode, whether the answerer
 * abstained and the citations, then `data: [DONE]`. A job that fails or is cancelled
 * ends the stream with one `{"error": {...}}` frame. The response's header
 * `X-DocuMind-Job-Id` names the job (so does the first chunk's `documind.job_id`, and
 * every chunk's id, `chatcmpl-<job id>`): it can be cancelled (Stop) from the start.
 */
import type { ApiClient } from "./client";
import { NetworkError } from "./errors";
import { readSse } from "./sse";
import type { ChatMessage, Citation } from "./types";

export const CHUNK_ID_PREFIX = "chatcmpl-";
export const JOB_ID_HEADER = "X-DocuMind-Job-Id";

export interface ChatCallbacks {
  /** The job answering the question (known from the first chunk). */
  onJob?: (jobId: string) => void;
  /** The next piece of the answer. */
  onText?: (piece: string) => void;
}

export interface ChatAnswer {
  jobId: string;
  answer: string;
  /** "extractive", or "llm:<model>". */
  mode: string;
  /** The answerer declined: nothing in the documents answers the question. */
  abstained: boolean;
  citations: Citation[];
  standaloneQuestion: string | null;
}

/** The job's final state when it gave no answer: the server's error frame. */
export class ChatFailed extends Error {
  constructor(
    readonly code: string | null,
    message: string,
  ) {
    super(message);
    this.name = "ChatFailed";
  }

  get cancelled(): boolean {
    return this.code === "job_cancelled";
  }
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** Citations as the server sent them, keeping only well-formed ones. */
export function parseCitations(value: unknown): Citation[] {
  if (!Array.isArray(value)) return [];
  const out: Citation[] = [];
  for (const item of value) {
    const c = asRecord(item);
    if (!c) continue;
    const n = Number(c.n);
    const page = Number(c.page);
    if (!Number.isInteger(n) || !Number.isFinite(page) || typeof c.document_id !== "string") continue;
    const citation: Citation = {
      n,
      document_id: c.document_id,
      filename: String(c.filename ?? ""),
      page,
      snippet: String(c.snippet ?? ""),
      score: Number(c.score ?? 0),
    };
    // The passage's place in the page's text, when the server knows it.
    const start = c.char_start;
    const end = c.char_end;
    if (Number.isInteger(start) && Number.isInteger(end) && (start as number) >= 0 && (end as number) > (start as number)) {
      citation.char_start = start as number;
      citation.char_end = end as number;
    }
    out.push(citation);
  }
  return out.sort((a, b) => a.n - b.n);
}

/** Reads the chunks of one streamed completion; exported for tests. */
export class CompletionReader {
  jobId = "";
  text = "";
  final: ChatAnswer | null = null;

  constructor(private readonly callbacks: ChatCallbacks = {}) {}

  /** One `data:` payload. Returns true at `[DONE]`. Throws ChatFailed on an error frame. */
  feed(data: string): boolean {
    if (data === "[DONE]") return true;
    let chunk: Record<string, unknown> | null;
    try {
      chunk = asRecord(JSON.parse(data));
    } catch {
      return false;
    }
    if (!chunk) return false;
    const error = asRecord(chunk.error);
    if (error) {
      throw new ChatFailed(
        typeof error.code === "string" ? error.code : null,
        String(error.message ?? "the question was not answered"),
      );
    }
    const extra = asRecord(chunk.documind);
    if (typeof extra?.job_id === "string") this.setJob(extra.job_id);
    else if (typeof chunk.id === "string" && chunk.id.startsWith(CHUNK_ID_PREFIX)) {
      this.setJob(chunk.id.slice(CHUNK_ID_PREFIX.length));
    }
    const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
    const delta = asRecord(asRecord(choices[0])?.delta);
    if (delta && typeof delta.content === "string" && delta.content) {
      this.text += delta.content;
      this.callbacks.onText?.(delta.content);
    }
    // The first chunk's `documind` has the job id only; the last one's has the answer's data.
    if (extra && typeof extra.mode === "string") {
      const jobId = typeof extra.job_id === "string" ? extra.job_id : this.jobId;
      // `answer` is there only when the stored answer differs from what was streamed.
      const answer = typeof extra.answer === "string" ? extra.answer : this.text;
      const citations = parseCitations(extra.citations);
      this.final = {
        jobId,
        answer,
        mode: extra.mode,
        // `abstained`, else `answerable: false`; a server that says neither: an answer citing nothing abstained.
        abstained:
          typeof extra.abstained === "boolean"
            ? extra.abstained
            : typeof extra.answerable === "boolean"
              ? !extra.answerable
              : citations.length === 0,
        citations,
        standaloneQuestion: typeof extra.standalone_question === "string" ? extra.standalone_question : null,
      };
    }
    return false;
  }

  /** The job answering (from the response's header or a chunk): told once. */
  setJob(jobId: string): void {
    if (this.jobId || !jobId) return;
    this.jobId = jobId;
    this.callbacks.onJob?.(jobId);
  }
}

/**
 * Asks `messages`' last (user) message of `collection`, streaming the answer. Resolves
 * with the answer; rejects with ApiError (refused before it started), ChatFailed (the
 * job failed or was cancelled), NetworkError, or AbortError when `signal` aborts.
 */
export async function askStreaming(
  client: ApiClient,
  collection: string,
  messages: ChatMessage[],
  callbacks: ChatCallbacks = {},
  signal?: AbortSignal,
): Promise<ChatAnswer> {
  const response = await client.request("/v1/chat/completions", {
    method: "POST",
    json: { model: collection, messages, stream: true },
    headers: { Accept: "text/event-stream" },
    signal,
  });
  if (!response.body) throw new NetworkError("The server sent no answer stream.");
  const reader = new CompletionReader(callbacks);
  reader.setJob(response.headers.get(JOB_ID_HEADER) ?? "");
  for await (const event of readSse(response.body)) {
    if (reader.feed(event.data)) break;
  }
  if (!reader.final) throw new NetworkError("The answer stream ended before the answer was complete.");
  return reader.final;
}

