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
    on_behalf_of: Organization | None = None,
    acting_for_owner: bool = True,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event: who (user of org, on behalf of org) did what to which subject.

    ``on_behalf_of`` defaults to ``subject_org`` when the actor's organization is neither
    that organization nor one of its ancestors ("X of Partner P on behalf of Customer C");
    ``acting_for_owner=False`` says the act was the actor's own (entering an order, say).
    """
    if getattr(subject, "id", None) is None:
        db.session.flush()
    acting_for_someone_else = (
        acting_for_owner
        and subject_org is not None
        and subject_org.id is not None
        and actor.org.id not in subject_org.ancestor_ids
    )
    if on_behalf_of is None and acting_for_someone_else:
        on_behalf_of = subject_org
    event = AuditEvent(
        user_id=actor.user.id if actor.user else None,
        org_id=actor.org.id,
        on_behalf_of_org_id=on_behalf_of.id if on_behalf_of else None,
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
    request_id: str | None = None,
    client_addr: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """An event of a user outside any organization: signing in or out, signing up."""
    event = AuditEvent(
        user_id=user.id if user is not None else None,
        action=action,
        subject_type="user_account",
        subject_id=str(user.id) if user is not None else "-",
        details=details or {},
        request_id=request_id,
        client_addr=client_addr,
    )
    db.session.add(event)
    return event
