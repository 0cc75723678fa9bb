"""Writing audit events, always in the caller's transaction."""

from __future__ import annotations

from typing import Any

from portal.extensions import db
from portal.models import AuditEvent, Organization, User
from portal.policy import Actor


def record(
    actor: Actor,
    action: str,
    subject: Any,
    *,
    subject_org: Organization | None = None,
    on_behalf_of: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event: who (user of org, on behalf of org) did what to which subject.

    ``on_behalf_of`` is the id of the customer a partner acted for; services take it from
    ``actor.on_behalf_of(owner)``, never guess it (producer staff and customer users act in
    their own name). ``subject_org`` is the organization whose object this is: its admins
    see the event.
    """
    if getattr(subject, "id", None) is None:
        db.session.flush()
    event = AuditEvent(
        user_id=actor.user.id if actor.user else None,
        org_id=actor.org.id,
        on_behalf_of_org_id=on_behalf_of,
        action=action,
        subject_type=getattr(subject, "__tablename__", type(subject).__name__.lower()),
        subject_id=str(getattr(subject, "id", subject)),
        subject_org_id=subject_org.id if subject_org else None,
        details=details or {},
        request_id=actor.request_id,
        client_addr=actor.client_addr,
    )
    db.session.add(event)
    return event


def record_user_event(
    user: User | None,
    action: str,
    *,
    subject_org: Organization | None = None,
    request_id: str | None = None,
    client_addr: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """An event of a user outside any organization: signing in or out, signing up, asking to
    join (``subject_org``: the organization asked, whose admins then see the event)."""
    event = AuditEvent(
        user_id=user.id if user is not None else None,
        subject_org_id=subject_org.id if subject_org is not None else None,
        action=action,
        subject_type="user_account",
        subject_id=str(user.id) if user is not None else "-",
        details=details or {},
        request_id=request_id,
        client_addr=client_addr,
    )
    db.session.add(event)
    return event
