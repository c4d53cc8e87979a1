/**
 * An answer as the page shows it: its text with each [n] a link to its source, the
 * sources under it, and its mode. Every link is named `<filename> p. <N>`; all text is
 * text nodes (the answer and the snippets come from the server and from documents).
 */
import type { Citation } from "../api/types";
import { type Child, h, on } from "../lib/dom";

export type OnCite = (citation: Citation, invoker: HTMLElement) => void;

/** A citation's accessible name: `<filename> p. <N>`. */
export function citationName(citation: Pick<Citation, "filename" | "page">): string {
  return `${citation.filename} p. ${citation.page}`;
}

/**
 * A link to a citation; `text` is what shows ("2" in the answer's [2], the name in the
 * sources). Its accessible name is always `<filename> p. <N>`: a marker's number is
 * hidden from assistive technology and the name is in visually hidden text (not an
 * aria-label, whose name would leave out the text shown).
 */
export function citationLink(citation: Citation, text: string, onCite: OnCite): HTMLAnchorElement {
  const name = citationName(citation);
  const content =
    text === name
      ? [text]
      : [h("span", { "aria-hidden": "true" }, text), h("span", { class: "sr-only" }, name)];
  const link = h(
    "a",
    { href: `#source-${citation.n}`, class: "citation", title: text === name ? null : name },
    ...content,
  );
  return on(link, "click", (event) => {
    event.preventDefault();
    onCite(citation, link);
  });
}

// "[1]", "[1, 2]", "[1][2]" (each number its own link).
const MARKER = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

/** One paragraph's content: text, with the markers of known citations as links. */
export function linkMarkers(text: string, citations: readonly Citation[], onCite: OnCite): Child[] {
  const byNumber = new Map(citations.map((c) => [c.n, c]));
  const out: Child[] = [];
  let last = 0;
  for (const match of text.matchAll(MARKER)) {
    const numbers = (match[1] ?? "").split(",").map((n) => Number.parseInt(n.trim(), 10));
    if (!numbers.some((n) => byNumber.has(n))) continue;
    out.push(text.slice(last, match.index));
    out.push("[");
    numbers.forEach((n, i) => {
      if (i > 0) out.push(", ");
      const citation = byNumber.get(n);
      out.push(citation ? citationLink(citation, String(n), onCite) : String(n));
    });
    out.push("]");
    last = match.index + match[0].length;
  }
  out.push(text.slice(last));
  return out.filter((part) => part !== "");
}

/** The answer's text as paragraphs (blank lines separate them). */
export function answerBody(text: string, citations: readonly Citation[], onCite: OnCite): HTMLElement {
  const body = h("div", { class: "answer-text" });
  for (const paragraph of text.split(/\n\s*\n/)) {
    if (paragraph.trim()) body.appendChild(h("p", {}, ...linkMarkers(paragraph.trim(), citations, onCite)));
  }
  return body;
}

/** The sources under an answer: each a link named `<filename> p. <N>` and its snippet. */
export function sourcesList(citations: readonly Citation[], onCite: OnCite): HTMLElement {
  const items = citations.map((c) =>
    h(
      "li",
      { value: c.n },
      citationLink(c, citationName(c), onCite),
      c.snippet ? h("blockquote", { class: "snippet" }, c.snippet) : null,
    ),
  );
  return h("ol", { class: "sources" }, ...items);
}

/** The mode in words: "extractive", or the LLM's name. */
export function modeText(mode: string): string {
  if (mode === "extractive") return "Extractive: sentences quoted from your documents";
  if (mode.startsWith("llm:")) return `Written by ${mode.slice(4)}`;
  return mode ? `Mode: ${mode}` : "";
}

/**
 * Whether an answer is the "nothing in your documents" reply: the server's `abstained`
 * flag, or (from a server that does not send it) an answer citing nothing.
 */
export function isNoAnswer(citations: readonly Citation[], abstained?: boolean): boolean {
  return abstained ?? citations.length === 0;
}

export interface RenderedAnswer {
  question: string;
  answer: string;
  mode: string;
  citations: Citation[];
  /** The answerer declined (the server's flag). */
  abstained?: boolean;
  /** Stopped by the user: partial text, no sources. */
  stopped?: boolean;
}

/** A finished (or stopped) answer's content: kind, mode, text, sources. */
export function renderAnswer(answer: RenderedAnswer, onCite: OnCite, headingLevel: "h4" | "h5" = "h5"): HTMLElement {
  const none = !answer.stopped && isNoAnswer(answer.citations, answer.abstained);
  const kind = answer.stopped ? "stopped" : none ? "no-answer" : "answered";
  const title = answer.stopped ? "Stopped" : none ? "No answer in your documents" : null;
  const sourcesHeading = answer.citations.length ? h(headingLevel, { class: "sources-heading" }, "Sources") : null;
  return h(
    "div",
    { class: `answer ${kind}`, "data-kind": kind },
    title ? h("p", { class: "answer-kind" }, title) : null,
    answerBody(answer.answer, answer.citations, onCite),
    answer.mode ? h("p", { class: "mode" }, modeText(answer.mode)) : null,
    sourcesHeading,
    answer.citations.length ? sourcesList(answer.citations, onCite) : null,
  );
}
