/**
 * Uploading: a drop zone and the file input "Upload files" (many at once), then a row
 * per file whose status and progress follow its job's events (upload/uploads.ts). A
 * file named like a document already in the collection asks first: "Replace" it, or
 * "Keep both".
 */
import { button, h, on, replaceChildren, uid } from "../lib/dom";
import { FINAL, fraction, statusText } from "../upload/rowState";
import type { UploadRow, Uploads } from "../upload/uploads";

// libs/common/constants.py SUPPORTED_EXTENSIONS.
export const ACCEPTED_TYPES = ".pdf,.docx,.html,.htm,.md,.markdown,.txt";

export class UploadPanel {
  readonly el: HTMLElement;
  private readonly list: HTMLUListElement;
  private readonly rowEls = new Map<number, HTMLLIElement>();
  private readonly clearButton: HTMLButtonElement;
  private collection = "";

  constructor(
    private readonly uploads: Uploads,
    private readonly takenNames: () => ReadonlySet<string>,
  ) {
    const headingId = uid("upload");
    const inputId = uid("files");
    const input = h("input", { id: inputId, type: "file", multiple: true, accept: ACCEPTED_TYPES, name: "file" });
    on(input, "change", () => {
      if (input.files?.length) this.add(Array.from(input.files));
      input.value = "";
    });
    const zone = h(
      "div",
      { class: "dropzone" },
      h("label", { for: inputId }, "Upload files"),
      input,
      h("p", { class: "help" }, "Drop files here, or choose them: PDF, DOCX, HTML, Markdown, text."),
    );
    on(zone, "dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    on(zone, "dragleave", () => zone.classList.remove("dragging"));
    on(zone, "drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const files = event.dataTransfer?.files;
      if (files?.length) this.add(Array.from(files));
    });
    this.list = h("ul", { class: "upload-rows", "aria-label": "Uploads" });
    this.clearButton = button("Clear finished uploads", () => this.clearFinished(), { hidden: true });
    this.el = h(
      "section",
      { "aria-labelledby": headingId, class: "upload" },
      h("h3", { id: headingId }, "Upload"),
      zone,
      this.list,
      this.clearButton,
    );
  }

  setCollection(name: string): void {
    this.collection = name;
  }

  add(files: File[]): void {
    if (!this.collection) return;
    this.uploads.add(this.collection, files, this.takenNames());
  }

  /** Draws a row as its state now is (called by Uploads' onRow). */
  update(row: UploadRow): void {
    let li = this.rowEls.get(row.id);
    if (!li) {
      li = h("li", { class: "upload-row" });
      this.rowEls.set(row.id, li);
      this.list.appendChild(li);
    }
    const { state } = row;
    const nameId = `upload-row-${row.id}`;
    const share = fraction(state);
    const bar = FINAL.has(state.phase) || state.phase === "conflict"
      ? null
      : h("progress", {
          max: 1,
          value: share === null ? null : share.toFixed(3),
          "aria-labelledby": nameId,
          "aria-valuetext": statusText(state),
        });
    const actions: HTMLElement[] = [];
    if (state.phase === "conflict") {
      actions.push(
        button(`Replace ${state.filename}`, () => this.uploads.choose(row.id, true)),
        button(`Keep both ${state.filename}`, () => this.uploads.choose(row.id, false)),
      );
    } else if (state.phase === "failed" && !state.jobId) {
      actions.push(button(`Retry ${state.filename}`, () => this.uploads.retry(row.id)));
    }
    li.dataset.phase = state.phase;
    const note = state.reason && state.phase !== "failed" && state.phase !== "duplicate" ? state.reason : null;
    replaceChildren(
      li,
      h("span", { class: "file", id: nameId }, state.filename),
      state.collection !== this.collection ? h("span", { class: "in" }, ` in ${state.collection}`) : null,
      h("span", { class: `status phase-${state.phase}` }, statusText(state)),
      state.replaces ? h("span", { class: "note" }, `replaces ${state.replaces} of the same name once ready`) : null,
      note ? h("span", { class: "note" }, note) : null,
      bar,
      actions.length ? h("span", { class: "buttons" }, ...actions) : null,
    );
    this.clearButton.hidden = ![...this.uploads.rows.values()].some((r) => FINAL.has(r.state.phase));
  }

  private clearFinished(): void {
    this.uploads.clearFinished();
    for (const [id, li] of this.rowEls) {
      if (!this.uploads.rows.has(id)) {
        li.remove();
        this.rowEls.delete(id);
      }
    }
    this.clearButton.hidden = true;
  }
}
