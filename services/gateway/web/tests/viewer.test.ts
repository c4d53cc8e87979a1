import { getByRole, waitFor } from "@testing-library/dom";
import { describe, expect, it } from "vitest";
import { ApiClient } from "../src/api/client";
import { DocumentSource, parsePages } from "../src/viewer/documentSource";
import { Viewer } from "../src/viewer/viewer";
import { FakeApi } from "./fakeApi";

/** pdf.js stand-in: draws a page as a text layer of spans, as pdf.js's TextLayer does. */
function fakePdfModule(pages: string[][]) {
  const drawn: number[] = [];
  const module = {
    openPdf: async (bytes: ArrayBuffer) => ({ numPages: pages.length, bytes: bytes.byteLength }),
    drawPage: async (_pdf: unknown, page: number) => {
      drawn.push(page);
      const textLayer = document.createElement("div");
      textLayer.className = "textLayer";
      for (const text of pages[page - 1] ?? []) {
        const span = document.createElement("span");
        span.textContent = text;
        textLayer.appendChild(span);
      }
      const el = document.createElement("div");
      el.appendChild(textLayer);
      return { el, textLayer, pages: pages.length };
    },
  };
  return { module, drawn };
}

describe("the PDF viewer", () => {
  it("draws the cited page, marks the snippet in its text layer, and turns pages", async () => {
    const api = new FakeApi().on("GET", "/v1/documents/d1/file", () => new Response(new Uint8Array([37, 80, 68, 70])));
    const { module, drawn } = fakePdfModule([["Cover"], ["Section 2. Hold the pow", "er button for ten seconds."], ["End"]]);
    const viewer = new Viewer(
      new DocumentSource(new ApiClient("k", () => {}, api.fetch)),
      async () => module as unknown as typeof import("../src/viewer/pdfView"),
    );
    document.body.appendChild(viewer.el);
    const invoker = document.createElement("a");
    invoker.href = "#x";
    document.body.appendChild(invoker);
    await viewer.open({ documentId: "d1", filename: "Manual.PDF", page: 2, snippet: "Hold the power button for ten seconds." }, invoker);
    expect(drawn).toEqual([2]);
    const marks = [...viewer.el.querySelectorAll(".textLayer mark")].map((m) => m.textContent);
    expect(marks).toEqual(["Hold the pow", "er button for ten seconds."]);
    expect(getByRole(viewer.el, "status").textContent).toBe("The cited passage is highlighted.");
    expect(getByRole(viewer.el, "heading").textContent).toBe("Manual.PDF, page 2 of 3");
    expect(document.activeElement).toBe(getByRole(viewer.el, "heading"));

    getByRole(viewer.el, "button", { name: "Next page" }).click();
    await waitFor(() => expect(drawn).toEqual([2, 3]));
    await waitFor(() => expect((getByRole(viewer.el, "button", { name: "Next page" }) as HTMLButtonElement).disabled).toBe(true));
    // The file was fetched once, with the key.
    expect(api.count("GET", "/v1/documents/d1/file")).toBe(1);
    expect(api.requests[0]?.headers.get("Authorization")).toBe("Bearer k");

    getByRole(viewer.el, "button", { name: "Close viewer" }).click();
    expect(viewer.el.hidden).toBe(true);
    expect(document.activeElement).toBe(invoker);
  });

  it("says when the passage is not on the page, and when the document cannot be read", async () => {
    const api = new FakeApi()
      .on("GET", "/v1/documents/d1/file", () => new Response(new Uint8Array([1])))
      .on("GET", "/v1/documents/gone/file", () => new Response(JSON.stringify({ detail: "document gone not found" }), { status: 404 }));
    const { module } = fakePdfModule([["Nothing relevant here at all."]]);
    const viewer = new Viewer(new DocumentSource(new ApiClient("k", () => {}, api.fetch)), async () => module as never);
    document.body.appendChild(viewer.el);
    await viewer.open({ documentId: "d1", filename: "a.pdf", page: 1, snippet: "Hold the power button for ten seconds." });
    expect(getByRole(viewer.el, "status").textContent).toBe("The cited passage could not be found on this page.");
    await viewer.open({ documentId: "gone", filename: "b.pdf", page: 1, snippet: "x" });
    expect(getByRole(viewer.el, "status").textContent).toBe("The document could not be shown: Not found: document gone not found.");
  });
});

describe("the text endpoint's pages", () => {
  it("are read from a list or from {pages}", () => {
    expect(parsePages([{ page: 1, text: "a" }, { page: 2, text: "b" }])).toEqual([
      { page: 1, text: "a" },
      { page: 2, text: "b" },
    ]);
    expect(parsePages({ pages: [{ text: "x" }] })).toEqual([{ page: 1, text: "x" }]);
    expect(parsePages("nonsense")).toEqual([]);
  });
});
