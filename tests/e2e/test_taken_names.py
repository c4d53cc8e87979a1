"""A file named like a document already in the collection, in Chromium, against the real stack.

The app asks first (Replace, or Keep both). The same bytes kept both are the same
document: the row says "duplicate" and nothing is added. Changed bytes replacing it: the
new document becomes ready and the old one is gone, from the table and from the API.
axe-core scans the question and both outcomes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.e2e.browser import axe_scan, named, open_collection, sign_in
from tests.e2e.conftest import api_get, upload_ready
from tests.integration.harness import Stack

pytestmark = pytest.mark.e2e

TAKEN = "harbour-taken"
UPLOAD_TIMEOUT_MS = 90_000


def upload(page: Page, payload: FilePayload) -> Locator:
    """Picks one file in the upload input; its row in the uploads list."""
    page.get_by_label("Upload files", exact=True).set_input_files([payload])
    rows = named(page, "list", "Uploads").get_by_role("listitem").filter(has_text=payload["name"])
    expect(rows).to_have_count(1)
    return rows


def documents_named(stack: Stack, filename: str) -> list[str]:
    listed = api_get(stack, f"/v1/collections/{TAKEN}/documents").json()["documents"]
    return [d["document_id"] for d in listed if d["filename"] == filename]


def test_a_taken_name_asks_and_the_answer_is_kept(
    page: Page, stack: Stack, writer_key: str, files: tuple[Path, Path]
) -> None:
    _pdf, md = files
    (old_id,) = upload_ready(stack, TAKEN, (md,)).values()
    sign_in(page, stack.url, writer_key)
    open_collection(page, TAKEN)
    table = named(page, "table", f"Documents in {TAKEN}")
    expect(table.get_by_role("row").filter(has_text=md.name)).to_have_count(1)

    # The same bytes under the same name: asked first, nothing sent yet.
    row = upload(page, FilePayload(name=md.name, mimeType="text/markdown", buffer=md.read_bytes()))
    expect(row).to_have_attribute("data-phase", "conflict")
    replace = named(row, "button", f"Replace {md.name}")
    keep = named(row, "button", f"Keep both {md.name}")
    expect(replace).to_be_visible()
    axe_scan(page, "upload of a taken name")

    # Keep both: the server finds the same content already there and adds nothing.
    keep.click()
    expect(row).to_have_attribute("data-phase", "duplicate", timeout=UPLOAD_TIMEOUT_MS)
    expect(row.locator(".status")).to_have_text(re.compile(r"^duplicate: "))
    expect(row.get_by_role("button")).to_have_count(0)
    assert documents_named(stack, md.name) == [old_id]
    axe_scan(page, "duplicate upload")
    named(page, "button", "Clear finished uploads").click()
    expect(named(page, "list", "Uploads").get_by_role("listitem")).to_have_count(0)

    # Changed bytes under the same name, replacing: ready, and the old document is gone.
    changed = md.read_bytes() + b"\n\nIn winter the harbour office opens at nine.\n"
    row = upload(page, FilePayload(name=md.name, mimeType="text/markdown", buffer=changed))
    expect(row).to_have_attribute("data-phase", "conflict")
    named(row, "button", f"Replace {md.name}").click()
    expect(row).to_have_attribute("data-phase", "ready", timeout=UPLOAD_TIMEOUT_MS)
    expect(table.get_by_role("row").filter(has_text=md.name)).to_have_count(1)
    (new_id,) = documents_named(stack, md.name)
    assert new_id != old_id
    assert api_get(stack, f"/v1/documents/{old_id}").status_code == 404
    assert api_get(stack, f"/v1/documents/{new_id}/file").content == changed
    axe_scan(page, "replaced upload")
