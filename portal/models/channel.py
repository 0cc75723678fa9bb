"""Read model: the channel's sales per partner, tier and month, for the producer's report and
a partner's page.

``/producer/reports`` aggregated every sales chain link of the window (108,000 of them for the
last twelve months at 200,000 entitlements) with the lines and activations of their
entitlements on every visit: 0.6 s on a quiet machine. These tables hold the same figures
summed per month, so the report reads a few thousand small rows:

- ``channel_month``: per partner and purchase month, the entitlements whose sales chain names
  the partner, their seats sold (lines of a seat license model) and seats activated (active
  activations of those lines), each counted once per chain link, as the report counts them;
- ``tier_month``: per tier (a kind of partner, or ``direct`` for entitlements sold without a
  partner) and month, the entitlements (once each, also when two partners of one kind are in
  a chain) and their seats; the tiers' activated seats are the sums of their partners';
- ``channel_customer``: per partner or tier (``group_key``: the partner's id, or the tier) and
  customer, how many of the customer's entitlements it sold and the latest purchase date among
  them: the customers served since a date are an index range of it;
- ``channel_ending``: per partner or tier and end date, the subscription lines of active
  entitlements that end that day ("subscriptions ending in the next 90 days").

Derived data, kept equal to the tables by the flush hooks below, in the same transaction as the
change, whichever service makes it: the figures of an entitlement are read before and after a
flush that changes it (its owner, purchase date or status, its lines, its chain, the kind of an
organization on it) and the difference is added; an activation made, returned or resized adds to
``channel_month.activated`` in one UPDATE. Statements that bypass the ORM call
``add_channel_sales`` (an import, for its new entitlements) or ``rebuild_channel_sales`` (the
seed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    bindparam,
    case,
    cast,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.extensions import db
from portal.models.activations import Activation
from portal.models.entitlements import Entitlement, EntitlementLine, SalesChainLink
from portal.models.orgs import Organization

DIRECT = "direct"  # the tier of entitlements sold without a partner
SEAT_MODELS = ("perpetual", "subscription")
CHUNK = 5000  # entitlement ids per statement


class ChannelMonth(db.Model):
    """A partner's sales of one purchase month (see the module's docstring)."""

    __tablename__ = "channel_month"
    __table_args__ = (
        # The months of a report's window, every partner's sums read from the index alone.
        Index("ix_channel_month_month", "month", "partner_id", "entitlements", "seats", "activated"),
    )

    partner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)  # the first day of the month
    entitlements: Mapped[int] = mapped_column(Integer)
    seats: Mapped[int] = mapped_column(Integer)
    activated: Mapped[int] = mapped_column(Integer)


class TierMonth(db.Model):
    """A tier's sales of one purchase month."""

    __tablename__ = "tier_month"

    tier: Mapped[str] = mapped_column(String(20), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    entitlements: Mapped[int] = mapped_column(Integer)
    seats: Mapped[int] = mapped_column(Integer)


class ChannelCustomer(db.Model):
    """A customer a partner (or a tier) sold to: how many entitlements, the latest bought when."""

    __tablename__ = "channel_customer"
    __table_args__ = (
        # Customers served since a date: one index range per partner or tier.
        Index("ix_channel_customer_last", "group_key", "last_purchase", "customer_id"),
    )

    group_key: Mapped[str] = mapped_column(String(20), primary_key=True)  # a partner's id, or a tier
    customer_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True, index=True)
    entitlements: Mapped[int] = mapped_column(Integer)
    last_purchase: Mapped[date] = mapped_column(Date)


class ChannelEnding(db.Model):
    """Subscription lines of active entitlements a partner (or a tier) sold, by end date."""

    __tablename__ = "channel_ending"
    __table_args__ = (
        # Every partner's (or tier's) lines ending in the next days: one index range.
        Index("ix_channel_ending_date", "end_date", "group_key", "lines"),
    )

    group_key: Mapped[str] = mapped_column(String(20), primary_key=True)
    end_date: Mapped[date] = mapped_column(Date, primary_key=True)
    lines: Mapped[int] = mapped_column(Integer)


