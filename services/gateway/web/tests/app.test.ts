import { findAllByRole, findByRole, getByLabelText, getByRole, queryByRole, waitFor } from "@testing-library/dom";
import { describe, expect, it } from "vitest";
import { STORAGE_KEY } from "../src/session";
import { App } from "../src/ui/app";
import { FakeApi, READER, Stream, WRITER, json, settle } from "./fakeApi";

const COLLECTIONS = { collections: [{ name: "docs", description: "", created_at: 1, documents: 1, chunks: 4 }] };
const DOCS = {
  documents: [
    {
      document_id: "d1", collection: "docs", filename: "manual.pdf", type: "pdf", size: 10, sha256: "s",
      pages: 3, chunks: 4, status: "ready", error: null, progress: { chunks_embedded: 4, chunks_total: 4 },
      job_id: "j0", created_at: 1_700_000_000,
    },
  ],
};

function api(identity: object = WRITER): FakeApi {
  return new FakeApi()
    .on("GET", "/v1/me", (r) =>
      r.headers.get("Authorization") === "Bearer good" ? json(identity) : json({ detail: "invalid API key" }, 401),
    )
    .on("GET", "/v1/collections", () => json(COLLECTIONS))
    .on("GET", "/v1/collections/docs/documents", () => json(DOCS));
}

async function signedIn(fake: FakeApi): Promise<HTMLElement> {
  const root = document.createElement("div");
  document.body.appendChild(root);
  const app = new App(root, { fetch: fake.fetch, refreshMs: 10 });
  await app.start();
  const key = getByRole(root, "textbox", { name: "API key" }) as HTMLInputElement;
  key.value = "good";
  getByRole(root, "button", { name: "Sign in" }).click();
  await findByRole(root, "combobox", { name: "Collection" });
  return root;
}

async function openDocs(root: HTMLElement): Promise<void> {
  (await findByRole(root, "button", { name: "Open docs" })).click();
  await findByRole(root, "textbox", { name: "Question" });
}

describe("signing in", () => {
  it("refuses a bad key with the reason and keeps nothing", async () => {
    const root = document.createElement("div");
    document.body.appendChild(root);
    const app = new App(root, { fetch: api().fetch });
    await app.start();
    const key = getByRole(root, "textbox", { name: "API key" }) as HTMLInputElement;
    expect(document.activeElement).toBe(key);
    key.value = "bad";
    getByRole(root, "button", { name: "Sign in" }).click();
    const alert = await waitFor(() => {
      const found = getByRole(root, "alert");
      expect(found.textContent).toMatch(/API key was refused \(invalid API key\)/);
      return found;
    });
    expect(alert).toBeTruthy();
    expect(sessionStorage.getItem(STORAGE_KEY)).toBeNull();
  });

  it("keeps the key in the tab's session, sends it as Bearer, and sign-out clears it", async () => {
    const fake = api();
    const root = await signedIn(fake);
    expect(sessionStorage.getItem(STORAGE_KEY)).toBe("good");
    expect(localStorage.length).toBe(0);
    expect(fake.requests.every((r) => r.headers.get("Authorization") === "Bearer good" || r.path === "/v1/me")).toBe(true);
    getByRole(root, "button", { name: "Sign out" }).click();
    expect(sessionStorage.getItem(STORAGE_KEY)).toBeNull();
    expect(getByRole(root, "textbox", { name: "API key" })).toBeTruthy();
    expect(queryByRole(root, "combobox", { name: "Collection" })).toBeNull();
  });

  it("resumes the tab's session after a reload", async () => {
    sessionStorage.setItem(STORAGE_KEY, "good");
    const root = document.createElement("div");
    document.body.appendChild(root);
    await new App(root, { fetch: api().fetch }).start();
    expect(getByRole(root, "combobox", { name: "Collection" })).toBeTruthy();
  });

  it("offers uploads to a writer and not to a reader", async () => {
    const writer = await signedIn(api(WRITER));
    await openDocs(writer);
    expect(writer.querySelector('input[type="file"]')).not.toBeNull();
    expect(getByRole(writer, "button", { name: "Delete docs" })).toBeTruthy();
    getByRole(writer, "button", { name: "Sign out" }).click();
    writer.remove();

    const reader = await signedIn(api(READER));
    await openDocs(reader);
    expect(reader.querySelector('input[type="file"]')).toBeNull();
    expect(queryByRole(reader, "button", { name: /^Delete/ })).toBeNull();
    expect(queryByRole(reader, "heading", { name: "Upload" })).toBeNull();
  });

  it("signs out with the reason when the key is revoked meanwhile", async () => {
    const fake = api();
    const root = await signedIn(fake);
    fake.on("GET", "/v1/collections/docs/documents", () => json({ detail: "the API key was revoked" }, 401));
    (await findByRole(root, "button", { name: "Open docs" })).click();
    const key = await findByRole(root, "textbox", { name: "API key" });
    expect(key).toBeTruthy();
    expect(getByRole(root, "alert").textContent).toMatch(/revoked/);
    expect(sessionStorage.getItem(STORAGE_KEY)).toBeNull();
  });
});

