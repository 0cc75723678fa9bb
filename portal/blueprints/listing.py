"""The entitlement list the customer and partner portals share: the filters every actor gets
(product, license model, status, subscriptions ending, usage over allowance), the search
(entitlement code, activation code, host ID), sorting and pages in SQL, the extra facts of one
page of rows, and the CSV of what the list shows.

Each portal adds the filters that only make sense to it (a customer's organizations and the
partners it sees; a partner's relation to each entitlement) and its own columns. Everything
starts from the policy's scope (``policy.visible_entitlements``); nothing here decides access.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any, NamedTuple

from flask import Response, abort, current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Integer, Select, bindparam, func, null, select

from portal import policy
from portal.blueprints.customer import queries as q
from portal.exchange import stream_entitlements_csv
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, Product, SalesChainLink
from portal.models.entitlements import ENTITLEMENT_STATUSES, LICENSE_MODELS
from portal.ui import Filter, ListState

# Entitlement codes: ENT-7F3K-Q9D2-XM4P (or the demo's ENT-DEMO-...); anything else is 404 at once.
CODE = re.compile(r"[A-Za-z0-9-]{1,32}")
ENDING_DAYS = ("30", "90")
SORTS = {
    "code": (Entitlement.code,),
    "purchased": (Entitlement.purchase_date, Entitlement.id),
    "status": (Entitlement.status, Entitlement.code),
}
DEFAULT_SORT = "-purchased"


def clean_code(code: str) -> str:
    """The code from a URL, or 404 (control characters and huge strings never reach SQL)."""
    if not CODE.fullmatch(code):
        abort(404)
    return code


# --- filters and search ---------------------------------------------------------------------


def product_filter(actor) -> Filter:
    """Products on the entitlements the actor sees (one query, built once: per product of the
    catalog, the first of its lines the actor sees, not every line of every entitlement it sees)."""
    statement = _product_options(policy.scope_shape(actor), db.engine.dialect.name)
    products = db.session.execute(statement, policy.scope_params(actor)).all()
    return Filter("product", "Product", [(str(i), name) for i, name in products])


@cache
def _product_options(shape: str, dialect: str) -> Select:
    """``product_options`` of a scope shape, by name, with the shape's parameters (Core)."""
    product, line = Product.__table__, policy.LINE_TABLE.alias("option_line")
    seen = select(line.c.id).where(line.c.product_id == product.c.id, policy.line_scope_param(shape, dialect, line))
    return select(product.c.id, product.c.name).where(seen.exists()).order_by(product.c.name, product.c.id)


def product_options(actor) -> Select:
    """(id, name) of the products ``product_filter`` offers, unordered (a page may ask for it
    together with its other options, in one statement)."""
    seen = select(EntitlementLine.id).where(EntitlementLine.product_id == Product.id, policy.line_scope(actor))
    return select(Product.id, Product.name).where(seen.exists())


MODEL_FILTER = Filter("model", "License model", [(m, m.capitalize()) for m in LICENSE_MODELS])
STATUS_FILTER = Filter("status", "Status", [(s, s.capitalize()) for s in ENTITLEMENT_STATUSES])
ENDING_FILTER = Filter("ending", "Subscription ends", [(d, f"Within {d} days") for d in ENDING_DAYS],
                       all_label="Any time")
USAGE_FILTER = Filter("usage", "Usage", [("over", "Over allowance")], all_label="Any")


def common_where(state: ListState) -> list:
    """The WHERE clauses of the search and the shared filters (on top of the policy scope)."""
    on = q.today()
    chosen = state.filters
    clauses = []
    if state.q:
        clauses.append(q.matches_search(state.q))
    if "product" in chosen:
        clauses.append(q.has_product(int(chosen["product"])))
    if "model" in chosen:
        clauses.append(q.has_license_model(chosen["model"]))
    if "status" in chosen:
        clauses.append(Entitlement.status == chosen["status"])
    if "ending" in chosen:
        clauses.append(q.ending_within(int(chosen["ending"]), on))
    if "usage" in chosen:
        clauses.append(q.over_allowance(on))
    return clauses


# --- one page of the list -------------------------------------------------------------------


class EntitlementRow(NamedTuple):
    """One row of an entitlement list: the entitlement's columns and its owner's, and what the
    list asked for besides (``extra``): the seller (the last tier of the sales chain), or the
    partner's own live attachment (``relation`` None: none)."""

    id: int
    code: str
    owner_id: int
    purchase_date: date
    status: str
    owner_name: str
    owner_kind: str
    seller: str | None
    relation: str | None
    can_view: bool | None
    can_download: bool | None
    can_activate: bool | None

    @property
    def permissions(self) -> list[str]:
        """The partner's permissions on this row (its attachment's), as ``Attachment.permissions``."""
        flags = (("view", self.can_view), ("download", self.can_download), ("activate", self.can_activate))
        return [name for name, on in flags if on]


