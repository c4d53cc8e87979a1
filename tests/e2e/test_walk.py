"""A writer's walk through the web app, in Chromium, against the real stack.

Sign in, create a collection by typing its name, upload a real PDF and a Markdown note
and watch both become ready, ask, follow up (the conversation goes with the question),
open a citation and find its snippet marked on the cited page of the PDF, stop an
answer an LLM is still writing (its job ends cancelled), delete a document after the
confirmation, sign out. axe-core scans every screen on the way; the main screens are
saved as docs/screenshots/*.png for the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e import documents as docs
from tests.e2e.browser import (
    axe_scan,
    collection_box,
    fold,
    marked_text,
    named,
    phases_seen,
    screenshot,
    sign_in,
    watch_phases,
)
from tests.e2e.conftest import api_get
from tests.e2e.slow_llm import FIRST_WORDS, SlowLLM
from tests.integration.harness import Stack

pytestmark = pytest.mark.e2e

COLLECTION = "harbour-walk"
PDF_CITATION = f"{docs.PDF_NAME} p. {docs.ANSWER_PAGE}"
MD_CITATION = f"{docs.MD_NAME} p. 1"
# An upload row's phases before ready (services/gateway/web/src/upload/rowState.ts).
IN_PROGRESS = frozenset({"uploading", "queued", "parsing", "embedding", "indexing"})


def ask(page: Page, question: str) -> None:
    """Asks ``question`` and waits for its answer to be shown whole."""
    named(page, "textbox", "Question").fill(question)
    named(page, "button", "Ask").click()
    answer = named(page, "region", "Answer")
    expect(answer.locator("p.asked")).to_have_text(f"Question: {question}")
    expect(answer.locator(".answer[data-kind]")).to_be_visible()
    expect(answer).to_have_attribute("aria-busy", "false")


def test_a_writer_walks_through_the_app(
    page: Page, stack: Stack, writer_key: str, files: tuple[Path, Path]
) -> None:
    pdf, md = files

    # Sign in (the key box has the focus).
    page.goto(stack.url)
    expect(named(page, "textbox", "API key")).to_be_focused()
    axe_scan(page, "sign-in")
    screenshot(page, "sign-in")
    sign_in(page, stack.url, writer_key)
    axe_scan(page, "signed in")

    # A new collection: its name typed, then Enter.
    box = collection_box(page)
    expect(box).to_be_focused()
    box.fill(COLLECTION)
    box.press("Enter")
    expect(named(page, "heading", f"Collection {COLLECTION}")).to_be_visible()
    assert api_get(stack, f"/v1/collections/{COLLECTION}").status_code == 200

    # Upload both files; each row follows its job, phase after phase, to ready.
    watch_phases(page)
    page.get_by_label("Upload files", exact=True).set_input_files([pdf, md])
    uploads = named(page, "list", "Uploads")
    for name in (docs.PDF_NAME, docs.MD_NAME):
        row = uploads.get_by_role("listitem").filter(has_text=name)
        expect(row).to_have_attribute("data-phase", "ready", timeout=90_000)
        expect(row).to_contain_text("ready")
    expect(uploads.get_by_role("listitem").filter(has_text=docs.PDF_NAME)).to_contain_text(
        f"{len(docs.PAGES)} pages"
    )
    seen = phases_seen(page)
    print("upload phases:", seen)
    assert set(seen) == {docs.PDF_NAME, docs.MD_NAME}, seen
    for name, phases in seen.items():
        assert phases[0] == "uploading" and phases[-1] == "ready", (name, phases)
        assert set(phases) <= IN_PROGRESS | {"ready"}, (name, phases)
        assert len(phases) >= 3, f"{name}: no step shown between uploading and ready: {phases}"
    table = named(page, "table", f"Documents in {COLLECTION}")
    expect(table.get_by_role("row")).to_have_count(3)  # the header's and the two documents'
    for name in (docs.PDF_NAME, docs.MD_NAME):
        expect(table.get_by_role("row").filter(has_text=name).locator("td.status")).to_have_text("ready")
    pdf_cells = table.get_by_role("row").filter(has_text=docs.PDF_NAME).locator("td")
    expect(pdf_cells.nth(1)).to_have_text(str(len(docs.PAGES)))  # type, pages, ...
    axe_scan(page, "collection with documents")
    screenshot(page, "collection")

    # Ask: the extractive answer cites the PDF's page with the fact.
    answer = named(page, "region", "Answer")
    ask(page, docs.QUESTION)
    expect(answer).to_contain_text("1887")
    expect(answer).to_contain_text("Extractive")
    expect(named(answer, "link", PDF_CITATION).first).to_be_visible()

    # Follow up: the earlier turns go with the question, and the answer draws on them.
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as sent:
        ask(page, docs.FOLLOW_UP)
    body = sent.value.post_data_json
    assert body is not None
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"], messages
    assert messages[0]["content"] == docs.QUESTION and "1887" in messages[1]["content"]
    expect(named(page, "region", "Conversation so far")).to_contain_text(docs.QUESTION)
    expect(answer).to_contain_text(docs.FOLLOW_UP_ANSWER)
    sources = answer.locator("ol.sources")
    source = sources.get_by_role("listitem").filter(has=named(page, "link", PDF_CITATION)).first
    expect(source).to_be_visible()
    axe_scan(page, "answer")
    screenshot(page, "answer")

    # Open the citation: the viewer shows the cited page with the snippet marked.
    snippet = source.locator("blockquote").inner_text()
    assert snippet.strip()
    named(source, "link", PDF_CITATION).click()
    viewer = named(page, "region", "Document viewer")
    heading = viewer.get_by_role("heading", level=2)
    expect(heading).to_have_text(f"{docs.PDF_NAME}, page {docs.ANSWER_PAGE} of {len(docs.PAGES)}")
    expect(heading).to_be_focused()
    expect(viewer.get_by_role("status")).to_have_text("The cited passage is highlighted.")
    expect(viewer.locator("mark").first).to_be_visible()
    assert fold(marked_text(viewer)) == fold(snippet), (marked_text(viewer), snippet)
    assert fold(docs.FOLLOW_UP_ANSWER) in fold(marked_text(viewer))
    axe_scan(page, "PDF viewer")
    screenshot(page, "viewer")
    named(viewer, "button", "Close viewer").click()
    expect(viewer).to_be_hidden()

    # The Markdown note's citation opens its extracted text, the passage marked there.
    ask(page, docs.MD_QUESTION)
    expect(answer).to_contain_text(docs.MD_ANSWER)
    md_source = sources.get_by_role("listitem").filter(has=named(page, "link", MD_CITATION)).first
    md_snippet = md_source.locator("blockquote").inner_text()
    named(md_source, "link", MD_CITATION).click()
    expect(viewer.get_by_role("heading", level=2)).to_contain_text(docs.MD_NAME)
    expect(viewer.get_by_role("status")).to_have_text("The cited passage is highlighted.")
    expect(viewer.locator("mark").first).to_be_visible()
    assert fold(docs.MD_ANSWER) in fold(marked_text(viewer))
    assert fold(marked_text(viewer)) in fold(md_snippet) or fold(md_snippet) in fold(marked_text(viewer))
    axe_scan(page, "text viewer")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # Delete the note, after confirming.
    doc_ids = {
        d["filename"]: d["document_id"]
        for d in api_get(stack, f"/v1/collections/{COLLECTION}/documents").json()["documents"]
    }
    named(table, "button", f"Delete {docs.MD_NAME}").click()
    dialog = named(page, "alertdialog", f"Delete {docs.MD_NAME}?")
    expect(named(dialog, "button", "Cancel")).to_be_focused()
    axe_scan(page, "delete confirmation")
    named(dialog, "button", "Delete").click()
    expect(dialog).to_be_hidden()
    expect(table.get_by_role("row").filter(has_text=docs.MD_NAME)).to_have_count(0)
    expect(table.get_by_role("row").filter(has_text=docs.PDF_NAME)).to_have_count(1)
    assert api_get(stack, f"/v1/documents/{doc_ids[docs.MD_NAME]}").status_code == 404

    # Sign out: back to the sign-in screen, and the tab has forgotten the key.
    named(page, "button", "Sign out").click()
    expect(named(page, "textbox", "API key")).to_be_visible()
    page.reload()
    expect(named(page, "textbox", "API key")).to_be_focused()


def test_stop_cancels_an_answer_being_written(
    page: Page, stack: Stack, writer_key: str, library: str, slow_llm_generator: SlowLLM
) -> None:
    """An LLM writes ten words a second; Stop, once the first are on the page, cancels the job."""
    sign_in(page, stack.url, writer_key)
    box = collection_box(page)
    box.fill(library)
    box.press("Enter")
    expect(named(page, "heading", f"Collection {library}")).to_be_visible()
    answer = named(page, "region", "Answer")
    named(page, "textbox", "Question").fill("What is the lighthouse built from?")
    named(page, "button", "Ask").click()
    expect(answer).to_contain_text(FIRST_WORDS)
    assert slow_llm_generator.streaming.is_set()
    stop = named(page, "button", "Stop")
    with page.expect_request(lambda r: r.method == "DELETE" and "/v1/jobs/" in r.url) as cancel:
        stop.click()
    job_id = cancel.value.url.rsplit("/", 1)[-1]
    cancelled = cancel.value.response()
    assert cancelled is not None and cancelled.status == 200, cancelled
    expect(answer).to_contain_text("Stopped")
    expect(answer).to_have_attribute("aria-busy", "false")
    axe_scan(page, "stopped answer")
    expect(named(page, "button", "Ask")).to_be_enabled()
    expect(stop).to_be_disabled()
    job = api_get(stack, f"/v1/jobs/{job_id}?wait=10").json()
    assert job["status"] == "cancelled", job
    # The generator dropped the LLM call rather than reading the answer to its end.
    assert slow_llm_generator.abandoned.wait(30), "the LLM call went on after the job was cancelled"
    text = answer.locator(".answer-text").inner_text()
    assert FIRST_WORDS in text and "[1]." not in text, text
