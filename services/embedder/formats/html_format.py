"""HTML: the visible text as one page, with paragraph breaks and the heading path.

Scripts, styles, templates, hidden elements and navigation chrome (``nav``,
``aside``, and ``header``/``footer`` outside an ``article`` or ``main``) are
dropped. The tree is walked without recursion, so deep nesting cannot overflow
the stack. libxml2 reads up to 2048 levels deep (``huge_tree``); a document nested
deeper is read again by the standard library's tokenizer, which keeps no tree: its
text, paragraph breaks and dropped elements as above (no heading path, no hidden or
chrome rules), instead of losing everything past libxml2's limit.

Entities are never expanded beyond HTML's own: libxml2's HTML parser reads no
``<!ENTITY>`` declarations, so a "billion laughs" document keeps its references as
written. The DOCTYPE's internal subset that declares them (XHTML may carry one) is
dropped before parsing rather than shown as text.
"""

from __future__ import annotations

import codecs
import logging
import re
from html.parser import HTMLParser
from typing import Any

from libs.common.errors import PermanentError
from services.embedder.formats.common import Page, TextBuilder, check_chars, normalise
from services.embedder.formats.text import decode_text

logger = logging.getLogger(__name__)

# Never visible, or page chrome rather than content.
_DROPPED = frozenset(
    {
        "head", "script", "style", "noscript", "template", "nav", "aside", "iframe", "object",
        "embed", "svg", "math", "canvas", "audio", "video", "map", "select", "button", "dialog",
    }
)  # fmt: skip
# Elements without an end tag.
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_CHROME = frozenset({"header", "footer"})
_CONTENT = frozenset({"article", "main"})
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "menu"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "blockquote", "pre", "table", "ul", "ol", "dl",
        "figure", "form", "fieldset", "details", "address", "hr", "body", "center", "header", "footer",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd", "caption", "figcaption", "summary", "legend", "option"})
