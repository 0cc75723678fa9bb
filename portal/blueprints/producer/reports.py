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
from sqlalchemy import Integer, String, and_, bindparam, case, cast, func, literal, null, or_, select, text, union_all

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.producer import bp
from portal.blueprints.producer.forms_channel import KIND_LABELS
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, Organization, SalesChainLink, channel
from portal.models.channel import ChannelCustomer, ChannelEnding, ChannelMonth, TierMonth
from portal.models.orgs import ORG_KINDS
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
        direct_customer = func.count(func.distinct(case((owner.c.kind == "customer", Entitlement.owner_id))))

        def unchained(query):
            return (query.select_from(Entitlement).join(owner, owner.c.id == Entitlement.owner_id)
                    .join(EntitlementLine, EntitlementLine.entitlement_id == Entitlement.id)
                    .where(*in_window, no_chain))
        # Per period, and customers served distinct over the whole window (as for the other rows).
        direct = db.session.execute(union_all(
            unchained(select(bucket, func.count(func.distinct(Entitlement.id)), direct_customer,
                             func.sum(case((seat_line, EntitlementLine.quantity), else_=0)))).group_by(bucket),
            unchained(select(cast(null(), String), literal(0), direct_customer, literal(0))))).all()

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
            if b is None:
                if customers:
                    customers_total["direct"] = customers
                continue
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


# --- the page: the same figures from the read model ---------------------------------------------


def _label(month: date, period: str) -> str:
    return month.strftime("%Y-%m") if period == "month" else f"{month.year}-Q{(month.month + 2) // 3}"


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def build_summary(*, period: str = "month", group: str = "partner", since: date | None = None,
                  today: date | None = None, kind: str | None = None, page: int = 1,
                  page_size: int = PAGE) -> Report:
    """``build_report``'s totals per partner (or tier) and its chart, from the ``portal.models.channel``
    read model: a few hundred rows of monthly sums instead of every sale of the window.

    Whole months are read from the monthly sums. Entitlements of the first month bought before
    ``since``, and of this month dated after ``today``, are read from the tables and taken off.
    Customers served (distinct over the window, so no sum of months) are counted for the rows of
    page ``page`` only: the customers each one sold to whose latest purchase falls in the window
    (with the few whose latest purchase is after ``today`` read from the tables). The rows have no
    figures per period (the CSV has them: ``build_report``)."""
    today = today or date.today()
    since = since or (today.replace(day=1) - timedelta(days=335)).replace(day=1)
    by_partner = group == "partner"
    first, last = since.replace(day=1), today.replace(day=1)
    periods = _periods(since, today, period)
    rows: dict = {}
    labels: dict = {}  # partner id -> (name, kind), read with the sums
    by_period: dict[str, Figures] = {p: Figures() for p in periods}
    if first <= last:
        # A window starting within a month: the days of that month before the start are taken
        # off its sum, or (fewer) the days from the start are read from the tables instead.
        add, take = [], []
        from_month = first
        if since > first:
            if (since - first).days <= (_month_end(first) - since).days + 1:
                take.append((first, since - timedelta(days=1)))
            else:
                from_month = _month_end(first) + timedelta(days=1)
                add.append((since, min(_month_end(first), today)))
        if from_month <= last:
            _sales(rows, by_period, labels, by_partner, kind, period, from_month, last)
            # Dated after today in this month (an index range, empty as a rule): taken off.
            take.append((today + timedelta(days=1), _month_end(today)))
        for ranges, sign in ((add, 1), (take, -1)):
            if ranges:
                found = channel.facts(db.session.connection(), where=or_(
                    *(Entitlement.purchase_date.between(start, end) for start, end in ranges)))
                _add_facts(rows, by_period, by_partner, kind, period, found.values(), sign)
    ending = _ending(by_partner, today)
    stock = _stock(by_partner, kind, today)
    # Names (and kinds) of the partners with no sale in the window: one statement, also when none.
    labels.update(_labels((set(ending) | set(stock) | set(rows)) - labels.keys(), by_partner))
    if kind:
        ending = {k: lines for k, lines in ending.items() if labels[k][1] == kind}
    keys = {k for k, r in rows.items() if r.totals.entitlements} | set(ending) | set(stock)
    report_rows = []
    for k in keys:
        r = rows.get(k) or ReportRow(str(k), *labels[k])
        r.label, r.kind = labels[k]
        r.totals.ending = ending.get(k, 0)
        if k in stock:
            count, oldest, average = stock[k]
            r.totals.stock, r.totals.stock_oldest = count, _as_date(oldest)
            r.totals.stock_average_days = int(round(float(average))) if average is not None else None
        report_rows.append(r)
    ordered = sorted(report_rows, key=lambda r: (-r.totals.seats_sold, -r.totals.entitlements, r.label.lower()))
    shown = ordered[(page - 1) * page_size: page * page_size]
    customers = _customers_served([r.key for r in shown], since, today)
    for r in shown:
        r.totals.customers = customers.get(r.key, 0)
    return Report(period, group, since, today, ordered, periods, by_period)


def _row(rows: dict, k) -> ReportRow:
    if k not in rows:
        rows[k] = ReportRow(str(k), "", "")
    return rows[k]


