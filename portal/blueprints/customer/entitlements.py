"""Entitlements of the customer's organization and every sub-organization: the list (search,
filters, sort, pages, CSV of what is shown) and one entitlement's page (lines with seats and
activations, the sales chain, the partners attached).

Everything comes from policy scopes; an entitlement the actor may not see is 404.
"""

from __future__ import annotations

from functools import cache

from flask import request
from sqlalchemy import Row, bindparam, func, literal_column, null, select, union_all
from sqlalchemy.orm import joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints import listing, seats
from portal.blueprints.customer import bp
from portal.blueprints.customer import queries as q
from portal.extensions import db
from portal.models import Attachment, Entitlement, Organization, Product, SalesChainLink
from portal.ui import Column, Filter, ListState, Table, parse_list_args, push_url
from portal.web import render

COLUMNS = [
    Column("code", "Entitlement", sortable=True),
    Column("products", "Products"),
    Column("organization", "Organization", sortable=True),
    Column("seller", "Sold through"),
    Column("seats", "Seats used", numeric=True),
    Column("purchased", "Purchased", sortable=True),
    Column("status", "Status", sortable=True),
]


# --- the list -------------------------------------------------------------------------------


def _filters(actor) -> tuple[list[Filter], dict[str, Row]]:
    """The filters offered, with options drawn from what the actor sees: the products, the
    sellers, the partners attached, the organizations of the hierarchy and the names of the
    ancestors above it, in one statement built once (``_filter_options``)."""
    params = {**policy.scope_params(actor), "above": actor.org.ancestor_ids[:-1]}
    rows = db.session.execute(_filter_options(db.engine.dialect.name), params).all()
    products, sellers, partners, orgs, above = ([r for r in rows if r.part == n] for n in range(5))
    names = {r.id: r.name for r in (*above, *orgs)}
    paths = {org.id: policy.path_label(org.path, org.name, names) for org in orgs}
    filters = [
        Filter("product", "Product", [(str(i), name) for i, name, _, _ in products]),
        listing.MODEL_FILTER,
        Filter("seller", "Sold through", [("direct", "Direct"), *((str(i), name) for i, name, _, _ in sellers)]),
        Filter("org", "Organization", [(str(org.id), paths[org.id]) for org in orgs]),
        listing.STATUS_FILTER,
        listing.ENDING_FILTER,
        listing.USAGE_FILTER,
        Filter("partner", "Partner attached", [(str(i), name) for i, name, _, _ in partners], all_label="Any"),
    ]
    return filters, {str(org.id): org for org in orgs}


@cache
def _filter_options(dialect: str):
    """The options of a customer's filters as one UNION ALL of tagged parts (id, name, path,
    part), built once with the customer scope's parameters (``policy.scope_params``) and the
    ids of the organizations above the actor's (``above``), of table columns."""
    shape = "customer"
    org, product = policy.ORGANIZATION_TABLE, Product.__table__
    line, link, attachment = policy.LINE_TABLE, SalesChainLink.__table__, policy.ATTACHMENT_TABLE
    entitlement = policy.ENTITLEMENT_TABLE.alias("visible")
    visible_ids = select(entitlement.c.id).where(policy.entitlement_scope_param(shape, dialect, entitlement))
    no_path = null().label("path")
    seen = select(line.c.id).where(line.c.product_id == product.c.id, policy.line_scope_param(shape, dialect, line))
    attached = policy.ENTITLEMENT_TABLE.alias("attached")
    parts = [
        select(product.c.id, product.c.name, no_path).where(seen.exists()),
        select(org.c.id, org.c.name, no_path).where(
            org.c.id.in_(select(link.c.partner_id).where(link.c.entitlement_id.in_(visible_ids)))),
        select(org.c.id, org.c.name, no_path).distinct()
        .select_from(attachment.join(attached, attached.c.id == attachment.c.entitlement_id)
                     .join(org, org.c.id == attachment.c.partner_id))
        .where(policy.entitlement_scope_param(shape, dialect, attached), policy.attachment_scope_param(shape),
               attachment.c.active.is_(True)),
        select(org.c.id, org.c.name, org.c.path).where(org.c.id.in_(policy.subtree_ids_param(dialect))),
        # The ancestors above the hierarchy, for the organizations' paths ("Contoso > ...").
        select(org.c.id, org.c.name, no_path).where(org.c.id.in_(bindparam("above", expanding=True))),
    ]
    tagged = union_all(*(part.add_columns(literal_column(str(n)).label("part"))
                         for n, part in enumerate(parts))).subquery()
    return select(tagged.c.id, tagged.c.name, tagged.c.path, tagged.c.part).order_by(
        tagged.c.part, func.coalesce(tagged.c.path, tagged.c.name), tagged.c.id)


def _where(actor, state: ListState, orgs: dict[str, Row]) -> list:
    """The WHERE clauses of a list state (on top of the policy scope)."""
    chosen = state.filters
    clauses = listing.common_where(state)
    if "seller" in chosen:
        clauses.append(q.sold_direct() if chosen["seller"] == "direct" else q.sold_through(int(chosen["seller"])))
    if "org" in chosen:
        clauses.append(Entitlement.owner_id.in_(policy.subtree_org_ids(orgs[chosen["org"]])))
    if "partner" in chosen:
        clauses.append(q.partner_attached(int(chosen["partner"]), policy.attachment_scope(actor)))
    return clauses


def _list_state(actor, endpoint: str):
    filters, orgs = _filters(actor)
    state = parse_list_args(request.args, endpoint=endpoint, sorts={*listing.SORTS, "organization"},
                            default_sort=listing.DEFAULT_SORT, filters=filters)
    return state, filters, _where(actor, state, orgs)


@bp.get("/entitlements")
def entitlements():
    """Every entitlement of the organization and its sub-organizations, searchable and filtered;
    the table alone for htmx (the page's search form stays)."""
    actor = current_actor()
    state, filters, where = _list_state(actor, "customer.entitlements")
    pagination = listing.list_page(actor, state, where, owner_sort="organization", extra="seller")
    details = listing.row_details(pagination.items, seller=False)
    for row in pagination.items:
        details[row.id].seller = row.seller
    table = Table(
        id="entitlements-table", columns=COLUMNS, pagination=pagination, state=state,
        noun="entitlement", nouns="entitlements", caption="Entitlements of your organization",
        csv_url=state.url("customer.entitlements_csv", page=1),
        empty_text="Entitlements appear here when your organization buys licenses.",
    )
    response = render("customer/entitlements.html", fragment="customer/_entitlements_table.html", table=table,
                      filters=filters, details=details, today=q.today())
    return push_url(response, state)


@bp.get("/entitlements.csv")
def entitlements_csv():
    """The entitlements the list shows with the same search and filters, all pages, as CSV."""
    actor = current_actor()
    _, _, where = _list_state(actor, "customer.entitlements")
    return listing.csv_response(actor, where)


# --- one entitlement ------------------------------------------------------------------------


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
        lines=seats.line_views(actor, seats.lines_of(entitlement), forms=forms, rehost_forms=rehost_forms),
        today=q.today(),
    )


@bp.get("/entitlements/<code>")
def entitlement(code: str):
    """One entitlement: its lines with seats and activations, its sales chain, its partners."""
    actor = current_actor()
    return entitlement_page(actor, policy.load_entitlement(actor, listing.clean_code(code)))
