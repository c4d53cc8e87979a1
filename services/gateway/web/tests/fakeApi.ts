/**
 * A fake DocuMind API for component tests: a fetch() that routes "METHOD /path" to
 * handlers, records every request, and can answer with an event stream the test feeds
 * piece by piece.
 */
export interface Recorded {
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
}

export type Handler = (request: Recorded, init: RequestInit) => Response | Promise<Response>;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

/** An event stream the test writes to: push() frames, end() it. */
export class Stream {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private readonly encoder = new TextEncoder();
  readonly body = new ReadableStream<Uint8Array>({
    start: (controller) => {
      this.controller = controller;
    },
  });
  closed = false;

  push(text: string): void {
    if (!this.closed) this.controller.enqueue(this.encoder.encode(text));
  }

  event(type: string, data: unknown, id = ""): void {
    this.push(`${id ? `id: ${id}\n` : ""}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  data(data: unknown): void {
    this.push(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  }

  end(): void {
    if (!this.closed) this.controller.close();
    this.closed = true;
  }

  fail(): void {
    if (!this.closed) this.controller.error(new TypeError("network error"));
    this.closed = true;
  }

  /** The response carrying this stream; aborting `signal` cuts it as fetch() would. */
  response(signal?: AbortSignal | null, headers: Record<string, string> = {}): Response {
    signal?.addEventListener("abort", () => {
      if (!this.closed) this.controller.error(new DOMException("aborted", "AbortError"));
      this.closed = true;
    });
    return new Response(this.body, { headers: { "Content-Type": "text/event-stream", ...headers } });
  }
}

export class FakeApi {
  readonly requests: Recorded[] = [];
  private readonly routes: Array<[string, RegExp, Handler]> = [];

  /** Answers `method` requests whose path (with query) matches `pattern`. Later routes win. */
  on(method: string, pattern: string | RegExp, handler: Handler): this {
    const regex = typeof pattern === "string" ? new RegExp(`^${pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) : pattern;
    this.routes.unshift([method, regex, handler]);
    return this;
  }

  readonly fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const path = String(input);
    const method = (init.method ?? "GET").toUpperCase();
    const headers = new Headers(init.headers);
    let body: unknown = init.body;
    if (typeof init.body === "string" && headers.get("Content-Type") === "application/json") {
      body = JSON.parse(init.body);
    }
    const recorded: Recorded = { method, path, headers, body };
    this.requests.push(recorded);
    if (init.signal?.aborted) throw new DOMException("aborted", "AbortError");
    for (const [m, regex, handler] of this.routes) {
      if (m === method && regex.test(path)) {
        const response = await handler(recorded, init);
        return response;
      }
    }
    return json({ detail: `no route ${method} ${path}` }, 404);
  };

  count(method: string, path: string | RegExp): number {
    return this.requests.filter(
      (r) => r.method === method && (typeof path === "string" ? r.path === path : path.test(r.path)),
    ).length;
  }
}

export const WRITER = {
  id: "abc123",
  tenant: "acme",
  role: "writer",
  collections: null,
  requests_per_minute: 600,
  permissions: ["read", "write"],
};

export const READER = { ...WRITER, id: "def456", role: "reader", permissions: ["read"] };

/** Lets pending promises and stream reads run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i += 1) await new Promise((resolve) => setTimeout(resolve, 0));
}
