"""``/partner/reports``: the channel's figures for a partner, per month or quarter: entitlements
and seats sold through us, seats activated (the activation rate), customers, subscriptions
ending within 90 days. A distributor sees the same split by the tier below it (the resellers it
supplied), for the entitlements attached to it. A chart (SVG drawn on the server, with the
table beside it) and a CSV.

Every figure is an aggregate in SQL over the entitlements we see (``policy.entitlement_scope``,
so working for one customer narrows them too) whose sales chain names us, read from the
``partner_sales`` read model (``portal.models.sales``: one row per partner and entitlement it
sold, kept in the same transaction as every change), one index range of our rows per figure:
five queries, whatever the number of entitlements.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, timedelta

from flask import Response, abort
from sqlalchemy import and_, case, distinct, func, select
from sqlalchemy.orm import aliased

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import queries as q
from portal.blueprints.partner import bp
from portal.exchange import FORMULA_START
from portal.extensions import db
from portal.models import Organization, PartnerSale, PartnerSaleEnd
from portal.models.entitlements import PartnerCustomer
from portal.web import query_text, render

PERIODS = {"month": ("Month", 12), "quarter": ("Quarter", 8)}
EXPIRY_DAYS = 90


@dataclass
class Figures:
    """One row of the report: a period (and, split by the tier below, a partner)."""

    label: str
    entitlements: int = 0
    seats: int = 0
    activated: int = 0
    customers: int = 0

    def add(self, entitlements: int, seats: int, activated: int, customers: int = 0) -> None:
        self.entitlements += entitlements or 0
        self.seats += seats or 0
        self.activated += activated or 0
        self.customers += customers or 0

    @property
    def rate(self) -> float | None:
        return self.activated / self.seats if self.seats else None


@dataclass
class Split:
    """The figures of one partner of the tier below us, per period."""

    name: str
    periods: dict[tuple[int, int], Figures] = field(default_factory=dict)
    total: Figures = field(default_factory=lambda: Figures("All periods"))


def _period_keys(kind: str, today: date) -> list[tuple[int, int]]:
    """The window's periods, oldest first: (year, month) or (year, quarter)."""
    count = PERIODS[kind][1]
    if kind == "month":
        index = today.year * 12 + today.month - 1
        return [((i // 12), (i % 12) + 1) for i in range(index - count + 1, index + 1)]
    index = today.year * 4 + (today.month - 1) // 3
    return [((i // 4), (i % 4) + 1) for i in range(index - count + 1, index + 1)]


def _label(kind: str, key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]:02d}" if kind == "month" else f"{key[0]} Q{key[1]}"


def _start(kind: str, first: tuple[int, int]) -> date:
    return date(first[0], first[1], 1) if kind == "month" else date(first[0], (first[1] - 1) * 3 + 1, 1)


def _key(kind: str, year: int, month: int) -> tuple[int, int]:
    return (int(year), int(month)) if kind == "month" else (int(year), (int(month) - 1) // 3 + 1)


def build_report(actor, kind: str) -> dict:
    """The report's figures: totals per period, the split by the tier below us, the headline figures."""
    today = q.today()
    keys = _period_keys(kind, today)
    start = _start(kind, keys[0])
    sale = PartnerSale
    in_window = and_(policy.partner_sales_scope(actor), sale.month >= start)
    # Customers, not a reseller holding stock a distributor sold it.
    customer_ids = distinct(case((sale.owner_customer.is_(True), sale.owner_id)))
    seats, activated = func.sum(sale.seats), func.sum(sale.activated)

    periods = {key: Figures(_label(kind, key)) for key in keys}
    total = Figures("All periods")
    for month, entitlements, sold, act, customers in db.session.execute(
            select(sale.month, func.count(), seats, activated, func.count(customer_ids))
            .where(in_window).group_by(sale.month)):
        key = _key(kind, month.year, month.month)
        if key in periods:
            periods[key].add(entitlements, sold, act, customers)
            total.add(entitlements, sold, act)
    # Customers over the whole window: distinct, not the sum of the periods'.
    total.customers = db.session.scalar(select(func.count(customer_ids)).where(in_window)) or 0

    # The tier below us on each entitlement (the reseller a distributor supplied), or us: its
    # name looked up per group, not per entitlement.
    split_by = (select(sale.month, sale.below_id, func.count().label("n"), seats.label("seats"),
                       activated.label("activated"))
                .where(in_window).group_by(sale.month, sale.below_id).subquery())
    seller = aliased(Organization)
    splits: dict[int | None, Split] = {}
    for month, partner_id, name, entitlements, sold, act in db.session.execute(
            select(split_by.c.month, split_by.c.below_id, seller.name, split_by.c.n, split_by.c.seats,
                   split_by.c.activated)
            .outerjoin(seller, seller.id == split_by.c.below_id)):
        key = _key(kind, month.year, month.month)
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
    end = PartnerSaleEnd
    ending = db.session.scalar(select(func.count(distinct(end.entitlement_id))).where(
        policy.partner_sales_scope(actor, end), end.end_date >= today,
        end.end_date <= today + timedelta(days=EXPIRY_DAYS)))
    return {"kind": kind, "period_keys": keys, "periods": [periods[k] for k in keys], "total": total,
            "splits": below_us, "served": served, "ending": ending, "days": EXPIRY_DAYS}


def chart(periods: list[Figures], width: int = 640, height: int = 260) -> dict:
    """Bars of seats sold and activated per period, in SVG coordinates."""
    left, bottom, top = 48, 36, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max([p.seats for p in periods] + [p.activated for p in periods] + [1])
    step = plot_w / max(len(periods), 1)
    bar = step * 0.36
    bars = []
    for i, p in enumerate(periods):
        x = left + i * step + step * 0.12
        for j, (value, series) in enumerate(((p.seats, "sold"), (p.activated, "activated"))):
            h = plot_h * value / peak
            bars.append({"x": round(x + j * bar, 1), "y": round(top + plot_h - h, 1), "w": round(bar, 1),
                         "h": round(h, 1), "series": series, "value": value, "label": p.label})
    ticks = [{"y": round(top + plot_h - plot_h * f, 1), "value": round(peak * f)} for f in (0, 0.5, 1)]
    labels = [{"x": round(left + i * step + step / 2, 1), "text": p.label} for i, p in enumerate(periods)]
    return {"width": width, "height": height, "bars": bars, "ticks": ticks, "labels": labels,
            "baseline": top + plot_h, "left": left}


def _kind() -> str:
    kind = query_text("period", max_length=20) or "month"
    if kind not in PERIODS:
        abort(400, "Show the report per month or per quarter.")
    return kind


def _allowed(actor) -> None:
    if not policy.can(actor, "view_reports"):
        abort(403, "Only your organization's admins see its reports.")


@bp.get("/reports")
def reports():
    """Entitlements and seats sold through us per period, activation rate, customers, renewals."""
    actor = current_actor()
    _allowed(actor)
    report = build_report(actor, _kind())
    return render("partner/reports.html", report=report, chart=chart(report["periods"]), periods=PERIODS)


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


@bp.get("/reports.csv")
def reports_csv():
    """The report's table (and the split by the tier below us) as CSV."""
    actor = current_actor()
    _allowed(actor)
    kind = _kind()
    report = build_report(actor, kind)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period", "sold_by", "entitlements", "seats_sold", "seats_activated", "activation_rate",
                     "customers"])

    def row(period: str, sold_by: str, f: Figures, customers) -> None:
        rate = "" if f.rate is None else f"{f.rate:.3f}"
        writer.writerow([_cell(v) for v in (period, sold_by, f.entitlements, f.seats, f.activated, rate, customers)])

    for f in report["periods"]:
        row(f.label, "all", f, f.customers)
    row("all", "all", report["total"], report["total"].customers)
    for split in report["splits"]:
        for key in report["period_keys"]:
            if key in split.periods:
                row(_label(kind, key), split.name, split.periods[key], "")
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="partner-report-{kind}.csv"'
    return response
