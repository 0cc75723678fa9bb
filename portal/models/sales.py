"""Read model: what each partner sold, for its reports (``/partner/reports``).

``partner_sales`` holds one row per (partner, entitlement) that counts in that partner's
figures: the partner is a link of the entitlement's sales chain, it has a live attachment with
view rights to it (what ``policy.entitlement_scope`` lets a partner see), and the entitlement is
not the partner's own stock (not sold yet). The row carries what the report aggregates: the
purchase month, the tier below that sold it (the chain's next link, or none), the owner and
whether it is a customer (a partner working for one customer sees that owner's rows only), the
seats sold (lines of a seat license model) and the seats activated (active activations).
``partner_sales_end`` holds, for the active entitlements among those rows, the end date of each
subscription line: "subscriptions ending within 90 days" is an index range of it.

For a reseller attached to 12,602 of 200,000 entitlements the report read its attachments, the
chain links, the entitlements, every line and a correlated sum of activations per line, four
times (350-470 ms); it now reads one index range of these rows per figure.

Derived data, kept equal to the tables by the flush hooks below, in the same transaction as the
change, whichever service makes it: an entitlement's rows are derived again (``refresh_sales``)
when its owner, purchase date or status, its lines, its chain or a partner's attachment to it
change; an activation made or returned adds to or takes from ``activated`` in one UPDATE (the
activation race stays an UPDATE of one or two rows); an organization that changes kind changes
``owner_customer``. Statements that bypass the ORM call ``refresh_sales`` (an import, for its
new entitlements) or ``rebuild_sales`` (the seed) themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    and_,
    case,
    cast,
    delete,
    event,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from portal.extensions import db
from portal.models.activations import Activation
from portal.models.entitlements import Attachment, Entitlement, EntitlementLine, SalesChainLink
from portal.models.orgs import Organization

SEAT_MODELS = ("perpetual", "subscription")
CHUNK = 2000  # entitlement ids per statement when many are derived again (an import)


class PartnerSale(db.Model):
    """One entitlement in one partner's sales figures (see the module's docstring)."""

    __tablename__ = "partner_sales"
    __table_args__ = (
        # The report's figures per month (and per tier below), from this index alone.
        Index("ix_partner_sales_month", "partner_id", "month", "below_id", "owner_id", "owner_customer", "seats",
              "activated"),
    )

    partner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"), primary_key=True,
                                                index=True)
    month: Mapped[date] = mapped_column(Date)  # the first day of the purchase month
    # The chain's next link after the partner (who it sold to, a distributor's reseller), or none.
    # Copies of organization ids, without foreign keys: deleting an organization need not search them.
    below_id: Mapped[int | None] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(Integer)
    owner_customer: Mapped[bool] = mapped_column(Boolean)
    seats: Mapped[int] = mapped_column(Integer)
    activated: Mapped[int] = mapped_column(Integer)


class PartnerSaleEnd(db.Model):
    """The end date of a subscription line of an active entitlement in a partner's sales."""

    __tablename__ = "partner_sales_end"

    partner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    end_date: Mapped[date] = mapped_column(Date, primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"), primary_key=True,
                                                index=True)
    owner_id: Mapped[int] = mapped_column(Integer)


# --- the derived truth ----------------------------------------------------------------------


def month_start(column, dialect: str):
    """The first day of the month of a date column, as a date, in SQL."""
    if dialect == "postgresql":
        return cast(func.date_trunc("month", column), Date)
    return func.date(column, "start of month")


def sales_query(dialect: str, entitlement_ids: list[int] | None = None):
    """The rows ``partner_sales`` must hold (of these entitlements, or all): straight from the
    chain links, attachments, entitlements, owners, lines and activations."""
    link, below = SalesChainLink.__table__, aliased(SalesChainLink.__table__)
    entitlement, owner = Entitlement.__table__, Organization.__table__
    line, activation, attachment = EntitlementLine.__table__, Activation.__table__, Attachment.__table__
    seats = select(line.c.entitlement_id, func.sum(
        case((line.c.license_model.in_(SEAT_MODELS), line.c.quantity), else_=0)).label("n")
    ).group_by(line.c.entitlement_id)
    used = (select(line.c.entitlement_id, func.sum(activation.c.seats).label("n"))
            .select_from(activation.join(line, line.c.id == activation.c.line_id))
            .where(activation.c.active.is_(True)).group_by(line.c.entitlement_id))
    query = select(link.c.partner_id, link.c.entitlement_id)
    if entitlement_ids is not None:
        seats = seats.where(line.c.entitlement_id.in_(entitlement_ids))
        used = used.where(line.c.entitlement_id.in_(entitlement_ids))
        query = query.where(link.c.entitlement_id.in_(entitlement_ids))
    seats, used = seats.subquery("seats"), used.subquery("used")
    return (
        query.add_columns(
            month_start(entitlement.c.purchase_date, dialect).label("month"),
            below.c.partner_id.label("below_id"),
            entitlement.c.owner_id,
            (owner.c.kind == "customer").label("owner_customer"),
            func.coalesce(seats.c.n, 0).label("seats"),
            func.coalesce(used.c.n, 0).label("activated"),
        )
        .select_from(
            link.join(entitlement, entitlement.c.id == link.c.entitlement_id)
            .join(owner, owner.c.id == entitlement.c.owner_id)
            .outerjoin(below, and_(below.c.entitlement_id == link.c.entitlement_id,
                                   below.c.position == link.c.position + 1))
            .outerjoin(seats, seats.c.entitlement_id == link.c.entitlement_id)
            .outerjoin(used, used.c.entitlement_id == link.c.entitlement_id)
        )
        .where(
            entitlement.c.owner_id != link.c.partner_id,  # its own stock is not sold yet
            exists().where(attachment.c.entitlement_id == link.c.entitlement_id,
                           attachment.c.partner_id == link.c.partner_id,
                           attachment.c.active.is_(True), attachment.c.can_view.is_(True)),
        )
    )


