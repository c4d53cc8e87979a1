/**
 * The app: the sign-in screen, or, signed in, the collections, and for the collection
 * picked: Ask, Upload (keys that may write) and its Documents, with the viewer beside
 * them. What the key may do comes from GET /v1/me; a 401 at any time (the key revoked
 * or expired) signs out with the reason.
 */
import { ApiClient, type Fetch, seg } from "../api/client";
import { type ApiError, describe } from "../api/errors";
import { type DocumentView, type Identity, canWrite } from "../api/types";
import { button, h, replaceChildren, uid } from "../lib/dom";
import { type Throttled, throttle } from "../lib/throttle";
import { KeyStore } from "../session";
import { FINAL, liveDocument, statusText } from "../upload/rowState";
import { type UploadRow, Uploads } from "../upload/uploads";
import { DocumentSource } from "../viewer/documentSource";
import { Viewer } from "../viewer/viewer";
import { Announcer } from "./announcer";
import type { OnCite } from "./answerView";
import { AskPanel } from "./askPanel";
import { CollectionsPanel } from "./collections";
import { DocumentsTable } from "./documentsTable";
import { signInView } from "./signIn";
import { UploadPanel } from "./uploadPanel";

/** At most one read of a collection's documents per this long (uploads added or ending). */
export const REFRESH_MS = 1000;

export interface AppOptions {
  fetch?: Fetch;
  keys?: KeyStore;
  refreshMs?: number;
}

/** Everything that exists while signed in; dropped whole at sign-out. */
interface Signedin {
  client: ApiClient;
  identity: Identity;
  uploads: Uploads;
  refreshers: Map<string, Throttled>;
  documents: Map<string, DocumentView[]>;
}

