"""The portal inbox: which notification messages each user has read."""

from __future__ import annotations

from sqlalchemy import and_, exists, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from portal import policy
from portal.extensions import db
from portal.models import NotificationMessage, NotificationRead, utcnow
from portal.policy import Actor
from portal.services.audit import record
from portal.services.errors import NotAllowed


def unread_messages(actor: Actor):
    """``select(NotificationMessage)`` of the actor's inbox that its user has not read."""
    if actor.user is None:
        return policy.visible_messages(actor).where(literal(False))
    read = exists().where(and_(NotificationRead.message_id == NotificationMessage.id,
                               NotificationRead.user_id == actor.user.id))
    return policy.visible_messages(actor).where(~read)


def unread_count(actor: Actor) -> int:
    return db.session.scalar(select(func.count()).select_from(unread_messages(actor).subquery())) or 0


def _insert_read():
    """INSERT ... ON CONFLICT DO NOTHING: a second click, or a second tab, marks nothing twice."""
    dialect = db.session.connection().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(NotificationRead)


def mark_read(actor: Actor, message: NotificationMessage) -> bool:
    """Mark one message of the actor's inbox read for its user; False if it was already."""
    if actor.user is None or db.session.scalar(
            policy.visible_messages(actor).where(NotificationMessage.id == message.id)
            .with_only_columns(NotificationMessage.id)) is None:
        raise NotAllowed("This message is not in your inbox.")
    # RETURNING names the rows inserted (rowcount is -1 for some drivers, with ON CONFLICT).
    inserted = db.session.execute(
        _insert_read().values(user_id=actor.user.id, message_id=message.id, read_at=utcnow())
        .on_conflict_do_nothing().returning(NotificationRead.message_id)
    ).all()
    if not inserted:
        return False
    record(actor, "notification.read", message, subject_org=message.org,
           details={"title": message.notification.title, "kind": message.notification.kind})
    return True


def mark_all_read(actor: Actor) -> int:
    """Mark every unread message of the actor's inbox read (one statement); how many were."""
    if actor.user is None:
        raise NotAllowed("Only a person reads an inbox.")
    unread = unread_messages(actor).with_only_columns(
        literal(actor.user.id), NotificationMessage.id, literal(utcnow(), NotificationRead.read_at.type))
    count = len(db.session.execute(
        _insert_read().from_select(["user_id", "message_id", "read_at"], unread).on_conflict_do_nothing()
        .returning(NotificationRead.message_id)
    ).all())
    if count:
        record(actor, "notification.read_all", actor.org, subject_org=actor.org, details={"count": count})
    return count
