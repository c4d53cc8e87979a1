import { getByRole, getAllByRole, queryByRole } from "@testing-library/dom";
import { describe, expect, it, vi } from "vitest";
import type { Citation } from "../src/api/types";
import { citationName, isNoAnswer, linkMarkers, modeText, renderAnswer } from "../src/ui/answerView";

const manual: Citation = { n: 1, document_id: "d1", filename: "manual.pdf", page: 12, snippet: "Hold the power button.", score: 0.8 };
const notes: Citation = { n: 2, document_id: "d2", filename: "notes.md", page: 3, snippet: "Reset <b>now</b>", score: 0.5 };

function mount(node: Node): HTMLElement {
  const host = document.createElement("div");
  host.appendChild(node);
  document.body.appendChild(host);
  return host;
}

describe("citations", () => {
  it("are named <filename> p. <N>", () => {
    expect(citationName(manual)).toBe("manual.pdf p. 12");
  });

  it("turn each [n] of the answer and each source into a link with that name", () => {
    const onCite = vi.fn();
    const host = mount(
      renderAnswer({ question: "q", answer: "Hold it [1]. Or [1, 2] and [9].", mode: "extractive", citations: [manual, notes] }, onCite),
    );
    const manualLinks = getAllByRole(host, "link", { name: "manual.pdf p. 12" });
    // Two markers in the text, one source.
    expect(manualLinks).toHaveLength(3);
    expect(getAllByRole(host, "link", { name: "notes.md p. 3" })).toHaveLength(2);
    // [9] cites nothing: it stays text.
    expect(host.textContent).toContain("[9]");
    expect(queryByRole(host, "link", { name: /9/ })).toBeNull();
    // Named by their content, not an aria-label that would leave out the number shown
    // (axe's label-content-name-mismatch, WCAG 2.5.3).
    for (const link of manualLinks) expect(link.hasAttribute("aria-label")).toBe(false);
    manualLinks[0]?.click();
    expect(onCite).toHaveBeenCalledWith(manual, manualLinks[0]);
  });

  it("show the server's text as text, never as markup", () => {
    const host = mount(
      renderAnswer(
        { question: "q", answer: '<img src=x onerror="alert(1)"> [2]', mode: "llm:<i>x</i>", citations: [notes] },
        () => {},
      ),
    );
    expect(host.querySelector("img")).toBeNull();
    expect(host.querySelector("b")).toBeNull();
    expect(host.querySelector("i")).toBeNull();
    expect(host.textContent).toContain('<img src=x onerror="alert(1)">');
    expect(host.textContent).toContain("Reset <b>now</b>");
  });

  it("keep text between markers in order", () => {
    const parts = linkMarkers("a [1] b", [manual], () => {});
    const shown = (p: unknown): string =>
      typeof p === "string" ? p : ((p as HTMLElement).querySelector('[aria-hidden="true"]')?.textContent ?? "");
    expect(parts.map(shown)).toEqual(["a ", "[", "1", "]", " b"]);
  });
});

describe("answers", () => {
  it("say their mode: extractive or the LLM's name", () => {
    expect(modeText("extractive")).toMatch(/extractive/i);
    expect(modeText("llm:gpt-4o-mini")).toBe("Written by gpt-4o-mini");
  });

  it("look different when the documents hold no answer", () => {
    const none = mount(renderAnswer({ question: "q", answer: "I could not find anything.", mode: "extractive", citations: [] }, () => {}));
    const some = mount(renderAnswer({ question: "q", answer: "Yes [1].", mode: "extractive", citations: [manual] }, () => {}));
    expect(none.querySelector(".answer")?.getAttribute("data-kind")).toBe("no-answer");
    expect(none.textContent).toContain("No answer in your documents");
    expect(some.querySelector(".answer")?.getAttribute("data-kind")).toBe("answered");
    expect(some.textContent).not.toContain("No answer in your documents");
    expect(getByRole(some, "heading", { name: "Sources" })).toBeTruthy();
  });

  it("follow the server's abstained flag when it is given", () => {
    // An LLM's reply citing nothing that still answers (the server says it did not abstain)...
    const uncited = mount(
      renderAnswer({ question: "q", answer: "It is blue.", mode: "llm:x", citations: [], abstained: false }, () => {}),
    );
    expect(uncited.querySelector(".answer")?.getAttribute("data-kind")).toBe("answered");
    // ...and a declined one, whatever it cites.
    const declined = mount(
      renderAnswer({ question: "q", answer: "Not there [1].", mode: "llm:x", citations: [manual], abstained: true }, () => {}),
    );
    expect(declined.querySelector(".answer")?.getAttribute("data-kind")).toBe("no-answer");
    expect(isNoAnswer([], undefined)).toBe(true);
    expect(isNoAnswer([manual], undefined)).toBe(false);
  });
});
