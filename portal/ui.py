"""The server side of the UI components in ``templates/components/``, shared by the portals.

- ``ListState``: what a list shows (search, filters, sort, page), read from the query string
  by ``parse_list_args`` (the one place that parses it) and written back into every link, so
  that Back and bookmarks work.
- ``Table``: what the ``data_table`` macro renders: columns, one page of rows, the state.
- ``toast``: a result message for the page, sent with the ``HX-Trigger`` response header and
  shown by ``static/portal.js``.
- ``status_badge``: a status as a badge, for ``components/feedback.html`` (a function, not a
  macro: tables call it once a row or twice).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from flask import abort, request, url_for
from flask.globals import _cv_request
from flask_sqlalchemy.pagination import Pagination
from markupsafe import Markup, escape

from portal.forms import has_control_characters

MAX_PAGE = 100_000
TOAST_EVENT = "portal:toast"


def clean_arg(value: str | None, *, max_length: int = 100, name: str = "value") -> str:
    """A text from the query string, stripped; 400 for control characters or too long a text."""
    value = (value or "").strip()
    if has_control_characters(value):  # the forms' own filter (PostgreSQL refuses NUL in text)
        abort(400, f"The {name} contains characters that are not allowed.")
    if len(value) > max_length:
        abort(400, f"The {name} is longer than {max_length} characters.")
    return value


@dataclass(frozen=True)
class Column:
    """One column of a data table; ``sortable`` columns have a link that sorts by ``key``."""

    key: str
    label: str
    sortable: bool = False
    numeric: bool = False
    label_hidden: bool = False  # an actions column: the label is for screen readers only


@dataclass(frozen=True)
class Filter:
    """A select above a table: ``options`` are (value, text) pairs, every value a string."""

    name: str
    label: str
    options: list[tuple[str, str]]
    all_label: str = "All"

    @property
    def values(self) -> set[str]:
        return {value for value, _ in self.options}


def filter_options(item: Filter, chosen: str | None) -> Markup:
    """The ``<option>`` elements of a filter's select, ``chosen`` selected: the markup the
    ``table_controls`` macro's loop wrote (its line breaks and indentation included), at a
    fraction of the cost where a filter offers hundreds of partners."""
    return Markup("".join(  # noqa: S704 (every value and text escaped here)
        f'\n        <option value="{escape(value)}"{_SELECTED if value == chosen else ""}>{escape(text)}</option>'
        "\n        " for value, text in item.options))


_SELECTED = " selected"


@dataclass(frozen=True)
class ListState:
    """Search, filters, sort and page of one list, as they appear in its URL."""

    endpoint: str
    q: str = ""
    filters: Mapping[str, str] = field(default_factory=dict)
    sort: str = ""
    descending: bool = False
    page: int = 1
    default_sort: str = ""
    default_descending: bool = False
    url_values: Mapping[str, Any] = field(default_factory=dict)
    _base: tuple[Any, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def sort_arg(self) -> str:
        return ("-" if self.descending else "") + self.sort

    @property
    def is_default_sort(self) -> bool:
        return (self.sort, self.descending) == (self.default_sort, self.default_descending)

    @property
    def narrowed(self) -> bool:
        """True when a search or a filter limits the list."""
        return bool(self.q or self.filters)

    def args(self) -> dict[str, Any]:
        """The query arguments of this state; defaults are left out, so URLs stay short."""
        args: dict[str, Any] = {}
        if self.q:
            args["q"] = self.q
        args.update(self.filters)
        if not self.is_default_sort:
            args["sort"] = self.sort_arg
        if self.page > 1:
            args["page"] = self.page
        return args

    def url(self, endpoint: str | None = None, **changes: Any) -> str:
        """This list's URL with ``changes`` (``page=2``, ``sort="code"``...); any change but the
        page starts again at page 1."""
        state = self
        if changes:
            if "page" not in changes:
                changes["page"] = 1
            state = replace(self, **changes)
        if endpoint is not None and endpoint != self.endpoint:
            return url_for(endpoint, **self.url_values, **state.args())
        return _with_query(self._base_url(), state.args())

    def _base_url(self) -> str:
        """``url_for(endpoint, **url_values)``, built once per request: a table links to its
        list a dozen times (pages, sort orders), each link this URL with another query string."""
        ctx = _cv_request.get(None)  # the request the URL is for (its script root)
        known = self._base
        if known is not None and known[0] is ctx:
            return known[1]
        base = url_for(self.endpoint, **self.url_values)
        if ctx is not None:
            object.__setattr__(self, "_base", (ctx, base))  # frozen: a cache, not part of the state
        return base

    def sorted_by(self, key: str) -> str:
        """The URL that sorts by ``key``: ascending first, the other way round when it already is."""
        descending = not self.descending if key == self.sort else False
        return self.url(sort=key, descending=descending)

    def filter_url(self, **filters: str) -> str:
        """The list narrowed by ``filters`` only (no search, default sort): for links from elsewhere."""
        return url_for(self.endpoint, **self.url_values, **filters)


# What Werkzeug leaves unquoted in a query string it builds (werkzeug.urls._urlencode).
_QUERY_SAFE = "!$'()*,/:;?@"


def _with_query(base: str, args: Mapping[str, Any]) -> str:
    """``base`` with ``args`` as its query string, exactly as ``url_for`` appends values that are
    not part of the route (in order, ``None`` left out, a list as repeated keys)."""
    items = []
    for key, value in args.items():
        if isinstance(value, (list, tuple)):
            items.extend((key, v) for v in value if v is not None)
        elif value is not None:
            items.append((key, value))
    if not items:
        return base
    return base + ("&" if "?" in base else "?") + urlencode(items, safe=_QUERY_SAFE)


def parse_list_args(
    args: Mapping[str, str],
    *,
    endpoint: str,
    sorts: Collection[str],
    default_sort: str,
    filters: Collection[Filter] = (),
    url_values: Mapping[str, Any] | None = None,
) -> ListState:
    """Read a list's state from the query string. Hostile or unknown values answer 400.

    ``default_sort`` may start with ``-`` (descending). A filter value must be one of the
    filter's options: the page offered nothing else.
    """
    default_descending = default_sort.startswith("-")
    default_key = default_sort.lstrip("-")
    q = clean_arg(args.get("q"), name="search")
    chosen: dict[str, str] = {}
    for item in filters:
        value = clean_arg(args.get(item.name), name=item.label.lower())
        if not value:
            continue
        if value not in item.values:
            abort(400, f"There is no such {item.label.lower()} to filter by.")
        chosen[item.name] = value
    sort_arg = clean_arg(args.get("sort"), max_length=40, name="sort order") or default_sort
    descending = sort_arg.startswith("-")
    sort = sort_arg.lstrip("-")
    if sort not in sorts:
        abort(400, "The list cannot be sorted that way.")
    raw_page = clean_arg(args.get("page"), max_length=12, name="page") or "1"
    if not (raw_page.isascii() and raw_page.isdigit()):
        abort(400, "A page is a number.")
    page = min(max(int(raw_page), 1), MAX_PAGE)
    return ListState(
        endpoint=endpoint, q=q, filters=chosen, sort=sort, descending=descending, page=page,
        default_sort=default_key, default_descending=default_descending, url_values=dict(url_values or {}),
    )


@dataclass
class Table:
    """Everything the ``data_table`` macro needs for one list."""

    id: str
    columns: list[Column]
    pagination: Pagination
    state: ListState
    noun: str  # singular
    nouns: str  # plural
    caption: str
    csv_url: str | None = None
    empty_text: str = ""

    @property
    def rows(self) -> list[Any]:
        return list(self.pagination.items)

    @property
    def summary(self) -> str:
        total = self.pagination.total or 0
        words = f"{total} {self.noun if total == 1 else self.nouns}"
        if self.state.q:
            words += f" matching “{self.state.q}”"
        return words


def push_url(response, state: ListState):
    """For htmx, the URL to push into the history: the list's own, with defaults and empty
    fields left out (the form sends every field; the bookmark should not)."""
    if request.headers.get("HX-Request") == "true":
        response.headers["HX-Push-Url"] = state.url()
    return response


def toast(response, message: str, kind: str = "success"):
    """Show ``message`` as a toast after an htmx request (``kind``: success or error)."""
    # json.dumps escapes non-ASCII: the header stays ASCII, htmx decodes it back.
    response.headers["HX-Trigger"] = json.dumps({TOAST_EVENT: {"message": message, "kind": kind}})
    return response


# A status as a badge: the word is always there, colour only repeats it.
BADGE_CLASSES = {
    "active": "text-bg-success", "approved": "text-bg-success",
    "suspended": "text-bg-warning", "pending": "text-bg-warning", "ending soon": "text-bg-warning",
    "returned": "text-bg-secondary", "withdrawn": "text-bg-secondary", "expired": "text-bg-secondary",
    "revoked": "text-bg-secondary", "rejected": "text-bg-danger", "over allowance": "text-bg-danger",
}
_OTHER_BADGE = "text-bg-light border"
_PLAIN_BADGES: dict[Any, Markup] = {}  # status -> its badge with the status itself as the word


def status_badge(status: Any, label: Any = None) -> Markup:
    """``<span class="badge status-badge ...">`` with ``label``, else the status ("ending_soon" ->
    "Ending soon"); the class says the colour of known statuses. Jinja's global of the same name
    (``components/feedback.html`` exports it): the HTML the macro it replaces rendered."""
    if label:
        return _badge(status, escape(label))
    badge = _PLAIN_BADGES.get(status)
    if badge is None:
        badge = _badge(status, escape(str(status).replace("_", " ").capitalize()))
        if len(_PLAIN_BADGES) < 1000:  # statuses are a handful; never grows without bound
            _PLAIN_BADGES[status] = badge
    return badge


def _badge(status: Any, word: Markup) -> Markup:
    return Markup(f'<span class="badge status-badge {BADGE_CLASSES.get(status, _OTHER_BADGE)}">{word}</span>')  # noqa: S704