def _sales(rows, by_period, labels, by_partner, kind, period, first, last) -> None:
    """Entitlements, seats sold and activated per row and per period, from the monthly sums of
    months ``first`` to ``last`` (summed in SQL: a few hundred rows come back)."""
    months, partner = ChannelMonth, Organization
    window = [months.month.between(first, last), *([partner.kind == kind] if kind else [])]
    sums = (func.sum(months.entitlements), func.sum(months.seats), func.sum(months.activated))
    if by_partner:
        per_row = db.session.execute(
            select(months.partner_id, partner.name, partner.kind, *sums)
            .join(partner, partner.id == months.partner_id).where(*window)
            .group_by(months.partner_id, partner.name, partner.kind)).all()
        per_month = select(months.month, *sums).where(*window).group_by(months.month)
        if kind:
            per_month = per_month.join(partner, partner.id == months.partner_id)
        for k, name, pkind, entitlements, seats, activated in per_row:
            labels[k] = (name, pkind)
            _add(_row(rows, k).totals, entitlements, seats, activated)
        for month, entitlements, seats, activated in db.session.execute(per_month):
            _add(by_period.get(_label(_as_date(month), period)), entitlements, seats, activated)
        return
    tiers = TierMonth
    activated = dict(((k, m), n) for k, m, n in db.session.execute(
        select(partner.kind, months.month, func.sum(months.activated))
        .join(partner, partner.id == months.partner_id).where(*window).group_by(partner.kind, months.month)))
    query = select(tiers.tier, tiers.month, tiers.entitlements, tiers.seats).where(tiers.month.between(first, last))
    for k, month, entitlements, seats in db.session.execute(query.where(tiers.tier == kind) if kind else query):
        for figures in (_row(rows, k).totals, by_period.get(_label(_as_date(month), period))):
            _add(figures, entitlements, seats, activated.get((k, month), 0))


def _add(figures: Figures | None, entitlements, seats, activated) -> None:
    if figures is not None:
        figures.entitlements += int(entitlements or 0)
        figures.seats_sold += int(seats or 0)
        figures.seats_activated += int(activated or 0)


def _add_facts(rows, by_period, by_partner, kind, period, found, sign: int) -> None:
    """Add (``sign`` 1) or take off (-1) the sales of these entitlements."""
    gone = channel.contribution(found)
    kinds = {p: k for f in found for p, k in f.partners}
    if by_partner:
        items = [(p, m, c, n) for (p, m, c), n in gone.months.items() if not kind or kinds[p] == kind]
    else:
        items = [(t, m, c, n) for (t, m, c), n in gone.tiers.items() if not kind or t == kind]
        items += [(t, m, "activated", n) for (t, m), n in gone.tier_activated.items() if not kind or t == kind]
    column = {"entitlements": "entitlements", "seats": "seats_sold", "activated": "seats_activated"}
    for k, month, name, amount in items:
        for figures in (_row(rows, k).totals, by_period.get(_label(month, period))):
            if figures is not None:
                setattr(figures, column[name], getattr(figures, column[name]) + sign * amount)


def _ending(by_partner, today) -> dict:
    """Subscription lines ending in the next 90 days per partner (or tier), of every kind."""
    ending = ChannelEnding
    query = (select(ending.group_key, func.sum(ending.lines))
             .where(ending.end_date.between(today, today + timedelta(days=ENDING_DAYS))).group_by(ending.group_key))
    return {int(key) if by_partner else key: int(lines) for key, lines in db.session.execute(query)
            if key.isdigit() == by_partner and lines}


def _stock(by_partner, kind, today) -> dict:
    """Stock per partner (or kind): how much, the oldest purchase, the average age in days."""
    partner = Organization
    key = partner.id if by_partner else partner.kind
    kinds = [kind] if kind else [k for k in ORG_KINDS if k != "customer"]
    return {k: (count, oldest, average) for k, count, oldest, average in db.session.execute(
        select(key, func.count(Entitlement.id), func.min(Entitlement.purchase_date),
               func.avg(_age_days(Entitlement.purchase_date, today)))
        .select_from(partner).join(Entitlement, Entitlement.owner_id == partner.id)
        .where(partner.kind.in_(kinds)).group_by(key))}


def _labels(keys, by_partner) -> dict:
    if not by_partner:
        return {k: (TIER_LABELS.get(k, k), k) for k in keys}
    labels = {k: ("?", "") for k in keys}
    labels.update((i, (name, kind)) for i, name, kind in db.session.execute(_NAMES, {"ids": list(keys)}))
    return labels


_NAMES = (select(Organization.id, Organization.name, Organization.kind)
          .where(Organization.id.in_(bindparam("ids", expanding=True))))


def _customers_served(keys: list, since: date, today: date) -> dict[str, int]:
    """Customers each of these partners (or tiers) sold to in [since, today], from the latest
    purchase of each customer; those whose latest purchase is after today from the tables."""
    if not keys:
        return {}
    served = ChannelCustomer
    counts: dict[str, int] = {}
    later = [tuple(pair) for pair in db.session.execute(
        select(served.group_key, served.customer_id).where(served.group_key.in_(keys), served.last_purchase > today))]
    for key, count in db.session.execute(
            select(served.group_key, func.count())
            .where(served.group_key.in_(keys), served.last_purchase.between(since, today))
            .group_by(served.group_key)):
        counts[key] = count
    if later:
        customers = {c for _, c in later}
        bought = channel.contribution(channel.facts(db.session.connection(), where=and_(
            Entitlement.owner_id.in_(customers), Entitlement.purchase_date.between(since, today))).values())
        for pair in later:
            if bought.customers.get(pair):
                counts[pair[0]] = counts.get(pair[0], 0) + 1
    return counts


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
    page = query_int("page", default=1, maximum=100_000)
    report = build_summary(period=period, group=group, since=since, kind=kind, page=page)
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
