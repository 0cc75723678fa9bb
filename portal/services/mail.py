"""Mail through the durable outbox: queued with the change, delivered by the worker.

``portal.services.outbox`` is the worker. This module holds what the rest of the app calls:
queueing a mail, requeueing failed ones, counting the outbox, and telling whether a unit of
work has written anything (the worker refuses to run inside one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from portal.extensions import db
from portal.models import OutboxEmail, utcnow
from portal.models.notifications import OUTBOX_STATES
from portal.policy import Actor, can
from portal.services.audit import record
from portal.services.errors import NotAllowed, ServiceError

_WROTE = "portal_transaction_wrote"


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


def requeue_failed(actor: Actor, ids: Iterable[int] | None = None) -> list[OutboxEmail]:
    """Give failed mail a fresh start: queued, due now, no attempts used; one audit event each.

    ``ids`` names the mails (each must exist and be failed, else nothing changes); None
    means every failed mail. ``last_error`` stays until the next attempt replaces it.
    """
    if not can(actor, "manage_mail"):
        raise NotAllowed("Only the producer's staff requeue mail.")
    query = select(OutboxEmail).where(OutboxEmail.status == "failed").order_by(OutboxEmail.id)
    if ids is not None:
        wanted = set(ids)
        query = query.where(OutboxEmail.id.in_(wanted))
    emails = list(db.session.scalars(query.with_for_update()))
    if ids is not None and (missing := wanted - {email.id for email in emails}):
        raise ServiceError("Only failed mail can be requeued; not failed or unknown: "
                           + ", ".join(str(n) for n in sorted(missing)) + ".", field="ids")
    now = utcnow()
    for email in emails:
        record(actor, "mail.requeue", email, details={
            "message_id": email.message_id, "attempts": email.attempts, "last_error": email.last_error})
        email.status = "queued"
        email.attempts = 0
        email.next_attempt_at = now
    db.session.flush()
    return emails


def outbox_counts() -> dict[str, int]:
    """How many mails are in each state of the outbox (every state, zeros included)."""
    counts = dict.fromkeys(OUTBOX_STATES, 0)
    rows = db.session.execute(select(OutboxEmail.status, func.count()).group_by(OutboxEmail.status))
    counts.update({status: n for status, n in rows})
    return counts


# --- has this unit of work written anything? ----------------------------------------------
# ``session.new/dirty/deleted`` forget changes once they are flushed, yet those are still
# uncommitted; the worker must not commit them for the caller. So every session notes in
# ``info`` that its transaction has written (a flush, or an ORM INSERT/UPDATE/DELETE
# statement) and forgets it when the outermost transaction ends. Registered at import, which
# ``create_app`` reaches through the services that queue mail.


def has_pending_writes(session: Session) -> bool:
    """True if ``session`` holds changes not yet committed, flushed or not."""
    return bool(session.new or session.dirty or session.deleted or session.info.get(_WROTE))


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _flush_context) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_writes(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: committed or rolled back
        session.info.pop(_WROTE, None)
