"""Pages of statements built once.

Building a SQLAlchemy statement and its cache key costs more CPU than PostgreSQL spends running
a small one, so the statements a list runs on every request are built once (at import, or once
per shape with ``functools.cache``) with bound parameters for everything that varies: the
ids, the search, a filter's value, and the page's ``LIMIT``/``OFFSET`` (``paged``). A
``StatementPage`` runs such a statement for one page and keeps its rows as they come (tuples
with named columns, or entities: whatever the statement selects).

    ROWS = paged(select(Mail.id, Mail.to_addr).where(Mail.batch_id == bindparam("batch_id")).order_by(Mail.id))
    page = statement_page(ROWS, {"batch_id": 7}, page=state.page, total=known_total)

A search is a bound parameter too: ``contains(column, "text")`` is ``column.icontains(text,
autoescape=True)`` with the text as a parameter (``contains_param``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Integer, Select, bindparam, func, select
from sqlalchemy.sql.elements import ColumnElement

from portal.extensions import db

LIKE_ESCAPE = "/"  # the escape character of SQLAlchemy's autoescape


def paged(statement: Select) -> Select:
    """``statement`` with ``LIMIT :page_limit OFFSET :page_offset`` (``StatementPage`` fills them)."""
    return statement.limit(bindparam("page_limit", type_=Integer)).offset(bindparam("page_offset", type_=Integer))


def count_of(statement: Select) -> Select:
    """``SELECT count(*)`` of ``statement``'s rows (without its order), its parameters unchanged."""
    return select(func.count()).select_from(statement.order_by(None).subquery())


def contains(column, name: str) -> ColumnElement[bool]:
    """``column`` contains the text of parameter ``name``, in any case (``contains_param`` makes its
    value): ``column.icontains(text, autoescape=True)`` with the text bound, not in the statement."""
    return column.icontains(bindparam(name), escape=LIKE_ESCAPE)


def contains_param(text: str) -> str:
    """The value of a ``contains`` parameter: ``%`` and ``_`` stand for themselves."""
    return text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")


class StatementPage(Pagination):
    """One page of a ``paged`` statement: its rows as the statement gives them (``.all()``); the
    total is given, or counted with the ``count`` statement and the same parameters."""

    def _query_items(self) -> list[Any]:
        args = self._query_args
        params = {**args["params"], "page_limit": self.per_page, "page_offset": self._query_offset}
        return db.session.execute(args["select"], params).all()

    def _query_count(self) -> int:
        total = self._query_args["total"]
        if total is None:
            total = db.session.execute(self._query_args["count_statement"], self._query_args["params"]).scalar() or 0
        return total


def statement_page(statement: Select, params: Mapping[str, Any], *, page: int, total: int | None = None,
                   count: Select | None = None) -> StatementPage:
    """One page (``PAGE_SIZE`` rows) of ``statement`` (made by ``paged``) with ``params``. The
    total: ``total`` when the caller knows it, else ``count`` (a statement taking ``params``)."""
    if total is None and count is None:
        raise ValueError("a page needs its total or a statement that counts it")
    return StatementPage(select=statement, params=params, total=total, count_statement=count, page=page,
                         per_page=current_app.config["PAGE_SIZE"], error_out=False)
