"""The producer's single pane: what waits, what happened today and this month, what ends soon,
what failed, and whose stock is getting old. Every figure links to the list it counts.

Each figure is one query on an indexed predicate (the pending requests, the audit trail's time,
subscription end dates, the outbox's state, entitlements by owner) or the ``row_count`` read
model: the page costs the same at 200,000 entitlements as at 20.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select

from portal.blueprints.customer import queries as q
from portal.blueprints.producer import bp
from portal.blueprints.producer.requests import AGES, KIND_LABELS, pending_by_kind
from portal.extensions import db
from portal.models import AuditEvent, Entitlement, EntitlementLine, Organization, OutboxEmail
from portal.models.entitlements import RowCount
from portal.models.orgs import PARTNER_KINDS
from portal.web import render

STOCK_AGE_DAYS = 90
ENDING_DAYS = 90


def events_since(action: str, since) -> int:
    """Audit events of one kind since a moment (the trail's time index; its list counts the same)."""
    return db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.at >= since,
                                                                    AuditEvent.action == action))


def ending_count(days: int, on) -> int:
    """Active entitlements with a subscription line ending in the next ``days`` days: the lines'
    index range (``ix_entitlement_line_model_end``) without the few entitlements that are not active
    (``ix_entitlement_not_active``), never the entitlements themselves."""
    return db.session.scalar(
        select(func.count(func.distinct(EntitlementLine.entitlement_id)))
        .where(q.subscription_ends_within(days, on), EntitlementLine.entitlement_id.not_in(_INACTIVE)))


# Read once per statement (PostgreSQL: a hashed subplan; SQLite: a table in memory), from
# ix_entitlement_not_active alone.
_INACTIVE = select(Entitlement.id).where(Entitlement.status != "active")


def old_stock(on) -> tuple[int, int]:
    """Partners holding stock bought more than 90 days ago, and how many such entitlements."""
    cutoff = on - timedelta(days=STOCK_AGE_DAYS)
    partners, entitlements = db.session.execute(
        select(func.count(func.distinct(Entitlement.owner_id)), func.count(Entitlement.id))
        .join(Organization, Organization.id == Entitlement.owner_id)
        .where(Organization.kind.in_(PARTNER_KINDS), Entitlement.purchase_date < cutoff)).one()
    return partners, entitlements


@bp.get("/")
def home():
    """Landing page of producer staff: the channel at a glance."""
    on = q.today()
    midnight = datetime.combine(on, time(), tzinfo=UTC)
    month_start = midnight.replace(day=1)
    rows = dict(db.session.execute(select(RowCount.name, RowCount.value)).all())
    counts = {name.removeprefix("organization."): value for name, value in rows.items()
              if name.startswith("organization.")}
    pending, pending_total = pending_by_kind()
    failed = db.session.scalar(select(func.count(OutboxEmail.id)).where(OutboxEmail.status == "failed"))
    stock_partners, stock_entitlements = old_stock(on)
    return render(
        "producer/home.html", counts=counts, entitlement_count=rows.get("entitlement", 0), pending=pending,
        pending_total=pending_total, kind_labels=KIND_LABELS, ages=AGES,
        activations_today=events_since("activation.create", midnight), today=on.isoformat(),
        entered_this_month=events_since("entitlement.create", month_start), month_start=month_start.date().isoformat(),
        ending=ending_count(ENDING_DAYS, on), failed_mail=failed, stock_partners=stock_partners,
        stock_entitlements=stock_entitlements,
    )
