/**
 * The viewer: a document at a page, the cited passage marked. A PDF shows the page as
 * pdf.js draws it, its text layer on top, the snippet's text in <mark> elements; any
 * other format shows the document's extracted text, scrolled to the passage, marked
 * the same way. Focus moves to the viewer's heading when it opens and back to the link
 * that opened it when it closes (Close, or Escape).
 */
import type { PDFDocumentProxy } from "pdfjs-dist";
import { describe } from "../api/errors";
import { button, h, on, replaceChildren, uid } from "../lib/dom";
import type { DocumentSource } from "./documentSource";
import { type Span, highlight } from "./highlight";
import { renderTextPages } from "./textView";

export interface ViewTarget {
  documentId: string;
  filename: string;
  page: number;
  /** The cited passage (none when a document is opened from the table). */
  snippet: string;
  /**
   * Where the passage is in the page's extracted text (the citation's char_start and
   * char_end), when known: the text view marks exactly that. A PDF's text layer is
   * pdf.js's, not that text: there the snippet is found as it is written.
   */
  passage?: Span | null;
}

type PdfModule = typeof import("./pdfView");

export function isPdf(filename: string): boolean {
  return filename.toLowerCase().endsWith(".pdf");
}

export class Viewer {
  readonly el: HTMLElement;
  private readonly heading: HTMLHeadingElement;
  private readonly status: HTMLElement;
  private readonly body: HTMLElement;
  private readonly prev: HTMLButtonElement;
  private readonly next: HTMLButtonElement;
  private readonly download: HTMLButtonElement;
  private target: ViewTarget | null = null;
  private pages = 0;
  private invoker: HTMLElement | null = null;
  private opening = 0;
  private pdfModule: Promise<PdfModule> | null = null;
  private readonly pdfs = new Map<string, Promise<PDFDocumentProxy>>();

  constructor(
    private readonly source: DocumentSource,
    private readonly loadPdfModule: () => Promise<PdfModule> = () => import("./pdfView"),
  ) {
    const headingId = uid("viewer");
    this.heading = h("h2", { id: headingId, tabindex: -1 }, "Document viewer");
    this.status = h("p", { class: "viewer-status", role: "status" });
    this.body = h("div", { class: "viewer-body" });
    this.prev = button("Previous page", () => void this.turn(-1));
    this.next = button("Next page", () => void this.turn(1));
    this.download = button("Download original", () => void this.save());
    this.el = h(
      "section",
      { role: "region", "aria-label": "Document viewer", "aria-describedby": headingId, class: "viewer", hidden: true },
      h(
        "div",
        { class: "viewer-bar" },
        this.heading,
        h(
          "div",
          { class: "buttons" },
          this.prev,
          this.next,
          this.download,
          button("Close viewer", () => this.close()),
        ),
      ),
      this.status,
      this.body,
    );
    on(this.el, "keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.close();
      }
    });
  }

  get current(): ViewTarget | null {
    return this.target;
  }

  async open(target: ViewTarget, invoker: HTMLElement | null = null): Promise<void> {
    this.target = target;
    this.invoker = invoker;
    this.pages = 0;
    this.el.hidden = false;
    this.heading.focus();
    await this.show();
  }

  close(): void {
    this.opening += 1;
    this.el.hidden = true;
    this.target = null;
    replaceChildren(this.body);
    replaceChildren(this.status);
    if (this.invoker?.isConnected) this.invoker.focus();
    this.invoker = null;
  }

  private async turn(step: number): Promise<void> {
    if (!this.target) return;
    const page = this.target.page + step;
    if (page < 1 || (this.pages && page > this.pages)) return;
    this.target = { ...this.target, page, snippet: "", passage: null };
    await this.show();
  }

  private title(): string {
    const t = this.target;
    return t ? `${t.filename}, page ${t.page}${this.pages ? ` of ${this.pages}` : ""}` : "Document viewer";
  }

  private async show(): Promise<void> {
    const target = this.target;
    if (!target) return;
    const attempt = ++this.opening;
    replaceChildren(this.heading, this.title());
    replaceChildren(this.status, "Loading…");
    replaceChildren(this.body);
    try {
      const marks = isPdf(target.filename) ? await this.showPdf(target, attempt) : await this.showText(target, attempt);
      if (attempt !== this.opening || marks === null) return;
      replaceChildren(this.heading, this.title());
      this.prev.disabled = target.page <= 1;
      this.next.disabled = this.pages > 0 && target.page >= this.pages;
      if (!target.snippet) replaceChildren(this.status);
      else if (marks.length) replaceChildren(this.status, "The cited passage is highlighted.");
      else replaceChildren(this.status, "The cited passage could not be found on this page.");
      marks[0]?.scrollIntoView?.({ block: "center" });
    } catch (error) {
      if (attempt === this.opening) replaceChildren(this.status, `The document could not be shown: ${describe(error)}`);
    }
  }

  private pdf(documentId: string): Promise<PDFDocumentProxy> {
    let found = this.pdfs.get(documentId);
    if (!found) {
      this.pdfModule ??= this.loadPdfModule();
      const module = this.pdfModule;
      found = this.source.file(documentId).then(async (bytes) => (await module).openPdf(bytes));
      found.catch(() => this.pdfs.delete(documentId));
      this.pdfs.set(documentId, found);
    }
    return found;
  }

  private async showPdf(target: ViewTarget, attempt: number): Promise<HTMLElement[] | null> {
    const pdf = await this.pdf(target.documentId);
    const module = await (this.pdfModule ?? this.loadPdfModule());
    if (attempt !== this.opening) return null;
    this.pages = pdf.numPages;
    const width = Math.min(Math.max(this.body.clientWidth - 16, 320), 1000);
    const drawn = await module.drawPage(pdf, target.page, width);
    if (attempt !== this.opening) return null;
    replaceChildren(this.body, drawn.el);
    return target.snippet ? highlight(drawn.textLayer, target.snippet) : [];
  }

  private async showText(target: ViewTarget, attempt: number): Promise<HTMLElement[] | null> {
    const pages = await this.source.text(target.documentId);
    if (attempt !== this.opening) return null;
    this.pages = pages.length;
    const rendered = renderTextPages(pages, target.page, target.snippet, target.passage ?? null);
    replaceChildren(this.body, rendered.el);
    if (!rendered.marks.length) rendered.page?.scrollIntoView?.({ block: "start" });
    return rendered.marks;
  }

  /** Saves the original file (as a download: never opened in this origin). */
  private async save(): Promise<void> {
    const target = this.target;
    if (!target) return;
    try {
      const bytes = await this.source.file(target.documentId);
      const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
      const link = h("a", { href: url, download: target.filename, hidden: true });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      replaceChildren(this.status, `The original could not be downloaded: ${describe(error)}`);
    }
  }
}
