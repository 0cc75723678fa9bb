"""Entitlements: what a customer bought in one order, its lines, chain and attachments."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, enum_check, utcnow
from portal.models.catalog import Product
from portal.models.orgs import Organization, User

FULFILMENTS = ("drop_ship", "stocking")
ENTITLEMENT_STATUSES = ("active", "suspended", "returned")
LICENSE_MODELS = ("perpetual", "subscription", "usage")
RELATIONS = ("sold", "distributed", "services")


class Entitlement(db.Model):
    __tablename__ = "entitlement"
    __table_args__ = (
        CheckConstraint(enum_check("fulfilment", FULFILMENTS), name="fulfilment"),
        CheckConstraint(enum_check("status", ENTITLEMENT_STATUSES), name="status"),
        # The lists' default order (newest purchase first): a page walks it and tests each row
        # against the actor's scope, owner included, without reading the table.
        Index("ix_entitlement_purchased", "purchase_date", "id", "owner_id"),
        # An owner's entitlements, by purchase date: what a customer owns, and how old a
        # partner's stock is (the producer's "stock older than 90 days" from the index alone).
        Index("ix_entitlement_owner_id", "owner_id", "purchase_date", "id"),
        # The few entitlements that are not active (suspended, returned): "active entitlements
        # with a line ending soon" (the producer's overview) is the lines' index range without
        # these, not a probe of every entitlement of the range.
        Index("ix_entitlement_not_active", "id", sqlite_where=text("status <> 'active'"),
              postgresql_where=text("status <> 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    fulfilment: Mapped[str] = mapped_column(String(20), default="drop_ship")
    order_ref: Mapped[str | None] = mapped_column(String(100))
    purchase_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    owner: Mapped[Organization] = relationship()
    lines: Mapped[list[EntitlementLine]] = relationship(
        back_populates="entitlement", order_by="EntitlementLine.id"
    )
    chain: Mapped[list[SalesChainLink]] = relationship(
        back_populates="entitlement", order_by="SalesChainLink.position"
    )
    attachments: Mapped[list[Attachment]] = relationship(back_populates="entitlement")

    @property
    def seller(self) -> Organization | None:
        return self.chain[-1].partner if self.chain else None


class SalesChainLink(db.Model):
    """One tier of an entitlement's sales chain; position 0 is the top tier."""

    __tablename__ = "sales_chain_link"
    __table_args__ = (CheckConstraint("position >= 0", name="position"),)

    entitlement_id: Mapped[int] = mapped_column(
        ForeignKey("entitlement.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)

    entitlement: Mapped[Entitlement] = relationship(back_populates="chain")
    partner: Mapped[Organization] = relationship()


class EntitlementLine(db.Model):
    __tablename__ = "entitlement_line"
    __table_args__ = (
        CheckConstraint(enum_check("license_model", LICENSE_MODELS), name="license_model"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("end_date IS NULL OR start_date IS NULL OR end_date >= start_date", name="dates"),
        CheckConstraint(
            "license_model <> 'subscription' OR (start_date IS NOT NULL AND end_date IS NOT NULL)",
            name="subscription_dates",
        ),
        # An entitlement's lines, and "has it a line of this product?": with both columns SQLite
        # takes this index over the product's even without statistics (through the product's it
        # read every line of a product for each entitlement).
        Index("ix_entitlement_line_entitlement_id", "entitlement_id", "product_id"),
        # A product's lines of one license model in the order of a date, each with its
        # entitlement: what a partner may download (policy.download_rights) walks them from the
        # latest date and stops at the first line of an entitlement it may download, reading the
        # index alone. By end date (subscription and pay-per-use lines: which is current, when
        # the last ended) and by maintenance end (perpetual lines). The first also answers every
        # question by product alone (it replaces the product_id index of 0001).
        Index("ix_entitlement_line_product_term", "product_id", "license_model", "end_date", "start_date",
              "entitlement_id"),
        Index("ix_entitlement_line_product_maintenance", "product_id", "license_model", "maintenance_end",
              "entitlement_id"),
        # Lines of one license model by end date, each with its entitlement: the subscriptions
        # ending soon (``queries.subscription_ends_within``) are one range of it, read without the
        # table, and a partner's count of them tests each entry's entitlement against what it
        # sees before reading anything else (it replaces the end_date index of 0001).
        Index("ix_entitlement_line_model_end", "license_model", "end_date", "entitlement_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    license_model: Mapped[str] = mapped_column(String(20))
    # Seats for perpetual and subscription lines; units per period for usage lines.
    quantity: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    maintenance_end: Mapped[date | None] = mapped_column(Date)
    usage_period: Mapped[str | None] = mapped_column(String(10))  # "month" or "year" for usage lines
    activation_code: Mapped[str] = mapped_column(String(32), unique=True)

    entitlement: Mapped[Entitlement] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


class Attachment(db.Model):
    """A partner's connection to one entitlement: the only source of a partner's rights."""

    __tablename__ = "attachment"
    __table_args__ = (
        CheckConstraint(enum_check("relation", RELATIONS), name="relation"),
        CheckConstraint("can_view OR NOT (can_download OR can_activate)", name="view_implied"),
        CheckConstraint("active OR revoked_at IS NOT NULL", name="revoked_has_time"),
        # At most one live attachment per entitlement and partner.
        Index(
            "uq_attachment_active",
            "entitlement_id",
            "partner_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        # What a partner sees (policy.partner_entitlement_ids), read from the index alone; it also
        # serves every other question by partner (ix_attachment_partner_scope, a prefix of it, went
        # in migration 0005_perf: no plan used it).
        Index("ix_attachment_partner_visible", "partner_id", "active", "can_view", "entitlement_id"),
        # A partner's attachments newest first (its page for producer staff) and by relation (its
        # figures), each from an index range instead of every attachment of the partner.
        Index("ix_attachment_partner_granted", "partner_id", "granted_at", "id"),
        Index("ix_attachment_partner_relation", "partner_id", "active", "relation"),
        # The entitlements a partner may download from (policy.download_rights): exactly those
        # entries, from the index alone, and "may it download this one?" as one probe.
        Index(
            "ix_attachment_partner_download",
            "partner_id",
            "entitlement_id",
            sqlite_where=text("active = 1 AND can_view = 1 AND can_download = 1"),
            postgresql_where=text("active AND can_view AND can_download"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    relation: Mapped[str] = mapped_column(String(20))
    can_view: Mapped[bool] = mapped_column(Boolean, default=True)
    can_download: Mapped[bool] = mapped_column(Boolean, default=False)
    can_activate: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    entitlement: Mapped[Entitlement] = relationship(back_populates="attachments")
    partner: Mapped[Organization] = relationship()
    granted_by: Mapped[User | None] = relationship(foreign_keys=[granted_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])

    @property
    def permissions(self) -> list[str]:
        flags = (("view", self.can_view), ("download", self.can_download), ("activate", self.can_activate))
        return [name for name, on in flags if on]


# --- read model: the customers each partner serves --------------------------------------------


class PartnerCustomer(db.Model):
    """Read model: partner ``partner_id`` sees ``entitlements`` (> 0) entitlements owned by customer
    ``customer_id`` through active attachments with view rights. The customer's name is copied
    here (and lower-cased, for searching), so one partner's customers are an index range in
    name order that pages, searches and counts read without visiting the organizations.

    ``policy.customers_served_by`` reads it instead of scanning every attachment of the partner.
    It is derived data, kept equal to the attachments by the flush hooks below, so in the same
    transaction as the change: any ORM change to an attachment (new, revoked, view rights,
    deleted), to an entitlement's owner (stock assigned, transfer) or to a customer's name
    updates it, whichever service makes it. Statements that bypass the ORM (a bulk ``update()``,
    the seed's COPY) must call ``rebuild_partner_customers`` afterwards.
    """

    __tablename__ = "partner_customer"
    __table_args__ = (
        CheckConstraint("entitlements > 0", name="entitlements_positive"),
        # One partner's customers by name: pages, searches and counts read this index only.
        Index("ix_partner_customer_by_name", "partner_id", "customer_name", "customer_id", "search_name"),
    )

    partner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True, index=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    # The names on the customer's hierarchy path, lower-cased ("contoso group > contoso germany"),
    # matched with LIKE: a search for a parent company finds its subsidiaries (``search_texts``).
    search_name: Mapped[str] = mapped_column(String(1000))
    entitlements: Mapped[int] = mapped_column(Integer)


# One partner's customers with the most entitlements first (its home page's panel): the first few
# entries of this index instead of sorting all of a partner's customers.
Index("ix_partner_customer_by_size", PartnerCustomer.partner_id, PartnerCustomer.entitlements.desc(),
      PartnerCustomer.customer_name, PartnerCustomer.customer_id)


def search_texts(connection, customer_ids) -> dict[int, str]:
    """{customer id: the lower-cased names of its hierarchy path, top first}: two queries."""
    org = Organization.__table__
    ids = sorted(set(customer_ids))
    paths: dict[int, str] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        paths.update(connection.execute(select(org.c.id, org.c.path).where(org.c.id.in_(chunk))).all())
    chains = {i: [int(part) for part in path.strip("/").split("/") if part] for i, path in paths.items()}
    wanted = sorted({i for chain in chains.values() for i in chain})
    names: dict[int, str] = {}
    for start in range(0, len(wanted), 5000):
        names.update(connection.execute(
            select(org.c.id, org.c.name).where(org.c.id.in_(wanted[start:start + 5000]))).all())
    return {i: " > ".join(names.get(a, "") for a in chain).lower()[:1000] for i, chain in chains.items()}


def refresh_search_texts(connection, root_path: str) -> None:
    """Write the search texts again for the customers served under ``root_path`` (after a rename or
    a move of that organization: its descendants' paths read differently)."""
    table, org = PartnerCustomer.__table__, Organization.__table__
    ids = connection.execute(
        select(table.c.customer_id).distinct().join(org, org.c.id == table.c.customer_id)
        .where(org.c.path.startswith(root_path, autoescape=True))).scalars().all()
    for customer_id, search in sorted(search_texts(connection, ids).items()):
        connection.execute(update(table).where(table.c.customer_id == customer_id).values(search_name=search))


def _served_query():
    """(partner id, customer id, customer name, count) from the attachments: the derived truth."""
    attachment, entitlement, owner = Attachment.__table__, Entitlement.__table__, Organization.__table__
    return (
        select(attachment.c.partner_id, entitlement.c.owner_id, owner.c.name, func.count())
        .select_from(attachment.join(entitlement, entitlement.c.id == attachment.c.entitlement_id)
                     .join(owner, owner.c.id == entitlement.c.owner_id))
        .where(attachment.c.active.is_(True), attachment.c.can_view.is_(True), owner.c.kind == "customer")
        .group_by(attachment.c.partner_id, entitlement.c.owner_id, owner.c.name)
    )


def served_pairs(connection, entitlement_ids=None) -> tuple[Counter, dict[int, str]]:
    """({(partner id, customer id): entitlements}, {customer id: name}) for these entitlements
    (all of them when ``entitlement_ids`` is None): what the read model must say about them."""
    counts: Counter = Counter()
    names: dict[int, str] = {}
    if entitlement_ids is None:
        chunks = [_served_query()]
    else:
        ids = sorted(entitlement_ids)
        column = Attachment.__table__.c.entitlement_id
        chunks = [_served_query().where(column.in_(ids[i:i + 5000])) for i in range(0, len(ids), 5000)]
    for query in chunks:
        for partner_id, customer_id, name, count in connection.execute(query):
            counts[(partner_id, customer_id)] += count
            names[customer_id] = name
    return counts, names


def apply_served_delta(connection, delta: dict[tuple[int, int], int], names: dict[int, str]) -> None:
    """Add ``delta`` to the read model, creating rows as needed and removing those that reach 0."""
    table = PartnerCustomer.__table__
    texts = search_texts(connection, [c for (_, c), change in delta.items() if change > 0])
    for (partner_id, customer_id), change in sorted(delta.items()):  # one order: no deadlock between two
        key = (table.c.partner_id == partner_id) & (table.c.customer_id == customer_id)
        if change > 0:
            insert = (postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)
            connection.execute(
                insert.values(partner_id=partner_id, customer_id=customer_id, customer_name=names[customer_id],
                              search_name=texts[customer_id], entitlements=change)
                .on_conflict_do_update(index_elements=[table.c.partner_id, table.c.customer_id],
                                       set_={"entitlements": table.c.entitlements + change})
            )
        elif change < 0:
            connection.execute(delete(table).where(key, table.c.entitlements <= -change))
            connection.execute(update(table).where(key).values(entitlements=table.c.entitlements + change))


def rebuild_partner_customers(connection) -> int:
    """Derive the whole read model again from the attachments; returns its number of rows."""
    table = PartnerCustomer.__table__
    connection.execute(delete(table))
    counts, names = served_pairs(connection)
    texts = search_texts(connection, names)
    rows = [{"partner_id": partner_id, "customer_id": customer_id, "customer_name": names[customer_id],
             "search_name": texts[customer_id], "entitlements": count}
            for (partner_id, customer_id), count in sorted(counts.items())]
    for start in range(0, len(rows), 10_000):
        connection.execute(insert(table), rows[start:start + 10_000])
    return len(rows)


_SERVED_KEY = "portal_served_before"
_ATTACHMENT_FIELDS = ("active", "can_view", "entitlement_id", "entitlement", "partner_id", "partner")
_OWNER_FIELDS = ("owner_id", "owner")


def _changed(obj, fields) -> bool:
    attrs = sa_inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in fields)


def _touched(session: Session) -> tuple[set[int], list, list]:
    """What this flush may change in the read model: ids of existing entitlements, new
    entitlements (their ids come with the flush; before it they served nobody), renamed
    organizations."""
    ids: set[int] = set()
    new_entitlements = []
    renamed = []
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Attachment):
            if obj in session.dirty and not _changed(obj, _ATTACHMENT_FIELDS):
                continue
            ids.update(i for i in sa_inspect(obj).attrs.entitlement_id.history.sum() if i is not None)
            # Set through the relationship only (no id column yet): read it without loading anything.
            entitlement = obj.__dict__.get("entitlement") if obj.entitlement_id is None else None
            if entitlement is not None:
                if entitlement.id is None:
                    new_entitlements.append(entitlement)
                else:
                    ids.add(entitlement.id)
        elif isinstance(obj, Entitlement):
            if obj in session.new:
                new_entitlements.append(obj)
            elif obj in session.deleted or _changed(obj, _OWNER_FIELDS):
                ids.add(obj.id)
        elif isinstance(obj, Organization) and obj in session.dirty and _changed(obj, ("name",)):
            renamed.append(obj)
    return ids, new_entitlements, renamed


@event.listens_for(Session, "before_flush")
def _served_before_flush(session: Session, flush_context, instances) -> None:
    ids, new_entitlements, renamed = _touched(session)
    if not (ids or new_entitlements or renamed):
        session.info.pop(_SERVED_KEY, None)
        return
    before = served_pairs(session.connection(), ids)[0] if ids else Counter()
    session.info[_SERVED_KEY] = (ids, new_entitlements, renamed, before)


@event.listens_for(Session, "after_flush")
def _served_after_flush(session: Session, flush_context) -> None:
    state = session.info.pop(_SERVED_KEY, None)
    if state is None:
        return
    ids, new_entitlements, renamed, before = state
    connection = session.connection()
    table = PartnerCustomer.__table__
    for org in renamed:
        connection.execute(update(table).where(table.c.customer_id == org.id).values(customer_name=org.name))
        refresh_search_texts(connection, org.path)  # its own and its descendants' paths read differently
    ids = ids | {e.id for e in new_entitlements if e.id is not None}
    if ids:
        after, names = served_pairs(connection, ids)
        delta = {key: after.get(key, 0) - before.get(key, 0) for key in after.keys() | before.keys()}
        apply_served_delta(connection, {k: v for k, v in delta.items() if v}, names)


# --- read model: row counts for the producer's overview ---------------------------------------


class RowCount(db.Model):
    """Read model: how many entitlements (``entitlement``) and organizations of each kind
    (``organization.<kind>``) there are, so the producer's overview need not count 200,000
    rows on every visit.

    Kept equal to the tables by the flush hook below, in the same transaction as the insert,
    delete or change of kind (one row per name: concurrent creators wait for each other's
    commit on it, which entering orders can afford). Statements that bypass the ORM must call
    ``rebuild_row_counts`` afterwards (the seed does).
    """

    __tablename__ = "row_count"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def _count_names(obj) -> str | None:
    if isinstance(obj, Entitlement):
        return "entitlement"
    if isinstance(obj, Organization):
        return f"organization.{obj.kind}"
    return None


def add_to_row_counts(connection, delta: dict[str, int]) -> None:
    table = RowCount.__table__
    for name, change in sorted(delta.items()):
        if change:
            insert = (postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)
            connection.execute(insert.values(name=name, value=change).on_conflict_do_update(
                index_elements=[table.c.name], set_={"value": table.c.value + change}))


def rebuild_row_counts(connection) -> None:
    """Count the rows again (after statements that bypass the ORM)."""
    table = RowCount.__table__
    organization, entitlement = Organization.__table__, Entitlement.__table__
    counts = {"entitlement": connection.scalar(select(func.count()).select_from(entitlement))}
    for kind, count in connection.execute(select(organization.c.kind, func.count()).group_by(organization.c.kind)):
        counts[f"organization.{kind}"] = count
    connection.execute(delete(table))
    connection.execute(insert(table), [{"name": name, "value": value} for name, value in counts.items()])


@event.listens_for(Session, "after_flush")
def _count_rows_after_flush(session: Session, flush_context) -> None:
    delta: Counter = Counter()
    for obj in session.new:
        if (name := _count_names(obj)) is not None:
            delta[name] += 1
    for obj in session.deleted:
        if (name := _count_names(obj)) is not None:
            delta[name] -= 1
    for obj in session.dirty:
        if isinstance(obj, Organization) and _changed(obj, ("kind",)):
            history = sa_inspect(obj).attrs.kind.history
            for old in history.deleted:
                delta[f"organization.{old}"] -= 1
            delta[f"organization.{obj.kind}"] += 1
    if any(delta.values()):
        add_to_row_counts(session.connection(), delta)
