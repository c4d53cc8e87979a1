/**
 * Every test runs with HTML parsing switched off: setting innerHTML or outerHTML, or
 * calling insertAdjacentHTML or document.write, throws. The app builds the page from
 * elements and text nodes only, so nothing the server sends can become markup; a
 * change that slips an HTML string in fails here. Libraries are let through (jsdom
 * empties the page with innerHTML when it closes; axe-core builds a style element at
 * load): only calls from the app's own code and the tests throw.
 */
import { afterAll, afterEach } from "vitest";

const restore: Array<() => void> = [];

/** Whether the caller (past this file) is a library in node_modules. */
function fromLibrary(): boolean {
  const frames = (new Error().stack ?? "").split("\n").slice(3);
  const caller = frames.find((line) => !line.includes("tests/setup.ts")) ?? "";
  return caller.includes("/node_modules/");
}

function forbidSetter(proto: object, name: string): void {
  const descriptor = Object.getOwnPropertyDescriptor(proto, name);
  const setter = descriptor?.set;
  if (!descriptor || !setter) return;
  Object.defineProperty(proto, name, {
    ...descriptor,
    set(value: unknown) {
      if (!fromLibrary()) throw new Error(`${name} was set: the app must not parse HTML`);
      setter.call(this, value);
    },
  });
  restore.push(() => Object.defineProperty(proto, name, descriptor));
}

function forbidMethod(proto: Record<string, unknown>, name: string): void {
  const original = proto[name] as (...args: unknown[]) => unknown;
  proto[name] = function (this: unknown, ...args: unknown[]) {
    if (!fromLibrary()) throw new Error(`${name} was called: the app must not parse HTML`);
    return original.apply(this, args);
  };
  restore.push(() => {
    proto[name] = original;
  });
}

forbidSetter(Element.prototype, "innerHTML");
forbidSetter(Element.prototype, "outerHTML");
forbidSetter(ShadowRoot.prototype, "innerHTML");
forbidMethod(Element.prototype as unknown as Record<string, unknown>, "insertAdjacentHTML");
forbidMethod(Document.prototype as unknown as Record<string, unknown>, "write");

afterEach(() => {
  document.body.replaceChildren();
  sessionStorage.clear();
});

afterAll(() => {
  for (const undo of restore.splice(0)) undo();
});