CHANNEL_TABLES = [model.__tablename__ for model in (ChannelMonth, TierMonth, ChannelCustomer, ChannelEnding)]


# --- an entitlement's figures -------------------------------------------------------------------


@dataclass
class Facts:
    """What one entitlement adds to the read model."""

    purchase_date: date
    owner_id: int
    customer: bool  # owned by a customer (not held in a partner's stock)
    active: bool
    seats: int = 0
    activated: int = 0
    has_lines: bool = False
    partners: list[tuple[int, str]] = field(default_factory=list)  # (partner id, kind) per chain link
    ending: list[date] = field(default_factory=list)  # end dates of its subscription lines


def _month(day: date) -> date:
    return day.replace(day=1)


def facts(connection, *, ids: Iterable[int] | None = None, where=None) -> dict[int, Facts]:
    """{entitlement id: Facts} of these entitlements (``ids``) or of those ``where`` selects
    (a clause on ``entitlement``): four statements per 5,000 entitlements."""
    entitlement, owner = Entitlement.__table__, Organization.__table__.alias("owner")
    link, partner, line = SalesChainLink.__table__, Organization.__table__, EntitlementLine.__table__
    activation = Activation.__table__
    chunks = [where] if ids is None else [entitlement.c.id.in_(chunk) for chunk in _chunks(sorted(set(ids)))]
    found: dict[int, Facts] = {}
    for clause in chunks:
        rows = connection.execute(
            select(entitlement.c.id, entitlement.c.purchase_date, entitlement.c.owner_id, owner.c.kind,
                   entitlement.c.status)
            .join(owner, owner.c.id == entitlement.c.owner_id).where(clause)).all()
        batch = {i: Facts(_as_date(day), owner_id, kind == "customer", status == "active")
                 for i, day, owner_id, kind, status in rows}
        if not batch:
            continue
        found.update(batch)
        chosen = list(batch) if ids is not None else select(entitlement.c.id).where(clause)
        for entitlement_id, partner_id, kind in connection.execute(
                select(link.c.entitlement_id, link.c.partner_id, partner.c.kind)
                .join(partner, partner.c.id == link.c.partner_id).where(link.c.entitlement_id.in_(chosen))
                .order_by(link.c.entitlement_id, link.c.position)):
            batch[entitlement_id].partners.append((partner_id, kind))
        for entitlement_id, model, quantity, end_date in connection.execute(
                select(line.c.entitlement_id, line.c.license_model, line.c.quantity, line.c.end_date)
                .where(line.c.entitlement_id.in_(chosen))):
            f = batch[entitlement_id]
            f.has_lines = True
            if model in SEAT_MODELS:
                f.seats += quantity
            if model == "subscription" and end_date is not None:
                f.ending.append(_as_date(end_date))
        for entitlement_id, seats in connection.execute(
                select(line.c.entitlement_id, func.sum(activation.c.seats))
                .join(activation, activation.c.line_id == line.c.id)
                .where(line.c.entitlement_id.in_(chosen), line.c.license_model.in_(SEAT_MODELS),
                       activation.c.active.is_(True))
                .group_by(line.c.entitlement_id)):
            batch[entitlement_id].activated = int(seats or 0)
    return found


