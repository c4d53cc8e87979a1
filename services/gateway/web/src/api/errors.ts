/**
 * Errors as a person reads them. The API answers `{"detail": "..."}` (REST) or
 * `{"error": {"message": "..."}}` (OpenAI routes); ApiError carries the status, the
 * server's sentence and Retry-After. describe() says what happened and what to do.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly retryAfterS: number | null = null,
    readonly code: string | null = null,
  ) {
    super(detail);
    this.name = "ApiError";
  }
}

/** The network failed or the server went away (no HTTP status). */
export class NetworkError extends Error {
  constructor(message = "The server could not be reached.") {
    super(message);
    this.name = "NetworkError";
  }
}

/** The server's sentence from an error body (REST or OpenAI shape), or null. */
export function detailOf(body: unknown): string | null {
  if (body && typeof body === "object") {
    const record = body as Record<string, unknown>;
    if (typeof record.detail === "string") return record.detail;
    const error = record.error;
    if (error && typeof error === "object") {
      const message = (error as Record<string, unknown>).message;
      if (typeof message === "string") return message;
    }
    if (typeof error === "string") return error;
  }
  return null;
}

function codeOf(body: unknown): string | null {
  if (body && typeof body === "object") {
    const error = (body as Record<string, unknown>).error;
    if (error && typeof error === "object") {
      const code = (error as Record<string, unknown>).code;
      if (typeof code === "string") return code;
    }
  }
  return null;
}

/** An ApiError from a response that is not ok (its body read as JSON when it is). */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  const retry = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  let body: unknown = null;
  let text = "";
  try {
    text = await response.text();
    body = JSON.parse(text);
  } catch {
    // Not JSON: the text itself (shown as text, never as HTML).
  }
  const detail = detailOf(body) ?? (text.trim().slice(0, 300) || response.statusText || "no reason given");
  return new ApiError(response.status, detail, Number.isFinite(retry) ? retry : null, codeOf(body));
}

/** The server's sentence without its final period (describe() adds its own). */
function bare(detail: string): string {
  return detail.trim().replace(/[.]+$/, "");
}

function wait(retryAfterS: number | null): string {
  return retryAfterS === null ? "in a moment" : `in ${retryAfterS} s`;
}

/** One readable sentence (or two) for any error. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) {
    const { status, retryAfterS } = error;
    const detail = bare(error.detail);
    switch (status) {
      case 401:
        return `The API key was refused (${detail}). Sign in again with a valid key.`;
      case 403:
        return `This API key may not do that: ${detail}.`;
      case 404:
        return `Not found: ${detail}.`;
      case 409:
        return `${detail}.`;
      case 413:
        return `Too large: ${detail}.`;
      case 415:
        return `Unsupported file: ${detail}.`;
      case 422:
        return `Invalid: ${detail}.`;
      case 429:
        return `Too many requests (${detail}). Try again ${wait(retryAfterS)}.`;
      case 503:
        return `The service is busy or the queue is full (${detail}). Try again ${wait(retryAfterS)}.`;
      default:
        return status >= 500 ? `The server failed: ${detail}.` : `${detail}.`;
    }
  }
  if (error instanceof NetworkError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** An aborted request or wait (by name: fetch's DOMException may come from another realm). */
export function isAbort(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { name?: unknown }).name === "AbortError";
}
