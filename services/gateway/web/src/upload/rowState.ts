/**
 * One uploaded file's row: what it shows, as a pure function of what happened to it.
 *
 * Inputs: the user's choice for a file whose name is taken (replace or upload as
 * new), the upload request's answer, the ingest job's events (queued, parsing, parsed
 * with the chunk total, embedded with chunks embedded of the total as each part is,
 * indexing, retrying, done / error / cancelled: they carry all a row shows) and
 * snapshots of the document (GET .../documents: when the job is not followed live).
 * The phase only moves forward (an older snapshot or a part reported late never takes
 * a row back), and a final phase stays.
 */
import type { DocumentView } from "../api/types";

export type Phase =
  | "conflict"
  | "uploading"
  | "queued"
  | "parsing"
  | "embedding"
  | "indexing"
  | "ready"
  | "duplicate"
  | "failed"
  | "cancelled";

export interface RowState {
  filename: string;
  collection: string;
  phase: Phase;
  documentId: string | null;
  jobId: string | null;
  embedded: number;
  total: number | null;
  pages: number | null;
  /** Why it failed, or what it is waiting for (a retry). */
  reason: string | null;
  /** With replace: how many documents of that name it replaces once ready. */
  replaces: number;
  /** Whether it was sent with ?replace=true. */
  replace: boolean;
}

export type RowInput =
  | { kind: "upload"; replace: boolean }
  | {
      kind: "accepted";
      documentId: string;
      jobId: string;
      duplicate: boolean;
      replaces: number;
    }
  | { kind: "refused"; reason: string }
  | { kind: "note"; reason: string }
  | { kind: "event"; type: string; data: Record<string, unknown> }
  | { kind: "snapshot"; document: DocumentView };

const RANK: Record<Phase, number> = {
  conflict: 0,
  uploading: 1,
  queued: 2,
  parsing: 3,
  embedding: 4,
  indexing: 5,
  ready: 9,
  duplicate: 9,
  failed: 9,
  cancelled: 9,
};

export const FINAL: ReadonlySet<Phase> = new Set(["ready", "duplicate", "failed", "cancelled"]);

export function newRow(filename: string, collection: string, conflict = false): RowState {
  return {
    filename,
    collection,
    phase: conflict ? "conflict" : "uploading",
    documentId: null,
    jobId: null,
    embedded: 0,
    total: null,
    pages: null,
    reason: null,
    replaces: 0,
    replace: false,
  };
}

function forward(state: RowState, phase: Phase, patch: Partial<RowState> = {}): RowState {
  if (FINAL.has(state.phase)) return state;
  // Progress never goes back either (a snapshot read before the last one answered).
  const embedded = Math.max(state.embedded, patch.embedded ?? 0);
  if (RANK[phase] < RANK[state.phase]) {
    return { ...state, embedded, total: patch.total ?? state.total };
  }
  return { ...state, ...patch, embedded, phase };
}

function num(value: unknown): number | null {
  const n = Number(value);
  return value === null || value === undefined || !Number.isFinite(n) ? null : n;
}

export function nextRow(state: RowState, input: RowInput): RowState {
  switch (input.kind) {
    case "upload":
      // A new attempt (after a refusal, or the user's choice on a name conflict).
      return { ...newRow(state.filename, state.collection), replace: input.replace };
    case "accepted":
      if (input.duplicate) {
        return {
          ...state,
          phase: "duplicate",
          documentId: input.documentId,
          jobId: input.jobId || null,
          reason: "the same content is already in this collection",
        };
      }
      return forward(state, "queued", {
        documentId: input.documentId,
        jobId: input.jobId,
        replaces: input.replaces,
      });
    case "refused":
      if (FINAL.has(state.phase)) return state;
      return { ...state, phase: "failed", reason: input.reason };
    case "note":
      return FINAL.has(state.phase) ? state : { ...state, reason: input.reason };
    case "event":
      return onEvent(state, input.type, input.data);
    case "snapshot":
      return onSnapshot(state, input.document);
  }
}