export class App {
  private readonly keys: KeyStore;
  private readonly announcer = new Announcer();
  private session: Signedin | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly options: AppOptions = {},
  ) {
    this.keys = options.keys ?? new KeyStore();
  }

  /** Resumes the tab's session when it has a key, else shows the sign-in screen. */
  async start(): Promise<void> {
    const key = this.keys.get();
    if (!key) {
      this.showSignIn();
      return;
    }
    try {
      await this.signIn(key);
    } catch (error) {
      this.signOut(describe(error));
    }
  }

  async signIn(key: string): Promise<void> {
    const client = new ApiClient(key, (error) => this.refused(error), this.options.fetch);
    const identity = await client.json<Identity>("/v1/me");
    this.keys.set(key);
    this.session = {
      client,
      identity,
      uploads: new Uploads(client, {
        onRow: (row) => {
          this.uploadPanel?.update(row);
          this.showLive(row);
          // Said once, when a file's upload ends (a final phase never changes again).
          if (FINAL.has(row.state.phase)) this.announcer.say(`${row.state.filename}: ${statusText(row.state)}`);
        },
        onActivity: (collection) => this.activity(collection),
      }),
      refreshers: new Map(),
      documents: new Map(),
    };
    this.showMain();
  }

  /** Forgets the key and everything read with it; back to the sign-in screen. */
  signOut(notice: string | null = null): void {
    const session = this.session;
    this.session = null;
    this.keys.clear();
    if (session) {
      session.uploads.dispose();
      for (const refresher of session.refreshers.values()) refresher.cancel();
    }
    this.askPanel?.reset("");
    this.showSignIn(notice);
  }

  private refused(error: ApiError): void {
    if (this.session) this.signOut(describe(error));
  }

  private showSignIn(notice: string | null = null): void {
    const view = signInView((key) => this.signIn(key), notice);
    replaceChildren(this.root, view.el, this.announcer.el);
    document.title = "Sign in · DocuMind";
    view.focus();
  }

  // --- the signed-in screen -----------------------------------------------------

  private collectionsPanel: CollectionsPanel | null = null;
  private askPanel: AskPanel | null = null;
  private uploadPanel: UploadPanel | null = null;
  private documentsTable: DocumentsTable | null = null;
  private viewer: Viewer | null = null;
  private workspace: HTMLElement | null = null;
  private workspaceHeading: HTMLElement | null = null;

  private showMain(): void {
    const session = this.session;
    if (!session) return;
    const { client, identity } = session;
    const writer = canWrite(identity);
    const announce = (text: string): void => this.announcer.say(text);
    const viewer = new Viewer(new DocumentSource(client));
    const onCite: OnCite = (citation, invoker) =>
      void viewer.open(
        {
          documentId: citation.document_id,
          filename: citation.filename,
          page: citation.page,
          snippet: citation.snippet,
          passage:
            citation.char_start !== undefined && citation.char_end !== undefined
              ? { start: citation.char_start, end: citation.char_end }
              : null,
        },
        invoker,
      );
    this.viewer = viewer;
    this.collectionsPanel = new CollectionsPanel({
      client,
      canWrite: writer,
      announce,
      onSelect: (name) => this.selectCollection(name),
    });
    this.askPanel = new AskPanel({ client, canCancel: writer, onCite, announce });
    this.documentsTable = new DocumentsTable({
      canWrite: writer,
      onView: (doc, invoker) =>
        void viewer.open({ documentId: doc.document_id, filename: doc.filename, page: 1, snippet: "" }, invoker),
      onDelete: (doc) => this.deleteDocument(doc),
    });
    this.uploadPanel = writer
      ? new UploadPanel(session.uploads, () => {
          const name = this.collectionsPanel?.selected;
          const docs = name ? session.documents.get(name) ?? [] : [];
          return new Set(docs.map((d) => d.filename));
        })
      : null;
    const workspaceId = uid("workspace");
    this.workspaceHeading = h("h2", { id: workspaceId, tabindex: -1 }, "");
    this.workspace = h(
      "section",
      { class: "workspace", hidden: true, "aria-labelledby": workspaceId },
      this.workspaceHeading,
      this.askPanel.el,
      this.uploadPanel?.el ?? null,
      this.documentsTable.el,
    );
    const who = `${identity.role} key${identity.id === "operator" ? "" : ` ${identity.id}`}, tenant ${identity.tenant}`;
    const header = h(
      "header",
      { class: "top" },
      h("h1", {}, "DocuMind"),
      h("p", { class: "who" }, `Signed in: ${who}`),
      button("Sign out", () => this.signOut()),
    );
    const main = h("main", { class: "main" }, this.collectionsPanel.el, this.workspace, viewer.el);
    replaceChildren(this.root, header, main, this.announcer.el);
    document.title = "DocuMind";
    this.collectionsPanel.focus();
    void this.collectionsPanel.refresh();
  }

  private selectCollection(name: string | null): void {
    const session = this.session;
    if (!session || !this.workspace || !this.workspaceHeading) return;
    this.askPanel?.reset(name ?? "");
    this.uploadPanel?.setCollection(name ?? "");
    this.workspace.hidden = name === null;
    if (name === null) return;
    replaceChildren(this.workspaceHeading, `Collection ${name}`);
    this.documentsTable?.report("");
    // Screen readers hear which collection is open; Tab goes on to the question box.
    this.workspaceHeading.focus();
    this.documentsTable?.render(name, session.documents.get(name) ?? []);
    void this.readDocuments(name);
  }

  /** Reads a collection's documents: its table, its counts, its upload rows. */
  private async readDocuments(collection: string): Promise<void> {
    const session = this.session;
    if (!session) return;
    try {
      const found = await session.client.json<{ documents: DocumentView[] }>(
        `/v1/collections/${seg(collection)}/documents`,
      );
      if (this.session !== session) return;
      session.documents.set(collection, found.documents);
      session.uploads.snapshot(collection, found.documents);
      if (this.collectionsPanel?.selected === collection) this.documentsTable?.render(collection, found.documents);
      const chunks = found.documents.reduce((sum, d) => sum + (d.status === "ready" ? d.chunks ?? 0 : 0), 0);
      this.collectionsPanel?.counts(collection, found.documents.length, chunks);
    } catch (error) {
      if (this.collectionsPanel?.selected === collection) this.documentsTable?.report(describe(error));
    }
  }

  /** An upload row's news in the documents table, between reads of the collection's documents. */
  private showLive(row: UploadRow): void {
    const { collection, documentId } = row.state;
    const documents = this.session?.documents.get(collection);
    const at = documents?.findIndex((d) => d.document_id === documentId) ?? -1;
    const doc = documents?.[at];
    if (!documents || !doc) return;
    const live = liveDocument(doc, row.state);
    if (live === doc) return;
    documents[at] = live;
    if (this.collectionsPanel?.selected === collection) this.documentsTable?.update(live);
  }

  /** A collection's documents changed: read them again (at most once a REFRESH_MS). */
  private activity(collection: string): void {
    const session = this.session;
    if (!session) return;
    let refresher = session.refreshers.get(collection);
    if (!refresher) {
      refresher = throttle(() => this.readDocuments(collection), this.options.refreshMs ?? REFRESH_MS);
      session.refreshers.set(collection, refresher);
    }
    refresher();
  }

  private async deleteDocument(doc: DocumentView): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.documentsTable?.report("");
    try {
      await session.client.request(`/v1/documents/${seg(doc.document_id)}`, { method: "DELETE" });
      this.announcer.say(`${doc.filename} deleted.`);
      if (this.viewer?.current?.documentId === doc.document_id) this.viewer.close();
    } catch (error) {
      this.documentsTable?.report(describe(error));
      return;
    }
    await this.readDocuments(doc.collection);
  }
}
