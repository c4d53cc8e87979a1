/**
 * axe-core on each screen: sign-in, the collections, a collection with an answer,
 * uploads and documents, a follow-up with the conversation so far, and the viewer. No
 * violation of moderate impact or worse. (jsdom has no layout, so colour contrast is
 * left to the browser tests.)
 */
import { findAllByRole, findByRole, getByRole, waitFor } from "@testing-library/dom";
import axe from "axe-core";
import { describe, expect, it } from "vitest";
import { App } from "../src/ui/app";
import { FakeApi, Stream, WRITER, json, settle } from "./fakeApi";

async function violations(): Promise<string[]> {
  const results = await axe.run(document, { resultTypes: ["violations"] });
  return results.violations
    .filter((v) => v.impact === "moderate" || v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

function fake(): FakeApi {
  return new FakeApi()
    .on("GET", "/v1/me", () => json(WRITER))
    .on("GET", "/v1/collections", () =>
      json({ collections: [{ name: "docs", description: "", created_at: 1, documents: 1, chunks: 2 }] }),
    )
    .on("GET", "/v1/collections/docs/documents", () =>
      json({
        documents: [
          {
            document_id: "d1", collection: "docs", filename: "notes.md", type: "md", size: 3, sha256: "", pages: 1,
            chunks: 2, status: "ready", error: null, progress: { chunks_embedded: 2, chunks_total: 2 }, job_id: "j", created_at: 1,
          },
        ],
      }),
    )
    .on("GET", "/v1/documents/d1/text", () => json([{ page: 1, text: "To reset it, hold the button." }]));
}

describe("accessibility", () => {
  it("has no moderate, serious or critical violation on any screen", async () => {
    const api = fake();
    const stream = new Stream();
    const followUp = new Stream();
    let asked = 0;
    api.on("POST", "/v1/chat/completions", (_r, init) => (asked++ ? followUp : stream).response(init.signal));
    api.on("POST", "/v1/collections/docs/documents", () =>
      json({ job_id: "j2", document_id: "d2", duplicate: false, documents: [{ filename: "a.txt", job_id: "j2", document_id: "d2", duplicate: false }] }, 202),
    );
    api.on("GET", "/v1/jobs/j2/events", (_r, init) => new Stream().response(init.signal));
    // As index.html has it.
    document.documentElement.lang = "en";
    const root = document.createElement("div");
    root.id = "app";
    document.body.appendChild(root);
    const app = new App(root, { fetch: api.fetch });
    await app.start();
    expect(await violations(), "sign-in").toEqual([]);

    const key = getByRole(root, "textbox", { name: "API key" }) as HTMLInputElement;
    key.value = "k";
    getByRole(root, "button", { name: "Sign in" }).click();
    await findByRole(root, "button", { name: "Open docs" });
    expect(await violations(), "collections").toEqual([]);

    getByRole(root, "button", { name: "Open docs" }).click();
    await findByRole(root, "button", { name: "View notes.md" });
    const input = root.querySelector('input[type="file"]') as HTMLInputElement;
    Object.defineProperty(input, "files", { value: [new File(["x"], "a.txt"), new File(["y"], "notes.md")] });
    input.dispatchEvent(new Event("change"));
    (getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement).value = "How?";
    getByRole(root, "button", { name: "Ask" }).click();
    await settle();
    const citation = { n: 1, document_id: "d1", filename: "notes.md", page: 1, snippet: "hold the button", score: 1 };
    stream.data({ id: "chatcmpl-j", choices: [{ delta: { content: "Hold the button [1]." } }], documind: { mode: "extractive", citations: [citation] } });
    stream.data("[DONE]");
    const region = getByRole(root, "region", { name: "Answer" });
    const [link] = await findAllByRole(region, "link", { name: "notes.md p. 1" });
    if (!link) throw new Error("no citation link");
    await settle();
    expect(await violations(), "collection with an answer and uploads").toEqual([]);

    // A follow-up: the first turn, its sources' heading with it, moves to the conversation.
    (getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement).value = "And then?";
    getByRole(root, "button", { name: "Ask" }).click();
    await settle();
    followUp.data({ id: "chatcmpl-k", choices: [{ delta: { content: "Let go [1]." } }], documind: { mode: "extractive", citations: [citation] } });
    followUp.data("[DONE]");
    const conversation = await findByRole(root, "region", { name: "Conversation so far" });
    expect(getByRole(conversation, "heading", { level: 4, name: "Conversation so far" })).toBeTruthy();
    expect(getByRole(conversation, "heading", { level: 5, name: "Sources" })).toBeTruthy();
    await waitFor(() => expect(region.getAttribute("aria-busy")).toBe("false"));
    await settle();
    expect(await violations(), "a follow-up and the conversation so far").toEqual([]);

    link.click();
    const viewer = getByRole(root, "region", { name: "Document viewer" });
    await waitFor(() => expect(viewer.querySelector("mark")).not.toBeNull());
    expect(await violations(), "viewer").toEqual([]);
    app.signOut();
    // Five axe runs over jsdom: seconds on a busy 2-core machine (vitest's default is 5 s).
  }, 60_000);
});
