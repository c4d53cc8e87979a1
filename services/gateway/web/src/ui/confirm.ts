/**
 * A confirmation before something is deleted, shown in place: an alertdialog naming
 * what goes, with the destructive button first and Cancel focused (Enter does not
 * delete by accident), Escape cancels, and focus returns to what opened it.
 */
import { button, h, uid } from "../lib/dom";

export interface ConfirmText {
  title: string;
  message: string;
  /** The destructive button's label ("Delete"). */
  confirm: string;
}

export function confirmInPlace(host: Element, text: ConfirmText, invoker?: HTMLElement | null): Promise<boolean> {
  return new Promise((resolve) => {
    const titleId = uid("confirm-title");
    const messageId = uid("confirm-message");
    const done = (answer: boolean): void => {
      dialog.remove();
      if (invoker?.isConnected) invoker.focus();
      resolve(answer);
    };
    const cancel = button("Cancel", () => done(false));
    const dialog = h(
      "div",
      { role: "alertdialog", "aria-labelledby": titleId, "aria-describedby": messageId, class: "confirm" },
      h("p", { id: titleId, class: "confirm-title" }, text.title),
      h("p", { id: messageId }, text.message),
      h("div", { class: "buttons" }, button(text.confirm, () => done(true), { class: "danger" }), cancel),
    );
    dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        done(false);
      }
    });
    host.querySelector(":scope > .confirm")?.remove();
    host.appendChild(dialog);
    cancel.focus();
  });
}
