"""The web app with the keyboard alone, as a reader: sign in, pick a collection, ask,
open a citation and close it again, every step a key press (Tab, Enter, Escape, typing),
never a click. A reader's key is offered no upload and no delete."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import documents as docs
from tests.e2e.browser import axe_scan, collection_box, fold, is_focused, marked_text, named, tab_to
from tests.integration.harness import Stack

pytestmark = pytest.mark.e2e


def test_a_reader_asks_and_opens_a_citation_with_the_keyboard_only(
    page: Page, stack: Stack, reader_key: str, library: str
) -> None:
    keys = page.keyboard
    page.goto(stack.url)
    expect(named(page, "textbox", "API key")).to_be_focused()
    keys.type(reader_key)
    keys.press("Enter")

    # Signed in, the focus is in the Collection box: type the name, Enter opens it.
    box = collection_box(page)
    expect(box).to_be_focused()
    keys.type(library)
    keys.press("Enter")
    expect(named(page, "heading", f"Collection {library}")).to_be_focused()

    # A reader may not upload or delete: neither is offered.
    expect(page.get_by_label("Upload files", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    expect(named(page, "table", f"Documents in {library}").get_by_role("row")).to_have_count(3)
    axe_scan(page, "reader's collection")

    # Tab to the question, type it, Enter asks.
    question = named(page, "textbox", "Question")
    tab_to(page, question)
    keys.type(docs.QUESTION)
    keys.press("Enter")
    answer = named(page, "region", "Answer")
    expect(answer.locator(".answer[data-kind]")).to_be_visible()
    expect(answer).to_contain_text("1887")

    # Tab to the source's link, Enter opens the viewer at the cited page, focused.
    name = f"{docs.PDF_NAME} p. {docs.ANSWER_PAGE}"
    source = answer.locator("ol.sources li").filter(has=named(page, "link", name)).first
    citation = named(source, "link", name)
    snippet = source.locator("blockquote").inner_text()
    tab_to(page, citation)
    keys.press("Enter")
    viewer = named(page, "region", "Document viewer")
    heading = viewer.get_by_role("heading", level=2)
    expect(heading).to_have_text(f"{docs.PDF_NAME}, page {docs.ANSWER_PAGE} of {len(docs.PAGES)}")
    expect(heading).to_be_focused()
    expect(viewer.locator("mark").first).to_be_visible()
    assert fold(marked_text(viewer)) == fold(snippet), (marked_text(viewer), snippet)
    axe_scan(page, "reader's viewer")

    # The viewer's buttons are in reach; Escape closes it and the focus goes back to the link.
    tab_to(page, named(viewer, "button", "Close viewer"))
    keys.press("Escape")
    expect(viewer).to_be_hidden()
    expect(citation).to_be_focused()
    assert is_focused(citation)
