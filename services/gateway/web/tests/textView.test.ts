import { describe, expect, it } from "vitest";
import { exactSpan, paragraphsOf, renderTextPages, shownSpan } from "../src/viewer/textView";

const PAGE = "  Title line\n\n  First paragraph,\nwrapped.  \n \nSecond one.\n\n\n";

describe("a page's paragraphs", () => {
  it("are its text cut at blank lines and trimmed, each knowing where it starts", () => {
    const paragraphs = paragraphsOf(PAGE);
    expect(paragraphs.map((p) => p.text)).toEqual(["Title line", "First paragraph,\nwrapped.", "Second one."]);
    for (const p of paragraphs) expect(PAGE.slice(p.start, p.start + p.text.length)).toBe(p.text);
  });

  it("map a span of the page's text onto the text shown, gaps left out", () => {
    const paragraphs = paragraphsOf(PAGE);
    const start = PAGE.indexOf("wrapped");
    const end = PAGE.indexOf("one.") + 4;
    const shown = shownSpan(paragraphs, { start, end });
    const joined = paragraphs.map((p) => p.text).join("");
    expect(shown && joined.slice(shown.start, shown.end)).toBe("wrapped.Second one.");
    // Only the blank lines between paragraphs: nothing shown to mark.
    expect(shownSpan(paragraphs, { start: PAGE.indexOf("\n \n"), end: PAGE.indexOf("Second") })).toBeNull();
  });
});

describe("the exact span", () => {
  it("is the snippet within the offsets, or the offsets themselves, or nothing when they do not fit", () => {
    const text = "Alpha. Beta gamma delta. Epsilon.";
    const chunk = { start: 7, end: text.length };
    expect(exactSpan(text, chunk, "gamma  delta")).toEqual({ start: 12, end: 23 });
    expect(exactSpan(text, chunk, "not there at all, not at all")).toEqual(chunk);
    expect(exactSpan(text, { start: 5, end: 500 }, "Beta")).toBeNull();
  });
});

describe("the text view", () => {
  it("marks the passage the offsets give across paragraphs, and falls back to the snippet without them", () => {
    const pages = [{ page: 1, text: PAGE }];
    const start = PAGE.indexOf("wrapped");
    const end = PAGE.indexOf("one.") + 4;
    const exact = renderTextPages(pages, 1, "wrapped. Second one.", { start, end });
    expect(exact.marks.map((m) => m.textContent)).toEqual(["wrapped.", "Second one."]);
    const loose = renderTextPages(pages, 1, "First paragraph, wrapped.");
    expect(loose.marks.map((m) => m.textContent).join("")).toBe("First paragraph,\nwrapped.");
    // Offsets past the page's text: the snippet is found as before.
    const stale = renderTextPages(pages, 1, "Second one.", { start: 900, end: 950 });
    expect(stale.marks.map((m) => m.textContent)).toEqual(["Second one."]);
  });
});