describe("collections", () => {
  it("creates a collection typed into the combo box when Enter is pressed", async () => {
    const fake = api();
    let created = "";
    fake.on("POST", "/v1/collections", (r) => {
      created = (r.body as { name: string }).name;
      const notes = { name: created, description: "", created_at: 2, documents: 0, chunks: 0 };
      fake.on("GET", "/v1/collections", () => json({ collections: [...COLLECTIONS.collections, notes] }));
      return json(notes, 201);
    });
    fake.on("GET", "/v1/collections/notes/documents", () => json({ documents: [] }));
    const root = await signedIn(fake);
    await settle();
    const box = getByRole(root, "combobox", { name: "Collection" }) as HTMLInputElement;
    box.value = "notes";
    box.form?.requestSubmit();
    await findByRole(root, "heading", { name: "Collection notes" });
    expect(created).toBe("notes");
    expect(getByRole(root, "textbox", { name: "Question" })).toBeTruthy();
  });

  it("deletes a collection only after a confirmation", async () => {
    const fake = api();
    let deleted = 0;
    fake.on("DELETE", "/v1/collections/docs", () => {
      deleted += 1;
      return json({ name: "docs", deleted: true, documents: 1, job_ids: ["j"] });
    });
    const root = await signedIn(fake);
    (await findByRole(root, "button", { name: "Delete docs" })).click();
    const dialog = getByRole(root, "alertdialog", { name: "Delete the collection docs?" });
    expect(document.activeElement).toBe(getByRole(dialog, "button", { name: "Cancel" }));
    getByRole(dialog, "button", { name: "Cancel" }).click();
    expect(deleted).toBe(0);
    (await findByRole(root, "button", { name: "Delete docs" })).click();
    getByRole(getByRole(root, "alertdialog"), "button", { name: "Delete" }).click();
    await waitFor(() => expect(deleted).toBe(1));
  });

  it("lists a collection's documents with file, type, pages, chunks, status and when", async () => {
    const root = await signedIn(api());
    await openDocs(root);
    const table = await findByRole(root, "table", { name: "Documents in docs" });
    const cells = [...table.querySelectorAll("tbody tr > *")].map((c) => c.textContent);
    expect(cells.slice(0, 5)).toEqual(["manual.pdf", "pdf", "3", "4", "ready"]);
    expect(getByRole(table, "button", { name: "View manual.pdf" })).toBeTruthy();
  });
});

describe("uploading", () => {
  it("shows a row per file that follows its job's events, keeps the table live, and says when it is done", async () => {
    const fake = api();
    const stream = new Stream();
    fake.on("POST", "/v1/collections/docs/documents", () =>
      json({ job_id: "j1", document_id: "d9", duplicate: false, documents: [{ filename: "a.txt", job_id: "j1", document_id: "d9", duplicate: false, replaces: [] }] }, 202),
    );
    fake.on("GET", "/v1/jobs/j1/events", (_r, init) => stream.response(init.signal));
    const root = await signedIn(fake);
    await openDocs(root);
    // Once uploaded, the collection's documents include it, queued.
    const queuedDoc = {
      ...DOCS.documents[0], document_id: "d9", filename: "a.txt", type: "txt", pages: null, chunks: null,
      status: "queued", progress: { chunks_embedded: 0, chunks_total: null }, job_id: "j1", created_at: 1_800_000_000,
    };
    fake.on("GET", "/v1/collections/docs/documents", () => json({ documents: [...DOCS.documents, queuedDoc] }));
    const input = getByLabelText(root, "Upload files") as HTMLInputElement;
    Object.defineProperty(input, "files", { value: [new File(["hello"], "a.txt")], configurable: true });
    input.dispatchEvent(new Event("change"));
    const list = getByRole(root, "list", { name: "Uploads" });
    await waitFor(() => expect(list.textContent).toContain("queued"));
    const table = await findByRole(root, "table", { name: "Documents in docs" });
    await waitFor(() => expect(table.textContent).toContain("a.txt"));
    const reads = fake.count("GET", "/v1/collections/docs/documents");
    stream.event("queued", {}, "1-0");
    stream.event("parsing", { document_id: "d9", filename: "a.txt" }, "2-0");
    stream.event("parsed", { document_id: "d9", pages: 1, chunks_total: 4, parts: 2 }, "3-0");
    stream.event("embedded", { document_id: "d9", part: 0, parts: 2, chunks_embedded: 2, chunks_total: 4 }, "4-0");
    await waitFor(() => expect(list.textContent).toContain("embedding 2 of 4 chunks"));
    // The table's row says it too, from the events: no read of the documents meanwhile.
    const row = [...table.querySelectorAll("tbody tr")].find((tr) => tr.textContent?.includes("a.txt"));
    expect(row?.textContent).toContain("embedding 2 of 4 chunks");
    expect(fake.count("GET", "/v1/collections/docs/documents")).toBe(reads);
    stream.event("embedded", { document_id: "d9", part: 1, parts: 2, chunks_embedded: 4, chunks_total: 4 }, "5-0");
    stream.event("embedding", { stage: "embedder" }, "6-0");
    stream.event("indexing", { document_id: "d9", chunks_embedded: 4, chunks_total: 4 }, "7-0");
    await waitFor(() => expect(list.textContent).toContain("indexing"));
    expect(fake.count("GET", "/v1/collections/docs/documents")).toBe(reads);
    stream.event("done", { document_id: "d9", chunks: 4, pages: 1 }, "8-0");
    await waitFor(() => expect(list.textContent).toContain("ready, 1 page, 4 chunks"));
    expect(getByRole(root, "status").textContent).toBe("a.txt: ready, 1 page, 4 chunks");
    // Once it ends, the documents are read again: the table's figures are the server's.
    await waitFor(() => expect(fake.count("GET", "/v1/collections/docs/documents")).toBe(reads + 1));
  });
});

