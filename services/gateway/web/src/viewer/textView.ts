/**
 * A document's extracted text, page by page (DOCX, HTML, Markdown, text: the formats
 * without a page image), each page a section headed "Page N". The cited page's
 * passage is marked: exactly where the citation's offsets say (they index the page's
 * text as the server extracted it, which is what is shown), else by finding its snippet.
 */
import type { PageText } from "../api/types";
import { h, uid } from "../lib/dom";
import { type Span, findSnippet, highlight, markSpan, textNodes } from "./highlight";

/** Pages shown around the cited one in a long document. */
export const PAGES_AROUND = 25;

export interface TextRendering {
  el: HTMLElement;
  /** The cited page's section, if the document has it. */
  page: HTMLElement | null;
  marks: HTMLElement[];
}

/** A paragraph of a page as shown: its text (trimmed) and where it starts in the page's text. */
export interface Paragraph {
  text: string;
  start: number;
}

/** The page's text cut at blank lines, each piece trimmed, empty ones left out. */
export function paragraphsOf(text: string): Paragraph[] {
  const out: Paragraph[] = [];
  let from = 0;
  const take = (end: number): void => {
    const raw = text.slice(from, end);
    const body = raw.trim();
    if (body) out.push({ text: body, start: from + raw.length - raw.trimStart().length });
  };
  for (const blank of text.matchAll(/\n\s*\n/g)) {
    take(blank.index);
    from = blank.index + blank[0].length;
  }
  take(text.length);
  return out;
}

/**
 * The part of `span` (offsets into the page's text) that is shown, as offsets into the
 * paragraphs' texts joined (what the page's text nodes hold); null when none is.
 */
export function shownSpan(paragraphs: readonly Paragraph[], span: Span): Span | null {
  let offset = 0;
  let start = -1;
  let end = -1;
  for (const p of paragraphs) {
    const from = Math.max(span.start, p.start);
    const to = Math.min(span.end, p.start + p.text.length);
    if (from < to) {
      if (start < 0) start = offset + from - p.start;
      end = offset + to - p.start;
    }
    offset += p.text.length;
  }
  return start < 0 ? null : { start, end };
}

/**
 * Where to mark on a page, from the citation's offsets: within them, the snippet when
 * it is there (the server may give its chunk's span), else the whole span; null when
 * the offsets do not fit the page.
 */
export function exactSpan(text: string, passage: Span, snippet: string): Span | null {
  if (passage.start < 0 || passage.end > text.length || passage.end <= passage.start) return null;
  const within = snippet ? findSnippet(text.slice(passage.start, passage.end), snippet) : null;
  return within ? { start: passage.start + within.start, end: passage.start + within.end } : passage;
}

function pageSection(page: PageText, only: boolean): HTMLElement {
  const headingId = uid("text-page");
  const paragraphs = paragraphsOf(page.text).map((p) => h("p", {}, p.text));
  // A document of one page (every format but PDF) needs no page heading.
  return h(
    "section",
    {
      class: "text-page",
      "aria-labelledby": only ? null : headingId,
      "aria-label": only ? `Page ${page.page}` : null,
      "data-page": page.page,
    },
    // Under the viewer's heading (h2).
    only ? null : h("h3", { id: headingId }, `Page ${page.page}`),
    paragraphs.length
      ? h("div", { class: "page-text" }, ...paragraphs)
      : h("p", { class: "placeholder" }, "(no text on this page)"),
  );
}

/** The cited passage marked by its offsets on `page`'s section; none when they do not fit. */
function markPassage(page: PageText, text: Element, passage: Span, snippet: string): HTMLElement[] {
  const span = exactSpan(page.text, passage, snippet);
  const shown = span ? shownSpan(paragraphsOf(page.text), span) : null;
  return shown ? markSpan(textNodes(text), shown) : [];
}

export function renderTextPages(
  pages: readonly PageText[],
  cited: number,
  snippet: string,
  passage: Span | null = null,
): TextRendering {
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
  const citedText = pages[at];
  let marks = text && passage && citedText?.page === cited ? markPassage(citedText, text, passage, snippet) : [];
  if (!marks.length && text && snippet) marks = highlight(text, snippet);
  for (const other of el.querySelectorAll(".page-text")) {
    // Not on the page the citation names: the first page shown that has it.
    if (marks.length || !snippet || other === text) continue;
    marks = highlight(other, snippet);
  }
  return { el, page, marks };
}
