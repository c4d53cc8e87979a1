/**
 * Building the page without HTML strings: every element is created, every text is a
 * text node. Nothing the server sends is ever parsed as HTML (tests/setup.ts makes
 * innerHTML and friends throw, so a slip fails the tests).
 */

export type Child = Node | string | number | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | null | undefined>;

/** An element with attributes (true: present, false/null/undefined: absent) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, ...children);
  return node;
}

export function setAttrs(node: Element, attrs: Attrs): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "style" || name.startsWith("on")) {
      // Inline styles and handlers are refused by the Content-Security-Policy anyway.
      throw new Error(`h(): attribute ${name} is not allowed`);
    }
    if (value === undefined || value === null || value === false) {
      node.removeAttribute(name);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

export function append(node: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of ``node``. */
export function replaceChildren(node: Element, ...children: Child[]): void {
  while (node.firstChild) node.removeChild(node.firstChild);
  append(node, ...children);
}

/** Adds a listener and returns the node (for building trees in one expression). */
export function on<T extends EventTarget, E extends keyof HTMLElementEventMap>(
  node: T,
  type: E,
  listener: (event: HTMLElementEventMap[E]) => void,
): T {
  node.addEventListener(type, listener as EventListener);
  return node;
}

let lastId = 0;
/** A unique id for aria-labelledby and label/for pairs. */
export function uid(prefix: string): string {
  lastId += 1;
  return `${prefix}-${lastId}`;
}

/** A button of type "button" (never submits a form by accident). */
export function button(label: string, onClick: () => void, attrs: Attrs = {}): HTMLButtonElement {
  return on(h("button", { type: "button", ...attrs }, label), "click", () => onClick());
}

/**
 * A button showing a short verb whose accessible name adds what it acts on, in
 * visually hidden text: "Delete" shows, "Delete notes.md" is its name (the name holds
 * the label shown, as WCAG 2.5.3 asks).
 */
export function actionButton(verb: string, object: string, onClick: () => void, attrs: Attrs = {}): HTMLButtonElement {
  const node = h("button", { type: "button", ...attrs }, `${verb} `, h("span", { class: "sr-only" }, object));
  return on(node, "click", () => onClick());
}