describe("asking", () => {
  function chunk(content: string | null, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { id: "chatcmpl-job7", choices: [{ index: 0, delta: content === null ? {} : { content } }], ...extra };
  }

  it("streams the answer into the region Answer, links its citations, keeps the conversation", async () => {
    const fake = api();
    const streams: Stream[] = [];
    fake.on("POST", "/v1/chat/completions", (_r, init) => {
      const stream = new Stream();
      streams.push(stream);
      return stream.response(init.signal);
    });
    const root = await signedIn(fake);
    await openDocs(root);
    const question = getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement;
    question.value = "How do I reset it?";
    getByRole(root, "button", { name: "Ask" }).click();
    await waitFor(() => expect(streams).toHaveLength(1));
    const region = getByRole(root, "region", { name: "Answer" });
    streams[0]?.data(chunk("Hold the button "));
    await waitFor(() => expect(region.textContent).toContain("Hold the button"));
    expect(region.getAttribute("aria-busy")).toBe("true");
    streams[0]?.data(chunk("[1]."));
    const citation = { n: 1, document_id: "d1", filename: "manual.pdf", page: 2, snippet: "Hold the button.", score: 1 };
    streams[0]?.data(chunk(null, { documind: { job_id: "job7", mode: "extractive", citations: [citation] } }));
    streams[0]?.data("[DONE]");
    // The marker [1] in the text and the source under it.
    expect(await findAllByRole(region, "link", { name: "manual.pdf p. 2" })).toHaveLength(2);
    expect(region.getAttribute("aria-busy")).toBe("false");
    expect(region.textContent).toMatch(/Extractive/);

    question.value = "And then?";
    getByRole(root, "button", { name: "Ask" }).click();
    await waitFor(() => expect(streams).toHaveLength(2));
    const second = fake.requests.filter((r) => r.path === "/v1/chat/completions")[1];
    expect((second?.body as { messages: unknown[] }).messages).toEqual([
      { role: "user", content: "How do I reset it?" },
      { role: "assistant", content: "Hold the button [1]." },
      { role: "user", content: "And then?" },
    ]);
    streams[1]?.end();
  });

  it("Stop cancels the job, known from the response's header before any text, and keeps the text so far", async () => {
    const fake = api();
    const stream = new Stream();
    let cancelled = "";
    fake.on("POST", "/v1/chat/completions", (_r, init) => stream.response(init.signal, { "X-DocuMind-Job-Id": "job7" }));
    fake.on("DELETE", "/v1/jobs/job7", (r) => {
      cancelled = r.path;
      return json({ job_id: "job7", status: "cancelled" });
    });
    const root = await signedIn(fake);
    await openDocs(root);
    (getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement).value = "Long question";
    const stop = getByRole(root, "button", { name: "Stop" }) as HTMLButtonElement;
    expect(stop.disabled).toBe(true);
    getByRole(root, "button", { name: "Ask" }).click();
    await waitFor(() => expect(stop.disabled).toBe(false));
    stream.data({ id: "chatcmpl-other", choices: [{ delta: { content: "Partial answer" } }] });
    await settle();
    stop.click();
    await waitFor(() => expect(cancelled).toBe("/v1/jobs/job7"));
    const region = getByRole(root, "region", { name: "Answer" });
    await waitFor(() => expect(region.textContent).toContain("Stopped"));
    expect(region.textContent).toContain("Partial answer");
    expect((getByRole(root, "button", { name: "Ask" }) as HTMLButtonElement).disabled).toBe(false);
  });

  it("says why a question was refused (a full queue)", async () => {
    const fake = api();
    fake.on("POST", "/v1/chat/completions", () =>
      json({ error: { message: "the queue is full", type: "server_error", code: "overloaded" } }, 503, { "Retry-After": "5" }),
    );
    const root = await signedIn(fake);
    await openDocs(root);
    (getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement).value = "q";
    getByRole(root, "button", { name: "Ask" }).click();
    await waitFor(() =>
      expect(root.querySelector(".ask .error")?.textContent).toBe(
        "The service is busy or the queue is full (the queue is full). Try again in 5 s.",
      ),
    );
  });
});

