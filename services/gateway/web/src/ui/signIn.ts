/** The sign-in screen: text box "API key", button "Sign in", and why the last try failed. */
import { describe } from "../api/errors";
import { h, on, replaceChildren, uid } from "../lib/dom";

export interface SignInView {
  el: HTMLElement;
  focus(): void;
}

export function signInView(signIn: (key: string) => Promise<void>, notice: string | null = null): SignInView {
  const inputId = uid("api-key");
  const helpId = uid("api-key-help");
  const input = h("input", {
    id: inputId,
    name: "api-key",
    type: "text",
    class: "secret",
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": helpId,
  });
  const submit = h("button", { type: "submit" }, "Sign in");
  const problem = h("p", { class: "error", role: "alert" }, notice ?? "");
  const form = h(
    "form",
    { class: "sign-in", "aria-labelledby": `${inputId}-heading` },
    h("h2", { id: `${inputId}-heading` }, "Sign in"),
    h("label", { for: inputId }, "API key"),
    input,
    h(
      "p",
      { id: helpId, class: "help" },
      "Use a key made with POST /v1/keys, or the operator key that `documind up` prints (also in DATA_DIR/admin.key). " +
        "It is kept in this browser tab only, until you sign out or close the tab.",
    ),
    submit,
    problem,
  );
  on(form, "submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      replaceChildren(problem, "Enter an API key.");
      input.focus();
      return;
    }
    submit.disabled = true;
    replaceChildren(problem);
    signIn(key)
      .catch((error: unknown) => {
        replaceChildren(problem, describe(error));
        input.focus();
        input.select();
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  const el = h("main", { class: "sign-in-page" }, h("h1", {}, "DocuMind"), form);
  return { el, focus: () => input.focus() };
}
