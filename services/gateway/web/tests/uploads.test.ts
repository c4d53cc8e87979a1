import { describe, expect, it } from "vitest";
import { ApiClient } from "../src/api/client";
import { FOLLOWED_AT_ONCE, type UploadRow, Uploads } from "../src/upload/uploads";
import { FakeApi, Stream, json, settle } from "./fakeApi";

function file(name: string, text = "hello"): File {
  return new File([text], name, { type: "text/plain" });
}

function setup(api: FakeApi) {
  const activity: string[] = [];
  const seen: string[] = [];
  const uploads = new Uploads(new ApiClient("k", () => {}, api.fetch), {
    onRow: (row: UploadRow) => seen.push(`${row.state.filename}:${row.state.phase}`),
    onActivity: (c) => activity.push(c),
  });
  return { uploads, activity, seen };
}

describe("Uploads", () => {
  it("sends each file on its own and follows its job's events to ready", async () => {
    const api = new FakeApi();
    const stream = new Stream();
    let n = 0;
    api.on("POST", "/v1/collections/docs/documents", (request) => {
      n += 1;
      const form = request.body as FormData;
      const sent = form.get("file") as File;
      return json({ job_id: `j${n}`, document_id: `d${n}`, duplicate: false, documents: [{ filename: sent.name, job_id: `j${n}`, document_id: `d${n}`, duplicate: false, replaces: [] }] }, 202);
    });
    api.on("GET", "/v1/jobs/j1/events", (_r, init) => stream.response(init.signal));
    const { uploads, activity } = setup(api);
    const [row] = uploads.add("docs", [file("a.txt")], new Set());
    await settle();
    expect(row?.state.phase).toBe("queued");
    stream.event("queued", {}, "1-0");
    stream.event("parsing", { document_id: "d1", filename: "a.txt" }, "2-0");
    await settle();
    expect(row?.state.phase).toBe("parsing");
    stream.event("parsed", { document_id: "d1", pages: 1, chunks_total: 2, parts: 1 }, "3-0");
    stream.event("embedded", { document_id: "d1", part: 0, parts: 1, chunks_embedded: 2, chunks_total: 2 }, "4-0");
    await settle();
    expect(row?.state).toMatchObject({ phase: "embedding", embedded: 2, total: 2, pages: 1 });
    // The events carry the row: the documents are not read again on each of them.
    expect(activity).toEqual(["docs"]);
    stream.event("embedding", { stage: "embedder" }, "5-0");
    stream.event("indexing", { document_id: "d1", chunks_embedded: 2, chunks_total: 2 }, "6-0");
    await settle();
    expect(row?.state.phase).toBe("indexing");
    stream.event("done", { chunks: 2, pages: 1 }, "7-0");
    await settle();
    expect(row?.state.phase).toBe("ready");
    // Read when the document was added and once more when its upload ended.
    expect(activity).toEqual(["docs", "docs"]);
  });

  it("asks before a file whose name is taken, then replaces with ?replace=true", async () => {
    const api = new FakeApi();
    api.on("POST", /^\/v1\/collections\/docs\/documents(\?replace=true)?$/, () =>
      json({ job_id: "", document_id: "d9", duplicate: true, documents: [{ filename: "a.txt", job_id: "", document_id: "d9", duplicate: true }] }, 202),
    );
    const { uploads } = setup(api);
    const [row] = uploads.add("docs", [file("a.txt")], new Set(["a.txt"]));
    await settle();
    expect(row?.state.phase).toBe("conflict");
    expect(api.requests).toHaveLength(0);
    uploads.choose(row?.id ?? 0, true);
    await settle();
    expect(api.requests[0]?.path).toBe("/v1/collections/docs/documents?replace=true");
    // The same content was there: a duplicate says so, and nothing is followed.
    expect(row?.state.phase).toBe("duplicate");
    expect(api.count("GET", /events/)).toBe(0);
  });

  it("fails only the refused file's row, with the server's reason, and can retry it", async () => {
    const api = new FakeApi();
    api.on("POST", "/v1/collections/docs/documents", (request) => {
      const sent = (request.body as FormData).get("file") as File;
      if (sent.name.endsWith(".exe")) return json({ detail: "x.exe: unsupported file type '.exe'" }, 415);
      return json({ detail: "the queue is full" }, 503, { "Retry-After": "3" });
    });
    const { uploads } = setup(api);
    const [bad, busy] = uploads.add("docs", [file("x.exe"), file("b.txt")], new Set());
    await settle();
    expect(bad?.state.phase).toBe("failed");
    expect(bad?.state.reason).toBe("Unsupported file: x.exe: unsupported file type '.exe'.");
    expect(busy?.state.reason).toBe("The service is busy or the queue is full (the queue is full). Try again in 3 s.");
    api.on("POST", "/v1/collections/docs/documents", () =>
      json({ job_id: "j", document_id: "d", duplicate: false, documents: [{ filename: "b.txt", job_id: "j", document_id: "d", duplicate: false }] }, 202),
    );
    api.on("GET", "/v1/jobs/j/events", (_r, init) => new Stream().response(init.signal));
    uploads.retry(busy?.id ?? 0);
    await settle();
    expect(busy?.state.phase).toBe("queued");
  });

  it(`follows at most ${FOLLOWED_AT_ONCE} jobs at once, the next when one ends`, async () => {
    const api = new FakeApi();
    const streams = new Map<string, Stream>();
    let n = 0;
    api.on("POST", "/v1/collections/docs/documents", () => {
      n += 1;
      return json({ job_id: `j${n}`, document_id: `d${n}`, duplicate: false, documents: [{ filename: `f${n}`, job_id: `j${n}`, document_id: `d${n}`, duplicate: false }] }, 202);
    });
    api.on("GET", /^\/v1\/jobs\/j\d\/events$/, (request, init) => {
      const stream = new Stream();
      streams.set(request.path.split("/")[3] as string, stream);
      return stream.response(init.signal);
    });
    const { uploads } = setup(api);
    uploads.add("docs", [file("1.txt"), file("2.txt"), file("3.txt")], new Set());
    await settle(30);
    expect([...streams.keys()]).toEqual(["j1", "j2"]);
    streams.get("j1")?.event("done", { chunks: 1 });
    await settle(30);
    expect([...streams.keys()]).toEqual(["j1", "j2", "j3"]);
    uploads.dispose();
  });

  it("takes status and progress from the collection's documents", async () => {
    const api = new FakeApi();
    api.on("POST", "/v1/collections/docs/documents", () =>
      json({ job_id: "j1", document_id: "d1", duplicate: false, documents: [{ filename: "a.txt", job_id: "j1", document_id: "d1", duplicate: false }] }, 202),
    );
    api.on("GET", "/v1/jobs/j1/events", (_r, init) => new Stream().response(init.signal));
    const { uploads } = setup(api);
    const [row] = uploads.add("docs", [file("a.txt")], new Set());
    await settle();
    uploads.snapshot("docs", [
      {
        document_id: "d1", collection: "docs", filename: "a.txt", type: "txt", size: 5, sha256: "", pages: null,
        chunks: 40, status: "embedding", progress: { chunks_embedded: 8, chunks_total: 40 }, job_id: "j1", created_at: 1,
      },
    ]);
    expect(row?.state.phase).toBe("embedding");
    expect(row?.state.embedded).toBe(8);
    expect(row?.state.total).toBe(40);
    uploads.dispose();
  });
});