describe("the viewer", () => {
  it("opens a cited text document at its page with the snippet marked, and Escape returns focus", async () => {
    const fake = api();
    const stream = new Stream();
    fake.on("POST", "/v1/chat/completions", (_r, init) => stream.response(init.signal));
    fake.on("GET", "/v1/documents/d2/text", () =>
      json([
        { page: 1, text: "Introduction." },
        { page: 2, text: "To reset, hold\nthe button for ten seconds.\n\nThen wait." },
      ]),
    );
    const root = await signedIn(fake);
    await openDocs(root);
    (getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement).value = "reset?";
    getByRole(root, "button", { name: "Ask" }).click();
    await settle();
    const citation = { n: 1, document_id: "d2", filename: "notes.md", page: 2, snippet: "hold the button for ten seconds.", score: 1 };
    stream.data({ id: "chatcmpl-j", choices: [{ delta: { content: "Hold it [1]." } }], documind: { mode: "extractive", citations: [citation] } });
    stream.data("[DONE]");
    const region = getByRole(root, "region", { name: "Answer" });
    const [link] = (await findAllByRole(region, "link", { name: "notes.md p. 2" })) as HTMLAnchorElement[];
    if (!link) throw new Error("no citation link");
    link.focus();
    link.click();
    const viewer = getByRole(root, "region", { name: "Document viewer" });
    await waitFor(() => expect(viewer.querySelectorAll("mark").length).toBeGreaterThan(0));
    const marked = [...viewer.querySelectorAll("mark")].map((m) => m.textContent).join("");
    expect(marked).toBe("hold\nthe button for ten seconds.");
    expect(viewer.querySelector("mark")?.closest("section")?.getAttribute("data-page")).toBe("2");
    viewer.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(viewer.hidden).toBe(true);
    expect(document.activeElement).toBe(link);
  });

  it("marks the passage where a citation's offsets say, not the first look-alike", async () => {
    const fake = api();
    const stream = new Stream();
    fake.on("POST", "/v1/chat/completions", (_r, init) => stream.response(init.signal));
    const page = "Introduction.\n\nHold the button.\n\nHold the button for ten seconds.\n\nThen wait.";
    fake.on("GET", "/v1/documents/d3/text", () => json([{ page: 1, text: page }]));
    const root = await signedIn(fake);
    await openDocs(root);
    (getByRole(root, "textbox", { name: "Question" }) as HTMLTextAreaElement).value = "reset?";
    getByRole(root, "button", { name: "Ask" }).click();
    await settle();
    // The chunk cited is the third paragraph; finding the snippet alone would mark the second.
    const start = page.indexOf("Hold the button for");
    const end = start + "Hold the button for ten seconds.".length;
    const citation = {
      n: 1, document_id: "d3", filename: "notes.txt", page: 1, score: 1,
      snippet: "Hold the button", char_start: start, char_end: end,
    };
    stream.data({ id: "chatcmpl-j", choices: [{ delta: { content: "Hold it [1]." } }], documind: { mode: "extractive", citations: [citation] } });
    stream.data("[DONE]");
    const region = getByRole(root, "region", { name: "Answer" });
    const [link] = (await findAllByRole(region, "link", { name: "notes.txt p. 1" })) as HTMLAnchorElement[];
    link?.click();
    const viewer = getByRole(root, "region", { name: "Document viewer" });
    await waitFor(() => expect(viewer.querySelectorAll("mark").length).toBe(1));
    const mark = viewer.querySelector("mark");
    expect(mark?.textContent).toBe("Hold the button");
    expect(mark?.parentElement?.textContent).toBe("Hold the button for ten seconds.");
  });
});
