"""The axe-core scan itself: it fails on a violation of moderate impact or worse, so a
clean scan of the app's screens means something."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import axe_scan

pytestmark = pytest.mark.e2e


def test_the_scan_fails_on_a_serious_violation(page: Page) -> None:
    # A button without a name (axe's button-name, critical) and an image without alt text.
    page.set_content(
        '<html lang="en"><title>t</title><main><button></button><img src="data:,"></main></html>'
    )
    with pytest.raises(AssertionError, match="button-name"):
        axe_scan(page, "broken on purpose")


def test_the_scan_fails_on_a_moderate_violation(page: Page) -> None:
    # Nothing worse than moderate: a heading level skipped (heading-order) and a paragraph
    # outside every landmark (region).
    page.set_content(
        '<html lang="en"><title>t</title><body><main><h1>Title</h1><h3>Skipped a level</h3></main>'
        "<p>Outside the landmarks</p></body></html>"
    )
    with pytest.raises(AssertionError, match="moderate heading-order") as failed:
        axe_scan(page, "moderate on purpose")
    assert "moderate region" in str(failed.value)
    assert "serious" not in str(failed.value) and "critical" not in str(failed.value)


def test_the_scan_passes_a_clean_page(page: Page) -> None:
    page.set_content(
        '<html lang="en"><title>t</title><body><main><h1>Title</h1><h2>Next level</h2>'
        "<p>Inside the main landmark</p></main></body></html>"
    )
    assert axe_scan(page, "clean on purpose") == []