@dataclass
class Contribution:
    """What some entitlements add to each table of the read model."""

    months: Counter = field(default_factory=Counter)  # (partner id, month, column) -> amount
    tiers: Counter = field(default_factory=Counter)  # (tier, month, column) -> amount
    tier_activated: Counter = field(default_factory=Counter)  # (tier, month) -> seats (not stored: summed)
    customers: Counter = field(default_factory=Counter)  # (group key, customer id) -> entitlements
    last: dict = field(default_factory=dict)  # (group key, customer id) -> latest purchase date
    ending: Counter = field(default_factory=Counter)  # (group key, end date) -> lines

    def add(self, f: Facts) -> None:
        month = _month(f.purchase_date)
        links = Counter(partner_id for partner_id, _ in f.partners)
        kinds = Counter(kind for _, kind in f.partners)
        keys: list[str] = []
        if links:
            for partner_id, times in links.items():
                self.months[(partner_id, month, "entitlements")] += 1
                self.months[(partner_id, month, "seats")] += f.seats * times
                self.months[(partner_id, month, "activated")] += f.activated * times
            for kind, times in kinds.items():
                self.tiers[(kind, month, "entitlements")] += 1
                self.tiers[(kind, month, "seats")] += f.seats * times
                self.tier_activated[(kind, month)] += f.activated * times
            keys = [str(partner_id) for partner_id in links] + list(kinds)
            if f.active:
                for end_date in f.ending:
                    for key in keys:
                        self.ending[(key, end_date)] += 1
        elif f.has_lines:  # direct sales count the entitlements that have lines (as the report joins them)
            self.tiers[(DIRECT, month, "entitlements")] += 1
            self.tiers[(DIRECT, month, "seats")] += f.seats
            keys = [DIRECT]
        if f.customer:
            for key in keys:
                self.customers[(key, f.owner_id)] += 1
                if f.purchase_date > self.last.get((key, f.owner_id), date.min):
                    self.last[(key, f.owner_id)] = f.purchase_date


def contribution(found: Iterable[Facts]) -> Contribution:
    total = Contribution()
    for f in found:
        total.add(f)
    return total


# --- writing it -------------------------------------------------------------------------------


def _insert(connection, table):
    return (postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)


def _grouped(counter: Counter, width: int) -> dict[tuple, dict[str, int]]:
    rows: dict[tuple, dict[str, int]] = defaultdict(dict)
    for key, amount in counter.items():
        rows[key[:width]][key[width]] = amount
    return rows


def apply_contribution(connection, before: Contribution, after: Contribution) -> None:
    """Add ``after`` - ``before`` to the tables (rows that reach 0 go).

    Each table gets one INSERT ... ON CONFLICT DO UPDATE adding the differences, in key order (two
    writers lock rows in the same order: no deadlock), also for those that subtract (the row is
    there: the entitlements before the change put it there), then one DELETE of rows at 0. So
    no CHECK constraint keeps the counts positive: the proposed row of an upsert is checked
    before its conflict is found."""
    _apply_months(connection, _grouped(after.months, 2), _grouped(before.months, 2))
    _apply_tiers(connection, _grouped(after.tiers, 2), _grouped(before.tiers, 2))
    _apply_customers(connection, before, after)
    _apply_ending(connection, after.ending - before.ending, before.ending - after.ending)


def _difference(after: dict, before: dict, columns) -> list[tuple[tuple, dict[str, int]]]:
    changes = []
    for key in sorted(after.keys() | before.keys()):  # one order: no deadlock between two writers
        change = {c: after.get(key, {}).get(c, 0) - before.get(key, {}).get(c, 0) for c in columns}
        if any(change.values()):
            changes.append((key, change))
    return changes


def _apply_months(connection, after: dict, before: dict) -> None:
    table = ChannelMonth.__table__
    changes = _difference(after, before, ("entitlements", "seats", "activated"))
    if not changes:
        return
    stmt = _insert(connection, table)
    connection.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.partner_id, table.c.month],
        set_={c: table.c[c] + stmt.excluded[c] for c in ("entitlements", "seats", "activated")}),
        [{"partner_id": k[0], "month": k[1], **change} for k, change in changes])
    if any(change["entitlements"] < 0 for _, change in changes):
        connection.execute(delete(table).where(table.c.partner_id.in_({k[0] for k, _ in changes}),
                                               table.c.entitlements == 0))


