"""Plain-text output shared by the CLI commands."""

from __future__ import annotations

import httpx


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )


def error_detail(resp: httpx.Response) -> str:
    """The API's readable ``detail``, else the raw body."""
    try:
        return str(resp.json().get("detail", resp.text))
    except ValueError:
        return resp.text