def sales_end_query(entitlement_ids: list[int] | None = None):
    """The rows ``partner_sales_end`` must hold, from ``partner_sales`` (written first)."""
    sale, entitlement, line = PartnerSale.__table__, Entitlement.__table__, EntitlementLine.__table__
    query = (
        select(sale.c.partner_id, line.c.end_date, sale.c.entitlement_id, sale.c.owner_id).distinct()
        .select_from(sale.join(entitlement, entitlement.c.id == sale.c.entitlement_id)
                     .join(line, line.c.entitlement_id == sale.c.entitlement_id))
        .where(entitlement.c.status == "active", line.c.license_model == "subscription",
               line.c.end_date.is_not(None))
    )
    return query if entitlement_ids is None else query.where(sale.c.entitlement_id.in_(entitlement_ids))


_SALE_COLUMNS = ("partner_id", "entitlement_id", "month", "below_id", "owner_id", "owner_customer", "seats",
                 "activated")
_END_COLUMNS = ("partner_id", "end_date", "entitlement_id", "owner_id")


def refresh_sales(connection, entitlement_ids: Iterable[int]) -> None:
    """Derive the rows of these entitlements again (the ids of deleted ones are welcome too).

    On PostgreSQL their lines are locked first (``FOR NO KEY UPDATE``), as an activation locks
    its line: a change running at the same time on the same entitlement (an activation, another
    derivation) waits for this transaction or this one for it, so each derivation reads what the
    other committed and none is lost."""
    ids = sorted(set(entitlement_ids))
    sale, end = PartnerSale.__table__, PartnerSaleEnd.__table__
    dialect = connection.dialect.name
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        if dialect == "postgresql":
            line = EntitlementLine.__table__
            connection.execute(select(line.c.id).where(line.c.entitlement_id.in_(chunk)).order_by(line.c.id)
                               .with_for_update(key_share=True))
        connection.execute(delete(end).where(end.c.entitlement_id.in_(chunk)))
        connection.execute(delete(sale).where(sale.c.entitlement_id.in_(chunk)))
        connection.execute(insert(sale).from_select(_SALE_COLUMNS, sales_query(dialect, chunk)))
        connection.execute(insert(end).from_select(_END_COLUMNS, sales_end_query(chunk)))


def rebuild_sales(connection) -> int:
    """Derive the whole read model again (after rows written without the ORM); returns its rows."""
    sale, end = PartnerSale.__table__, PartnerSaleEnd.__table__
    connection.execute(delete(end))
    connection.execute(delete(sale))
    # In the order of the primary keys: SQLite writes them a third faster than in the join's order.
    sales = sales_query(connection.dialect.name)
    ends = sales_end_query()
    connection.execute(insert(sale).from_select(_SALE_COLUMNS, sales.order_by(
        sales.selected_columns.partner_id, sales.selected_columns.entitlement_id)))
    connection.execute(insert(end).from_select(_END_COLUMNS, ends.order_by(
        ends.selected_columns.partner_id, ends.selected_columns.end_date, ends.selected_columns.entitlement_id)))
    return connection.scalar(select(func.count()).select_from(sale))


# --- kept by the ORM's flushes --------------------------------------------------------------

_KEY = "portal_sales_before"
_FIELDS = {
    Entitlement: ("owner_id", "owner", "purchase_date", "status"),
    EntitlementLine: ("entitlement_id", "entitlement", "license_model", "quantity", "end_date"),
    SalesChainLink: ("entitlement_id", "entitlement", "position", "partner_id", "partner"),
    Attachment: ("entitlement_id", "entitlement", "partner_id", "partner", "active", "can_view"),
}


