"""The partner's single pane (``/partner/``): what it serves and what needs attention, each figure
linking to its list. The page counts two figures from indexes; the panels load after it, each
from a GET route of its own (``hx-trigger="load"``), and opened without htmx a panel is a page.

Everything starts from a policy scope, so working for one customer narrows every figure to
that customer, and a partner sees only its own attachments (rule 3). Each panel answers with a
fixed number of queries, whatever the number of customers or entitlements behind it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, case, func, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import queries as q
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.models import Entitlement, EntitlementLine, Organization, PortalRequest, Product
from portal.models.entitlements import PartnerCustomer
from portal.web import render

ROWS_SHOWN = 5
EXPIRY_DAYS = 90
STOCK_AGES = ((30, "under 30 days"), (90, "30 to 90 days"), (None, "over 90 days"))
PANELS = {
    "customers": "Customers I serve",
    "expiring": "Subscriptions ending soon",
    "stock": "Stock",
    "requests": "Our requests for access",
}


def _served_count(actor) -> int:
    if actor.customer_id is not None:
        return 1
    return db.session.scalar(select(func.count()).select_from(PartnerCustomer)
                             .where(PartnerCustomer.partner_id == actor.org.id))


def _attached_count(actor) -> int:
    """Entitlements attached to us (stock aside), of the customer we work for when we chose one."""
    if actor.customer_id is not None:
        return db.session.scalar(select(PartnerCustomer.entitlements).where(
            PartnerCustomer.partner_id == actor.org.id, PartnerCustomer.customer_id == actor.customer_id)) or 0
    # The read model counts each customer's entitlements we see: stock (ours) is not in it.
    return db.session.scalar(select(func.coalesce(func.sum(PartnerCustomer.entitlements), 0))
                             .where(PartnerCustomer.partner_id == actor.org.id))


@bp.get("/")
def home():
    """The partner's single pane: customers served, entitlements attached, stock, requests, renewals."""
    actor = current_actor()
    return render("partner/home.html", served_count=_served_count(actor), attached_count=_attached_count(actor),
                  panels=PANELS)


def _panel(name: str, **context):
    return render("partner/panel.html", fragment=f"partner/_panel_{name}.html", panel=name,
                  panel_title=PANELS[name], **context)


@bp.get("/panels/customers")
def panel_customers():
    """The customers we serve with the most entitlements attached (or the one we work for)."""
    actor = current_actor()
    rows = (policy.customers_served_by(actor).add_columns(PartnerCustomer.entitlements)
            .order_by(None).order_by(PartnerCustomer.entitlements.desc(), PartnerCustomer.customer_name,
                                     PartnerCustomer.customer_id))
    if actor.customer_id is not None:
        rows = rows.where(Organization.id == actor.customer_id)
    top = db.session.execute(rows.limit(ROWS_SHOWN)).all()
    paths = policy.hierarchy_paths([org for org, _ in top])
    return _panel("customers", top=top, paths=paths, served_count=_served_count(actor))


_ENTITLEMENT_ACTIVE = (select(Entitlement.status).where(Entitlement.id == EntitlementLine.entitlement_id)
                       .correlate(EntitlementLine).scalar_subquery() == "active")


@bp.get("/panels/expiring")
def panel_expiring():
    """Subscriptions of our customers ending within 90 days, among the entitlements we see."""
    actor = current_actor()
    on = q.today()
    # The few thousand lines ending soon drive, from their index alone (license model, end date,
    # entitlement), each tested against what we see (a hashed test of our attachments), instead
    # of every entitlement we see; only the entitlements of those that pass are read, one look-up
    # each for its status (a correlated subquery, which no planner turns into a join with every
    # entitlement).
    count = db.session.scalar(
        select(func.count(func.distinct(EntitlementLine.entitlement_id)))
        .where(policy.line_scope(actor), q.subscription_ends_within(EXPIRY_DAYS, on), _ENTITLEMENT_ACTIVE))
    lines = db.session.execute(
        select(Entitlement.code, Product.name, EntitlementLine.end_date, EntitlementLine.quantity,
               Organization.name.label("customer"))
        .select_from(EntitlementLine)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Product, Product.id == EntitlementLine.product_id)
        .join(Organization, Organization.id == Entitlement.owner_id)
        .where(policy.entitlement_row_scope(actor), Entitlement.status == "active",
               q.subscription_ends_within(EXPIRY_DAYS, on))
        .order_by(EntitlementLine.end_date, Entitlement.code)
        .limit(ROWS_SHOWN)
    ).all()
    return _panel("expiring", count=count, lines=lines, today=on, days=EXPIRY_DAYS)


@bp.get("/panels/stock")
def panel_stock():
    """Entitlements we hold in stock (not assigned to a customer yet) and how long they have waited
    since we bought them (their purchase date)."""
    actor = current_actor()
    today = q.today()
    held = Entitlement.owner_id == actor.org.id
    young, middle = today - timedelta(days=STOCK_AGES[0][0]), today - timedelta(days=STOCK_AGES[1][0])
    bought = Entitlement.purchase_date
    total, under_30, under_90, oldest = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((bought > young, 1), else_=0)), 0),
               func.coalesce(func.sum(case((and_(bought <= young, bought > middle), 1), else_=0)), 0),
               func.min(bought))
        .where(held)).one()
    ages = [(STOCK_AGES[0][1], under_30), (STOCK_AGES[1][1], under_90), (STOCK_AGES[2][1], total - under_30 - under_90)]
    waiting = db.session.execute(
        select(Entitlement.code, Entitlement.purchase_date)
        .where(held, Entitlement.status == "active").order_by(bought, Entitlement.id).limit(ROWS_SHOWN)
    ).all()
    return _panel("stock", total=total, ages=ages, oldest=oldest, waiting=waiting, today=today)


def our_requests(actor):
    """Our organization's requests for access to customers' entitlements (the policy's view of them)."""
    return policy.visible_requests(actor).where(PortalRequest.kind == "partner_access",
                                                PortalRequest.requester_org_id == actor.org.id)


@bp.get("/panels/requests")
def panel_requests():
    """Our pending requests for access, and the latest decisions."""
    actor = current_actor()
    pending = db.session.scalar(select(func.count()).select_from(
        our_requests(actor).where(PortalRequest.state == "pending").subquery()))
    latest = db.session.execute(
        our_requests(actor).join(Organization, Organization.id == PortalRequest.target_org_id)
        .with_only_columns(PortalRequest.id, PortalRequest.state, PortalRequest.created_at, PortalRequest.details,
                           Organization.name.label("customer"))
        .order_by(PortalRequest.created_at.desc(), PortalRequest.id.desc()).limit(ROWS_SHOWN)
    ).all()
    return _panel("requests", pending=pending, latest=latest)
