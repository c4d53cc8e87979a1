import { describe, expect, it } from "vitest";
import { cleanSnippet, clearMarks, findSnippet, highlight } from "../src/viewer/highlight";

function spans(...texts: string[]): HTMLElement {
  // As pdf.js's text layer: one span per text item.
  const layer = document.createElement("div");
  for (const text of texts) {
    const span = document.createElement("span");
    span.textContent = text;
    layer.appendChild(span);
  }
  document.body.appendChild(layer);
  return layer;
}

describe("findSnippet", () => {
  it("finds the snippet whatever the whitespace, case, quotes and dashes", () => {
    const text = "Intro.\nHold the “power”\n   button for ten\u2013twelve seconds. Then release.";
    const span = findSnippet(text, 'hold the "power" button for ten-twelve seconds.');
    expect(span).not.toBeNull();
    expect(text.slice(span?.start, span?.end)).toBe("Hold the “power”\n   button for ten\u2013twelve seconds.");
  });

  it("ignores the ellipsis of a clipped snippet", () => {
    expect(cleanSnippet("The device resets when …")).toBe("The device resets when");
    const text = "Sometimes the device resets when the battery is low.";
    const span = findSnippet(text, "the device resets when…");
    expect(text.slice(span?.start, span?.end)).toBe("the device resets when");
  });

  it("marks the longest stretch when the page's text differs in part", () => {
    const text = "Press and hold the power button for ten seconds until the light blinks.";
    const span = findSnippet(text, "hold the power button for ten seconds until the lamp flashes");
    expect(text.slice(span?.start, span?.end)).toBe("hold the power button for ten seconds until the l");
  });

  it("finds nothing when the passage is not there", () => {
    expect(findSnippet("Completely different words on this page.", "Hold the power button for ten seconds")).toBeNull();
    expect(findSnippet("anything", "   ")).toBeNull();
  });
});

describe("highlight", () => {
  it("wraps the passage in <mark> elements across text-layer spans, by splitting text nodes", () => {
    const layer = spans("Chapter 2. Hold the pow", "er button for ten ", "seconds. Then release.");
    const marks = highlight(layer, "Hold the power button for ten seconds.");
    expect(marks.map((m) => m.textContent)).toEqual(["Hold the pow", "er button for ten ", "seconds."]);
    expect(layer.querySelectorAll("mark")).toHaveLength(3);
    // The page's text is unchanged, only wrapped.
    expect(layer.textContent).toBe("Chapter 2. Hold the power button for ten seconds. Then release.");
    expect(layer.querySelector("span")?.firstChild?.textContent).toBe("Chapter 2. ");
  });

  it("keeps text that looks like markup as text", () => {
    const layer = spans("Use <script>alert(1)</script> carefully");
    const marks = highlight(layer, "<script>alert(1)</script>");
    expect(marks).toHaveLength(1);
    expect(layer.querySelector("script")).toBeNull();
    expect(marks[0]?.textContent).toBe("<script>alert(1)</script>");
  });

  it("clears its marks", () => {
    const layer = spans("one two three");
    highlight(layer, "two");
    expect(layer.querySelectorAll("mark")).toHaveLength(1);
    clearMarks(layer);
    expect(layer.querySelectorAll("mark")).toHaveLength(0);
    expect(layer.textContent).toBe("one two three");
  });
});