def _apply_tiers(connection, after: dict, before: dict) -> None:
    table = TierMonth.__table__
    changes = _difference(after, before, ("entitlements", "seats"))
    if not changes:
        return
    stmt = _insert(connection, table)
    connection.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.tier, table.c.month],
        set_={c: table.c[c] + stmt.excluded[c] for c in ("entitlements", "seats")}),
        [{"tier": k[0], "month": k[1], **change} for k, change in changes])
    if any(change["entitlements"] < 0 for _, change in changes):
        connection.execute(delete(table).where(table.c.tier.in_({k[0] for k, _ in changes}),
                                               table.c.entitlements == 0))


def _apply_customers(connection, before: Contribution, after: Contribution) -> None:
    table = ChannelCustomer.__table__
    pairs = sorted(after.customers.keys() | before.customers.keys())
    if not pairs:
        return
    # A pair only gained entitlements: its latest purchase is the later of the two. One that lost
    # some (or whose entitlements changed date) is read again from the tables.
    rows, again = [], []
    for pair in pairs:
        change = after.customers.get(pair, 0) - before.customers.get(pair, 0)
        if pair in before.customers:
            again.append(pair)
        if change or pair not in before.customers:
            rows.append({"group_key": pair[0], "customer_id": pair[1], "entitlements": change,
                         "last_purchase": after.last.get(pair, date.min)})
    if rows:
        stmt = _insert(connection, table)
        later = case((table.c.last_purchase >= stmt.excluded.last_purchase, table.c.last_purchase),
                     else_=stmt.excluded.last_purchase)
        connection.execute(stmt.on_conflict_do_update(
            index_elements=[table.c.group_key, table.c.customer_id],
            set_={"entitlements": table.c.entitlements + stmt.excluded.entitlements, "last_purchase": later}), rows)
    if again:
        keys = {p[0] for p in again}
        connection.execute(delete(table).where(table.c.group_key.in_(keys), table.c.entitlements == 0))
        for statement, chosen in _latest_statements(again):
            connection.execute(statement, chosen)


def _latest_statements(pairs):
    """UPDATE statements that read the latest purchase of these (group key, customer) pairs again."""
    table = ChannelCustomer.__table__
    e, link, partner = Entitlement.__table__, SalesChainLink.__table__, Organization.__table__
    line = EntitlementLine.__table__
    mine = (table.c.group_key == bindparam("k")) & (table.c.customer_id == bindparam("c"))
    by_partner = (select(func.max(e.c.purchase_date)).join(link, link.c.entitlement_id == e.c.id)
                  .where(e.c.owner_id == bindparam("c"), link.c.partner_id == bindparam("p")).scalar_subquery())
    by_tier = (select(func.max(e.c.purchase_date)).join(link, link.c.entitlement_id == e.c.id)
               .join(partner, partner.c.id == link.c.partner_id)
               .where(e.c.owner_id == bindparam("c"), partner.c.kind == bindparam("k")).scalar_subquery())
    direct = (select(func.max(e.c.purchase_date))
              .where(e.c.owner_id == bindparam("c"),
                     ~select(link.c.entitlement_id).where(link.c.entitlement_id == e.c.id).exists(),
                     select(line.c.id).where(line.c.entitlement_id == e.c.id).exists()).scalar_subquery())
    chosen: dict[str, list] = {"partner": [], "tier": [], "direct": []}
    for key, customer_id in pairs:
        if key.isdigit():
            chosen["partner"].append({"k": key, "c": customer_id, "p": int(key)})
        else:
            chosen["direct" if key == DIRECT else "tier"].append({"k": key, "c": customer_id})
    for name, latest in (("partner", by_partner), ("tier", by_tier), ("direct", direct)):
        if chosen[name]:
            yield update(table).where(mine).values(last_purchase=latest), chosen[name]


