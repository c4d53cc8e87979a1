from __future__ import annotations

import pytest

from libs.common.errors import PermanentError
from services.embedder.chunking import chunk_pages
from services.embedder.parsing import parse_document
from tests import hostile

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <title>Browser tab title</title>
  <meta charset="utf-8">
  <style>body { font-family: SECRET_STYLE; }</style>
  <script>var tracking = "SECRET_SCRIPT";</script>
</head>
<body>
  <header class="site"><a href="/">SiteLogo</a> <span>Sign in</span></header>
  <nav><ul><li><a href="/a">MenuItemOne</a></li><li>MenuItemTwo</li></ul></nav>
  <main>
    <article>
      <header><h1>Caring for   <em>Succulents</em></h1></header>
      <p>Succulents store water in their leaves.
         Water them <b>rarely</b>, about once a fortnight.</p>
      <h2>Light</h2>
      <p>Bright, indirect light suits most species.</p>
      <ul><li>Aloe vera</li><li>Echeveria</li></ul>
      <h3>Winter</h3>
      <table>
        <tr><th>Month</th><th>Waterings</th></tr>
        <tr><td>December</td><td>1</td></tr>
      </table>
      <pre>soil:  2 parts grit
      1 part compost</pre>
      <div hidden>SECRET_HIDDEN</div>
      <p style="display: none">SECRET_DISPLAY_NONE</p>
      <noscript>SECRET_NOSCRIPT</noscript>
      <template><p>SECRET_TEMPLATE</p></template>
      <!-- SECRET_COMMENT -->
      <footer>Posted in Gardening</footer>
    </article>
  </main>
  <aside>SECRET_ASIDE related posts</aside>
  <footer>Copyright SECRET_FOOTER</footer>
  <script>document.write("SECRET_SCRIPT_2")</script>
</body>
</html>
"""


def parse(html: str | bytes, name: str = "page.html") -> str:
    data = html.encode() if isinstance(html, str) else html
    pages = parse_document(name, data, max_pages=1)
    assert len(pages) == 1
    assert pages[0].number == 1
    return pages[0].text


def test_only_visible_content_is_kept() -> None:
    text = parse(PAGE)
    assert "SECRET" not in text
    for chrome in ("SiteLogo", "Sign in", "MenuItemOne", "MenuItemTwo", "Browser tab title"):
        assert chrome not in text
    assert text.startswith(
        "Caring for Succulents\n\nSucculents store water in their leaves. Water them rarely,"
    )
    assert "Aloe vera\nEcheveria" in text
    assert "Month | Waterings\nDecember | 1" in text
    assert "soil:  2 parts grit\n      1 part compost" in text  # <pre> keeps its spacing
    assert text.endswith("Posted in Gardening")  # an article's own footer is content
    assert "\n\n\n" not in text
    assert text == text.strip()


def test_html_heading_path() -> None:
    pages = parse_document("page.htm", PAGE.encode(), max_pages=1)
    chunks = chunk_pages(pages, "doc-1", "page.htm", size_words=200, overlap_words=10)
    assert [c.heading for c in chunks] == [
        "Caring for Succulents",
        "Caring for Succulents > Light",
        "Caring for Succulents > Light > Winter",
    ]
    assert chunks[1].text.startswith("Light\n\nBright, indirect light")
    for c in chunks:
        assert pages[0].text[c.char_start : c.char_end] == c.text


def test_fragment_and_line_breaks() -> None:
    assert parse("Just <b>some</b> text<br>on two lines") == "Just some text\non two lines"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('<meta charset="iso-8859-1"><p>Café crème</p>'.encode("latin-1"), "Café crème"),
        (
            '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251"><p>Привет</p>'.encode(
                "cp1251"
            ),
            "Привет",
        ),
        ("<p>naïve “quoted” €5</p>".encode("cp1252"), "naïve “quoted” €5"),
        ("\ufeff<p>Grüße</p>".encode("utf-16"), "Grüße"),
        ("<p>Grüße &amp; &eacute;t&eacute;</p>".encode(), "Grüße & été"),
    ],
)
def test_html_encodings(data: bytes, expected: str) -> None:
    assert parse(data) == expected


def test_deeply_nested_html() -> None:
    html = "<p>intro</p>" + "<div>" * 200 + "deep text" + "</div>" * 200 + "<p>outro</p>"
    assert parse(html) == "intro\n\ndeep text\n\noutro"
    # Deeper than libxml2 reads (2048 levels), the text is still all there.
    html = "<p>intro</p>" + "<div>" * 5000 + "deep text" + "</div>" * 5000 + "<p>outro</p>"
    assert parse(html) == "intro\n\ndeep text\n\noutro"


def test_html_deeper_than_libxml2_reads_keeps_its_text_without_a_tree() -> None:
    html = (
        "<h1>Title</h1><p>intro &amp; more</p><script>SECRET_SCRIPT</script>"
        + "<div><span>" * 50_000
        + "deep<br>text <img src=x> <embed src=y> here<pre>  kept  </pre>"
        + "</span></div>" * 50_000
        + "<style>SECRET_STYLE</style><p>outro</p>"
    )
    # Breaks, entities, <pre> and dropped elements as in the tree walk (void ones too).
    assert parse(html) == "Title\n\nintro & more\n\ndeep\ntext here\n\n  kept  \n\noutro"


@pytest.mark.parametrize(
    "html",
    [
        "<html><head><title>Only a title</title><script>x()</script></head><body></body></html>",
        "<nav>menu</nav><footer>foot</footer>",
        "   \n  ",
    ],
)
def test_html_without_visible_text(html: str) -> None:
    with pytest.raises(PermanentError, match="no extractable text"):
        parse(html)


def test_binary_garbage_as_html() -> None:
    with pytest.raises(PermanentError, match=r"could not read|no extractable text"):
        parse(bytes(range(256)) * 4)


@pytest.mark.parametrize("xhtml", [False, True], ids=["html", "xhtml"])
def test_declared_entities_are_not_expanded(xhtml: bool) -> None:
    """A "billion laughs" DOCTYPE: its references stay as written, the declarations go."""
    assert parse(hostile.laughs_html("Before.", "After.", xhtml=xhtml)) == "Before.\n\n&lol9;\n\nAfter."
