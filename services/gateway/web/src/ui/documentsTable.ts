/**
 * A collection's documents: file, type, pages, chunks, status, when added; each with
 * "View" (the original, in the viewer) and, for writers, "Delete" after a confirmation.
 */
import type { DocumentView } from "../api/types";
import { actionButton, h, replaceChildren, setAttrs, uid } from "../lib/dom";
import { confirmInPlace } from "./confirm";

export interface DocumentsOptions {
  canWrite: boolean;
  onView: (doc: DocumentView, invoker: HTMLElement) => void;
  onDelete: (doc: DocumentView) => Promise<void>;
}

/** A document's status in words. */
export function documentStatus(doc: DocumentView): string {
  switch (doc.status) {
    case "failed":
      return `failed: ${doc.error || "no reason given"}`;
    case "embedding": {
      const { chunks_embedded: done, chunks_total: total } = doc.progress;
      return total ? `embedding ${done} of ${total} chunks` : "embedding";
    }
    default:
      return doc.status;
  }
}

function when(seconds: number): string {
  if (!seconds) return "";
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

function dash(value: number | null): string {
  return value === null ? "–" : String(value);
}

/**
 * The table's own scroll container, for when its columns cannot all fit (a narrow
 * window, a large zoom): while it overflows it is a region named by the table's caption
 * and a Tab stop, so the keyboard scrolls it too (arrow keys), not only reaches its
 * buttons. When everything fits it is a plain box, no extra Tab stop.
 */
function scrollRegion(table: HTMLTableElement, captionId: string): HTMLElement {
  const wrap = h("div", { class: "table-wrap" }, table);
  const sync = (): void => {
    const overflows = wrap.scrollWidth > wrap.clientWidth + 1;
    setAttrs(wrap, {
      role: overflows ? "region" : null,
      "aria-labelledby": overflows ? captionId : null,
      tabindex: overflows ? 0 : null,
    });
  };
  // jsdom (the component tests) has no layout and no ResizeObserver.
  if (typeof ResizeObserver !== "undefined") {
    const observer = new ResizeObserver(sync);
    observer.observe(wrap);
    observer.observe(table);
  }
  return wrap;
}

export class DocumentsTable {
  readonly el: HTMLElement;
  private readonly heading: HTMLElement;
  private readonly body: HTMLTableSectionElement;
  private readonly table: HTMLTableElement;
  private readonly empty: HTMLElement;
  private readonly caption: HTMLElement;
  private readonly problem: HTMLElement;

  constructor(private readonly opts: DocumentsOptions) {
    const headingId = uid("documents");
    this.heading = h("h3", { id: headingId }, "Documents");
    this.body = h("tbody");
    const captionId = uid("documents-caption");
    this.caption = h("caption", { id: captionId, class: "sr-only" }, "Documents");
    this.table = h(
      "table",
      { class: "documents-table" },
      this.caption,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["File", "Type", "Pages", "Chunks", "Status", "Added"].map((name) => h("th", { scope: "col" }, name)),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      this.body,
    );
    this.empty = h("p", { class: "placeholder" }, "No documents yet.");
    this.problem = h("p", { class: "error", role: "alert" });
    this.el = h(
      "section",
      { "aria-labelledby": headingId, class: "documents" },
      this.heading,
      this.problem,
      scrollRegion(this.table, captionId),
      this.empty,
    );
  }

  /** Says what went wrong (empty: nothing). */
  report(text: string): void {
    replaceChildren(this.problem, text);
  }

  render(collection: string, documents: readonly DocumentView[]): void {
    replaceChildren(this.caption, `Documents in ${collection}`);
    this.empty.hidden = documents.length > 0;
    this.table.hidden = documents.length === 0;
    const sorted = [...documents].sort((a, b) => b.created_at - a.created_at);
    replaceChildren(this.body, ...sorted.map((doc) => this.row(doc)));
  }

  private row(doc: DocumentView): HTMLTableRowElement {
    const view = actionButton("View", doc.filename, () => this.opts.onView(doc, view));
    const actions = h("td", { class: "actions" }, view);
    if (this.opts.canWrite) {
      const del = actionButton("Delete", doc.filename, () => void this.remove(doc, del), { class: "danger" });
      actions.appendChild(del);
    }
    return h(
      "tr",
      { "data-status": doc.status, "data-document": doc.document_id },
      h("th", { scope: "row" }, doc.filename),
      h("td", {}, doc.type),
      h("td", { class: "pages" }, dash(doc.pages)),
      h("td", { class: "chunks" }, dash(doc.chunks)),
      h("td", { class: `status status-${doc.status}` }, documentStatus(doc)),
      h("td", {}, when(doc.created_at)),
      actions,
    );
  }

  /**
   * One document's pages, chunks and status changed (its upload's events say so): its
   * row's cells are updated in place, so focus and an open confirmation stay.
   */
  update(doc: DocumentView): void {
    const row = Array.from(this.body.rows).find((tr) => tr.dataset.document === doc.document_id);
    if (!row) return;
    row.dataset.status = doc.status;
    const pages = row.querySelector("td.pages");
    const chunks = row.querySelector("td.chunks");
    const status = row.querySelector("td.status");
    if (pages) replaceChildren(pages, dash(doc.pages));
    if (chunks) replaceChildren(chunks, dash(doc.chunks));
    if (status) {
      status.className = `status status-${doc.status}`;
      replaceChildren(status, documentStatus(doc));
    }
  }

  private async remove(doc: DocumentView, invoker: HTMLElement): Promise<void> {
    const sure = await confirmInPlace(
      this.el,
      {
        title: `Delete ${doc.filename}?`,
        message: "It is removed from this collection and no answer cites it again.",
        confirm: "Delete",
      },
      invoker,
    );
    if (sure) await this.opts.onDelete(doc);
  }
}
