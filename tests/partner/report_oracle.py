"""The partner report computed live from the tables, as ``build_report`` did before the
``partner_sales`` read model: the test oracle the read model's report must equal.

Every entitlement the partner sees (``policy.entitlement_scope``) whose sales chain names it
and that is not its stock, joined to its lines, with a correlated sum of active activations per
line; the split by the chain's next link; subscriptions ending within 90 days.
"""

from __future__ import annotations

from sqlalchemy import and_, case, distinct, extract, func, select
from sqlalchemy.orm import aliased

from portal import policy
from portal.blueprints.customer import queries as q
from portal.blueprints.partner.reports import EXPIRY_DAYS, Figures, Split, _key, _label, _period_keys, _start
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, Organization, SalesChainLink
from portal.models.entitlements import PartnerCustomer
from portal.models.sales import SEAT_MODELS


def _sold_through_us(actor):
    return and_(policy.entitlement_scope(actor), q.sold_through(actor.org.id), Entitlement.owner_id != actor.org.id)


def _used():
    return (
        select(func.sum(Activation.seats))
        .where(Activation.line_id == EntitlementLine.id, Activation.active.is_(True))
        .correlate(EntitlementLine)
        .scalar_subquery()
    )


def live_report(actor, kind: str) -> dict:
    """``build_report``'s answer, from the tables."""
    today = q.today()
    keys = _period_keys(kind, today)
    start = _start(kind, keys[0])
    year, month = extract("year", Entitlement.purchase_date), extract("month", Entitlement.purchase_date)
    seats = func.sum(case((EntitlementLine.license_model.in_(SEAT_MODELS), EntitlementLine.quantity), else_=0))
    activated = func.sum(func.coalesce(_used(), 0))
    in_window = and_(_sold_through_us(actor), Entitlement.purchase_date >= start)

    owner = aliased(Organization)
    customer_ids = distinct(case((owner.kind == "customer", Entitlement.owner_id)))

    def lines():
        return (select().select_from(EntitlementLine)
                .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
                .join(owner, owner.id == Entitlement.owner_id))

    periods = {key: Figures(_label(kind, key)) for key in keys}
    total = Figures("All periods")
    for y, m, entitlements, sold, act, customers in db.session.execute(
            lines().add_columns(year, month, func.count(distinct(Entitlement.id)), seats, activated,
                                func.count(customer_ids))
            .where(in_window).group_by(year, month)):
        key = _key(kind, y, m)
        if key in periods:
            periods[key].add(entitlements, sold, act, customers)
            total.add(entitlements, sold, act)
    total.customers = db.session.scalar(
        select(func.count(customer_ids)).select_from(Entitlement).join(owner, owner.id == Entitlement.owner_id)
        .where(in_window)) or 0

    ours, below = aliased(SalesChainLink), aliased(SalesChainLink)
    seller = aliased(Organization)
    splits: dict[int | None, Split] = {}
    for y, m, partner_id, name, entitlements, sold, act in db.session.execute(
            lines()
            .join(ours, and_(ours.entitlement_id == Entitlement.id, ours.partner_id == actor.org.id))
            .outerjoin(below, and_(below.entitlement_id == Entitlement.id, below.position == ours.position + 1))
            .outerjoin(seller, seller.id == below.partner_id)
            .add_columns(year, month, below.partner_id, seller.name, func.count(distinct(Entitlement.id)), seats,
                         activated)
            .where(in_window).group_by(year, month, below.partner_id, seller.name)):
        key = _key(kind, y, m)
        if key not in periods:
            continue
        split = splits.setdefault(partner_id, Split(name or f"Sold by {actor.org.name}"))
        split.periods.setdefault(key, Figures(_label(kind, key))).add(entitlements, sold, act)
        split.total.add(entitlements, sold, act)
    below_us = sorted((s for pid, s in splits.items() if pid is not None), key=lambda s: s.name.lower())
    if below_us and None in splits:
        below_us.append(splits[None])

    served = (1 if actor.customer_id is not None else db.session.scalar(
        select(func.count()).select_from(PartnerCustomer).where(PartnerCustomer.partner_id == actor.org.id)))
    ending = db.session.scalar(select(func.count()).select_from(Entitlement).where(
        _sold_through_us(actor), q.ending_within(EXPIRY_DAYS, today)))
    return {"kind": kind, "period_keys": keys, "periods": [periods[k] for k in keys], "total": total,
            "splits": below_us, "served": served, "ending": ending, "days": EXPIRY_DAYS}
