"""The web app when things go away or go wrong, in Chromium, against the real stack.

A writer deletes a collection after the confirmation (Cancel keeps it): it leaves the
list and the API, and its documents' originals go with it. A PDF cut short fails, and
its upload row and its documents row say why. A key revoked while signed in: the next
question signs out with a sentence saying so (not the server's JSON, no markup), and
signing in again works. axe-core scans each of these screens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Page, expect

from tests.e2e import documents as docs
from tests.e2e.browser import axe_scan, collection_box, named, open_collection, sign_in
from tests.e2e.conftest import api_get, make_key, upload_ready
from tests.integration.harness import Stack

pytestmark = pytest.mark.e2e

DOOMED = "harbour-doomed"
BROKEN = "harbour-broken"
CUT_NAME = "guide-cut-short.pdf"
# services/embedder/formats/pdf.py unreadable(): a PDF without its %%EOF marker.
TRUNCATED = "could not read PDF: the file is truncated"
UPLOAD_TIMEOUT_MS = 90_000


def test_a_writer_deletes_a_collection_after_the_confirmation(
    page: Page, stack: Stack, writer_key: str, files: tuple[Path, Path]
) -> None:
    ids = upload_ready(stack, DOOMED, files)
    for doc_id in ids.values():
        assert api_get(stack, f"/v1/documents/{doc_id}/file").status_code == 200
    sign_in(page, stack.url, writer_key)
    open_collection(page, DOOMED)
    expect(named(page, "table", f"Documents in {DOOMED}").get_by_role("row")).to_have_count(3)

    collections = named(page, "table", "Collections")
    row = collections.get_by_role("row").filter(has=named(page, "rowheader", DOOMED))
    expect(row).to_have_count(1)
    delete = named(row, "button", f"Delete {DOOMED}")
    dialog = named(page, "alertdialog", f"Delete the collection {DOOMED}?")

    # Cancel keeps it, and gives the focus back to the button.
    delete.click()
    expect(dialog).to_contain_text(f"Its {len(files)} documents and their chunks are deleted for good.")
    expect(named(dialog, "button", "Cancel")).to_be_focused()
    axe_scan(page, "collection delete confirmation")
    named(dialog, "button", "Cancel").click()
    expect(dialog).to_be_hidden()
    expect(delete).to_be_focused()
    expect(row).to_have_count(1)
    assert api_get(stack, f"/v1/collections/{DOOMED}").status_code == 200

    # Delete, confirmed: gone from the list, its workspace closed, the focus back in the box.
    delete.click()
    with page.expect_response(
        lambda r: r.request.method == "DELETE" and r.url.endswith(f"/v1/collections/{DOOMED}")
    ) as deleted:
        named(dialog, "button", "Delete").click()
    assert deleted.value.status == 200, deleted.value.text()
    body: dict[str, Any] = deleted.value.json()
    assert body["deleted"] is True and body["documents"] == len(files), body
    expect(dialog).to_be_hidden()
    expect(named(page, "rowheader", DOOMED)).to_have_count(0)
    expect(named(page, "heading", f"Collection {DOOMED}")).to_be_hidden()
    expect(collection_box(page)).to_be_focused()
    expect(page.get_by_role("status").filter(has_text=f"Collection {DOOMED} deleted.")).to_have_count(1)
    axe_scan(page, "collection deleted")

    listed = api_get(stack, "/v1/collections").json()["collections"]
    assert DOOMED not in {c["name"] for c in listed}, listed
    assert api_get(stack, f"/v1/collections/{DOOMED}").status_code == 404
    for job_id in body["job_ids"]:
        job = stack.wait_job(job_id)
        assert job["status"] == "done", job
    for name, doc_id in ids.items():
        original = api_get(stack, f"/v1/documents/{doc_id}/file")
        assert original.status_code == 404, (name, original.status_code, original.text)


def test_a_pdf_cut_short_fails_with_its_reason(
    page: Page, stack: Stack, writer_key: str, tmp_path: Path
) -> None:
    whole = docs.write_pdf(tmp_path / docs.PDF_NAME).read_bytes()
    cut = whole[: len(whole) // 2]
    assert cut.startswith(b"%PDF-") and b"%%EOF" not in cut
    sign_in(page, stack.url, writer_key)
    open_collection(page, BROKEN)

    page.get_by_label("Upload files", exact=True).set_input_files(
        [FilePayload(name=CUT_NAME, mimeType="application/pdf", buffer=cut)]
    )
    upload = named(page, "list", "Uploads").get_by_role("listitem").filter(has_text=CUT_NAME)
    expect(upload).to_have_attribute("data-phase", "failed", timeout=UPLOAD_TIMEOUT_MS)
    status = upload.locator(".status")
    expect(status).to_have_text(re.compile(rf"^failed: .*{re.escape(TRUNCATED)}"))
    expect(status).to_contain_text("upload the complete file")
    expect(upload.locator("progress")).to_have_count(0)
    # The file itself is at fault: sending it again would fail again, so no Retry.
    expect(upload.get_by_role("button")).to_have_count(0)

    # The documents table says the same, in the server's words.
    (doc,) = api_get(stack, f"/v1/collections/{BROKEN}/documents").json()["documents"]
    assert doc["filename"] == CUT_NAME and doc["status"] == "failed", doc
    assert TRUNCATED in doc["error"], doc
    table = named(page, "table", f"Documents in {BROKEN}")
    cells = table.get_by_role("row").filter(has_text=CUT_NAME)
    expect(cells).to_have_attribute("data-status", "failed")
    expect(cells.locator("td.status")).to_have_text(f"failed: {doc['error']}")
    axe_scan(page, "failed upload")


def error_detail(body: dict[str, Any]) -> str:
    """The server's sentence from an error body, REST (detail) or OpenAI (error.message)."""
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    message: str = body["error"]["message"]
    return message


def test_a_revoked_key_signs_out_with_a_readable_reason(
    page: Page, stack: Stack, writer_key: str, library: str
) -> None:
    key = make_key(stack, "writer", "e2e-soon-revoked")
    key_id = api_get(stack, "/v1/me", key).json()["id"]
    sign_in(page, stack.url, key)
    open_collection(page, library)
    named(page, "textbox", "Question").fill(docs.QUESTION)

    with stack.client(timeout=10) as client:
        revoked = client.delete(f"/v1/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True, revoked.text

    # The next question is refused; the app signs out and says why in a sentence.
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as asked:
        named(page, "button", "Ask").click()
    assert asked.value.status == 401, asked.value.status
    detail = error_detail(asked.value.json())
    assert "revoked" in detail, detail
    box = named(page, "textbox", "API key")
    expect(box).to_be_focused()
    expect(named(page, "button", "Sign out")).to_have_count(0)
    expect(named(page, "region", "Answer")).to_have_count(0)
    alert = page.get_by_role("alert")
    reason = f"The API key was refused ({detail.strip().rstrip('.')}). Sign in again with a valid key."
    expect(alert).to_have_text(reason)
    # Text only: no markup from the answer, no JSON.
    assert alert.evaluate("el => el.childElementCount") == 0
    assert not re.search(r"[{}<>]|\"detail\"", alert.inner_text()), alert.inner_text()
    axe_scan(page, "signed out: key revoked")

    # The tab forgot the revoked key; signing in again with a valid one works.
    page.reload()
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    box.fill(writer_key)
    named(page, "button", "Sign in").click()
    expect(named(page, "button", "Sign out")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="refused")).to_have_count(0)
