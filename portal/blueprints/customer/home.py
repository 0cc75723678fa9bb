"""The single pane (``/customer/``): the page, and its panels, each a GET route of its own that
htmx loads after the page (``hx-trigger="load"``); opened without htmx, a panel is a page.

Each panel answers with a fixed number of queries, whatever the number of entitlements,
lines or activations behind it: aggregates in SQL, the rows shown limited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer import queries as q
from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    Entitlement,
    EntitlementLine,
    Notification,
    NotificationMessage,
    Organization,
    PortalRequest,
    Product,
)
from portal.services.inbox import unread_messages
from portal.web import render

ROWS_SHOWN = 5
EXPIRY_DAYS = 90
PANELS = {
    "seats": "Seats per product",
    "expiring": "Subscriptions ending soon",
    "usage": "Pay-per-use",
    "activations": "Recent activations",
    "partners": "Partners on our entitlements",
    "requests": "Requests waiting for a decision",
    "inbox": "Unread notifications",
}


@bp.get("/")
def home():
    """The customer's single pane: what it holds, what needs attention, who works on it."""
    actor = current_actor()
    entitlements = db.session.scalar(
        select(func.count()).select_from(policy.visible_entitlements(actor).subquery())
    )
    subtree = db.session.scalar(select(func.count()).select_from(policy.subtree_org_ids(actor.org).subquery()))
    return render("customer/home.html", entitlement_count=entitlements, org_count=subtree,
                  path=policy.hierarchy_path(actor.org), panels=PANELS)


def _panel(name: str, **context):
    return render("customer/panel.html", fragment=f"customer/_panel_{name}.html", panel=name,
                  panel_title=PANELS[name], **context)


@dataclass
class ProductSeats:
    product_id: int
    name: str
    seats: int
    used: int

    @property
    def free(self) -> int:
        return max(self.seats - self.used, 0)


@bp.get("/panels/seats")
def panel_seats():
    """Seats used and free per product, over the current lines of active entitlements."""
    actor = current_actor()
    on = q.today()
    scope = policy.entitlement_scope(actor)
    used = (
        select(Activation.line_id.label("line_id"), func.sum(Activation.seats).label("used"))
        .join(EntitlementLine, EntitlementLine.id == Activation.line_id)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .where(scope, Activation.active.is_(True))
        .group_by(Activation.line_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Product.id, Product.name, func.sum(EntitlementLine.quantity),
               func.coalesce(func.sum(used.c.used), 0))
        .select_from(EntitlementLine)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Product, Product.id == EntitlementLine.product_id)
        .outerjoin(used, used.c.line_id == EntitlementLine.id)
        .where(scope, Entitlement.status == "active", q.seat_line_is_current(on))
        .group_by(Product.id, Product.name)
        .order_by(Product.name, Product.id)
    ).all()
    products = [ProductSeats(*row) for row in rows]
    return _panel("seats", products=products)


@bp.get("/panels/expiring")
def panel_expiring():
    """Subscriptions ending within 90 days: how many entitlements, and the soonest lines."""
    actor = current_actor()
    on = q.today()
    scope = policy.entitlement_scope(actor)
    count = db.session.scalar(
        select(func.count()).select_from(Entitlement).where(scope, q.ending_within(EXPIRY_DAYS, on))
    )
    lines = db.session.execute(
        select(Entitlement.code, Product.name, EntitlementLine.end_date, EntitlementLine.quantity)
        .select_from(EntitlementLine)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Product, Product.id == EntitlementLine.product_id)
        .where(scope, Entitlement.status == "active", q.subscription_ends_within(EXPIRY_DAYS, on))
        .order_by(EntitlementLine.end_date, Entitlement.code)
        .limit(ROWS_SHOWN)
    ).all()
    return _panel("expiring", count=count, lines=lines, today=on, days=EXPIRY_DAYS)