def _apply_ending(connection, added: Counter, removed: Counter) -> None:
    table = ChannelEnding.__table__
    keys = sorted(added.keys() | removed.keys())
    if not keys:
        return
    stmt = _insert(connection, table)
    connection.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.group_key, table.c.end_date], set_={"lines": table.c.lines + stmt.excluded.lines}),
        [{"group_key": k[0], "end_date": k[1], "lines": added[k] - removed[k]} for k in keys])
    if removed:
        connection.execute(delete(table).where(table.c.group_key.in_({k[0] for k in removed}), table.c.lines == 0))


def add_channel_sales(connection, entitlement_ids: Iterable[int]) -> None:
    """Add new entitlements written without the ORM (an import) to the read model."""
    apply_contribution(connection, Contribution(), contribution(facts(connection, ids=entitlement_ids).values()))


# --- the whole read model from the tables (the seed; migration 0015_producer_pages) --------------------------------


def rebuild_channel_sales(connection) -> None:
    """Derive the four tables again from the entitlements, chains, lines and activations."""
    for model in (ChannelMonth, TierMonth, ChannelCustomer, ChannelEnding):
        connection.execute(delete(model.__table__))
    for statement in rebuild_statements(connection.dialect.name):
        connection.execute(text(statement))


def rebuild_statements(dialect: str) -> list[str]:
    """INSERT ... SELECT statements that fill the four (empty) tables; migration 0015_producer_pages runs a
    copy of them."""
    month = ("CAST(date_trunc('month', e.purchase_date) AS DATE)" if dialect == "postgresql"
             else "date(e.purchase_date, 'start of month')")
    seats = ("LEFT JOIN (SELECT entitlement_id, sum(quantity) AS n FROM entitlement_line "
             "WHERE license_model IN ('perpetual', 'subscription') GROUP BY entitlement_id) AS s "
             "ON s.entitlement_id = e.id")
    used = ("LEFT JOIN (SELECT li.entitlement_id, sum(a.seats) AS n FROM activation AS a "
            "JOIN entitlement_line AS li ON li.id = a.line_id "
            "WHERE a.active AND li.license_model IN ('perpetual', 'subscription') GROUP BY li.entitlement_id) AS u "
            "ON u.entitlement_id = e.id")
    linked = "sales_chain_link AS l JOIN entitlement AS e ON e.id = l.entitlement_id"
    kinds = f"{linked} JOIN organization AS p ON p.id = l.partner_id"
    direct = ("entitlement AS e WHERE NOT EXISTS (SELECT 1 FROM sales_chain_link AS l WHERE l.entitlement_id = e.id) "
              "AND EXISTS (SELECT 1 FROM entitlement_line AS li WHERE li.entitlement_id = e.id)")
    customer = "JOIN organization AS o ON o.id = e.owner_id AND o.kind = 'customer'"
    ending = ("JOIN entitlement_line AS li ON li.entitlement_id = e.id AND li.license_model = 'subscription' "
              "AND li.end_date IS NOT NULL WHERE e.status = 'active'")
    return [template.format(month=month, seats=seats, used=used, linked=linked, kinds=kinds, direct=direct,
                            customer=customer, ending=ending) for template in _FILL]


