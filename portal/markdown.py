"""Markdown written by people (release notes, notifications) rendered for a page, safely.

``render_markdown(text)`` parses CommonMark with markdown-it-py, raw HTML switched off (it
shows as text), then cleans the result with nh3 (ammonia): only the tags and attributes of
``ALLOWED_TAGS``/``ALLOWED_ATTRIBUTES`` survive, links keep http(s) and mailto addresses only
and get ``rel="noopener noreferrer"``. The template filter ``markdown`` does the same.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

ALLOWED_TAGS = frozenset({
    "p", "br", "hr", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "del", "table", "thead", "tbody", "tr", "th", "td",
})
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
MAX_SOURCE = 100_000  # characters: release notes are far shorter

_parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str | None) -> Markup:
    """Sanitized HTML of ``text`` (Markdown), safe to put into any page."""
    if not text:
        return Markup("")
    return _render(text[:MAX_SOURCE])


@lru_cache(maxsize=64)
def _render(text: str) -> Markup:
    """Remembered: a notice or release notes are shown again and again, unchanged (parsing and
    cleaning cost a few milliseconds a page; the last 64 texts stay, a few MB at most)."""
    html = _parser.render(text)
    clean = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return Markup(clean)  # noqa: S704 (cleaned by nh3 just above)