class EntitlementPage(Pagination):
    """One page of an entitlement list (``EntitlementRow``s) from one statement (``rows``: the
    page's ids in the list's order, then those rows with their owners) and its parameters; the
    total is ``total`` when the caller knows it, else counted with the ``count`` statement."""

    def _query_items(self) -> list[EntitlementRow]:
        args = self._query_args
        params = {**args["params"], "page_limit": self.per_page, "page_offset": self._query_offset}
        return [EntitlementRow(*row) for row in db.session.execute(args["rows"], params)]

    def _query_count(self) -> int:
        total = self._query_args["total"]
        if total is None:
            total = db.session.execute(self._query_args["count_statement"], self._query_args["params"]).scalar() or 0
        return total


_E = policy.ENTITLEMENT_TABLE
_ORG = policy.ORGANIZATION_TABLE
_PAGE_OWNER = _ORG.alias("page_owner")
_SORT_OWNER = _ORG.alias("sort_owner")
_OWN = policy.ATTACHMENT_TABLE.alias("own_attachment")
_LINK = SalesChainLink.__table__.alias("seller_link")
_SELLER_ORG = _ORG.alias("seller")
# The seller of an entitlement: the organization of the last tier of its sales chain.
_SELLER = (select(_SELLER_ORG.c.name).select_from(_LINK.join(_SELLER_ORG, _SELLER_ORG.c.id == _LINK.c.partner_id))
           .where(_LINK.c.entitlement_id == _E.c.id).correlate(_E)
           .order_by(_LINK.c.position.desc()).limit(1).scalar_subquery())
_TABLE_SORTS = {
    "code": (_E.c.code,),
    "purchased": (_E.c.purchase_date, _E.c.id),
    "status": (_E.c.status, _E.c.code),
}


def _page_statements(scope, where, sort: str, descending: bool, owner_sort: bool, extra: str):
    """(rows, count) of one page of a list: ``scope`` and ``where`` on the entitlement table, sorted
    by ``sort`` (by the owner's name and the code when ``owner_sort``), each row with its owner
    and ``extra`` ("seller", "attachment": the partner's own, or "": nothing more). Parameters:
    the scope's, ``page_limit`` and ``page_offset``.

    The ids query filters each row with the per-row scope while walking an index in the list's
    order, so a partner attached to 12,000 entitlements reads a few hundred index entries for a
    page instead of joining and sorting all 12,000; the rows of those ids are then joined with
    what the page shows of them."""

    def order(owner):  # every key ends with a unique column: a row never appears on two pages
        keys = (owner.c.name, _E.c.code) if owner_sort else _TABLE_SORTS[sort]
        return [key.desc() if descending else key for key in keys]

    ids = select(_E.c.id).where(scope, *where)
    if owner_sort:
        ids = ids.join(_SORT_OWNER, _SORT_OWNER.c.id == _E.c.owner_id).order_by(*order(_SORT_OWNER))
    else:
        ids = ids.order_by(*order(None))
    count = select(func.count()).select_from(ids.order_by(None).subquery())
    page_ids = ids.limit(bindparam("page_limit", type_=Integer)).offset(bindparam("page_offset", type_=Integer))
    page_ids = page_ids.subquery("page_ids")
    owner = _PAGE_OWNER
    joined = _E.join(page_ids, page_ids.c.id == _E.c.id).join(owner, owner.c.id == _E.c.owner_id)
    seller = _SELLER if extra == "seller" else null()
    if extra == "attachment":  # a partner's: its own live attachment of each row, never another's
        joined = joined.outerjoin(_OWN, (_OWN.c.entitlement_id == _E.c.id)
                                  & policy.attachment_scope_param("partner", _OWN) & _OWN.c.active.is_(True))
        attachment = (_OWN.c.relation, _OWN.c.can_view, _OWN.c.can_download, _OWN.c.can_activate)
    else:
        attachment = (null(), null(), null(), null())
    rows = (select(_E.c.id, _E.c.code, _E.c.owner_id, _E.c.purchase_date, _E.c.status, owner.c.name, owner.c.kind,
                   seller, *attachment)
            .select_from(joined).order_by(*order(owner)))
    return rows, count


@cache
def _default_page_statements(shape: str, dialect: str, sort: str, descending: bool, owner_sort: bool, extra: str):
    """``_page_statements`` of an unfiltered list, built once per scope shape and order."""
    return _page_statements(policy.entitlement_row_scope_param(shape, dialect), (), sort, descending, owner_sort,
                            extra)


