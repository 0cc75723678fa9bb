"""``/producer/customers``: the customer directory and one customer's page.

The directory searches by name and walks the hierarchy by path (``under``: a customer's
subtree, one indexed prefix match). A customer's page shows its place in the hierarchy and its
subsidiaries (edit, add a subsidiary, move: ``services.orgs``), its users, and what it sees:
every entitlement of its subtree with every partner attached to it and why (sold or distributed
from the sales chain, services attached by whom).
"""

from __future__ import annotations

from collections import defaultdict

from flask import abort, current_app, flash, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer.organization import OrganizationForm
from portal.blueprints.customer.replies import refuse, show_error
from portal.blueprints.producer import bp
from portal.blueprints.producer.forms_channel import ParentForm, SubsidiaryForm
from portal.blueprints.producer.paging import CheapTable, paginate, table_only
from portal.extensions import db
from portal.models import Attachment, Entitlement, EntitlementLine, Membership, Organization, SalesChainLink
from portal.models.entitlements import RowCount
from portal.services.errors import NotAllowed, ServiceError
from portal.services.orgs import create_organization, move_organization, update_organization
from portal.ui import Column, Filter, Table, parse_list_args
from portal.web import render

TREE_SHOWN = 200  # organizations of a subtree drawn on a customer's page
USERS_SHOWN = 100

COLUMNS = [
    Column("name", "Customer", sortable=True),
    Column("path", "Hierarchy path"),
    Column("status", "Status", sortable=True),
    Column("created", "Since", sortable=True),
]
SORTS = {"name": Organization.name, "status": Organization.status, "created": Organization.created_at}
FILTERS = [
    Filter("level", "Level", [("top", "Top-level companies"), ("nested", "Subsidiaries and sites")],
           all_label="Every level"),
    Filter("status", "Status", [("active", "Active"), ("pending", "Pending"), ("suspended", "Suspended")],
           all_label="Any status"),
]


def load_customer(actor, customer_id: int) -> Organization:
    org = policy.load_organization(actor, customer_id)
    if org.kind != "customer":
        abort(404)
    return org


def customers_table(args, under: Organization | None) -> CheapTable:
    url_values = {"under": under.id} if under is not None else {}
    state = parse_list_args(args, endpoint="producer.customers", sorts=SORTS, default_sort="name", filters=FILTERS,
                            url_values=url_values)
    query = policy.visible_organizations(current_actor()).where(Organization.kind == "customer")
    if under is not None:
        query = query.where(policy.path_within(under.path), Organization.id != under.id)
    if state.filters.get("level") == "top":
        query = query.where(Organization.parent_id.is_(None))
    elif state.filters.get("level") == "nested":
        query = query.where(Organization.parent_id.is_not(None))
    if "status" in state.filters:
        query = query.where(Organization.status == state.filters["status"])
    if state.q:
        query = query.where(Organization.name.icontains(state.q, autoescape=True))
    order = SORTS[state.sort]
    query = query.order_by(order.desc() if state.descending else order, Organization.id)
    # Every customer: the row_count read model's count, not 57,000 rows counted; narrowed, a
    # count that stops at 10,000 ("More than 10,000 customers"), as the other big lists.
    total = None
    if under is None and not state.narrowed:
        total = db.session.scalar(select(RowCount.value).where(RowCount.name == "organization.customer")) or 0
    return CheapTable(id="customers", columns=COLUMNS, pagination=paginate(query, page=state.page, total=total),
                      state=state, noun="customer", nouns="customers", caption="Customer organizations",
                      empty_text="No customer yet.")


@bp.get("/customers")
def customers():
    """The customer directory: search by name, filter by level and status, walk a subtree."""
    actor = current_actor()
    under = None
    raw = request.args.get("under", "")
    if raw:
        if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
            abort(400, "Choose a customer organization.")
        under = load_customer(actor, int(raw))
    args = {k: v for k, v in request.args.items() if k != "under"}
    table = customers_table(args, under)
    return render("producer/customers.html", fragment="producer/_customers_table.html", table=table,
                  filters=FILTERS, under=under, under_path=policy.hierarchy_path(under) if under else "",
                  paths=policy.hierarchy_paths(table.rows))


# --- one customer -------------------------------------------------------------------------

