"""``/customer/inbox``: the producer's notifications to the customer's organizations (service
packs, security patches, critical notices...), each with the entitlements it concerns and the
contacts of the partners attached to them. Read or unread is per user; every user of the
hierarchy marks its own messages read, one at a time or all at once. The unread count is in the
customer nav on every page (one query when the layout renders it).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request, url_for
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import contains_eager, joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer.notices import acknowledgement_context
from portal.blueprints.customer.replies import current_query, done, fragment, list_state, refuse
from portal.extensions import db
from portal.markdown import render_markdown
from portal.models import Notification, NotificationMessage, NotificationRead
from portal.services.errors import ServiceError
from portal.services.inbox import mark_all_read, mark_read, unread_count
from portal.ui import Column, Filter, Table, parse_list_args
from portal.web import is_htmx, render

KINDS = [("security_patch", "Security patch"), ("critical", "Critical"), ("service_pack", "Service pack"),
         ("end_of_life", "End of life"), ("general", "General")]
KIND_LABELS = dict(KINDS)
STATES = [("unread", "Unread"), ("read", "Read")]


@bp.context_processor
def _unread():
    """``inbox_unread()`` for the nav: asked only when a page with the nav renders."""

    def inbox_unread() -> int:
        actor = current_actor()
        return unread_count(actor) if actor is not None and actor.is_customer else 0

    return {"inbox_unread": inbox_unread, "kind_label": lambda kind: KIND_LABELS.get(kind, kind)}


def _read_by_user(actor):
    return exists().where(and_(NotificationRead.message_id == NotificationMessage.id,
                               NotificationRead.user_id == actor.user.id))


def _table(actor, args, *, after_change: bool = False) -> tuple[Table, list[Filter], set[int]]:
    filters = [Filter("state", "Read or unread", STATES, all_label="All messages"),
               Filter("kind", "Kind", KINDS, all_label="All kinds")]
    def parse(given):
        return parse_list_args(given, endpoint="customer.inbox", sorts={"received", "title"},
                               default_sort="-received", filters=filters)

    state = list_state(parse, args) if after_change else parse(args)
    query = (policy.visible_messages(actor)
             .join(Notification, Notification.id == NotificationMessage.notification_id)
             # the join the filters and the sort need also loads the notification (one join, not two)
             .options(contains_eager(NotificationMessage.notification), joinedload(NotificationMessage.org)))
    if state.q:
        query = query.where(Notification.title.icontains(state.q, autoescape=True))
    if state.filters.get("state") == "unread":
        query = query.where(~_read_by_user(actor))
    elif state.filters.get("state") == "read":
        query = query.where(_read_by_user(actor))
    if "kind" in state.filters:
        query = query.where(Notification.kind == state.filters["kind"])
    key = NotificationMessage.created_at if state.sort == "received" else Notification.title
    query = query.order_by(key.desc() if state.descending else key,
                           NotificationMessage.id.desc() if state.descending else NotificationMessage.id)
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    ids = [m.id for m in pagination.items]
    read = set(db.session.scalars(select(NotificationRead.message_id).where(
        NotificationRead.user_id == actor.user.id, NotificationRead.message_id.in_(ids)))) if ids else set()
    table = Table(
        id="inbox", pagination=pagination, state=state, noun="message", nouns="messages",
        caption="Messages from the producer to your organizations",
        columns=[Column("title", "Message", sortable=True),
                 Column("kind", "Kind"), Column("org", "For"), Column("received", "Received", sortable=True),
                 Column("actions", "Actions", label_hidden=True)],
        empty_text="Notices about service packs, security patches and other events arrive here.",
    )
    return table, filters, read


def _list(actor, args, *, message: str | None = None):
    table, filters, read = _table(actor, args, after_change=message is not None)
    context = {"inbox": table, "filters": filters, "read": read}
    if message is not None:  # after a change (htmx): the table, the nav's count, a toast
        return fragment("customer/_inbox_changed.html", message=message, unread=unread_count(actor), **context)
    return render("customer/inbox.html", fragment="customer/_inbox_table.html", **context)


@dataclass
class Contact:
    name: str
    email: str | None
    phone: str | None
    website: str | None  # only http(s) addresses become links


def _affected(message: NotificationMessage) -> list[tuple[str, list[Contact]]]:
    """The entitlements the message concerns, each with its partners' contacts (as sent)."""
    rows = []
    for item in message.content or []:
        if not isinstance(item, dict):
            continue
        partners = []
        for p in item.get("partners") or []:
            if isinstance(p, dict):
                site = str(p.get("website") or "")
                partners.append(Contact(str(p.get("name") or ""), p.get("email"), p.get("phone"),
                                        site if site.startswith(("https://", "http://")) else None))
        rows.append((str(item.get("code") or ""), partners))
    return rows


@bp.get("/inbox")
def inbox():
    """The messages of the hierarchy's organizations, newest first; unread ones marked."""
    return _list(current_actor(), request.args)


@bp.get("/inbox/<int:message_id>")
def inbox_message(message_id: int):
    """One message: its text, the entitlements it concerns and their partners' contacts."""
    actor = current_actor()
    # The notice and the receiving organization come in the same statement, whichever
    # organization of the hierarchy it is (the page costs the same for each).
    message = policy.load_message(actor, message_id, joinedload(NotificationMessage.notification),
                                  joinedload(NotificationMessage.org))
    read = db.session.scalar(select(NotificationRead.read_at).where(
        NotificationRead.user_id == actor.user.id, NotificationRead.message_id == message.id))
    return render("customer/inbox_message.html", message=message, notification=message.notification,
                  org_path=policy.hierarchy_path(message.org), read_at=read, affected=_affected(message),
                  body_html=render_markdown(message.notification.body), notice=message,
                  **acknowledgement_context(actor, message))


@bp.post("/inbox/<int:message_id>/read")
def inbox_read(message_id: int):
    """Mark one message read (for the signed-in user only)."""
    actor = current_actor()
    message = policy.load_message(actor, message_id)
    args = current_query()
    try:
        mark_read(actor, message)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    text = f"Marked “{message.notification.title}” as read."
    if is_htmx():
        return _list(actor, args, message=text)
    return done(url_for("customer.inbox_message", message_id=message.id), text)


@bp.post("/inbox/read")
def inbox_read_all():
    """Mark every message of the inbox read (for the signed-in user only)."""
    actor = current_actor()
    args = current_query()
    try:
        count = mark_all_read(actor)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    text = f"Marked {count} message{'' if count == 1 else 's'} as read." if count else "Nothing was unread."
    if is_htmx():
        return _list(actor, args, message=text)
    return done(url_for("customer.inbox"), text)
