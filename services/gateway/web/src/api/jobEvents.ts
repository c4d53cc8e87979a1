/**
 * A job's events (GET /v1/jobs/{id}/events) followed as they come, with the Bearer
 * header. A stream cut before the job's final event is resumed after the last event
 * seen (Last-Event-ID), a few times with a growing pause.
 */
import { type ApiClient, seg } from "./client";
import { ApiError, NetworkError, isAbort } from "./errors";
import { readSse } from "./sse";

export interface JobEvent {
  id: string;
  type: string;
  data: Record<string, unknown>;
}

export const TERMINAL = new Set(["done", "error", "cancelled"]);

export interface FollowOptions {
  signal?: AbortSignal;
  /** Reconnections after a cut before giving up. */
  retries?: number;
  /** The first pause before reconnecting, doubled each time. */
  backoffMs?: number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    });
  });
}

function parseData(data: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(data);
    return parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Calls `onEvent` with each event of the job, in order, and resolves with its final
 * event (done, error or cancelled). Rejects with ApiError (404: no such job, 401...),
 * NetworkError once the retries are spent, or AbortError when `signal` aborts.
 */
export async function followJob(
  client: ApiClient,
  jobId: string,
  onEvent: (event: JobEvent) => void,
  options: FollowOptions = {},
): Promise<JobEvent> {
  const retries = options.retries ?? 5;
  const pause = options.sleep ?? sleep;
  let backoff = options.backoffMs ?? 500;
  let lastId = "";
  for (let attempt = 0; ; attempt += 1) {
    try {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await client.request(`/v1/jobs/${seg(jobId)}/events`, {
        headers,
        signal: options.signal,
      });
      if (!response.body) throw new NetworkError("The server sent no event stream.");
      for await (const message of readSse(response.body)) {
        lastId = message.id || lastId;
        const event: JobEvent = { id: message.id, type: message.event, data: parseData(message.data) };
        onEvent(event);
        if (TERMINAL.has(event.type)) return event;
      }
      // The stream ended without a final event: resume after the last one.
      if (attempt >= retries) throw new NetworkError("The job's events stopped before it finished.");
    } catch (error) {
      if (isAbort(error) || options.signal?.aborted) throw error;
      // Busy (503) or over the rate limit (429): wait as told; anything else is final.
      if (error instanceof ApiError && error.status !== 503 && error.status !== 429) throw error;
      if (attempt >= retries) throw error;
      if (error instanceof ApiError && error.retryAfterS !== null) {
        backoff = Math.max(backoff, error.retryAfterS * 1000);
      }
    }
    await pause(backoff, options.signal);
    backoff = Math.min(backoff * 2, 8000);
  }
}
