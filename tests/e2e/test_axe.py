"""The axe-core scan itself: it finds a serious violation when there is one, so a clean
scan of the app's screens means something."""

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
