"""Requests that someone else decides: joining, partner access, transfers, applications."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, enum_check, utcnow
from portal.models.entitlements import Entitlement
from portal.models.orgs import Organization, User

REQUEST_KINDS = ("join_org", "partner_access", "transfer", "partner_application")
REQUEST_STATES = ("pending", "approved", "rejected", "withdrawn")


def _one_pending(kind: str, *columns: str) -> Index:
    """At most one pending request of ``kind`` per value of ``columns`` (checked by the
    services first; this index settles two requests that arrive at the same moment)."""
    where = text(f"state = 'pending' AND kind = '{kind}'")
    return Index(f"uq_portal_request_pending_{kind}", *columns, unique=True,
                 sqlite_where=where, postgresql_where=where)


class PortalRequest(db.Model):
    """``target_org`` is the organization the request is about (the org to join, the
    customer whose entitlements a partner wants, the transfer's recipient); ``details``
    holds kind-specific data such as entitlement ids or an applicant's company data."""

    __tablename__ = "portal_request"
    __table_args__ = (
        CheckConstraint(enum_check("kind", REQUEST_KINDS), name="kind"),
        CheckConstraint(enum_check("state", REQUEST_STATES), name="state"),
        CheckConstraint("state = 'pending' OR decided_at IS NOT NULL", name="decided_has_time"),
        _one_pending("join_org", "requester_user_id", "target_org_id"),
        _one_pending("partner_access", "requester_org_id", "target_org_id"),
        _one_pending("transfer", "entitlement_id"),
        _one_pending("partner_application", "requester_user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    requester_user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    requester_org_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"), index=True)
    target_org_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"), index=True)
    entitlement_id: Mapped[int | None] = mapped_column(ForeignKey("entitlement.id"), index=True)
    message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    requester: Mapped[User] = relationship(foreign_keys=[requester_user_id])
    requester_org: Mapped[Organization | None] = relationship(foreign_keys=[requester_org_id])
    target_org: Mapped[Organization | None] = relationship(foreign_keys=[target_org_id])
    entitlement: Mapped[Entitlement | None] = relationship()
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
