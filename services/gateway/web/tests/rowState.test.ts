import { describe, expect, it } from "vitest";
import type { DocumentView } from "../src/api/types";
import {
  type RowInput,
  type RowState,
  fraction,
  liveDocument,
  newRow,
  nextRow,
  statusText,
} from "../src/upload/rowState";

function doc(status: string, embedded: number, total: number | null, extra: Partial<DocumentView> = {}): DocumentView {
  return {
    document_id: "d1",
    collection: "docs",
    filename: "manual.pdf",
    type: "pdf",
    size: 100,
    sha256: "x",
    pages: null,
    chunks: total,
    status,
    error: null,
    progress: { chunks_embedded: embedded, chunks_total: total },
    job_id: "j1",
    created_at: 1,
    ...extra,
  };
}

function run(inputs: RowInput[], start: RowState = newRow("manual.pdf", "docs")): RowState[] {
  const states: RowState[] = [];
  let state = start;
  for (const input of inputs) {
    state = nextRow(state, input);
    states.push(state);
  }
  return states;
}

const accepted: RowInput = { kind: "accepted", documentId: "d1", jobId: "j1", duplicate: false, replaces: 0 };

describe("an upload row", () => {
  it("moves queued, parsing, embedding n of total, indexing, ready as events and snapshots come", () => {
    const states = run([
      accepted,
      { kind: "event", type: "queued", data: {} },
      { kind: "snapshot", document: doc("parsing", 0, null) },
      { kind: "event", type: "embedding", data: { stage: "embedder" } },
      { kind: "snapshot", document: doc("embedding", 32, 96) },
      { kind: "snapshot", document: doc("indexing", 96, 96) },
      { kind: "event", type: "done", data: { chunks: 96, pages: 12 } },
    ]);
    expect(states.map(statusText)).toEqual([
      "queued",
      "queued",
      "parsing",
      "embedding",
      "embedding 32 of 96 chunks",
      "indexing",
      "ready, 12 pages, 96 chunks",
    ]);
    expect(fraction(states[4] as RowState)).toBeCloseTo(1 / 3);
  });

  it("moves on the job's events alone: parsing, the counts part by part, indexing, ready", () => {
    const event = (type: string, data: Record<string, unknown> = {}): RowInput => ({ kind: "event", type, data });
    const states = run([
      accepted,
      event("queued"),
      event("parsing", { document_id: "d1", filename: "manual.pdf" }),
      event("parsed", { document_id: "d1", pages: 12, chunks_total: 96, parts: 3 }),
      event("embedded", { part: 1, parts: 3, chunks_embedded: 32, chunks_total: 96 }),
      // Parts done on other replicas may be told out of order: the count never goes back.
      event("embedded", { part: 2, parts: 3, chunks_embedded: 64, chunks_total: 96 }),
      event("embedded", { part: 0, parts: 3, chunks_embedded: 40, chunks_total: 96 }),
      event("embedding", { stage: "embedder" }),
      event("indexing", { chunks_embedded: 96, chunks_total: 96 }),
      event("embedded", { part: 0, parts: 3, chunks_embedded: 96, chunks_total: 96 }),
      event("done", { chunks: 96, pages: 12 }),
    ]);
    expect(states.map(statusText)).toEqual([
      "queued",
      "queued",
      "parsing",
      "embedding 0 of 96 chunks",
      "embedding 32 of 96 chunks",
      "embedding 64 of 96 chunks",
      "embedding 64 of 96 chunks",
      "embedding 64 of 96 chunks",
      "indexing",
      "indexing",
      "ready, 12 pages, 96 chunks",
    ]);
    expect(states[3]?.pages).toBe(12);
    expect(fraction(states[5] as RowState)).toBeCloseTo(2 / 3);
    expect(fraction(states[8] as RowState)).toBe(1);
  });

  it("gives the documents table its document as the events say it is now", () => {
    const [, , embedding] = run([
      accepted,
      { kind: "event", type: "parsed", data: { pages: 3, chunks_total: 10 } },
      { kind: "event", type: "embedded", data: { chunks_embedded: 4, chunks_total: 10 } },
    ]);
    const stale = doc("queued", 0, null);
    expect(liveDocument(stale, embedding as RowState)).toMatchObject({
      status: "embedding",
      pages: 3,
      chunks: 10,
      progress: { chunks_embedded: 4, chunks_total: 10 },
    });
    // Nothing newer to say: the server's own document, as it was read.
    const ready = doc("ready", 10, 10);
    expect(liveDocument(ready, embedding as RowState)).toBe(ready);
    expect(liveDocument(doc("queued", 0, null, { document_id: "d2" }), embedding as RowState).status).toBe("queued");
  });

  it("never goes back for a snapshot read before the last event", () => {
    const [, , late] = run([
      accepted,
      { kind: "event", type: "done", data: { chunks: 5, pages: 1 } },
      { kind: "snapshot", document: doc("embedding", 2, 5) },
    ]);
    expect(late?.phase).toBe("ready");
    const [, embedding, older] = run([
      accepted,
      { kind: "snapshot", document: doc("embedding", 4, 10) },
      { kind: "snapshot", document: doc("parsing", 0, 10) },
    ]);
    expect(embedding?.embedded).toBe(4);
    expect(older?.phase).toBe("embedding");
    expect(older?.embedded).toBe(4);
  });

  it("fails with the reason the job gives", () => {
    const states = run([accepted, { kind: "event", type: "error", data: { status: "failed", error: "not a PDF" } }]);
    expect(statusText(states[1] as RowState)).toBe("failed: not a PDF");
  });

  it("takes a failed document's reason from a snapshot too", () => {
    const states = run([accepted, { kind: "snapshot", document: doc("failed", 0, null, { error: "encrypted" }) }]);
    expect(statusText(states[1] as RowState)).toBe("failed: encrypted");
  });

  it("says a duplicate is one", () => {
    const [dup] = run([{ kind: "accepted", documentId: "d0", jobId: "j0", duplicate: true, replaces: 0 }]);
    expect(dup?.phase).toBe("duplicate");
    expect(statusText(dup as RowState)).toMatch(/^duplicate: the same content is already/);
  });

  it("shows a retry while it waits, then carries on", () => {
    const states = run([
      accepted,
      { kind: "event", type: "retrying", data: { stage: "embedder", error: "model busy" } },
      { kind: "event", type: "embedding", data: {} },
    ]);
    expect(states[1]?.reason).toBe("retrying after: model busy");
    expect(states[2]?.reason).toBeNull();
  });

  it("starts as a name conflict when asked, and uploads with replace once chosen", () => {
    const start = newRow("manual.pdf", "docs", true);
    expect(statusText(start)).toMatch(/already in the collection/);
    const [uploading] = run([{ kind: "upload", replace: true }], start);
    expect(uploading?.phase).toBe("uploading");
    expect(uploading?.replace).toBe(true);
  });

  it("stays final: a later event changes nothing", () => {
    const states = run([
      accepted,
      { kind: "event", type: "cancelled", data: {} },
      { kind: "event", type: "embedding", data: {} },
      { kind: "snapshot", document: doc("ready", 3, 3) },
    ]);
    expect(states.slice(1).map((s) => s.phase)).toEqual(["cancelled", "cancelled", "cancelled"]);
  });
});