@bp.get("/panels/usage")
def panel_usage():
    """Pay-per-use lines of active entitlements: units this period against the allowance."""
    actor = current_actor()
    on = q.today()
    scope = policy.entitlement_scope(actor)
    over = db.session.scalar(select(func.count()).select_from(Entitlement).where(scope, q.over_allowance(on)))
    used = q.usage_in_period(on)
    lines = db.session.execute(
        select(Entitlement.code, Product.name, EntitlementLine.quantity, EntitlementLine.usage_period,
               used.label("used"))
        .select_from(EntitlementLine)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Product, Product.id == EntitlementLine.product_id)
        .where(scope, Entitlement.status == "active", EntitlementLine.license_model == "usage")
        .order_by((used * 1.0 / EntitlementLine.quantity).desc(), Entitlement.code)
        .limit(ROWS_SHOWN)
    ).all()
    return _panel("usage", over=over, lines=lines)


@bp.get("/panels/activations")
def panel_activations():
    """The latest activations on our entitlements, by whoever made them."""
    actor = current_actor()
    rows = db.session.execute(
        select(Activation.id, Activation.host_id, Activation.friendly_name, Activation.seats,
               Activation.activated_at, Entitlement.code, Product.name.label("product"))
        .join(EntitlementLine, EntitlementLine.id == Activation.line_id)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .join(Product, Product.id == EntitlementLine.product_id)
        .where(policy.entitlement_scope(actor), Activation.active.is_(True))
        .order_by(Activation.activated_at.desc(), Activation.id.desc())
        .limit(ROWS_SHOWN)
    ).all()
    return _panel("activations", activations=rows)


@dataclass
class PartnerOnUs:
    partner_id: int
    name: str
    entitlements: int = 0
    relations: list[str] = field(default_factory=list)


@bp.get("/panels/partners")
def panel_partners():
    """Partners with an active attachment on our entitlements: relation and how many."""
    actor = current_actor()
    rows = db.session.execute(
        select(Organization.id, Organization.name, Attachment.relation,
               func.count(distinct(Attachment.entitlement_id)))
        .select_from(Attachment)
        .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
        .join(Organization, Organization.id == Attachment.partner_id)
        .where(policy.entitlement_scope(actor), policy.attachment_scope(actor), Attachment.active.is_(True))
        .group_by(Organization.id, Organization.name, Attachment.relation)
        .order_by(Organization.name, Organization.id, Attachment.relation)
    ).all()
    partners: dict[int, PartnerOnUs] = {}
    for partner_id, name, relation, count in rows:
        partner = partners.setdefault(partner_id, PartnerOnUs(partner_id, name))
        partner.entitlements += count  # one live attachment per partner and entitlement
        partner.relations.append(relation)
    return _panel("partners", partners=list(partners.values()))


@bp.get("/panels/requests")
def panel_requests():
    """Pending requests this user may decide (customer admins), oldest first."""
    actor = current_actor()
    pending = policy.decidable_requests(actor)
    count = db.session.scalar(select(func.count()).select_from(pending.subquery()))
    requests = db.session.scalars(
        pending.options(joinedload(PortalRequest.requester), joinedload(PortalRequest.requester_org),
                        joinedload(PortalRequest.target_org))
        .order_by(PortalRequest.created_at, PortalRequest.id)
        .limit(ROWS_SHOWN)
    ).all()
    return _panel("requests", count=count, requests=requests)


@bp.get("/panels/inbox")
def panel_inbox():
    """The signed-in user's unread messages: how many, and the newest few (read state is the user's)."""
    actor = current_actor()
    unread = unread_messages(actor)
    count = db.session.scalar(select(func.count()).select_from(unread.subquery())) or 0
    messages = db.session.execute(
        unread.join(Notification, Notification.id == NotificationMessage.notification_id)
        .with_only_columns(NotificationMessage.id, NotificationMessage.created_at, Notification.title,
                           Notification.kind, Organization.name.label("org"))
        .join(Organization, Organization.id == NotificationMessage.org_id)
        .order_by(NotificationMessage.created_at.desc(), NotificationMessage.id.desc())
        .limit(ROWS_SHOWN)
    ).all()
    return _panel("inbox", count=count, messages=messages)
