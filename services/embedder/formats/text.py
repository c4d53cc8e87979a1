"""Plain text and Markdown in any common encoding."""

from __future__ import annotations

import logging

from libs.common.errors import PermanentError
from services.embedder.formats.common import normalise

logger = logging.getLogger(__name__)

_WESTERN = "cp1252"
_WESTERN_CHAOS_MARGIN = 0.1


def decode_text(data: bytes) -> str:
    """Bytes of a text file as a string, whatever the encoding.

    UTF-8 (with or without BOM) is tried first; otherwise charset-normalizer
    guesses. Raises :class:`PermanentError` when the bytes do not look like text.
    """
    try:
        return normalise(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise PermanentError("could not read the file as text (unknown encoding or binary content)")
    if best.encoding != _WESTERN and not best.encoding.startswith("utf"):
        # Short single-byte texts are ambiguous and the detector often picks a rarer
        # code page (French as cp1250: "crème" -> "crčme"). Windows-1252, the most
        # common legacy encoding, wins when it reads the bytes (almost) as cleanly.
        western = from_bytes(data, cp_isolation=[_WESTERN]).best()
        if western is not None and western.chaos <= best.chaos + _WESTERN_CHAOS_MARGIN:
            best = western
    logger.debug("decoded text file as %s", best.encoding)
    return normalise(str(best))
