"""Producer notifications, their per-organization messages, and the durable mail outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import UTCDateTime, enum_check, utcnow
from portal.models.catalog import Product, Release
from portal.models.orgs import Organization, User

NOTIFICATION_KINDS = ("service_pack", "security_patch", "critical", "end_of_life", "general")
MANDATORY_KINDS = ("security_patch", "critical")
OPTIONAL_KINDS = tuple(kind for kind in NOTIFICATION_KINDS if kind not in MANDATORY_KINDS)
# draft: composed, not sent; checking: the worker verifies every message before any is queued;
# queuing: the worker writes messages and mail in batches; sent: done; stopped: a check failed.
NOTIFICATION_STATES = ("draft", "checking", "queuing", "sent", "stopped")
OUTBOX_STATES = ("queued", "sent", "failed")


class Notification(db.Model):
    """A notice composed by producer staff, fanned out by the worker as a job in batches."""

    __tablename__ = "notification"
    __table_args__ = (
        CheckConstraint(enum_check("kind", NOTIFICATION_KINDS), name="kind"),
        CheckConstraint(enum_check("state", NOTIFICATION_STATES), name="state"),
        CheckConstraint("remind_after_days IS NULL OR remind_after_days > 0", name="remind_after_days"),
        Index("ix_notification_state", "state"),
    )

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
    state: Mapped[str] = mapped_column(String(20), default="draft", server_default="draft")
    # Unacknowledged security patches and critical notices are recalled after this many days.
    remind_after_days: Mapped[int | None] = mapped_column(Integer)
    remind_partners: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Progress of the job: customer organizations are taken in id order, a batch at a time.
    cursor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    organizations_total: Mapped[int | None] = mapped_column(Integer)
    organizations_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    emails_queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(Text)

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
    # Security patches and critical notices: an admin of the organization confirms having read it.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    notification: Mapped[Notification] = relationship(back_populates="messages")
    org: Mapped[Organization] = relationship()
    acknowledged_by: Mapped[User | None] = relationship()

    @property
    def needs_acknowledgement(self) -> bool:
        return self.notification.kind in MANDATORY_KINDS and self.acknowledged_at is None


class NotificationPreference(db.Model):
    """One organization's choice for one kind of notice.

    A customer may stop the email of the optional kinds (``email``; the inbox always gets the
    message, and security patches and critical notices are always mailed). A partner gets no
    notices unless it asks for a copy of those concerning entitlements it is attached to
    (``partner_copy``).
    """

    __tablename__ = "notification_preference"
    __table_args__ = (CheckConstraint(enum_check("kind", NOTIFICATION_KINDS), name="kind"),)

    org_id: Mapped[int] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    partner_copy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


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
    # Every mail of a notification (its messages', the partner copies, the reminders).
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"), index=True)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    notification_message: Mapped[NotificationMessage | None] = relationship()
