"""Fitting the retrieved sources into the prompt's token budget.

Tokens are estimated, not counted: no tokenizer of the served model is at hand
(and fetching one would mean a download). The estimate errs high: a token per
3.5 ASCII characters (English averages about 4 with GPT and Llama tokenizers) and
one per other character (accented letters, CJK, symbols often take one or more).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from libs.common.models import Hit
from services.generator.prompt import SOURCE_SEPARATOR, format_source
from services.generator.text import clip

logger = logging.getLogger(__name__)

ASCII_CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    """A conservative estimate of the tokens ``text`` takes."""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)


def fit_sources(hits: Sequence[Hit], budget_tokens: int) -> list[Hit]:
    """The best-ranked ``hits`` whose numbered sources fit in ``budget_tokens``.

    ``hits`` come best first; sources are kept in that order until the next one
    would not fit, so the kept ones are numbered 1..k exactly as in the prompt. A
    first source too big on its own is shortened rather than dropped: an answer
    needs at least one.
    """
    kept: list[Hit] = []
    used = 0
    separator = estimate_tokens(SOURCE_SEPARATOR)
    for n, hit in enumerate(hits, start=1):
        cost = estimate_tokens(format_source(n, hit)) + (separator if kept else 0)
        if used + cost > budget_tokens:
            break
        kept.append(hit)
        used += cost
    if not kept and hits:
        kept = [_shorten(hits[0], budget_tokens)]
    if len(kept) < len(hits):
        logger.info("prompt budget of %d tokens: kept %d of %d sources", budget_tokens, len(kept), len(hits))
    return kept


def _shorten(hit: Hit, budget_tokens: int) -> Hit:
    """``hit`` with its text cut at a word boundary so that source 1 fits the budget."""
    text = hit.text.strip()

    def fits(length: int) -> bool:
        shorter = hit.model_copy(update={"text": clip(text, length) if length else ""})
        return estimate_tokens(format_source(1, shorter)) <= budget_tokens

    low, high = 0, len(text)
    while low < high:  # the longest cut that fits
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return hit.model_copy(update={"text": clip(text, low) if low else ""})
