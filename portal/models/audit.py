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
        return describe_actor(self.user.display_name if self.user else None, self.org.name if self.org else None,
                              self.on_behalf_of.name if self.on_behalf_of else None, self.org_id,
                              self.on_behalf_of_org_id)


def describe_actor(user_name: str | None, org_name: str | None, behalf_name: str | None, org_id: int | None,
                   on_behalf_of_org_id: int | None) -> str:
    """Who did an event, from the names of its user, organization and on-behalf-of organization (None: no
    such row): 'X of Partner P on behalf of Customer C', 'system'..."""
    who = user_name if user_name is not None else "system"
    text = f"{who} of {org_name}" if org_name is not None else who
    if behalf_name is not None and on_behalf_of_org_id != org_id:
        text += f" on behalf of {behalf_name}"
    return text
