"""The signed-in screen's layout at laptop widths, in Chromium, against the real stack.

With the viewer open beside them, the collection's documents share the window with the
collections and the viewer: at 1280 and 1440 px every column of the documents table
(the Actions column with View and Delete last) is still shown whole, not clipped by its
container nor pushed off the window. Where the table cannot fit (a phone's width), it
scrolls sideways in a region of its own that Tab reaches and the arrow keys scroll.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.e2e import documents as docs
from tests.e2e.browser import axe_scan, is_focused, named, open_collection, sign_in, tab_to
from tests.integration.harness import Stack

pytestmark = pytest.mark.e2e

WIDTHS: Final = (1280, 1440)
# Narrower than the documents table can be (its columns' narrowest, about 470 px).
PHONE: Final = 400
HEIGHT: Final = 900
# Sub-pixel rounding of fractional column widths.
SLACK_PX: Final = 1.0

# Each element's box, and the part of the window it may be seen in: the viewport cut by
# every ancestor that clips its overflow (overflow other than visible: a scroll container
# shows only its client box, whatever it has scrolled to).
BOXES: Final = """(elements) => elements.map((el) => {
  const box = el.getBoundingClientRect();
  let left = 0, right = document.documentElement.clientWidth;
  let top = 0, bottom = document.documentElement.clientHeight;
  for (let at = el.parentElement; at; at = at.parentElement) {
    const style = getComputedStyle(at);
    if (style.overflowX === "visible" && style.overflowY === "visible") continue;
    const outer = at.getBoundingClientRect();
    const l = outer.left + at.clientLeft, t = outer.top + at.clientTop;
    left = Math.max(left, l); right = Math.min(right, l + at.clientWidth);
    top = Math.max(top, t); bottom = Math.min(bottom, t + at.clientHeight);
  }
  return {
    name: (el.textContent || "").trim() || el.getAttribute("aria-label") || el.tagName,
    box: { left: box.left, right: box.right, top: box.top, bottom: box.bottom },
    seen: { left, right, top, bottom },
  };
})"""


def hidden_parts(boxes: list[dict[str, Any]]) -> list[str]:
    """The elements not wholly inside the part of the window they may be seen in."""
    out = []
    for b in boxes:
        box, seen = b["box"], b["seen"]
        if (
            box["left"] < seen["left"] - SLACK_PX
            or box["right"] > seen["right"] + SLACK_PX
            or box["top"] < seen["top"] - SLACK_PX
            or box["bottom"] > seen["bottom"] + SLACK_PX
        ):
            out.append(f"{b['name']}: {box} outside {seen}")
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_every_column_of_the_documents_table_shows_beside_the_viewer(
    page: Page, stack: Stack, writer_key: str, library: str, width: int
) -> None:
    page.set_viewport_size(ViewportSize(width=width, height=HEIGHT))
    sign_in(page, stack.url, writer_key)
    open_collection(page, library)
    table = named(page, "table", f"Documents in {library}")
    expect(table.get_by_role("row")).to_have_count(3)  # the header's and the two documents'

    named(table, "button", f"View {docs.PDF_NAME}").click()
    viewer = named(page, "region", "Document viewer")
    title = f"{docs.PDF_NAME}, page 1 of {len(docs.PAGES)}"
    expect(viewer.get_by_role("heading", level=2)).to_have_text(title)
    expect(viewer.locator("canvas")).to_be_visible()

    headers = table.locator("thead th")
    expect(headers).to_have_count(7)  # File, Type, Pages, Chunks, Status, Added, Actions
    table.scroll_into_view_if_needed()
    boxes = headers.evaluate_all(BOXES)
    assert not hidden_parts(boxes), f"at {width} px, header cells cut off: " + "; ".join(hidden_parts(boxes))
    # The last column's buttons too, in every row.
    buttons = table.locator("tbody td.actions button")
    expect(buttons).to_have_count(4)  # View and Delete, for each document
    boxes = buttons.evaluate_all(BOXES)
    assert not hidden_parts(boxes), f"at {width} px, buttons cut off: " + "; ".join(hidden_parts(boxes))
    axe_scan(page, f"PDF viewer beside the documents at {width} px")


def test_a_table_too_wide_scrolls_in_a_region_the_keyboard_reaches(
    page: Page, stack: Stack, writer_key: str, library: str
) -> None:
    page.set_viewport_size(ViewportSize(width=PHONE, height=HEIGHT))
    sign_in(page, stack.url, writer_key)
    open_collection(page, library)
    table = named(page, "table", f"Documents in {library}")
    expect(table.get_by_role("row")).to_have_count(3)
    scroller = named(page, "region", f"Documents in {library}")
    expect(scroller).to_have_attribute("tabindex", "0")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth && el.scrollLeft === 0")
    last = table.locator("thead th").last
    assert hidden_parts(last.evaluate_all(BOXES)), "the last column shows though the table is too wide"

    tab_to(page, scroller)
    assert is_focused(scroller)
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "el => el.scrollLeft + el.clientWidth >= el.scrollWidth - 1", arg=scroller.element_handle()
    )
    assert not hidden_parts(last.evaluate_all(BOXES)), "the arrow keys did not scroll to the last column"
    axe_scan(page, f"documents table at {PHONE} px")
