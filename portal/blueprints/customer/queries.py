"""SQL the customer pages share: clauses over entitlements and their lines, for the figures of
the single pane and the filters of the entitlement list, so that a figure and the list it links
to always count the same thing. Every query here starts from a policy scope
(``policy.entitlement_scope``, ``policy.attachment_scope``); nothing here decides access.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import and_, case, exists, func, or_, select

from portal.models import (
    Activation,
    Attachment,
    Entitlement,
    EntitlementLine,
    SalesChainLink,
    UsageRecord,
    utcnow,
)

SEAT_MODELS = ("perpetual", "subscription")


def today() -> date:
    return utcnow().date()


def _has_line(*conditions):
    return exists().where(EntitlementLine.entitlement_id == Entitlement.id, *conditions)


def seat_line_is_current(on: date):
    """A line whose seats count now: perpetual, or a subscription that has not ended."""
    return and_(
        EntitlementLine.license_model.in_(SEAT_MODELS),
        or_(EntitlementLine.license_model == "perpetual", EntitlementLine.end_date >= on),
    )


def subscription_ends_within(days: int, on: date):
    """A line of a subscription that ends in the next ``days`` days (today included)."""
    return and_(
        EntitlementLine.license_model == "subscription",
        EntitlementLine.end_date >= on,
        EntitlementLine.end_date <= on + timedelta(days=days),
    )


def ending_within(days: int, on: date):
    """Active entitlements with a subscription line ending in the next ``days`` days."""
    return and_(Entitlement.status == "active", _has_line(subscription_ends_within(days, on)))


def usage_in_period(on: date):
    """Units recorded on the outer ``EntitlementLine`` in its current period (month or year),
    as ``services.activations.period_bounds`` defines it."""
    month_start = on.replace(day=1)
    next_month = date(month_start.year + (month_start.month == 12), month_start.month % 12 + 1, 1)
    month_end = next_month - timedelta(days=1)
    year = EntitlementLine.usage_period == "year"
    start = case((year, date(on.year, 1, 1)), else_=month_start)
    end = case((year, date(on.year, 12, 31)), else_=month_end)
    return (
        select(func.coalesce(func.sum(UsageRecord.units), 0))
        .where(UsageRecord.line_id == EntitlementLine.id, UsageRecord.used_on >= start, UsageRecord.used_on <= end)
        .correlate(EntitlementLine)
        .scalar_subquery()
    )


def usage_line_over_allowance(on: date):
    return and_(EntitlementLine.license_model == "usage", usage_in_period(on) > EntitlementLine.quantity)


def over_allowance(on: date):
    """Active entitlements with a pay-per-use line used beyond its allowance this period."""
    return and_(Entitlement.status == "active", _has_line(usage_line_over_allowance(on)))


def has_product(product_id: int):
    return _has_line(EntitlementLine.product_id == product_id)


def has_license_model(model: str):
    return _has_line(EntitlementLine.license_model == model)


def sold_through(partner_id: int):
    return exists().where(SalesChainLink.entitlement_id == Entitlement.id, SalesChainLink.partner_id == partner_id)


def sold_direct():
    return ~exists().where(SalesChainLink.entitlement_id == Entitlement.id)


def partner_attached(partner_id: int, attachment_scope):
    """An active attachment of ``partner_id``, among those the actor may see."""
    return exists().where(
        Attachment.entitlement_id == Entitlement.id, Attachment.partner_id == partner_id,
        Attachment.active.is_(True), attachment_scope,
    )


def matches_search(text: str):
    """Entitlement code, a line's activation code, or the host id of an active activation."""
    return or_(
        Entitlement.code.icontains(text, autoescape=True),
        _has_line(EntitlementLine.activation_code.icontains(text, autoescape=True)),
        exists().where(
            EntitlementLine.entitlement_id == Entitlement.id,
            Activation.line_id == EntitlementLine.id,
            Activation.active.is_(True),
            Activation.host_id.icontains(text, autoescape=True),
        ),
    )