def list_page(actor, state: ListState, where: list, *, owner_sort: str, extra: str = "") -> EntitlementPage:
    """One page (``EntitlementRow``s) of the visible entitlements narrowed by ``where``, sorted by
    the state's key (``owner_sort`` names the key that sorts by the owner's name), each with its
    owner and ``extra`` (see ``_page_statements``). Unfiltered, from statements built once and
    the total counted the cheapest way (``policy.visible_entitlement_count``)."""
    by_owner = state.sort == owner_sort
    params = policy.scope_params(actor)
    if where:
        # The scope's own clause (its values in the statement) under the filters' subqueries.
        rows, count = _page_statements(policy.entitlement_row_scope(actor), where, state.sort, state.descending,
                                       by_owner, extra)
        total = None
    else:
        rows, count = _default_page_statements(policy.scope_shape(actor), db.engine.dialect.name, state.sort,
                                               state.descending, by_owner, extra)
        total = policy.visible_entitlement_count(actor)
    return EntitlementPage(rows=rows, count_statement=count, params=params, total=total, page=state.page,
                           per_page=current_app.config["PAGE_SIZE"], error_out=False)


class LineRow(NamedTuple):
    """A line as a list row shows it, with its product's name and its seats in use (active
    activations)."""

    id: int
    entitlement_id: int
    license_model: str
    quantity: int
    end_date: date | None
    product_name: str
    used: int


@dataclass
class RowDetails:
    """What a list row shows beyond the entitlement itself (loaded for the whole page at once)."""

    lines: list[LineRow] = field(default_factory=list)
    seats: int = 0
    used: int = 0
    seller: str | None = None
    ends: date | None = None
    ending_soon: bool = False


def row_details(entitlements, *, seller: bool = True) -> dict[int, RowDetails]:
    """Lines and seats used and (when asked: the producer's list) the seller of one page of
    entitlements (anything with an ``id``): one or two queries for the page."""
    ids = [e.id for e in entitlements]
    details = {i: RowDetails() for i in ids}
    # Asked for an empty page too: a list costs the same whether or not it has rows.
    on = q.today()
    for row in db.session.execute(_PAGE_LINES, {"ids": ids}):
        line = LineRow(*row)
        detail = details[line.entitlement_id]
        detail.lines.append(line)
        if line.license_model in q.SEAT_MODELS:
            detail.seats += line.quantity
            detail.used += line.used
        if line.license_model == "subscription" and line.end_date:
            detail.ends = min(detail.ends or line.end_date, line.end_date)
            detail.ending_soon = detail.ending_soon or 0 <= (line.end_date - on).days <= 90
    if seller:
        # The seller is the last tier of the chain.
        for entitlement_id, name in db.session.execute(_PAGE_SELLERS, {"ids": ids}).all():
            details[entitlement_id].seller = name
    return details


# The statements of ``row_details``, built once (the page's ids are their parameters), of table
# columns. Seats in use per line: a sum over the line's activations (its index), line by line.
_L, _P, _A = policy.LINE_TABLE, Product.__table__, Activation.__table__
_USED = (select(func.coalesce(func.sum(_A.c.seats), 0)).where(_A.c.line_id == _L.c.id, _A.c.active.is_(True))
         .correlate(_L).scalar_subquery())
_PAGE_LINES = (
    select(_L.c.id, _L.c.entitlement_id, _L.c.license_model, _L.c.quantity, _L.c.end_date, _P.c.name, _USED)
    .select_from(_L.join(_P, _P.c.id == _L.c.product_id))
    .where(_L.c.entitlement_id.in_(bindparam("ids", expanding=True)))
    .order_by(_L.c.entitlement_id, _L.c.id)
)
_PAGE_SELLERS = (
    select(_LINK.c.entitlement_id, _SELLER_ORG.c.name)
    .select_from(_LINK.join(_SELLER_ORG, _SELLER_ORG.c.id == _LINK.c.partner_id))
    .where(_LINK.c.entitlement_id.in_(bindparam("ids", expanding=True)))
    .order_by(_LINK.c.entitlement_id, _LINK.c.position)
)


def csv_response(actor, where: list, filename: str = "entitlements.csv") -> Response:
    """The entitlements the list shows with the same search and filters, all pages, as CSV
    (``portal.exchange``: a partner's rows carry only its own attachment)."""
    response = csv_stream(actor, where=where, filename=filename)
    response.headers["Cache-Control"] = "no-store"
    return response


def csv_stream(actor, *, where: Sequence[Any] = (), filename: str = "entitlements.csv") -> Response:
    """A streamed CSV export (``portal.exchange.CsvStream``): its statements run now, its rows
    are read, written and sent piece by piece as the client takes them."""
    response = Response(stream_entitlements_csv(actor, where=where), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
