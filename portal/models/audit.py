"""The append-only audit trail (database triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, utcnow
from portal.models.orgs import Organization, User


class AuditEvent(db.Model):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_subject", "subject_type", "subject_id"),
        # A customer's trail: its organizations' events, newest first, one page at a time.
        Index("ix_audit_event_subject_org_at", "subject_org_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    # Organization ids without foreign keys: the trail outlives a deleted organization.
    org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    on_behalf_of_org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(64))
    # The organization whose object this is (customer admins see events on their orgs' objects).
    subject_org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))
    client_addr: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User | None] = relationship()
    org: Mapped[Organization | None] = relationship(
        primaryjoin="foreign(AuditEvent.org_id) == Organization.id", viewonly=True)
    on_behalf_of: Mapped[Organization | None] = relationship(
        primaryjoin="foreign(AuditEvent.on_behalf_of_org_id) == Organization.id", viewonly=True)

    def describe(self) -> str:
        """'X of Partner P on behalf of Customer C'."""
        who = self.user.display_name if self.user else "system"
        text = f"{who} of {self.org.name}" if self.org else who
        if self.on_behalf_of is not None and self.on_behalf_of_org_id != self.org_id:
            text += f" on behalf of {self.on_behalf_of.name}"
        return text