_CELL_TAGS = frozenset({"td", "th"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SPACES = re.compile(r"\s+")

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META_CHARSET = re.compile(rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
# A DOCTYPE with an internal subset ("<!DOCTYPE html [ <!ENTITY ...> ]>"), looked
# for in the document's prolog only.
_DOCTYPE_SUBSET = re.compile(r"<!DOCTYPE[^\[>]{0,1024}\[", re.IGNORECASE)
_SUBSET_END = re.compile(r"\]\s*>")
_PROLOG_CHARS = 4096
# Browsers read these labels as Windows-1252 (WHATWG encoding standard).
_WESTERN_LABELS = frozenset({"iso8859-1", "latin-1", "ascii", "cp1252"})


def parse_html(data: bytes, max_chars: int | None = None) -> list[Page]:
    """The visible text as one page; stops once it passes ``max_chars`` characters."""
    from lxml import etree

    text = _without_internal_subset(decode_html(data))
    parser = etree.HTMLParser(
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
        no_network=True,
        recover=True,
        huge_tree=True,
    )
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except (etree.LxmlError, ValueError) as exc:
        raise PermanentError(f"could not read HTML: {exc}") from exc
    if any("Excessive depth" in error.message for error in parser.error_log):
        logger.info("HTML nested deeper than libxml2 reads; extracting its text without a tree")
        flat = _FlatText(max_chars)
        flat.feed(text)
        flat.close()
        return [flat.builder.page()]
    if root is None:
        raise PermanentError("no extractable text")
    return [_visible_text(root, max_chars).page()]


def decode_html(data: bytes) -> str:
    """The document as a string: byte-order mark, else ``<meta charset>``, else a guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return normalise(data.decode(encoding, errors="replace"))
    match = _META_CHARSET.search(data, 0, 4096)
    if match:
        try:
            encoding = codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:
            logger.debug("unknown HTML charset %r; guessing", match.group(1))
        else:
            if encoding in _WESTERN_LABELS:
                encoding = "cp1252"
            return normalise(data.decode(encoding, errors="replace"))
    return decode_text(data)


def _without_internal_subset(text: str) -> str:
    """``text`` without its DOCTYPE's internal subset (DTD declarations are never content)."""
    start = _DOCTYPE_SUBSET.search(text, 0, _PROLOG_CHARS)
    if start is None:
        return text
    end = _SUBSET_END.search(text, start.end())
    return text if end is None else text[: start.start()] + text[end.end() :]


def _visible_text(root: Any, max_chars: int | None) -> TextBuilder:
    builder = TextBuilder()
    # Items: ("open", element), ("close", element) or ("text", string).
    stack: list[tuple[str, Any]] = [("open", root)]
    pre = content = 0
    heading: list[Any] | None = None  # [level, start offset or None, title parts]
    while stack:
        action, item = stack.pop()
        if action == "text":
            if not item:
                continue
            if pre:
                chunk = item
            else:
                if item[0].isspace():
                    builder.brk(builder.SPACE)
                chunk = _SPACES.sub(" ", item).strip()
            start = builder.add(chunk)
            check_chars(builder.length, max_chars)
            if not pre and item[-1].isspace():
                builder.brk(builder.SPACE)
            if heading is not None and start is not None:
                if heading[1] is None:
                    heading[1] = start
                heading[2].append(chunk)
            continue
        tag = item.tag if isinstance(item.tag, str) else ""
        if action == "close":
            pre -= tag == "pre"
            content -= tag in _CONTENT
            if tag in _HEADINGS and heading is not None:
                if heading[1] is not None:
                    builder.record_heading(heading[1], heading[0], " ".join(heading[2]))
                heading = None
            _block_break(builder, tag)
            continue
        if not tag or _hidden(item, tag, content):
            continue
        pre += tag == "pre"
        content += tag in _CONTENT
        _block_break(builder, tag)
        if tag == "br":
            builder.brk(builder.LINE)
        if tag in _HEADINGS and heading is None:
            heading = [_HEADINGS[tag], None, []]
        stack.append(("close", item))
        for child in reversed(item):
            stack.append(("text", child.tail))
            stack.append(("open", child))
        stack.append(("text", item.text))
    return builder


class _FlatText(HTMLParser):
    """Visible text from a token stream (no tree, so no depth limit)."""

    def __init__(self, max_chars: int | None) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = TextBuilder()
        self.max_chars = max_chars
        self.dropped = 0  # open elements whose content is never visible
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED and tag not in _VOID:
            self.dropped += 1
        self.pre += tag == "pre"
        _block_break(self.builder, tag)
        if tag == "br":
            self.builder.brk(self.builder.LINE)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED and tag not in _VOID:
            self.dropped = max(0, self.dropped - 1)
        self.pre = max(0, self.pre - (tag == "pre"))
        _block_break(self.builder, tag)

    def handle_data(self, data: str) -> None:
        if self.dropped or not data:
            return
        if self.pre:
            self.builder.add(data)
        else:
            if data[0].isspace():
                self.builder.brk(self.builder.SPACE)
            self.builder.add(_SPACES.sub(" ", data).strip())
            if data[-1].isspace():
                self.builder.brk(self.builder.SPACE)
        check_chars(self.builder.length, self.max_chars)


def _block_break(builder: TextBuilder, tag: str) -> None:
    if tag in _PARAGRAPH_TAGS or tag in _HEADINGS:
        builder.brk(builder.PARAGRAPH)
    elif tag in _LINE_TAGS:
        builder.brk(builder.LINE)
    elif tag in _CELL_TAGS:
        builder.brk(builder.CELL)


def _hidden(element: Any, tag: str, content: int) -> bool:
    if tag in _DROPPED or (tag in _CHROME and not content):
        return True
    if element.get("hidden") is not None or element.get("aria-hidden", "").lower() == "true":
        return True
    if (element.get("role") or "").lower() in _CHROME_ROLES:
        return True
    return bool(_HIDDEN_STYLE.search(element.get("style") or ""))
