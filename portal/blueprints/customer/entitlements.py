"""Entitlements of the customer's organization and every sub-organization: the list (search,
filters, sort, pages, CSV of what is shown) and one entitlement's page (lines with seats and
activations, the sales chain, the partners attached).

Everything comes from policy scopes; an entitlement the actor may not see is 404.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from flask import Response, abort, current_app, request
from sqlalchemy import func, select
from sqlalchemy.orm import aliased, contains_eager, joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer import queries as q
from portal.blueprints.customer.forms import ActivateForm, RehostForm
from portal.exchange import export_entitlements_csv
from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    Entitlement,
    EntitlementLine,
    Organization,
    Product,
    SalesChainLink,
)
from portal.models.entitlements import ENTITLEMENT_STATUSES, LICENSE_MODELS
from portal.ui import Column, Filter, ListState, Table, parse_list_args, push_url
from portal.web import render

# Entitlement codes: ENT-7F3K-Q9D2-XM4P (or the demo's ENT-DEMO-...); anything else is 404 at once.
CODE = re.compile(r"[A-Za-z0-9-]{1,32}")
ENDING_DAYS = ("30", "90")
SORTS = {
    "code": (Entitlement.code,),
    "purchased": (Entitlement.purchase_date, Entitlement.id),
    "status": (Entitlement.status, Entitlement.code),
}
COLUMNS = [
    Column("code", "Entitlement", sortable=True),
    Column("products", "Products"),
    Column("organization", "Organization", sortable=True),
    Column("seller", "Sold through"),
    Column("seats", "Seats used", numeric=True),
    Column("purchased", "Purchased", sortable=True),
    Column("status", "Status", sortable=True),
]


def clean_code(code: str) -> str:
    """The code from a URL, or 404 (control characters and huge strings never reach SQL)."""
    if not CODE.fullmatch(code):
        abort(404)
    return code


# --- the list -------------------------------------------------------------------------------


def _filters(actor) -> tuple[list[Filter], dict[str, Organization]]:
    """The filters offered, with options drawn from what the actor sees (a few small queries)."""
    scope = policy.entitlement_scope(actor)
    visible_ids = policy.visible_entitlements(actor).with_only_columns(Entitlement.id)
    products = db.session.execute(
        select(Product.id, Product.name).where(
            Product.id.in_(select(EntitlementLine.product_id).where(EntitlementLine.entitlement_id.in_(visible_ids)))
        ).order_by(Product.name, Product.id)
    ).all()
    sellers = db.session.execute(
        select(Organization.id, Organization.name).where(
            Organization.id.in_(select(SalesChainLink.partner_id).where(SalesChainLink.entitlement_id.in_(visible_ids)))
        ).order_by(Organization.name, Organization.id)
    ).all()
    partners = db.session.execute(
        select(Organization.id, Organization.name).distinct()
        .select_from(Attachment)
        .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
        .join(Organization, Organization.id == Attachment.partner_id)
        .where(scope, policy.attachment_scope(actor), Attachment.active.is_(True))
        .order_by(Organization.name, Organization.id)
    ).all()
    orgs = db.session.scalars(
        select(Organization).where(Organization.id.in_(policy.subtree_org_ids(actor.org))).order_by(Organization.path)
    ).all()
    by_id = {str(org.id): org for org in orgs}
    paths = policy.hierarchy_paths(orgs)
    filters = [
        Filter("product", "Product", [(str(i), name) for i, name in products]),
        Filter("model", "License model", [(m, m.capitalize()) for m in LICENSE_MODELS]),
        Filter("seller", "Sold through", [("direct", "Direct"), *((str(i), name) for i, name in sellers)]),
        Filter("org", "Organization", [(str(org.id), paths[org.id]) for org in orgs]),
        Filter("status", "Status", [(s, s.capitalize()) for s in ENTITLEMENT_STATUSES]),
        Filter("ending", "Subscription ends", [(d, f"Within {d} days") for d in ENDING_DAYS], all_label="Any time"),
        Filter("usage", "Usage", [("over", "Over allowance")], all_label="Any"),
        Filter("partner", "Partner attached", [(str(i), name) for i, name in partners], all_label="Any"),
    ]
    return filters, by_id


def _where(actor, state: ListState, orgs: dict[str, Organization]) -> list:
    """The WHERE clauses of a list state (on top of the policy scope)."""
    on = q.today()
    chosen = state.filters
    clauses = []
    if state.q:
        clauses.append(q.matches_search(state.q))
    if "product" in chosen:
        clauses.append(q.has_product(int(chosen["product"])))
    if "model" in chosen:
        clauses.append(q.has_license_model(chosen["model"]))
    if "seller" in chosen:
        clauses.append(q.sold_direct() if chosen["seller"] == "direct" else q.sold_through(int(chosen["seller"])))
    if "org" in chosen:
        clauses.append(Entitlement.owner_id.in_(policy.subtree_org_ids(orgs[chosen["org"]])))
    if "status" in chosen:
        clauses.append(Entitlement.status == chosen["status"])
    if "ending" in chosen:
        clauses.append(q.ending_within(int(chosen["ending"]), on))
    if "usage" in chosen:
        clauses.append(q.over_allowance(on))
    if "partner" in chosen:
        clauses.append(q.partner_attached(int(chosen["partner"]), policy.attachment_scope(actor)))
    return clauses


def _list_state(actor, endpoint: str):
    filters, orgs = _filters(actor)
    state = parse_list_args(request.args, endpoint=endpoint, sorts={*SORTS, "organization"},
                            default_sort="-purchased", filters=filters)
    return state, filters, _where(actor, state, orgs)


@dataclass
class RowDetails:
    """What a list row shows beyond the entitlement itself (loaded for the whole page at once)."""

    lines: list[EntitlementLine] = field(default_factory=list)
    seats: int = 0
    used: int = 0
    seller: str | None = None
    ends: date | None = None
    ending_soon: bool = False


def _row_details(entitlements: list[Entitlement]) -> dict[int, RowDetails]:
    """Lines, seats used and seller of one page of entitlements: three queries for the page."""
    ids = [e.id for e in entitlements]
    details = {i: RowDetails() for i in ids}
    if not ids:
        return details
    lines = db.session.scalars(
        select(EntitlementLine).where(EntitlementLine.entitlement_id.in_(ids))
        .options(joinedload(EntitlementLine.product)).order_by(EntitlementLine.entitlement_id, EntitlementLine.id)
    ).all()
    used = dict(db.session.execute(
        select(Activation.line_id, func.sum(Activation.seats))
        .where(Activation.line_id.in_([line.id for line in lines]), Activation.active.is_(True))
        .group_by(Activation.line_id)
    ).all()) if lines else {}
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
    # The seller is the last tier of the chain.
    for entitlement_id, name in db.session.execute(
        select(SalesChainLink.entitlement_id, Organization.name)
        .join(Organization, Organization.id == SalesChainLink.partner_id)
        .where(SalesChainLink.entitlement_id.in_(ids))
        .order_by(SalesChainLink.entitlement_id, SalesChainLink.position)
    ).all():
        details[entitlement_id].seller = name
    return details


@bp.get("/entitlements")
def entitlements():
    """Every entitlement of the organization and its sub-organizations, searchable and filtered;
    the table alone for htmx (the page's search form stays)."""
    actor = current_actor()
    state, filters, where = _list_state(actor, "customer.entitlements")
    owner = aliased(Organization)
    query = (
        policy.visible_entitlements(actor)
        .join(owner, owner.id == Entitlement.owner_id)
        .options(contains_eager(Entitlement.owner.of_type(owner)))
        .where(*where)
    )
    keys = (owner.name, Entitlement.code) if state.sort == "organization" else SORTS[state.sort]
    query = query.order_by(*(key.desc() if state.descending else key for key in keys))
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    table = Table(
        id="entitlements-table", columns=COLUMNS, pagination=pagination, state=state,
        noun="entitlement", nouns="entitlements", caption="Entitlements of your organization",
        csv_url=state.url("customer.entitlements_csv", page=1),
        empty_text="Entitlements appear here when your organization buys licenses.",
    )
    response = render("customer/entitlements.html", fragment="customer/_entitlements_table.html", table=table,
                      filters=filters, details=_row_details(pagination.items), today=q.today())
    return push_url(response, state)


@bp.get("/entitlements.csv")
def entitlements_csv():
    """The entitlements the list shows with the same search and filters, all pages, as CSV."""
    actor = current_actor()
    _, _, where = _list_state(actor, "customer.entitlements")
    out = io.StringIO()
    export_entitlements_csv(actor, out, where=where)
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="entitlements.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- one entitlement ------------------------------------------------------------------------


@dataclass
class LineView:
    """One line of an entitlement as its card shows it, with its forms."""

    line: EntitlementLine
    used: int
    activations: list[Activation]
    form: ActivateForm
    rehost_forms: dict[int, RehostForm]
    usage: int = 0

    @property
    def free(self) -> int:
        return max(self.line.quantity - self.used, 0)

    @property
    def is_seat_line(self) -> bool:
        return self.line.license_model in q.SEAT_MODELS


def line_views(actor, lines: list[EntitlementLine], *, forms: dict | None = None,
               rehost_forms: dict | None = None) -> list[LineView]:
    """Cards for ``lines`` (of one entitlement): seats used, usage this period and the active
    activations of all of them in three queries."""
    forms, rehost_forms = forms or {}, rehost_forms or {}
    ids = [line.id for line in lines]
    used = dict(db.session.execute(
        select(Activation.line_id, func.sum(Activation.seats))
        .where(Activation.line_id.in_(ids), Activation.active.is_(True)).group_by(Activation.line_id)
    ).all())
    usage_lines = [line.id for line in lines if line.license_model == "usage"]
    # Asked whether or not there are usage lines: the page costs the same for every entitlement.
    usage = dict(db.session.execute(
        select(EntitlementLine.id, q.usage_in_period(q.today())).where(EntitlementLine.id.in_(usage_lines))
    ).all())
    activations = defaultdict(list)
    for activation in db.session.scalars(
        select(Activation).where(Activation.line_id.in_(ids), Activation.active.is_(True))
        .order_by(Activation.activated_at.desc(), Activation.id.desc())
    ):
        activations[activation.line_id].append(activation)
    views = []
    for line in lines:
        views.append(LineView(
            line=line, used=used.get(line.id, 0), usage=usage.get(line.id, 0),
            activations=activations[line.id],
            form=forms.get(line.id) or ActivateForm(prefix=f"line-{line.id}", formdata=None),
            rehost_forms={a.id: rehost_forms.get(a.id) or RehostForm(prefix=f"activation-{a.id}", formdata=None)
                          for a in activations[line.id]},
        ))
    return views


def lines_of(entitlement: Entitlement) -> list[EntitlementLine]:
    return db.session.scalars(
        select(EntitlementLine).where(EntitlementLine.entitlement_id == entitlement.id)
        .options(joinedload(EntitlementLine.product)).order_by(EntitlementLine.id)
    ).all()


def entitlement_page(actor, entitlement: Entitlement, *, status: int = 200, forms: dict | None = None,
                     rehost_forms: dict | None = None):
    """The entitlement's page, with some forms as submitted (and their errors) when ``forms`` say so."""
    chain = db.session.execute(
        select(Organization.name)
        .join(SalesChainLink, SalesChainLink.partner_id == Organization.id)
        .where(SalesChainLink.entitlement_id == entitlement.id)
        .order_by(SalesChainLink.position)
    ).scalars().all()
    producer = db.session.scalar(select(Organization.name).where(Organization.kind == "producer"))
    # Read, not lazy-loaded: the page costs the same whether or not the owner is already known.
    owner = db.session.scalar(select(Organization).where(Organization.id == entitlement.owner_id))
    attachments = db.session.scalars(
        policy.visible_attachments(actor, entitlement).where(Attachment.active.is_(True))
        .options(joinedload(Attachment.partner))
    ).all()
    return render(
        "customer/entitlement.html", status=status, entitlement=entitlement,
        owner_path=policy.hierarchy_path(owner), chain=chain, producer=producer,
        attachments=attachments,
        lines=line_views(actor, lines_of(entitlement), forms=forms, rehost_forms=rehost_forms),
        today=q.today(),
    )


@bp.get("/entitlements/<code>")
def entitlement(code: str):
    """One entitlement: its lines with seats and activations, its sales chain, its partners."""
    actor = current_actor()
    return entitlement_page(actor, policy.load_entitlement(actor, clean_code(code)))