function onEvent(state: RowState, type: string, data: Record<string, unknown>): RowState {
  switch (type) {
    case "queued":
      return forward(state, "queued", { reason: null });
    case "parsing":
      return forward(state, "parsing", { reason: null });
    case "parsed":
      // Cut into chunks: embedding them is next.
      return forward(state, "embedding", {
        reason: null,
        pages: num(data.pages) ?? state.pages,
        total: num(data.chunks_total) ?? state.total,
      });
    case "embedded":
      // One part embedded: the document's chunks embedded so far, of the total.
      return forward(state, "embedding", {
        reason: null,
        embedded: num(data.chunks_embedded) ?? 0,
        total: num(data.chunks_total) ?? state.total,
      });
    case "embedding":
      // The embedder handed its last part on: it is past parsing.
      return forward(state, "embedding", { reason: null });
    case "indexing": {
      const total = num(data.chunks_total) ?? state.total;
      return forward(state, "indexing", { reason: null, total, embedded: total ?? state.embedded });
    }
    case "retrying": {
      if (FINAL.has(state.phase)) return state;
      const error = typeof data.error === "string" ? data.error : "a stage failed";
      return { ...state, reason: `retrying after: ${error}` };
    }
    case "done": {
      if (data.deleted === true) {
        return forward(state, "failed", { reason: "the document was deleted before it was ready" });
      }
      const chunks = num(data.chunks);
      return forward(state, "ready", {
        reason: null,
        pages: num(data.pages) ?? state.pages,
        total: chunks ?? state.total,
        embedded: chunks ?? state.embedded,
      });
    }
    case "error":
      return forward(state, "failed", {
        reason: typeof data.error === "string" && data.error ? data.error : "ingestion failed",
      });
    case "cancelled":
      return forward(state, "cancelled", { reason: "the upload's job was cancelled" });
    default:
      return state;
  }
}

const SNAPSHOT_PHASE: Record<string, Phase> = {
  queued: "queued",
  parsing: "parsing",
  embedding: "embedding",
  indexing: "indexing",
  ready: "ready",
  failed: "failed",
};

function onSnapshot(state: RowState, doc: DocumentView): RowState {
  const phase = SNAPSHOT_PHASE[doc.status];
  if (!phase) return state;
  const patch: Partial<RowState> = {
    embedded: doc.progress?.chunks_embedded ?? state.embedded,
    total: doc.progress?.chunks_total ?? doc.chunks ?? state.total,
    pages: doc.pages ?? state.pages,
  };
  if (phase === "failed") patch.reason = doc.error || "ingestion failed";
  return forward(state, phase, patch);
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** The row's status in words ("embedding 32 of 120 chunks", "failed: ..."). */
export function statusText(state: RowState): string {
  switch (state.phase) {
    case "conflict":
      return "a document with this name is already in the collection";
    case "uploading":
      return "uploading";
    case "embedding":
      return state.total ? `embedding ${state.embedded} of ${state.total} chunks` : "embedding";
    case "ready": {
      const chunks = state.total === null ? "" : `, ${count(state.total, "chunk")}`;
      const pages = state.pages === null ? "" : `, ${count(state.pages, "page")}`;
      return `ready${pages}${chunks}`;
    }
    case "duplicate":
      return `duplicate: ${state.reason ?? "already in this collection"}`;
    case "failed":
      return `failed: ${state.reason ?? "unknown reason"}`;
    case "cancelled":
      return "cancelled";
    default:
      return state.phase;
  }
}

/** Progress as a fraction for a progress bar, or null when it cannot be told. */
export function fraction(state: RowState): number | null {
  if (state.phase === "ready") return 1;
  if (state.phase === "indexing") return 1;
  if (state.phase === "embedding" && state.total) return Math.min(state.embedded / state.total, 1);
  return null;
}

/** Document statuses a row in flight stands for (the final ones come from the server). */
const LIVE_STATUS: Partial<Record<Phase, string>> = {
  queued: "queued",
  parsing: "parsing",
  embedding: "embedding",
  indexing: "indexing",
};

/**
 * `doc` as the row's events say it is now (status, pages, chunks, progress), for the
 * documents table between reads; `doc` itself when the row says nothing newer.
 */
export function liveDocument(doc: DocumentView, state: RowState): DocumentView {
  const status = LIVE_STATUS[state.phase];
  if (!status || state.documentId !== doc.document_id || doc.status === "ready" || doc.status === "failed") {
    return doc;
  }
  return {
    ...doc,
    status,
    pages: state.pages ?? doc.pages,
    chunks: state.total ?? doc.chunks,
    progress: {
      chunks_embedded: Math.max(state.embedded, doc.progress?.chunks_embedded ?? 0),
      chunks_total: state.total ?? doc.progress?.chunks_total ?? null,
    },
  };
}