def _changed(obj, fields) -> bool:
    attrs = sa_inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in fields)


def _key(obj) -> int:
    """A persistent object's id, without loading it."""
    return sa_inspect(obj).identity[0]


def _entitlement_ids(obj) -> tuple[set[int], object | None]:
    """(ids of the entitlements a line, link or attachment belonged to or belongs to, an
    entitlement set through the relationship whose id comes with the flush)."""
    history = sa_inspect(obj).attrs.entitlement_id.history
    ids = {i for i in (*history.deleted, *history.unchanged, *history.added) if i is not None}
    if not ids and obj.__dict__.get("entitlement") is None and sa_inspect(obj).persistent:
        ids.add(obj.entitlement_id)  # neither changed nor loaded: as it is in the database
    entitlement = obj.__dict__.get("entitlement")
    if entitlement is not None and entitlement.id is not None:
        ids.add(entitlement.id)
        entitlement = None
    return ids, entitlement


_ACTIVATION = ("line_id", "active", "seats")


def _activation_before(obj) -> tuple[int, int] | None:
    """(line id, seats it held active) before the flush, or None when the session does not know
    (an attribute set after it had been expired: the database still holds the old value)."""
    values = []
    for name in _ACTIVATION:
        history = sa_inspect(obj).attrs[name].history
        if history.added and not history.deleted:
            return None
        values.append(history.deleted[0] if history.deleted else getattr(obj, name))
    line_id, active, seats = values
    return line_id, seats if active else 0


def _activation_after(obj) -> tuple[object, int]:
    """(line id, or the new line whose id comes with the flush; seats it holds active) after it."""
    line = obj.line_id
    if line is None:
        line = obj.__dict__.get("line")
        line = line.id if line is not None and line.id is not None else line
    active = True if obj.active is None else obj.active  # the column's default
    return line, obj.seats if active else 0


def _touched(session: Session) -> tuple[set[int], list, Counter, list]:
    """What this flush changes in the read model: ids of existing entitlements to derive again,
    new entitlements (their ids come with the flush), seats activated per line (a line id or a
    new line), organizations that changed kind."""
    ids: set[int] = set()
    new: list = []
    seats: Counter = Counter()
    kinds: list = []
    unknown: list[int] = []
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Activation):
            if obj in session.dirty and not _changed(obj, _ACTIVATION):
                continue
            if obj not in session.new:
                before = _activation_before(obj)
                if before is None:
                    unknown.append(_key(obj))
                else:
                    seats[before[0]] -= before[1]
            if obj not in session.deleted:
                line, count = _activation_after(obj)
                seats[line] += count
        elif isinstance(obj, Organization):
            if obj in session.dirty and _changed(obj, ("kind",)):
                kinds.append(obj)
        elif (fields := _FIELDS.get(type(obj))) is not None:
            if obj in session.dirty and not _changed(obj, fields):
                continue
            if isinstance(obj, Entitlement):
                if obj in session.new:
                    new.append(obj)
                else:
                    ids.add(_key(obj))
                continue
            found, entitlement = _entitlement_ids(obj)
            ids.update(found)
            if entitlement is not None:
                new.append(entitlement)
    if unknown:
        activation = Activation.__table__
        for line_id, count in session.connection().execute(
                select(activation.c.line_id, activation.c.seats)
                .where(activation.c.id.in_(unknown), activation.c.active.is_(True))):
            seats[line_id] -= count
    return ids, new, seats, kinds


@event.listens_for(Session, "before_flush")
def _sales_before_flush(session: Session, flush_context, instances) -> None:
    ids, new, seats, kinds = _touched(session)
    seats = Counter({line: n for line, n in seats.items() if line is not None and n})
    if ids or new or seats or kinds:
        session.info[_KEY] = (ids, new, seats, kinds)
    else:
        session.info.pop(_KEY, None)


@event.listens_for(Session, "after_flush")
def _sales_after_flush(session: Session, flush_context) -> None:
    state = session.info.pop(_KEY, None)
    if state is None:
        return
    ids, new, seats, kinds = state
    connection = session.connection()
    sale, line = PartnerSale.__table__, EntitlementLine.__table__
    for key, change in sorted(((getattr(k, "id", k), n) for k, n in seats.items()), key=lambda item: item[0]):
        # Before any derivation below, which reads the activations as they are now anyway.
        of_line = select(line.c.entitlement_id).where(line.c.id == key).scalar_subquery()
        connection.execute(update(sale).where(sale.c.entitlement_id == of_line)
                           .values(activated=sale.c.activated + change))
    for org in kinds:
        connection.execute(update(sale).where(sale.c.owner_id == org.id)
                           .values(owner_customer=literal(org.kind == "customer")))
    ids = ids | {e.id for e in new if e.id is not None}
    if ids:
        refresh_sales(connection, ids)
