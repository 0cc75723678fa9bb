"""Mail through the durable outbox: queued with the change, delivered by the worker."""

from __future__ import annotations

import uuid

from flask import current_app

from portal.extensions import db
from portal.models import OutboxEmail, utcnow


def new_message_id() -> str:
    domain = current_app.config.get("MAIL_MESSAGE_ID_DOMAIN") or "entitlement-portal.local"
    return f"<{uuid.uuid4().hex}@{domain}>"


def queue_email(
    *,
    to: str,
    subject: str,
    body: str,
    html: str | None = None,
    category: str = "general",
    notification_message_id: int | None = None,
) -> OutboxEmail:
    """Queue one mail in the caller's transaction; nothing is sent until that commits."""
    email = OutboxEmail(
        message_id=new_message_id(),
        to_addr=to,
        subject=subject,
        body_text=body,
        body_html=html,
        category=category,
        notification_message_id=notification_message_id,
        status="queued",
        attempts=0,
        next_attempt_at=utcnow(),
        created_at=utcnow(),
    )
    db.session.add(email)
    return email
