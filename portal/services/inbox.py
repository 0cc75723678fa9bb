"""The portal inbox: which notification messages each user has read."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Integer, and_, bindparam, exists, func, literal, select
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
    """How many messages of the actor's inbox its user has not read (every customer page's nav
    asks): one statement built once per scope shape, with the scope and the user as parameters."""
    if actor.user is None:
        return db.session.scalar(select(func.count()).select_from(unread_messages(actor).subquery())) or 0
    statement = _unread_count(policy.scope_shape(actor), db.engine.dialect.name)
    return db.session.execute(statement, {**policy.scope_params(actor), "user_id": actor.user.id}).scalar() or 0


@cache
def _unread_count(shape: str, dialect: str):
    message, read = NotificationMessage.__table__, NotificationRead.__table__
    was_read = (select(read.c.message_id)
                .where(read.c.message_id == message.c.id, read.c.user_id == bindparam("user_id", type_=Integer))
                .exists())
    return (select(func.count()).select_from(message)
            .where(policy.message_scope_param(shape, dialect, message), ~was_read))


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
