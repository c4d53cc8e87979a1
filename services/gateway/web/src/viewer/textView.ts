/**
 * A document's extracted text, page by page (DOCX, HTML, Markdown, text: the formats
 * without a page image), each page a section headed "Page N". The cited page's
 * passage is marked.
 */
import type { PageText } from "../api/types";
import { h, uid } from "../lib/dom";
import { highlight } from "./highlight";

/** Pages shown around the cited one in a long document. */
export const PAGES_AROUND = 25;

export interface TextRendering {
  el: HTMLElement;
  /** The cited page's section, if the document has it. */
  page: HTMLElement | null;
  marks: HTMLElement[];
}

function pageSection(page: PageText, only: boolean): HTMLElement {
  const headingId = uid("text-page");
  const paragraphs = page.text
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => h("p", {}, p));
  // A document of one page (every format but PDF) needs no page heading.
  return h(
    "section",
    {
      class: "text-page",
      "aria-labelledby": only ? null : headingId,
      "aria-label": only ? `Page ${page.page}` : null,
      "data-page": page.page,
    },
    only ? null : h("h4", { id: headingId }, `Page ${page.page}`),
    paragraphs.length
      ? h("div", { class: "page-text" }, ...paragraphs)
      : h("p", { class: "placeholder" }, "(no text on this page)"),
  );
}

export function renderTextPages(pages: readonly PageText[], cited: number, snippet: string): TextRendering {
  const at = Math.max(
    pages.findIndex((p) => p.page === cited),
    0,
  );
  const first = Math.max(at - PAGES_AROUND, 0);
  const shown = pages.slice(first, at + PAGES_AROUND + 1);
  const sections = shown.map((page) => pageSection(page, pages.length === 1));
  const el = h("div", { class: "text-document" });
  if (shown.length < pages.length) {
    const last = shown[shown.length - 1]?.page ?? cited;
    el.appendChild(
      h("p", { class: "help" }, `Showing pages ${shown[0]?.page ?? cited} to ${last} of ${pages.length}.`),
    );
  }
  for (const section of sections) el.appendChild(section);
  const page = sections.find((s) => s.dataset.page === String(cited)) ?? null;
  const text = page?.querySelector(".page-text");
  let marks = text && snippet ? highlight(text, snippet) : [];
  for (const other of el.querySelectorAll(".page-text")) {
    // Not on the page the citation names: the first page shown that has it.
    if (marks.length || !snippet || other === text) continue;
    marks = highlight(other, snippet);
  }
  return { el, page, marks };
}
