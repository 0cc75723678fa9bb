"""``/producer/reports``: channel performance per partner or per tier, per month or quarter.

Figures (over entitlements purchased since a date, by the partners of their sales chains):
entitlements and seats sold, seats activated (and the activation rate), customers served,
subscriptions ending in the next 90 days, and for stocking partners the stock they hold and
its age. A tier is a kind of partner (distributors, resellers, service providers), plus the
producer's direct sales.

Every figure is an aggregate in SQL (GROUP BY partner or tier and period): four statements per
report whatever the number of partners or entitlements; no query per partner.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from flask import Response, abort, current_app, request
from sqlalchemy import Integer, String, case, cast, func, literal, null, select, text, union_all

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.producer import bp
from portal.blueprints.producer.forms_channel import KIND_LABELS
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, Organization, SalesChainLink
from portal.ui import clean_arg
from portal.web import query_int, render

PERIODS = {"month": "Month", "quarter": "Quarter"}
GROUPS = {"partner": "Partner", "tier": "Tier"}
TIER_LABELS = {**{k: f"{v}s" for k, v in KIND_LABELS.items()}, "direct": "Direct sales"}
ENDING_DAYS = 90
PAGE = 25


@dataclass
class Figures:
    entitlements: int = 0
    seats_sold: int = 0
    seats_activated: int = 0
    customers: int = 0
    ending: int = 0
    stock: int = 0
    stock_oldest: date | None = None
    stock_average_days: int | None = None

    @property
    def activation_rate(self) -> float | None:
        return self.seats_activated / self.seats_sold if self.seats_sold else None


@dataclass
class ReportRow:
    key: str  # partner id or tier
    label: str
    kind: str
    totals: Figures = field(default_factory=Figures)
    periods: dict[str, Figures] = field(default_factory=lambda: defaultdict(Figures))


@dataclass
class Report:
    period: str
    group: str
    since: date
    today: date
    rows: list[ReportRow]
    periods: list[str]
    totals_by_period: dict[str, Figures]


def _bucket(column, period: str):
    """'2026-03' or '2026-Q1' of a date column, in SQL of the dialect in use."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM" if period == "month" else 'YYYY-"Q"Q')
    if period == "month":
        return func.strftime("%Y-%m", column)
    month = cast(func.strftime("%m", column), Integer)
    return func.strftime("%Y", column) + literal("-Q") + cast((month + 2) // 3, String)


def _periods(since: date, today: date, period: str) -> list[str]:
    found, day = [], since.replace(day=1)
    while day <= today:
        label = day.strftime("%Y-%m") if period == "month" else f"{day.year}-Q{(day.month + 2) // 3}"
        if label not in found:
            found.append(label)
        day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return found


def build_report(*, period: str = "month", group: str = "partner", since: date | None = None,
                 today: date | None = None, kind: str | None = None) -> Report:
    """The report: per partner (or tier) and period, from four GROUP BY statements."""
    today = today or date.today()
    if db.session.get_bind().dialect.name == "postgresql":
        # These aggregates run in well under a second; PostgreSQL's JIT, triggered by the
        # planner's (pessimistic) cost of the CTE joins, would spend seconds compiling them.
        db.session.execute(text("SET LOCAL jit = off"))
    since = since or (today.replace(day=1) - timedelta(days=335)).replace(day=1)
    partner = Organization
    owner = Organization.__table__.alias("owner")
    bucket = _bucket(Entitlement.purchase_date, period)
    by_partner = group == "partner"
    key = SalesChainLink.partner_id if by_partner else partner.kind
    in_window = [Entitlement.purchase_date >= since, Entitlement.purchase_date <= today]
    kind_filter = [partner.kind == kind] if kind else []

    def chained(query):
        return (query.select_from(SalesChainLink)
                .join(Entitlement, Entitlement.id == SalesChainLink.entitlement_id)
                .join(partner, partner.id == SalesChainLink.partner_id)
                .where(*in_window, *kind_filter))

    seat_line = EntitlementLine.license_model != "usage"
    # 1-3. One statement: the (partner or tier, period, entitlement, customer) rows of the window
    # once (a CTE), the seats and activated seats of just those entitlements, then per period and,
    # for customers served, over the whole window (distinct counts do not add up).
    base = chained(select(key.label("k"), bucket.label("b"), Entitlement.id.label("eid"),
                          case((owner.c.kind == "customer", Entitlement.owner_id)).label("cust"))
                   ).join(owner, owner.c.id == Entitlement.owner_id).cte("base")
    bought = EntitlementLine.entitlement_id == Entitlement.id
    seats_of = (select(EntitlementLine.entitlement_id.label("eid"),
                       func.sum(case((seat_line, EntitlementLine.quantity), else_=0)).label("n"))
                .join(Entitlement, bought).where(*in_window).group_by(EntitlementLine.entitlement_id).cte("seats"))
    activated_of = (select(EntitlementLine.entitlement_id.label("eid"), func.sum(Activation.seats).label("n"))
                    .join(Entitlement, bought).join(Activation, Activation.line_id == EntitlementLine.id)
                    .where(*in_window, seat_line, Activation.active.is_(True))
                    .group_by(EntitlementLine.entitlement_id).cte("activated"))
    per_period = (select(base.c.k, base.c.b, func.count(func.distinct(base.c.eid)),
                         func.count(func.distinct(base.c.cust)), func.coalesce(func.sum(seats_of.c.n), 0),
                         func.coalesce(func.sum(activated_of.c.n), 0))
                  .select_from(base).outerjoin(seats_of, seats_of.c.eid == base.c.eid)
                  .outerjoin(activated_of, activated_of.c.eid == base.c.eid).group_by(base.c.k, base.c.b))
    whole = (select(base.c.k, cast(null(), String), literal(0), func.count(func.distinct(base.c.cust)), literal(0),
                    literal(0)).group_by(base.c.k))
    sold, customers_total = [], {}
    for k, b, count, customers, seat_count, activated_count in db.session.execute(union_all(per_period, whole)):
        if b is None:
            customers_total[k] = customers
        else:
            sold.append((k, b, count, customers, int(seat_count or 0), int(activated_count or 0)))
    # 4. Subscriptions ending in the next 90 days (whenever they were bought).
    ending = db.session.execute(
        select(key, func.count(func.distinct(EntitlementLine.id))).select_from(SalesChainLink)
        .join(Entitlement, Entitlement.id == SalesChainLink.entitlement_id)
        .join(partner, partner.id == SalesChainLink.partner_id)
        .join(EntitlementLine, EntitlementLine.entitlement_id == Entitlement.id)
        .where(EntitlementLine.license_model == "subscription", EntitlementLine.end_date >= today,
               EntitlementLine.end_date <= today + timedelta(days=ENDING_DAYS), Entitlement.status == "active",
               *kind_filter)
        .group_by(key)).all()
    # 5. Stock held by partners: how much, the oldest, the average age.
    stock_key = partner.id if by_partner else partner.kind
    stock = db.session.execute(
        select(stock_key, func.count(Entitlement.id), func.min(Entitlement.purchase_date),
               func.avg(_age_days(Entitlement.purchase_date, today)))
        .select_from(Entitlement).join(partner, partner.id == Entitlement.owner_id)
        .where(partner.kind != "customer", *kind_filter).group_by(stock_key)).all()

    # Direct sales (no partner in the chain) are a tier of their own.
    direct = None
    if not by_partner and not kind:
        no_chain = ~select(SalesChainLink.entitlement_id).where(
            SalesChainLink.entitlement_id == Entitlement.id).exists()
        direct = db.session.execute(
            select(bucket, func.count(func.distinct(Entitlement.id)),
                   func.count(func.distinct(case((owner.c.kind == "customer", Entitlement.owner_id)))),
                   func.sum(case((seat_line, EntitlementLine.quantity), else_=0)))
            .select_from(Entitlement).join(owner, owner.c.id == Entitlement.owner_id)
            .join(EntitlementLine, EntitlementLine.entitlement_id == Entitlement.id)
            .where(*in_window, no_chain).group_by(bucket)).all()

    keys = ({k for k, *_ in sold} | {k for k, *_ in stock} | {k for k, _ in ending})
    labels: dict = {}
    if by_partner and keys:
        for pid, name, pkind in db.session.execute(
                select(Organization.id, Organization.name, Organization.kind).where(Organization.id.in_(keys))):
            labels[pid] = (name, pkind)
    rows: dict = {}

    def row(k) -> ReportRow:
        if k not in rows:
            label, rkind = labels.get(k, ("?", "")) if by_partner else (TIER_LABELS.get(k, k), k)
            rows[k] = ReportRow(str(k), label, rkind)
        return rows[k]

    for k, b, count, customers, seat_count, activated_count in sold:
        figures = row(k).periods[b]
        figures.entitlements, figures.customers = count, customers
        figures.seats_sold, figures.seats_activated = seat_count, activated_count
    if direct is not None:
        for b, count, customers, total in direct:
            figures = row("direct").periods[b]
            figures.entitlements, figures.customers, figures.seats_sold = count, customers, int(total or 0)
    # Totals over the window: sums of the periods; customers served distinct over the whole window.
    for k, r in rows.items():
        for f in r.periods.values():
            r.totals.entitlements += f.entitlements
            r.totals.seats_sold += f.seats_sold
            r.totals.seats_activated += f.seats_activated
        r.totals.customers = customers_total.get(k, sum(f.customers for f in r.periods.values()))
    for k, count in ending:
        row(k).totals.ending = count
    for k, count, oldest, average in stock:
        figures = row(k).totals
        figures.stock, figures.stock_oldest = count, _as_date(oldest)
        figures.stock_average_days = int(round(float(average))) if average is not None else None
    periods = _periods(since, today, period)
    totals_by_period: dict[str, Figures] = {p: Figures() for p in periods}
    # The chart's totals. Per partner, an entitlement sold through two tiers counts for both.
    for r in rows.values():
        for b, f in r.periods.items():
            if b in totals_by_period:
                t = totals_by_period[b]
                t.seats_sold += f.seats_sold
                t.seats_activated += f.seats_activated
                t.entitlements += f.entitlements
    ordered = sorted(rows.values(), key=lambda r: (-r.totals.seats_sold, -r.totals.entitlements, r.label.lower()))
    return Report(period, group, since, today, ordered, periods, totals_by_period)


def _age_days(column, today: date):
    if db.session.get_bind().dialect.name == "postgresql":
        return literal(today) - column
    return func.julianday(literal(today.isoformat())) - func.julianday(column)


def _as_date(value) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# --- the chart --------------------------------------------------------------------------------


@dataclass
class Bar:
    x: float
    y: float
    h: float
    kind: str
    value: int


def chart(report: Report) -> dict:
    """Seats sold and activated per period, as bars scaled to the largest figure."""
    width, height, left, bottom, top = 760, 260, 56, 40, 16
    periods = report.periods
    peak = max([1] + [max(f.seats_sold, f.seats_activated) for f in report.totals_by_period.values()])
    slot = (width - left - 10) / max(len(periods), 1)
    bar_w = max(min(slot / 2 - 4, 28), 3)
    plot_h = height - bottom - top
    bars, ticks = [], []
    for i, p in enumerate(periods):
        f = report.totals_by_period[p]
        x = left + i * slot + (slot - 2 * bar_w) / 2
        for j, (value, kind) in enumerate(((f.seats_sold, "sold"), (f.seats_activated, "activated"))):
            h = plot_h * value / peak
            bars.append(Bar(round(x + j * bar_w, 1), round(top + plot_h - h, 1), round(h, 1), kind, value))
        ticks.append((round(left + i * slot + slot / 2, 1), p))
    step = max(len(periods) // 6, 1)
    desc = "; ".join(f"{p}: {report.totals_by_period[p].seats_sold} seats sold, "
                     f"{report.totals_by_period[p].seats_activated} activated" for p in periods)
    return {"width": width, "height": height, "left": left, "top": top, "plot_h": plot_h, "bars": bars,
            "ticks": ticks, "step": step, "bar_w": round(bar_w, 1), "peak": peak, "desc": desc}


# --- pages --------------------------------------------------------------------------------


def _params():
    period = clean_arg(request.args.get("period"), max_length=10, name="period") or "month"
    group = clean_arg(request.args.get("group"), max_length=10, name="grouping") or "partner"
    kind = clean_arg(request.args.get("kind"), max_length=20, name="kind") or None
    raw_since = clean_arg(request.args.get("since"), max_length=10, name="start date")
    if period not in PERIODS or group not in GROUPS or (kind and kind not in KIND_LABELS):
        abort(400, "Choose a period, a grouping and a kind the page offers.")
    since = None
    if raw_since:
        try:
            since = date.fromisoformat(raw_since)
        except ValueError:
            abort(400, "Write the start date as YYYY-MM-DD.")
        if not date(2000, 1, 1) <= since <= date.today():
            abort(400, "Choose a start date between 2000 and today.")
    return period, group, kind, since


@bp.get("/reports")
def reports():
    """Channel performance: a chart of seats sold and activated per period, a table per partner or tier."""
    if not policy.can(current_actor(), "view_reports"):
        abort(404)
    period, group, kind, since = _params()
    report = build_report(period=period, group=group, since=since, kind=kind)
    page = query_int("page", default=1, maximum=100_000)
    pages = max((len(report.rows) + PAGE - 1) // PAGE, 1)
    shown = report.rows[(page - 1) * PAGE: page * PAGE]
    args = {k: v for k, v in (("period", period), ("group", group), ("kind", kind),
                              ("since", since.isoformat() if since else None)) if v}
    return render("producer/reports.html", report=report, rows=shown, page=page, pages=pages, args=args,
                  chart=chart(report), periods=PERIODS, groups=GROUPS, kinds=KIND_LABELS, kind=kind,
                  since_value=report.since.isoformat(), page_size=current_app.config["PAGE_SIZE"])


CSV_HEADER = ["group", "key", "name", "kind", "period", "entitlements", "seats_sold", "seats_activated",
              "activation_rate", "customers_served", "subscriptions_ending_90d", "stock", "stock_oldest",
              "stock_average_age_days"]


@bp.get("/reports.csv")
def reports_csv():
    """The report as CSV: one row per partner (or tier) and period, then one total row each."""
    if not policy.can(current_actor(), "view_reports"):
        abort(404)
    period, group, kind, since = _params()
    report = build_report(period=period, group=group, since=since, kind=kind)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for r in report.rows:
        for p in report.periods:
            f = r.periods.get(p)
            if f is None:
                continue
            rate = f"{f.activation_rate:.4f}" if f.activation_rate is not None else ""
            writer.writerow([group, r.key, _safe(r.label), r.kind, p, f.entitlements, f.seats_sold,
                             f.seats_activated, rate, f.customers, "", "", "", ""])
        t = r.totals
        rate = f"{t.activation_rate:.4f}" if t.activation_rate is not None else ""
        writer.writerow([group, r.key, _safe(r.label), r.kind, "total", t.entitlements, t.seats_sold,
                         t.seats_activated, rate, t.customers, t.ending, t.stock,
                         t.stock_oldest.isoformat() if t.stock_oldest else "", t.stock_average_days or ""])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="channel-report-{period}.csv"'
    return response


def _safe(text: str) -> str:
    """No formula injection when the CSV is opened in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
