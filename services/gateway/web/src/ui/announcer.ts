/** A polite live region: what a screen reader should hear without moving focus. */
import { h, replaceChildren } from "../lib/dom";

export class Announcer {
  readonly el = h("div", { role: "status", "aria-live": "polite", class: "sr-only" });

  say(text: string): void {
    replaceChildren(this.el, text);
  }
}