# The statements, with the parts above in braces.
_FILL = [
    "INSERT INTO channel_month (partner_id, month, entitlements, seats, activated) "
    "SELECT l.partner_id, {month}, count(DISTINCT e.id), sum(COALESCE(s.n, 0)), sum(COALESCE(u.n, 0)) "
    "FROM {linked} {seats} {used} GROUP BY l.partner_id, {month}",
    "INSERT INTO tier_month (tier, month, entitlements, seats) "
    "SELECT p.kind, {month}, count(DISTINCT e.id), sum(COALESCE(s.n, 0)) FROM {kinds} {seats} "
    "GROUP BY p.kind, {month}",
    "INSERT INTO tier_month (tier, month, entitlements, seats) "
    "SELECT 'direct', {month}, count(*), sum(COALESCE(s.n, 0)) FROM entitlement AS e {seats} "
    "WHERE e.id IN (SELECT e.id FROM {direct}) GROUP BY {month}",
    "INSERT INTO channel_customer (group_key, customer_id, entitlements, last_purchase) "
    "SELECT CAST(l.partner_id AS VARCHAR(20)), e.owner_id, count(DISTINCT e.id), max(e.purchase_date) "
    "FROM {linked} {customer} GROUP BY l.partner_id, e.owner_id",
    "INSERT INTO channel_customer (group_key, customer_id, entitlements, last_purchase) "
    "SELECT p.kind, e.owner_id, count(DISTINCT e.id), max(e.purchase_date) FROM {kinds} {customer} "
    "GROUP BY p.kind, e.owner_id",
    "INSERT INTO channel_customer (group_key, customer_id, entitlements, last_purchase) "
    "SELECT 'direct', e.owner_id, count(*), max(e.purchase_date) FROM entitlement AS e {customer} "
    "WHERE e.id IN (SELECT e.id FROM {direct}) GROUP BY e.owner_id",
    "INSERT INTO channel_ending (group_key, end_date, lines) "
    "SELECT CAST(l.partner_id AS VARCHAR(20)), li.end_date, count(DISTINCT li.id) FROM {linked} {ending} "
    "GROUP BY l.partner_id, li.end_date",
    "INSERT INTO channel_ending (group_key, end_date, lines) "
    "SELECT p.kind, li.end_date, count(DISTINCT li.id) FROM {kinds} {ending} GROUP BY p.kind, li.end_date",
]


# --- the flush hooks --------------------------------------------------------------------------------

_KEY = "portal_channel_before"
_ENTITLEMENT_FIELDS = ("owner_id", "owner", "purchase_date", "status")
_LINK_FIELDS = ("entitlement_id", "entitlement", "partner_id", "partner")
_LINE_FIELDS = ("entitlement_id", "entitlement", "license_model", "quantity", "end_date")


def _changed(obj, fields) -> bool:
    attrs = sa_inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in fields)


def _entitlement_of(obj, ids: set[int], new: dict[int, Entitlement]) -> None:
    """The entitlement a chain link or line belongs to (before and after the change)."""
    ids.update(i for i in sa_inspect(obj).attrs.entitlement_id.history.sum() if i is not None)
    entitlement = obj.__dict__.get("entitlement")  # set through the relationship: read it without loading
    if entitlement is not None:
        if entitlement.id is None:
            new[id(entitlement)] = entitlement
        else:
            ids.add(entitlement.id)


def _activation_changes(obj, deleted: bool) -> list[tuple[int | None, object, int]]:
    """(line id, line, seats added) of an activation's change: what it held before this flush
    (nothing when new) taken from its line then, what it holds after added to its line now."""
    state = sa_inspect(obj)
    changes = []
    if not state.pending:
        active, seats, line_id = (state.attrs[name].history for name in ("active", "seats", "line_id"))
        was_active = (active.deleted or active.unchanged or [False])[0]
        held = (seats.deleted or seats.unchanged or [0])[0]
        old_line = (line_id.deleted or line_id.unchanged or [None])[0]
        if was_active and held:
            changes.append((old_line, None if line_id.deleted else obj.__dict__.get("line"), -held))
    if not deleted and obj.active and obj.seats:
        changes.append((obj.line_id, obj.__dict__.get("line"), obj.seats))
    # The same line before and after: one change of the difference (or none).
    if len(changes) == 2 and changes[0][0] == changes[1][0] and changes[0][0] is not None:
        total = changes[0][2] + changes[1][2]
        return [(changes[1][0], changes[1][1], total)] if total else []
    return changes


