"""The entitlements a partner sees: those its organization is attached to (an active attachment
with view rights) and those it holds in stock, scoped to the customer it works for when it chose
one. The list has the customer list's search, filters, sort, pages and CSV (``listing``); each
row and the entitlement's page show OUR relation and permissions and nothing else of that
customer: not its other entitlements, not the other partners attached, not its users.

Everything comes from policy scopes; an entitlement the partner may not see is 404.
"""

from __future__ import annotations

from flask import request
from sqlalchemy import exists, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints import listing, seats
from portal.blueprints.customer import queries as q
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.models import Attachment, Entitlement, Organization, SalesChainLink
from portal.models.entitlements import RELATIONS
from portal.ui import Column, Filter, ListState, Table, parse_list_args, push_url
from portal.web import render

COLUMNS = [
    Column("code", "Entitlement", sortable=True),
    Column("products", "Products"),
    Column("customer", "Customer", sortable=True),
    Column("access", "Our access"),
    Column("seats", "Seats used", numeric=True),
    Column("purchased", "Purchased", sortable=True),
    Column("status", "Status", sortable=True),
]
RELATION_LABELS = {"sold": "Sold by us", "distributed": "Distributed by us", "services": "Serviced by us"}
ACCESS_FILTER = Filter("access", "Our access", [*((r, RELATION_LABELS[r]) for r in RELATIONS),
                                                ("stock", "In our stock")], all_label="Any")


def _filters(actor) -> list[Filter]:
    return [listing.product_filter(actor), listing.MODEL_FILTER, ACCESS_FILTER, listing.STATUS_FILTER,
            listing.ENDING_FILTER, listing.USAGE_FILTER]


def _where(actor, state: ListState) -> list:
    clauses = listing.common_where(state)
    access = state.filters.get("access")
    if access == "stock":
        clauses.append(Entitlement.owner_id == actor.org.id)
    elif access:
        clauses.append(exists().where(
            Attachment.entitlement_id == Entitlement.id, Attachment.partner_id == actor.org.id,
            Attachment.active.is_(True), Attachment.relation == access))
        clauses.append(Entitlement.owner_id != actor.org.id)  # our stock is "In our stock"
    return clauses


def _list_state(actor):
    filters = _filters(actor)
    state = parse_list_args(request.args, endpoint="partner.entitlements", sorts={*listing.SORTS, "customer"},
                            default_sort=listing.DEFAULT_SORT, filters=filters)
    return state, filters, _where(actor, state)


@bp.get("/entitlements")
def entitlements():
    """The entitlements we are attached to or hold in stock (of the customer we work for, when
    we chose one), searchable and filtered; the table alone for htmx."""
    actor = current_actor()
    state, filters, where = _list_state(actor)
    # Each row with our own live attachment of it (never anyone else's): "Our access".
    pagination = listing.list_page(actor, state, where, owner_sort="customer", extra="attachment")
    table = Table(
        id="entitlements-table", columns=COLUMNS, pagination=pagination, state=state,
        noun="entitlement", nouns="entitlements", caption="Entitlements we are attached to or hold in stock",
        csv_url=state.url("partner.entitlements_csv", page=1),
        empty_text="Entitlements appear here when a customer buys through you or attaches you to its licenses.",
    )
    response = render("partner/entitlements.html", fragment="partner/_entitlements_table.html", table=table,
                      filters=filters, details=listing.row_details(pagination.items, seller=False),
                      labels=RELATION_LABELS, today=q.today())
    return push_url(response, state)


@bp.get("/entitlements.csv")
def entitlements_csv():
    """The entitlements the list shows with the same search and filters, all pages, as CSV (our
    own attachment only, the sales chain only where we are part of it)."""
    actor = current_actor()
    _, _, where = _list_state(actor)
    return listing.csv_response(actor, where)


# --- one entitlement ------------------------------------------------------------------------


def entitlement_page(actor, entitlement: Entitlement, *, status: int = 200, forms: dict | None = None,
                     rehost_forms: dict | None = None):
    """The entitlement's page: its lines with our controls (within our attachment), the order,
    the sales chain when we are part of it, and our own access; with some forms as submitted."""
    attachment = policy.own_attachment(actor, entitlement)
    # Read, not lazy-loaded: the page costs the same whether or not the owner is already known.
    owner = db.session.scalar(select(Organization).where(Organization.id == entitlement.owner_id))
    chain = db.session.execute(
        select(SalesChainLink.partner_id, Organization.name)
        .join(Organization, Organization.id == SalesChainLink.partner_id)
        .where(SalesChainLink.entitlement_id == entitlement.id)
        .order_by(SalesChainLink.position)
    ).all()
    # The chain only when we are part of it (as the CSV): a service provider the customer brought
    # in does not learn through whom the customer bought.
    chain = [name for _, name in chain] if any(partner_id == actor.org.id for partner_id, _ in chain) else []
    in_stock = owner.id == actor.org.id
    path = policy.hierarchy_path(owner)  # asked for stock too: the page costs the same whatever it shows
    return render(
        "partner/entitlement.html", status=status, entitlement=entitlement, owner=owner, in_stock=in_stock,
        # Another partner's stock we are attached to: whose stock it is, we do not learn.
        owner_path=path if owner.kind == "customer" else None, chain=chain,
        attachment=attachment,
        labels=RELATION_LABELS, stock_days=(q.today() - entitlement.purchase_date).days,
        lines=seats.line_views(actor, seats.lines_of(entitlement), forms=forms, rehost_forms=rehost_forms),
        today=q.today(),
    )


@bp.get("/entitlements/<code>")
def entitlement(code: str):
    """One entitlement we see: its lines, seats and activations, and what we may do on it."""
    actor = current_actor()
    return entitlement_page(actor, policy.load_entitlement(actor, listing.clean_code(code)))