ENT_COLUMNS = [
    Column("code", "Entitlement", sortable=True),
    Column("owner", "Owner"),
    Column("products", "Products"),
    Column("partners", "Partners and why"),
    Column("purchased", "Purchased", sortable=True),
]
ENT_SORTS = {"code": Entitlement.code, "purchased": Entitlement.purchase_date}
ENT_FILTERS = [Filter("status", "Status", [("active", "Active"), ("suspended", "Suspended"),
                                            ("returned", "Returned")], all_label="Any status")]


def entitlements_table(customer: Organization, args) -> Table:
    state = parse_list_args(args, endpoint="producer.customer", sorts=ENT_SORTS, default_sort="-purchased",
                            filters=ENT_FILTERS, url_values={"customer_id": customer.id})
    query = (policy.visible_entitlements(current_actor())
             .where(Entitlement.owner_id.in_(policy.subtree_org_ids(customer)))
             .options(joinedload(Entitlement.owner)))
    if "status" in state.filters:
        query = query.where(Entitlement.status == state.filters["status"])
    if state.q:
        query = query.where(Entitlement.code.icontains(state.q, autoescape=True)
                            | Entitlement.order_ref.icontains(state.q, autoescape=True))
    order = ENT_SORTS[state.sort]
    query = query.order_by(order.desc() if state.descending else order, Entitlement.id.desc())
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    return Table(id="customer-entitlements", columns=ENT_COLUMNS, pagination=pagination, state=state,
                 noun="entitlement", nouns="entitlements", caption=f"Entitlements of {customer.name} and below",
                 empty_text="This customer owns no entitlement.")


def why(attachment: Attachment, chain_positions: dict[tuple[int, int], int], chain_length: int) -> str:
    """Why a partner is on an entitlement, in words."""
    position = chain_positions.get((attachment.entitlement_id, attachment.partner_id))
    if attachment.relation == "sold":
        if position is not None:
            return "sold it (the seller of the sales chain)"
        return "seller, attached by producer staff"
    if attachment.relation == "distributed":
        if position is not None:
            return f"distributed it (tier {position + 1} of {chain_length} in the sales chain)"
        return "distributor, attached by producer staff"
    who = attachment.granted_by.display_name if attachment.granted_by else "the producer"
    return f"services it, attached by {who}"


def partners_on(entitlements: list[Entitlement]) -> tuple[dict[int, list], dict[int, str], dict[int, list[str]]]:
    """Per entitlement: (attachment, why) pairs of its live attachments, its products, its chain;
    three queries for a page."""
    ids = [e.id for e in entitlements]
    chains: dict[int, list[str]] = defaultdict(list)
    positions: dict[tuple[int, int], int] = {}
    products: dict[int, list[str]] = defaultdict(list)
    partners: dict[int, list] = defaultdict(list)
    if not ids:
        return partners, {}, chains
    for link, name in db.session.execute(
            select(SalesChainLink, Organization.name).join(Organization, Organization.id == SalesChainLink.partner_id)
            .where(SalesChainLink.entitlement_id.in_(ids)).order_by(SalesChainLink.position)):
        chains[link.entitlement_id].append(name)
        positions[(link.entitlement_id, link.partner_id)] = link.position
    from portal.models import Product
    for entitlement_id, name, model, quantity in db.session.execute(
            select(EntitlementLine.entitlement_id, Product.name, EntitlementLine.license_model,
                   EntitlementLine.quantity)
            .join(Product, Product.id == EntitlementLine.product_id)
            .where(EntitlementLine.entitlement_id.in_(ids)).order_by(EntitlementLine.id)):
        products[entitlement_id].append(f"{name} ({model}, {quantity})")
    for attachment in db.session.scalars(
            select(Attachment).where(Attachment.entitlement_id.in_(ids), Attachment.active.is_(True))
            .options(joinedload(Attachment.partner), joinedload(Attachment.granted_by))
            .order_by(Attachment.granted_at, Attachment.id)):
        length = len(chains.get(attachment.entitlement_id, []))
        partners[attachment.entitlement_id].append((attachment, why(attachment, positions, length)))
    return partners, {i: "; ".join(p) for i, p in products.items()}, chains


