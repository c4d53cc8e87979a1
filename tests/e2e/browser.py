"""Driving Debian's Chromium with Playwright: the flags, axe-core scans, keyboard moves,
screenshots and the page's own complaints (script errors, Content-Security-Policy).

Playwright never downloads a browser here (no ``playwright install``): it starts
``/usr/bin/chromium``, which ``make test`` installs with apt-get when run as root.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import ConsoleMessage, Locator, Page, ViewportSize, expect

from tests.integration.harness import ROOT

CHROMIUM: Final = Path("/usr/bin/chromium")
NO_CHROMIUM: Final = "chromium not installed: run make test as root or apt-get install chromium"
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
WEB: Final = ROOT / "services" / "gateway" / "web"
DIST_INDEX: Final = WEB / "dist" / "index.html"
AXE: Final = WEB / "node_modules" / "axe-core" / "axe.min.js"
NOT_BUILT: Final = "the web app is not built (no services/gateway/web/dist, no axe-core): run make web"
SCREENSHOTS: Final = ROOT / "docs" / "screenshots"
VIEWPORT: Final = ViewportSize(width=1440, height=900)
# Impacts that fail a scan (every one but "minor"); minor ones are printed with the
# test's output.
BLOCKING: Final = frozenset({"moderate", "serious", "critical"})
# Bounds a walk through the page with Tab (a page of this app has fewer stops).
MAX_TABS: Final = 60


def named(page: Page | Locator, role: str, name: str) -> Locator:
    """The element of ``role`` whose accessible name is exactly ``name``."""
    return page.get_by_role(role, name=name, exact=True)  # type: ignore[arg-type]


def sign_in(page: Page, url: str, key: str) -> None:
    """Opens the app at ``url`` and signs in with ``key`` (the key box has the focus)."""
    page.goto(url)
    box = named(page, "textbox", "API key")
    expect(box).to_be_focused()
    box.fill(key)
    named(page, "button", "Sign in").click()
    expect(named(page, "button", "Sign out")).to_be_visible()


def collection_box(page: Page) -> Locator:
    """The "Collection" box: a combo box (a text box with suggestions) or a text box."""
    return named(page, "combobox", "Collection").or_(named(page, "textbox", "Collection"))


def open_collection(page: Page, name: str) -> None:
    """Types ``name`` in the Collection box and presses Enter: the collection opens (is
    created if new)."""
    box = collection_box(page)
    box.fill(name)
    box.press("Enter")
    expect(named(page, "heading", f"Collection {name}")).to_be_visible()


@dataclass
class Complaints:
    """What the page said went wrong: uncaught errors and refusals by its policy."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        text = message.text
        # A refused request (a 409 on a job that had ended) is the app's to handle; a
        # script error or the Content-Security-Policy refusing something is not.
        if message.type == "error" and not text.startswith("Failed to load resource"):
            self.errors.append(f"console: {text}")
        elif "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.errors.append(f"policy: {text}")


def axe_scan(page: Page, screen: str) -> list[dict[str, Any]]:
    """Runs axe-core on the page as it is (injected by ``add_init_script(AXE)``); fails on a
    moderate, serious or critical violation, prints the minor ones. Returns every violation."""
    expect(page.locator("body")).to_be_attached()
    result: dict[str, Any] = page.evaluate("() => window.axe.run(document, {resultTypes: ['violations']})")
    violations: list[dict[str, Any]] = result["violations"]
    for v in violations:
        targets = ", ".join(str(node["target"]) for node in v["nodes"])
        print(f"axe [{screen}] {v['impact']}: {v['id']} ({v['help']}) at {targets}")
    blocking = [
        f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in violations
        if v["impact"] in BLOCKING
    ]
    assert not blocking, f"axe-core on the {screen} screen: " + "; ".join(blocking)
    return violations


# Records every upload row's phases as the page sets them (``data-phase``), in order.
WATCH_PHASES: Final = """() => {
  window.__phases = {};
  new MutationObserver((changes) => {
    for (const change of changes) {
      const row = change.target;
      const name = row.querySelector(".file")?.textContent ?? "";
      const seen = (window.__phases[name] ??= []);
      if (seen.at(-1) !== row.dataset.phase) seen.push(row.dataset.phase);
    }
  }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-phase"] });
}"""


def watch_phases(page: Page) -> None:
    """From now on, note each upload row's phases (read them with :func:`phases_seen`)."""
    page.evaluate(WATCH_PHASES)


def phases_seen(page: Page) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = page.evaluate("() => window.__phases")
    return seen


def screenshot(page: Page, name: str) -> Path:
    """Saves the page as ``docs/screenshots/<name>.png`` (README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path


def is_focused(target: Locator) -> bool:
    return bool(target.evaluate("el => el === document.activeElement"))


def tab_to(page: Page, target: Locator) -> int:
    """Presses Tab until ``target`` has the focus; returns how many presses it took."""
    expect(target).to_be_visible()
    for presses in range(1, MAX_TABS + 1):
        page.keyboard.press("Tab")
        if is_focused(target):
            return presses
    raise AssertionError(f"{target} not reached with {MAX_TABS} presses of Tab")


def fold(text: str) -> str:
    """Text as the viewer compares it: no whitespace, case or ellipsis, NFKC."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2026", "")
    return re.sub(r"\s+", "", text).replace("...", "")


def marked_text(page: Page | Locator) -> str:
    """The text of every ``<mark>`` in ``page``, in document order."""
    texts: list[str] = page.locator("mark").all_text_contents()
    return "".join(texts)
