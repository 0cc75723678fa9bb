"""Producer notifications, their per-organization messages, and the durable mail outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, enum_check, utcnow
from portal.models.catalog import Product, Release
from portal.models.orgs import Organization

NOTIFICATION_KINDS = ("service_pack", "security_patch", "critical", "end_of_life", "general")
MANDATORY_KINDS = ("security_patch", "critical")
OUTBOX_STATES = ("queued", "sent", "failed")


class Notification(db.Model):
    __tablename__ = "notification"
    __table_args__ = (CheckConstraint(enum_check("kind", NOTIFICATION_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # Markdown, sanitized when rendered
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("release.id"))
    version_from: Mapped[str | None] = mapped_column(String(50))
    version_to: Mapped[str | None] = mapped_column(String(50))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    product: Mapped[Product] = relationship()
    release: Mapped[Release | None] = relationship()
    messages: Mapped[list[NotificationMessage]] = relationship(back_populates="notification")


class NotificationMessage(db.Model):
    """One customer organization's copy: its affected entitlements and their partners' contacts."""

    __tablename__ = "notification_message"
    __table_args__ = (UniqueConstraint("notification_id", "org_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    # [{"code": ..., "partners": [{"name", "email", "phone", "website"}]}]
    content: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    notification: Mapped[Notification] = relationship(back_populates="messages")
    org: Mapped[Organization] = relationship()


class NotificationRead(db.Model):
    """That one user has read one message of its organization's inbox (read state is per user:
    a colleague reading a security notice does not make it read for everyone)."""

    __tablename__ = "notification_read"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("notification_message.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    read_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEmail(db.Model):
    """A mail queued in the same transaction as the change that caused it.

    The worker sends it with retries and backoff and marks it sent in its own commit; the
    ``message_id`` header lets a receiver drop a duplicate after a crash between the two.
    """

    __tablename__ = "outbox_email"
    __table_args__ = (
        CheckConstraint(enum_check("status", OUTBOX_STATES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_outbox_email_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    to_addr: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(30), default="general")
    notification_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_message.id"), index=True
    )
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    notification_message: Mapped[NotificationMessage | None] = relationship()
