"""Activations (seats bound to a host) and usage records of pay-per-use lines."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow
from portal.models.entitlements import EntitlementLine
from portal.models.orgs import Organization, User


class Activation(db.Model):
    __tablename__ = "activation"
    __table_args__ = (
        CheckConstraint("seats > 0", name="seats_positive"),
        CheckConstraint("length(host_id) BETWEEN 1 AND 128", name="host_id_length"),
        CheckConstraint("active OR returned_at IS NOT NULL", name="returned_has_time"),
        # The same host activates a line once while active; a repeat returns this row.
        Index(
            "uq_activation_line_host_active",
            "line_id",
            "host_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("entitlement_line.id"), index=True)
    host_id: Mapped[str] = mapped_column(String(128))
    friendly_name: Mapped[str | None] = mapped_column(String(200))
    seats: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    activated_by_org_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"))
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    returned_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    # The compact JWS of the .lic file, when one was stored (older activations). Activating
    # does not write it (an UPDATE more while the line is locked): ``certificate`` signs it.
    stored_certificate: Mapped[str | None] = mapped_column("certificate", Text)

    line: Mapped[EntitlementLine] = relationship()
    activated_by: Mapped[User | None] = relationship(foreign_keys=[activated_by_id])
    activated_by_org: Mapped[Organization | None] = relationship(foreign_keys=[activated_by_org_id])

    @property
    def certificate(self) -> str:
        """The license certificate: the stored one, else signed now with the activation's own
        time as issue time. Ed25519 signatures are deterministic, so an activation gets the same
        certificate at every download (while its line's terms stay the same)."""
        if self.stored_certificate:
            return self.stored_certificate
        from portal.services.licenses import issue_certificate

        return issue_certificate(self, now=self.activated_at)


class UsageRecord(db.Model):
    """Units consumed on a usage line; overage is shown, never blocked."""

    __tablename__ = "usage_record"
    __table_args__ = (CheckConstraint("units > 0", name="units_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("entitlement_line.id"), index=True)
    units: Mapped[int] = mapped_column(Integer)
    used_on: Mapped[date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(300))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    line: Mapped[EntitlementLine] = relationship()
