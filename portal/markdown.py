"""Markdown written by producer staff (release notes, notifications), rendered and sanitized."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_TAGS = {"p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4",
         "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td"}


def render_markdown(text: str | None) -> Markup:
    html = _md.render(text or "")
    # Safe: nh3 has removed every tag, attribute and URL scheme outside the allowlists.
    return Markup(nh3.clean(  # noqa: S704
        html, tags=_TAGS, attributes={"a": {"href", "title"}}, url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer"))
