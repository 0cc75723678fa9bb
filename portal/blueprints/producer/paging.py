"""Pages of big lists whose count stays cheap: a known total (the ``row_count`` read model for an
unfiltered list), or a count that stops at ``COUNT_CAP`` rows ("more than 10,000")."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app, request
from flask_sqlalchemy.pagination import SelectPagination
from sqlalchemy import orm

from portal.extensions import db
from portal.ui import Table
from portal.web import is_htmx

COUNT_CAP = 10_000


class CheapPagination(SelectPagination):
    """``db.paginate`` with a count that is given, or counted at most up to ``COUNT_CAP`` + 1 rows
    (``capped`` then says the total is a floor)."""

    capped = False

    def _query_count(self) -> int:
        known = self._query_args.get("total")
        if known is not None:
            return known
        select = self._query_args["select"]
        sub = select.options(orm.lazyload("*")).order_by(None).limit(COUNT_CAP + 1).subquery()
        total = db.session.execute(sa.select(sa.func.count()).select_from(sub)).scalar() or 0
        if total > COUNT_CAP:
            self.capped = True
        return total


def paginate(select, *, page: int, total: int | None = None) -> CheapPagination:
    return CheapPagination(select=select, session=db.session, page=page, per_page=current_app.config["PAGE_SIZE"],
                           error_out=False, total=total)





class CheapTable(Table):
    """A ``Table`` whose summary says "More than 10,000 ..." when the count stopped at the cap."""

    @property
    def summary(self) -> str:
        if getattr(self.pagination, "capped", False):
            words = f"More than {COUNT_CAP:,} {self.nouns}"
            return words + (f" matching “{self.state.q}”" if self.state.q else "")
        return super().summary


def table_only() -> bool:
    """An htmx GET swaps a page's table alone: what only the rest of the page shows (figures,
    forms and their choices, a drawing) need not be read for it."""
    return is_htmx() and request.method == "GET"
