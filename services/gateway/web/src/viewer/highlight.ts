/**
 * Finding a cited snippet in a page's text and marking it with <mark> elements, by
 * splitting the page's own text nodes: no HTML is built from the text.
 *
 * The snippet is the server's sentence with whitespace collapsed (and "…" where it was
 * cut); the page's text comes from pdf.js's text layer or from the document's extracted
 * text, which may break lines, hyphens and spaces differently. So both are compared
 * without whitespace, case, or typographic variants (quotes, dashes, ligatures); when
 * the whole snippet is not there, its longest stretch that is (at least half of it,
 * or 24 characters) is marked.
 */

export interface Span {
  start: number;
  end: number;
}

/** Text folded for matching, with each folded character's index in the original. */
export interface Folded {
  text: string;
  map: number[];
}

const FOLD: Record<string, string> = {
  "\u2018": "'",
  "\u2019": "'",
  "\u201a": "'",
  "\u201b": "'",
  "\u2032": "'",
  "\u201c": '"',
  "\u201d": '"',
  "\u201e": '"',
  "\u2033": '"',
  "\u2010": "-",
  "\u2011": "-",
  "\u2012": "-",
  "\u2013": "-",
  "\u2014": "-",
  "\u2212": "-",
  "\u00ad": "",
};

export function fold(text: string): Folded {
  let out = "";
  const map: number[] = [];
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i] as string;
    if (/\s/.test(ch)) continue;
    const mapped = FOLD[ch] ?? ch.normalize("NFKC").toLowerCase();
    for (const piece of mapped) {
      if (/\s/.test(piece)) continue;
      out += piece;
      map.push(i);
    }
  }
  return { text: out, map };
}

/** The snippet as the server cut it: without a trailing ellipsis. */
export function cleanSnippet(snippet: string): string {
  return snippet.trim().replace(/(?:\u2026|\.\.\.)$/u, "").trim();
}

/** The longest common substring of a and b: [start in a, start in b, length]. */
function longestCommon(a: string, b: string): [number, number, number] {
  let best: [number, number, number] = [0, 0, 0];
  let prev = new Uint16Array(b.length + 1);
  let row = new Uint16Array(b.length + 1);
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      if (a.charCodeAt(i - 1) === b.charCodeAt(j - 1)) {
        const length = Math.min((prev[j - 1] as number) + 1, 65535);
        row[j] = length;
        if (length > best[2]) best = [i - length, j - length, length];
      } else {
        row[j] = 0;
      }
    }
    [prev, row] = [row, prev];
  }
  return best;
}

/** Where `snippet` is in `text` (indexes into `text`), or null. */
export function findSnippet(text: string, snippet: string): Span | null {
  const needle = fold(cleanSnippet(snippet)).text;
  if (!needle) return null;
  const hay = fold(text);
  let at = hay.text.indexOf(needle);
  let length = needle.length;
  if (at < 0) {
    // Compare at most a few pages' worth: the cited page is what is searched.
    const [start, , common] = longestCommon(hay.text.slice(0, 200_000), needle.slice(0, 2000));
    if (common < Math.min(24, needle.length) && common < needle.length / 2) return null;
    at = start;
    length = common;
  }
  const first = hay.map[at];
  const last = hay.map[at + length - 1];
  if (first === undefined || last === undefined) return null;
  return { start: first, end: last + 1 };
}

/** The text nodes under `root`, in document order. */
export function textNodes(root: Node): Text[] {
  const walker = root.ownerDocument?.createTreeWalker(root, NodeFilter.SHOW_TEXT) ?? null;
  const nodes: Text[] = [];
  if (!walker) return nodes;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node as Text);
  return nodes;
}

/**
 * Wraps the characters `span` covers (indexes into the concatenated text of `nodes`)
 * in <mark> elements, one per text node touched. Returns the marks.
 */
export function markSpan(nodes: Text[], span: Span): HTMLElement[] {
  const marks: HTMLElement[] = [];
  let offset = 0;
  for (const node of nodes) {
    const length = node.data.length;
    const from = Math.max(span.start - offset, 0);
    const to = Math.min(span.end - offset, length);
    offset += length;
    if (from >= to) continue;
    let target = node;
    if (from > 0) target = target.splitText(from);
    if (to - from < target.data.length) target.splitText(to - from);
    const mark = target.ownerDocument.createElement("mark");
    target.parentNode?.insertBefore(mark, target);
    mark.appendChild(target);
    marks.push(mark);
  }
  return marks;
}

/** Marks `snippet` in the text under `root`; the marks, none when it is not found. */
export function highlight(root: Node, snippet: string): HTMLElement[] {
  const nodes = textNodes(root);
  const span = findSnippet(nodes.map((n) => n.data).join(""), snippet);
  return span ? markSpan(nodes, span) : [];
}

/** Removes the marks under `root`, leaving their text where it was. */
export function clearMarks(root: Element): void {
  for (const mark of Array.from(root.querySelectorAll("mark"))) {
    const parent = mark.parentNode;
    if (!parent) continue;
    while (mark.firstChild) parent.insertBefore(mark.firstChild, mark);
    parent.removeChild(mark);
    parent.normalize();
  }
}
