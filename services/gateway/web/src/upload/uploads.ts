/**
 * Uploads: one request per file (so one unreadable file fails only its own row), one
 * at a time, each row then following its ingest job's events. A file whose name is
 * already in the collection waits for the user's choice: replace that document, or
 * upload it as a new one. Rows change only through `nextRow` (rowState.ts). The job's
 * events carry the row's status and progress; the collection's documents are read
 * again only when a document is added and when its upload ends.
 */
import { type ApiClient, seg } from "../api/client";
import { ApiError, describe, isAbort } from "../api/errors";
import { followJob } from "../api/jobEvents";
import type { DocumentView, UploadAccepted, UploadedDocument } from "../api/types";
import { Limiter } from "../lib/limiter";
import { FINAL, type RowInput, type RowState, newRow, nextRow } from "./rowState";

export interface UploadRow {
  id: number;
  file: File;
  state: RowState;
}

export interface UploadHooks {
  /** A row changed (or was added). */
  onRow: (row: UploadRow) => void;
  /**
   * A collection's documents changed in a way the events do not tell whole: a document
   * was added, or one's upload ended (or is no longer followed). Time to read them again.
   */
  onActivity: (collection: string) => void;
}

/** Event streams followed at once (see Limiter). */
export const FOLLOWED_AT_ONCE = 2;

export class Uploads {
  readonly rows = new Map<number, UploadRow>();
  private nextId = 1;
  private readonly sending = new Limiter(1);
  private readonly followers = new Limiter(FOLLOWED_AT_ONCE);
  private readonly stop = new AbortController();

  constructor(
    private readonly client: ApiClient,
    private readonly hooks: UploadHooks,
  ) {}

  /** Adds a row per file and starts those whose name is free. */
  add(collection: string, files: Iterable<File>, takenNames: ReadonlySet<string>): UploadRow[] {
    const added: UploadRow[] = [];
    for (const file of files) {
      const conflict = takenNames.has(file.name);
      const row: UploadRow = { id: this.nextId++, file, state: newRow(file.name, collection, conflict) };
      this.rows.set(row.id, row);
      this.hooks.onRow(row);
      added.push(row);
      if (!conflict) void this.send(row, false);
    }
    return added;
  }

  /** The user's answer for a row: replace the same-named documents, or add a new one. */
  choose(id: number, replace: boolean): void {
    const row = this.rows.get(id);
    if (row && (row.state.phase === "conflict" || row.state.phase === "failed")) void this.send(row, replace);
  }

  /** A refused upload, sent again as it was. */
  retry(id: number): void {
    const row = this.rows.get(id);
    if (row && row.state.phase === "failed" && !row.state.jobId) void this.send(row, row.state.replace);
  }

  /** Removes the rows that are done (ready, duplicate, failed, cancelled). */
  clearFinished(): void {
    for (const [id, row] of this.rows) if (FINAL.has(row.state.phase)) this.rows.delete(id);
  }

  /** Feeds a collection's documents, as just read, to the rows of that collection. */
  snapshot(collection: string, documents: DocumentView[]): void {
    const byId = new Map(documents.map((d) => [d.document_id, d]));
    for (const row of this.rows.values()) {
      const doc = row.state.documentId ? byId.get(row.state.documentId) : undefined;
      if (row.state.collection === collection && doc) this.dispatch(row, { kind: "snapshot", document: doc });
    }
  }

  /** Stops every request and stream (sign-out). */
  dispose(): void {
    this.stop.abort();
  }

  private dispatch(row: UploadRow, input: RowInput): void {
    const state = nextRow(row.state, input);
    if (state === row.state) return;
    row.state = state;
    this.hooks.onRow(row);
  }

  private async send(row: UploadRow, replace: boolean): Promise<void> {
    this.dispatch(row, { kind: "upload", replace });
    const { collection } = row.state;
    let accepted: UploadAccepted;
    try {
      accepted = await this.sending.run(() => {
        const form = new FormData();
        form.append("file", row.file, row.file.name);
        const query = replace ? "?replace=true" : "";
        return this.client.json<UploadAccepted>(`/v1/collections/${seg(collection)}/documents${query}`, {
          method: "POST",
          body: form,
          signal: this.stop.signal,
        });
      });
    } catch (error) {
      if (!isAbort(error)) this.dispatch(row, { kind: "refused", reason: describe(error) });
      return;
    }
    const doc: UploadedDocument = accepted.documents[0] ?? {
      filename: row.file.name,
      job_id: accepted.job_id,
      document_id: accepted.document_id,
      duplicate: accepted.duplicate,
    };
    this.dispatch(row, {
      kind: "accepted",
      documentId: doc.document_id,
      jobId: doc.job_id,
      duplicate: doc.duplicate,
      replaces: doc.replaces?.length ?? 0,
    });
    this.hooks.onActivity(collection);
    if (!doc.duplicate) void this.follow(row, doc.job_id);
  }

  private async follow(row: UploadRow, jobId: string): Promise<void> {
    const { collection } = row.state;
    try {
      await this.followers.run(() =>
        followJob(
          this.client,
          jobId,
          (event) => this.dispatch(row, { kind: "event", type: event.type, data: event.data }),
          { signal: this.stop.signal },
        ),
      );
      // Ended (ready, failed, cancelled): the table's figures are the server's again.
      this.hooks.onActivity(collection);
    } catch (error) {
      if (isAbort(error)) return;
      if (error instanceof ApiError && error.status === 404) {
        // The job is gone (expired): the document's own status says how it ended.
        this.hooks.onActivity(collection);
        return;
      }
      // Its status is still read with the collection's documents.
      this.dispatch(row, { kind: "note", reason: `not followed live: ${describe(error)}` });
      this.hooks.onActivity(collection);
    }
  }
}