def _customer_page(customer: Organization, *, status: int = 200, **forms):
    actor = current_actor()
    if table_only():  # the entitlements' table alone: no hierarchy, users or forms
        table = entitlements_table(customer, request.args)
        partners, products, chains = partners_on(table.rows)
        return render("producer/customer.html", fragment="producer/_customer_entitlements.html", table=table,
                      partners=partners, products=products, chains=chains)
    tree = list(db.session.scalars(
        select(Organization).where(policy.path_within(customer.path))
        .order_by(Organization.path).limit(TREE_SHOWN)))
    subtree_size = db.session.scalar(select(func.count()).select_from(Organization).where(
        policy.path_within(customer.path)))
    names = {o.id: o.name for o in tree}
    # The tree in path order sorts by id, not by name: order siblings by name under each parent.
    children: dict[int | None, list[Organization]] = defaultdict(list)
    for org in tree:
        children[org.parent_id if org.id != customer.id else None].append(org)
    ordered: list[tuple[Organization, int]] = []

    def walk(parent_id, depth):
        for org in sorted(children.get(parent_id, []), key=lambda o: (o.name.lower(), o.id)):
            ordered.append((org, depth))
            walk(org.id, depth + 1)
    walk(None, 0)
    users = list(db.session.scalars(
        policy.visible_memberships(actor).where(Membership.org_id == customer.id)
        .options(joinedload(Membership.user)).order_by(Membership.id).limit(USERS_SHOWN)))
    table = entitlements_table(customer, request.args)
    partners, products, chains = partners_on(table.rows)
    del names
    return render(
        "producer/customer.html", fragment="producer/_customer_entitlements.html", status=status,
        customer=customer, path=policy.hierarchy_path(customer), tree=ordered, subtree_size=subtree_size,
        users=users, table=table, filters=ENT_FILTERS, partners=partners, products=products, chains=chains,
        edit=forms.get("edit") or OrganizationForm(formdata=None, obj=customer, prefix="org"),
        subsidiary=forms.get("subsidiary") or SubsidiaryForm(formdata=None, prefix="sub"),
        move=forms.get("move") or ParentForm(formdata=None, prefix="move"))


@bp.get("/customers/<int:customer_id>")
def customer(customer_id: int):
    """A customer: hierarchy, users, entitlements with every partner on each and why."""
    return _customer_page(load_customer(current_actor(), customer_id))


@bp.post("/customers/<int:customer_id>/edit")
def edit_customer(customer_id: int):
    """Rename a customer organization or change its contacts."""
    actor = current_actor()
    org = load_customer(actor, customer_id)
    form = OrganizationForm(prefix="org")
    if not form.validate():
        return _customer_page(org, status=422, edit=form)
    try:
        update_organization(actor, org, name=form.name.data, email=form.email.data, phone=form.phone.data,
                            website=form.website.data, address=form.address.data,
                            notification_emails=form.notification_emails.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _customer_page(org, status=422, edit=form)
    db.session.commit()
    flash(f"Saved {org.name}.")
    return redirect(url_for("producer.customer", customer_id=org.id))


@bp.post("/customers/<int:customer_id>/subsidiaries")
def add_customer_subsidiary(customer_id: int):
    """Add a subsidiary or site under a customer organization."""
    actor = current_actor()
    org = load_customer(actor, customer_id)
    form = SubsidiaryForm(prefix="sub")
    if not form.validate():
        return _customer_page(org, status=422, subsidiary=form)
    try:
        child = create_organization(actor, kind="customer", name=form.name.data, parent=org)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error, fields={"parent": "name"})
        return _customer_page(org, status=422, subsidiary=form)
    db.session.commit()
    flash(f"Added {child.name} under {org.name}.")
    return redirect(url_for("producer.customer", customer_id=org.id))


@bp.post("/customers/<int:customer_id>/move")
def move_customer(customer_id: int):
    """Move a customer organization under another (exact name) or to the top level."""
    actor = current_actor()
    org = load_customer(actor, customer_id)
    form = ParentForm(prefix="move")
    if not form.validate():
        return _customer_page(org, status=422, move=form)
    parent = None
    if form.parent.data:
        parent = policy.customer_by_exact_name(actor, form.parent.data)
        if parent is None:
            form.parent.errors = ["No single active customer has this exact name."]
            return _customer_page(org, status=422, move=form)
    try:
        move_organization(actor, org, parent)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error, fields={"parent": "parent"})
        return _customer_page(org, status=422, move=form)
    db.session.commit()
    flash(f"Moved {org.name} under {parent.name}." if parent else f"{org.name} is a top-level company now.")
    return redirect(url_for("producer.customer", customer_id=org.id))
