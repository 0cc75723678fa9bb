"""Release notes (and later notifications) are Markdown rendered safely: no script, no event
handler, no javascript: link, no raw HTML survives; what remains is plain formatting."""

from html.parser import HTMLParser

import pytest
from flask import render_template_string
from markupsafe import Markup

from portal.markdown import ALLOWED_TAGS, render_markdown


def test_markdown_formats_text():
    html = render_markdown("First release of the **5.x** line.\n\n- fast\n- safe\n\n`code`")
    assert isinstance(html, Markup)
    assert "<strong>5.x</strong>" in html
    assert "<li>fast</li>" in html and "<code>code</code>" in html


def test_links_get_rel_noopener():
    html = render_markdown("[Docs](https://acme.example/docs)")
    assert html.strip() == '<p><a href="https://acme.example/docs" rel="noopener noreferrer">Docs</a></p>'


@pytest.mark.parametrize("payload", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="https://x.example" onclick="alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    '<iframe src="https://evil.example"></iframe>',
    "<svg onload=alert(1)>",
    '[x](https://a.example "t" onmouseover="alert(1)")',
    "![x](javascript:alert(1))",
    '<div style="background:url(javascript:alert(1))">x</div>',
])
def test_hostile_markdown_is_harmless(payload):
    elements = _elements(str(render_markdown(payload)))
    assert {tag for tag, _ in elements} <= ALLOWED_TAGS  # raw HTML is shown as text, never as elements
    for tag, attrs in elements:
        assert not [name for name, _ in attrs if name.startswith("on") or name == "style"], (tag, attrs)
        for name, value in attrs:
            if name == "href":
                assert value.split(":")[0].lower() in ("http", "https", "mailto"), value


def _elements(html: str) -> list[tuple[str, list]]:
    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_raw_html_is_shown_as_text():
    assert str(render_markdown("<b>bold</b>")).strip() == "<p>&lt;b&gt;bold&lt;/b&gt;</p>"


def test_empty_notes_render_nothing():
    assert render_markdown(None) == "" and render_markdown("") == ""


def test_jinja_filter(app):
    with app.test_request_context():
        out = render_template_string("{{ notes|markdown }}", notes="**hi** <script>x</script>")
    assert "<strong>hi</strong>" in out and "<script>" not in out
