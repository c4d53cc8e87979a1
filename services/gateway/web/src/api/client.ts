/**
 * The API client: every request carries `Authorization: Bearer <key>`; an answer that
 * is not ok becomes an ApiError. A 401 (the key revoked or expired meanwhile) is also
 * reported to `onUnauthorized`, which signs the user out with the reason.
 */
import { type ApiError, NetworkError, errorFromResponse, isAbort } from "./errors";

export type Fetch = typeof fetch;

export interface RequestOptions {
  method?: string;
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export class ApiClient {
  constructor(
    private readonly key: string,
    private readonly onUnauthorized: (error: ApiError) => void = () => {},
    private readonly fetchImpl: Fetch = (input, init) => fetch(input, init),
  ) {}

  /** The response of a request that succeeded (2xx); else throws ApiError or NetworkError. */
  async request(path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.key}`, ...options.headers };
    let body = options.body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let response: Response;
    try {
      response = await this.fetchImpl(path, {
        method: options.method ?? "GET",
        headers,
        body,
        signal: options.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new NetworkError();
    }
    if (!response.ok) {
      const error = await errorFromResponse(response);
      if (error.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async json<T>(path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.request(path, options);
    return (await response.json()) as T;
  }
}

/** A path segment, escaped (collection names and ids come from users and the server). */
export function seg(value: string): string {
  return encodeURIComponent(value);
}

