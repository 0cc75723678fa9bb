"""Entitlements: what a customer bought in one order, its lines, chain and attachments."""

from __future__ import annotations

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

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
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
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
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), index=True)
    license_model: Mapped[str] = mapped_column(String(20))
    # Seats for perpetual and subscription lines; units per period for usage lines.
    quantity: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, index=True)
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
        # Serves the partner scope: EXISTS (... partner_id = ? AND active AND entitlement_id = e.id).
        Index("ix_attachment_partner_scope", "partner_id", "active", "entitlement_id"),
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