def _touched(session: Session):
    ids: set[int] = set()
    new: dict[int, Entitlement] = {}
    activations: list[tuple[int | None, object, int]] = []  # (line id, line, seats added)
    kind_changed: list[int] = []
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Entitlement):
            if obj in session.new:
                new[id(obj)] = obj
            elif obj in session.deleted or _changed(obj, _ENTITLEMENT_FIELDS):
                ids.add(obj.id)
        elif isinstance(obj, SalesChainLink):
            if obj in session.dirty and not _changed(obj, _LINK_FIELDS):
                continue
            _entitlement_of(obj, ids, new)
        elif isinstance(obj, EntitlementLine):
            if obj in session.dirty and not _changed(obj, _LINE_FIELDS):
                continue
            _entitlement_of(obj, ids, new)
        elif isinstance(obj, Activation):
            if obj in session.dirty and not _changed(obj, ("active", "seats", "line_id", "line")):
                continue
            activations.extend(_activation_changes(obj, obj in session.deleted))
        elif isinstance(obj, Organization) and obj in session.dirty and _changed(obj, ("kind",)):
            kind_changed.append(obj.id)
    return ids, new, activations, kind_changed


@event.listens_for(Session, "before_flush")
def _channel_before_flush(session: Session, flush_context, instances) -> None:
    ids, new, activations, kind_changed = _touched(session)
    if not (ids or new or activations or kind_changed):
        session.info.pop(_KEY, None)
        return
    connection = session.connection()
    if kind_changed:  # what it sold and what it owns counts under another tier (or customers) now
        link, entitlement = SalesChainLink.__table__, Entitlement.__table__
        ids.update(connection.scalars(select(link.c.entitlement_id).where(link.c.partner_id.in_(kind_changed))))
        ids.update(connection.scalars(select(entitlement.c.id).where(entitlement.c.owner_id.in_(kind_changed))))
    before = contribution(facts(connection, ids=ids).values()) if ids else Contribution()
    session.info[_KEY] = (ids, list(new.values()), activations, before)


@event.listens_for(Session, "after_flush")
def _channel_after_flush(session: Session, flush_context) -> None:
    state = session.info.pop(_KEY, None)
    if state is None:
        return
    ids, new, activations, before = state
    connection = session.connection()
    ids = ids | {e.id for e in new if e.id is not None}
    for line_id, line, seats in activations:
        if line is not None:
            if line.__dict__.get("entitlement_id") in ids:
                continue  # its figures are read again below, this activation included
            line_id = line.id
        add_activated(connection, line_id, seats, skip=ids)
    if ids:
        after = contribution(facts(connection, ids=ids).values())
        apply_contribution(connection, before, after)


def add_activated(connection, line_id: int, seats: int, *, skip: set[int] = frozenset()) -> None:
    """Seats activated (or, negative, returned) on a line: one UPDATE of its partners' month rows."""
    table = ChannelMonth.__table__
    e, line, link = Entitlement.__table__, EntitlementLine.__table__, SalesChainLink.__table__
    month = (cast(func.date_trunc("month", e.c.purchase_date), Date) if connection.dialect.name == "postgresql"
             else func.date(e.c.purchase_date, "start of month"))
    # The line's entitlement, when the line counts seats (and its figures are not read again anyway).
    counted = [line.c.id == line_id, line.c.license_model.in_(SEAT_MODELS)]
    if skip:
        counted.append(line.c.entitlement_id.not_in(skip))
    of_line = select(line.c.entitlement_id).where(*counted).scalar_subquery()
    times = (select(func.count()).select_from(link)
             .where(link.c.entitlement_id == of_line, link.c.partner_id == table.c.partner_id).scalar_subquery())
    connection.execute(
        update(table)
        .where(table.c.partner_id.in_(select(link.c.partner_id).where(link.c.entitlement_id == of_line)),
               table.c.month == select(month).where(e.c.id == of_line).scalar_subquery())
        .values(activated=table.c.activated + seats * times))


def _chunks(ids: list[int]):
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
