/**
 * Collections: combo box "Collection" (pick one, or type a new name and press Enter to
 * create it, for keys that may write), and a table of them with their document and
 * chunk counts, each with "Open" and (writers) "Delete" after a confirmation.
 */
import { type ApiClient, seg } from "../api/client";
import { describe } from "../api/errors";
import type { Collection } from "../api/types";
import { actionButton, h, on, replaceChildren, uid } from "../lib/dom";
import { confirmInPlace } from "./confirm";

// libs/common/constants.py COLLECTION_NAME_PATTERN.
export const COLLECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface CollectionsOptions {
  client: ApiClient;
  canWrite: boolean;
  onSelect: (name: string | null) => void;
  announce: (text: string) => void;
}

export class CollectionsPanel {
  readonly el: HTMLElement;
  collections: Collection[] = [];
  selected: string | null = null;
  private readonly input: HTMLInputElement;
  private readonly options: HTMLDataListElement;
  private readonly body: HTMLTableSectionElement;
  private readonly table: HTMLTableElement;
  private readonly empty: HTMLElement;
  private readonly problem: HTMLElement;

  constructor(private readonly opts: CollectionsOptions) {
    const headingId = uid("collections");
    const inputId = uid("collection");
    const listId = uid("collection-list");
    const helpId = uid("collection-help");
    this.options = h("datalist", { id: listId });
    this.input = h("input", {
      id: inputId,
      name: "collection",
      type: "text",
      list: listId,
      autocomplete: "off",
      spellcheck: "false",
      "aria-describedby": helpId,
    });
    this.problem = h("p", { class: "error", role: "alert" });
    this.body = h("tbody");
    this.empty = h("p", { class: "placeholder" }, "No collections yet.");
    this.table = h(
      "table",
      { class: "collections-table" },
      h("caption", { class: "sr-only" }, "Collections"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Name"),
          h("th", { scope: "col" }, "Documents"),
          h("th", { scope: "col" }, "Chunks"),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      this.body,
    );
    const help = opts.canWrite
      ? "Pick a collection, or type a new name (letters, digits, _ . -) and press Enter to create it."
      : "Pick a collection and press Enter.";
    const form = h(
      "form",
      { class: "collection-form" },
      h("label", { for: inputId }, "Collection"),
      this.input,
      this.options,
      h("button", { type: "submit" }, opts.canWrite ? "Open or create" : "Open"),
      h("p", { id: helpId, class: "help" }, help),
    );
    on(form, "submit", (event) => {
      event.preventDefault();
      void this.openOrCreate(this.input.value.trim());
    });
    // Picking a name from the list opens it.
    on(this.input, "change", () => {
      const name = this.input.value.trim();
      if (this.collections.some((c) => c.name === name) && name !== this.selected) void this.openOrCreate(name);
    });
    this.el = h(
      "section",
      { "aria-labelledby": headingId, class: "collections" },
      h("h2", { id: headingId }, "Collections"),
      form,
      this.problem,
      this.table,
      this.empty,
    );
  }

  focus(): void {
    this.input.focus();
  }

  async refresh(): Promise<void> {
    try {
      const found = await this.opts.client.json<{ collections: Collection[] }>("/v1/collections");
      this.collections = found.collections;
      this.render();
    } catch (error) {
      replaceChildren(this.problem, describe(error));
    }
  }

  /** Opens `name`, creating it first when it does not exist and the key may write. */
  async openOrCreate(name: string): Promise<void> {
    replaceChildren(this.problem);
    if (!name) {
      replaceChildren(this.problem, "Type a collection's name.");
      return;
    }
    if (!this.collections.some((c) => c.name === name)) {
      await this.refresh();
    }
    if (!this.collections.some((c) => c.name === name)) {
      if (!this.opts.canWrite) {
        replaceChildren(this.problem, `There is no collection named ${name}.`);
        return;
      }
      if (!COLLECTION_NAME.test(name)) {
        replaceChildren(this.problem, "A collection's name is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit.");
        return;
      }
      try {
        await this.opts.client.json<Collection>("/v1/collections", { method: "POST", json: { name } });
        this.opts.announce(`Collection ${name} created.`);
      } catch (error) {
        replaceChildren(this.problem, describe(error));
        return;
      }
      await this.refresh();
    }
    this.select(name);
  }

  select(name: string | null): void {
    this.selected = name;
    this.input.value = name ?? "";
    this.render();
    this.opts.onSelect(name);
  }

  /** Updates one collection's counts (from its documents as just read). */
  counts(name: string, documents: number, chunks: number): void {
    const found = this.collections.find((c) => c.name === name);
    if (found && (found.documents !== documents || found.chunks !== chunks)) {
      found.documents = documents;
      found.chunks = chunks;
      this.render();
    }
  }

  private async remove(collection: Collection, invoker: HTMLElement): Promise<void> {
    const documents = collection.documents === 1 ? "1 document" : `${collection.documents} documents`;
    const sure = await confirmInPlace(
      this.el,
      {
        title: `Delete the collection ${collection.name}?`,
        message: `Its ${documents} and their chunks are deleted for good.`,
        confirm: "Delete",
      },
      invoker,
    );
    if (!sure) return;
    try {
      await this.opts.client.request(`/v1/collections/${seg(collection.name)}`, { method: "DELETE" });
      this.opts.announce(`Collection ${collection.name} deleted.`);
    } catch (error) {
      replaceChildren(this.problem, describe(error));
      return;
    }
    if (this.selected === collection.name) this.select(null);
    await this.refresh();
    this.input.focus();
  }

  private render(): void {
    replaceChildren(this.options, ...this.collections.map((c) => h("option", { value: c.name })));
    this.empty.hidden = this.collections.length > 0;
    this.table.hidden = this.collections.length === 0;
    replaceChildren(
      this.body,
      ...this.collections.map((c) => {
        const current = c.name === this.selected;
        const open = actionButton("Open", c.name, () => void this.openOrCreate(c.name));
        const actions = h("td", { class: "actions" }, open);
        if (this.opts.canWrite) {
          const del = actionButton("Delete", c.name, () => void this.remove(c, del), { class: "danger" });
          actions.appendChild(del);
        }
        return h(
          "tr",
          { class: current ? "selected" : null, "aria-current": current ? "true" : null },
          h("th", { scope: "row" }, c.name),
          h("td", {}, c.documents),
          h("td", {}, c.chunks),
          actions,
        );
      }),
    );
  }
}
