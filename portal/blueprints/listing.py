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
from typing import Any

from flask import Response, abort, current_app
from flask_sqlalchemy.pagination import SelectPagination
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import aliased, contains_eager, joinedload

from portal import policy
from portal.blueprints.customer import queries as q
from portal.exchange import stream_entitlements_csv
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, Organization, Product, SalesChainLink
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
    """Products on the entitlements the actor sees (one query: per product of the catalog, the
    first of its lines the actor sees, not every line of every entitlement it sees)."""
    products = db.session.execute(product_options(actor).order_by(Product.name, Product.id)).all()
    return Filter("product", "Product", [(str(i), name) for i, name in products])


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


# Built once (an aliased class and a loader option cost more to make than the rest of the page's
# statement): the owner joined to the page's rows, and the owner an ids query sorts by.
_PAGE_OWNER = aliased(Organization, name="page_owner")
_SORT_OWNER = aliased(Organization, name="sort_owner")
_OWNER_LOADED = contains_eager(Entitlement.owner.of_type(_PAGE_OWNER))


class EntitlementPagination(SelectPagination):
    """One page of a list of entitlements, found as the page's ids first (``ids``: the ids in the
    list's order) and then the rows of those ids with their owners, in one statement.

    The ids query filters each row with the policy's per-row scope while walking an index in the
    list's order, so a partner attached to 12,000 entitlements reads a few hundred index entries
    for a page instead of joining and sorting all 12,000. The total is ``total`` when the caller
    knows it, else counted from the ids without the joins the page needs."""

    def _query_items(self) -> list[Entitlement]:
        args = self._query_args
        page_ids = args["ids"].limit(self.per_page).offset(self._query_offset).subquery()
        owner = _PAGE_OWNER
        rows = (
            select(Entitlement)
            .join(page_ids, page_ids.c.id == Entitlement.id)
            .join(owner, owner.id == Entitlement.owner_id)
            .options(_OWNER_LOADED)
            .order_by(*args["order"](owner))
        )
        return list(db.session.scalars(rows))

    def _query_count(self) -> int:
        total = self._query_args["total"]
        if total is None:
            ids = self._query_args["ids"].order_by(None).subquery()
            total = db.session.scalar(select(func.count()).select_from(ids))
        return total


def list_page(actor, state: ListState, where: list, *, owner_sort: str) -> EntitlementPagination:
    """One page of the visible entitlements narrowed by ``where``, sorted by the state's key
    (``owner_sort`` names the key that sorts by the owner's name), each with its owner loaded."""

    def order(owner):  # every key ends with a unique column: a row never appears on two pages
        keys = (owner.name, Entitlement.code) if state.sort == owner_sort else SORTS[state.sort]
        return [key.desc() if state.descending else key for key in keys]

    ids = select(Entitlement.id).where(policy.entitlement_row_scope(actor), *where)
    if state.sort == owner_sort:
        sort_owner = _SORT_OWNER
        ids = ids.join(sort_owner, sort_owner.id == Entitlement.owner_id).order_by(*order(sort_owner))
    else:
        ids = ids.order_by(*order(None))
    total = None if where else policy.visible_entitlement_count(actor)
    return EntitlementPagination(ids=ids, order=order, total=total, page=state.page,
                                 per_page=current_app.config["PAGE_SIZE"], error_out=False)


@dataclass
class RowDetails:
    """What a list row shows beyond the entitlement itself (loaded for the whole page at once)."""

    lines: list[EntitlementLine] = field(default_factory=list)
    seats: int = 0
    used: int = 0
    seller: str | None = None
    ends: date | None = None
    ending_soon: bool = False


def row_details(entitlements: list[Entitlement], *, seller: bool = True) -> dict[int, RowDetails]:
    """Lines, seats used and (when asked: the customer's list) the seller of one page of
    entitlements: two or three queries for the page."""
    ids = [e.id for e in entitlements]
    details = {i: RowDetails() for i in ids}
    # Asked for an empty page too: a list costs the same whether or not it has rows.
    lines = db.session.scalars(_PAGE_LINES, {"ids": ids}).all()
    used = dict(db.session.execute(_SEATS_USED, {"line_ids": [line.id for line in lines]}).all())
    on = q.today()
    for line in lines:
        row = details[line.entitlement_id]
        row.lines.append(line)
        if line.license_model in q.SEAT_MODELS:
            row.seats += line.quantity
            row.used += used.get(line.id, 0)
        if line.license_model == "subscription" and line.end_date:
            row.ends = min(row.ends or line.end_date, line.end_date)
            row.ending_soon = row.ending_soon or 0 <= (line.end_date - on).days <= 90
    if seller:
        # The seller is the last tier of the chain.
        for entitlement_id, name in db.session.execute(_PAGE_SELLERS, {"ids": ids}).all():
            details[entitlement_id].seller = name
    return details


# The statements of ``row_details``, built once (the page's ids are their parameters).
_PAGE_LINES = (
    select(EntitlementLine).where(EntitlementLine.entitlement_id.in_(bindparam("ids", expanding=True)))
    .options(joinedload(EntitlementLine.product)).order_by(EntitlementLine.entitlement_id, EntitlementLine.id)
)
_SEATS_USED = (
    select(Activation.line_id, func.sum(Activation.seats))
    .where(Activation.line_id.in_(bindparam("line_ids", expanding=True)), Activation.active.is_(True))
    .group_by(Activation.line_id)
)
_PAGE_SELLERS = (
    select(SalesChainLink.entitlement_id, Organization.name)
    .join(Organization, Organization.id == SalesChainLink.partner_id)
    .where(SalesChainLink.entitlement_id.in_(bindparam("ids", expanding=True)))
    .order_by(SalesChainLink.entitlement_id, SalesChainLink.position)
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
