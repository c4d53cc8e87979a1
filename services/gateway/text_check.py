"""A JSON body whose text is not Unicode: refused with 422 (400 on the OpenAI routes).

JSON may spell a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it into a str
that no UTF-8 encoder takes, so such a question, description or message used to fail
deep inside the route (a 500) when it was hashed, queued or stored. The dependency
below, on every route, refuses it first. It costs one search of the raw body for an
escaped surrogate; only a body with one is decoded again and walked.
"""

from __future__ import annotations

import json
import re
from typing import Final

from fastapi import Request

from libs.common.errors import InvalidRequest

# An escaped surrogate, high (D800-DBFF) or low (DC00-DFFF): the bodies worth a look.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
NOT_UNICODE: Final = "the body holds text that is not Unicode (a lone UTF-16 surrogate such as \\ud800)"


async def text_is_unicode(request: Request) -> None:
    """The dependency: :class:`InvalidRequest` for a JSON body with a lone surrogate."""
    if "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return  # FastAPI answers a body that is not JSON itself
    if (where := _lone_surrogate(parsed)) is not None:
        raise InvalidRequest(NOT_UNICODE, where or None)


def _lone_surrogate(value: object, path: str = "") -> str | None:
    """The dotted path of the first text (or key) with a lone surrogate, else None."""
    if isinstance(value, str):
        return None if _encodes(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if not _encodes(key):
                return path
            if (found := _lone_surrogate(item, here)) is not None:
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            if (found := _lone_surrogate(item, f"{path}.{n}" if path else str(n))) is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
