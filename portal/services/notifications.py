"""Producer notifications: compose, preview, send as a job, acknowledge, remind, preferences.

Who is told what (spec rule 5, and rule 3 for what a message may name):
- one message per customer organization that owns an *active* entitlement with a line of the
  notification's product;
- the message lists that organization's affected entitlements and, for each, the contacts of
  the partners attached to *that* entitlement by an active ``sold`` or ``services``
  attachment, and of no other partner;
- it reaches the portal inbox of the organization's users (and of its parents' users, who see
  their hierarchy) and the organization's notification contacts by email; the optional kinds
  (``service_pack``, ``end_of_life``, ``general``) can be turned off for email per organization,
  security patches and critical notices cannot;
- partners get nothing unless they asked for a copy of a kind; a copy lists only entitlements
  the partner is attached to.

Sending is a job for the worker, not a web request: ``send`` marks the notification
``checking``; ``advance`` then takes the customer organizations in id order, a batch per
transaction. The ``checking`` pass builds every message and verifies it (``leak_check``)
without writing any; only when every batch passed does the ``queuing`` pass build them again,
verify them again and write messages and mail. A failed check stops the whole send before
anything is queued (state ``stopped``, with the reason).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app, g
from sqlalchemy import and_, bindparam, exists, func, insert, select

from portal.database import begin_write
from portal.extensions import db
from portal.forms import has_control_characters
from portal.markdown import render_markdown
from portal.models import (
    Attachment,
    Entitlement,
    EntitlementLine,
    Notification,
    NotificationMessage,
    NotificationPreference,
    Organization,
    OutboxEmail,
    Product,
    Release,
    utcnow,
)
from portal.models.notifications import MANDATORY_KINDS, NOTIFICATION_KINDS, OPTIONAL_KINDS
from portal.policy import Action, Actor, can, system_actor
from portal.services.audit import record
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.mail import has_pending_writes, new_message_id

KIND_LABELS = {
    "service_pack": "Service pack",
    "security_patch": "Security patch",
    "critical": "Critical notice",
    "end_of_life": "End of life",
    "general": "General notice",
}
NAMED_RELATIONS = ("sold", "services")  # the partners a message names for an entitlement
DEFAULT_BATCH = 500
MAX_TITLE = 200
MAX_BODY = 20_000
MAX_REMIND_DAYS = 365
PARTNER_COPY_LIST_LIMIT = 200  # entitlements listed in one partner copy; the rest are counted


class LeakCheckFailed(Exception):
    """A message names a partner that is not attached to the entitlement it is listed under."""


# --- compose ----------------------------------------------------------------------------------


def _clean_line(value: str | None, field_name: str, label: str, *, required: bool = True,
                max_length: int = 200) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise ServiceError(f"{label} is required.", field=field_name)
        return None
    if len(value) > max_length:
        raise ServiceError(f"{label} is at most {max_length} characters.", field=field_name)
    if has_control_characters(value):
        raise ServiceError(f"{label} may not contain control characters.", field=field_name)
    return value


def compose(actor: Actor, *, kind: str, title: str, body: str, product: Product,
            release: Release | None = None, version_from: str | None = None, version_to: str | None = None,
            remind_after_days: int | None = None, remind_partners: bool = False) -> Notification:
    """A draft notification; nothing is sent until ``send``."""
    if not can(actor, Action.SEND_NOTIFICATION):
        raise NotAllowed("Only producer staff send notifications.")
    if kind not in NOTIFICATION_KINDS:
        raise ServiceError("Choose a kind of notification.", field="kind")
    title = _clean_line(title, "title", "The title", max_length=MAX_TITLE)
    body = (body or "").strip()
    if not body:
        raise ServiceError("Write the message.", field="body")
    if len(body) > MAX_BODY:
        raise ServiceError(f"The message is at most {MAX_BODY:,} characters.", field="body")
    if has_control_characters(body, multiline=True):
        raise ServiceError("The message may not contain control characters.", field="body")
    if release is not None and release.product_id != product.id:
        raise ServiceError(f"Release {release.version} is not a release of {product.name}.", field="release_id")
    version_from = _clean_line(version_from, "version_from", "The first version", required=False, max_length=50)
    version_to = _clean_line(version_to, "version_to", "The last version", required=False, max_length=50)
    if release is not None and (version_from or version_to):
        raise ServiceError("Target a release or a range of versions, not both.", field="version_from")
    if remind_after_days is not None:
        if kind not in MANDATORY_KINDS:
            raise ServiceError("Only security patches and critical notices are acknowledged and recalled.",
                               field="remind_after_days")
        if not 1 <= remind_after_days <= MAX_REMIND_DAYS:
            raise ServiceError(f"Remind after 1 to {MAX_REMIND_DAYS} days.", field="remind_after_days")
    notification = Notification(
        kind=kind, title=title, body=body, product=product, release=release, version_from=version_from,
        version_to=version_to, created_by_id=actor.user.id if actor.user else None, created_at=utcnow(),
        state="draft", remind_after_days=remind_after_days,
        remind_partners=bool(remind_partners and remind_after_days is not None),
    )
    db.session.add(notification)
    db.session.flush()
    record(actor, "notification.create", notification, subject_org=actor.org,
           details={"kind": kind, "title": title, "product": product.sku})
    return notification


# --- who is affected --------------------------------------------------------------------------


def _affected_entitlements(notification: Notification):
    """Active entitlements owned by a customer, with a line of the notification's product."""
    has_line = exists().where(EntitlementLine.entitlement_id == Entitlement.id,
                              EntitlementLine.product_id == notification.product_id)
    # Never correlated: used inside queries about partners (organizations) and entitlements.
    return (select(Entitlement.id).join(Organization, Organization.id == Entitlement.owner_id)
            .where(Entitlement.status == "active", Organization.kind == "customer", has_line).correlate(None))


def affected_owner_ids(notification: Notification, *, after: int = 0, limit: int | None = None) -> list[int]:
    query = (_affected_entitlements(notification).with_only_columns(Entitlement.owner_id)
             .where(Entitlement.owner_id > after).distinct().order_by(Entitlement.owner_id))
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query))


def count_affected_organizations(notification: Notification) -> int:
    return db.session.scalar(select(func.count()).select_from(
        _affected_entitlements(notification).with_only_columns(Entitlement.owner_id).distinct().subquery())) or 0


@dataclass
class Message:
    """What one customer organization is told: its affected entitlements, each with the
    contacts of the partners attached to it (``content`` is what the message stores)."""

    org_id: int
    org_name: str
    content: list[dict] = field(default_factory=list)

    @property
    def partner_ids(self) -> set[int]:
        return {partner["id"] for item in self.content for partner in item["partners"]}


def build_messages(notification: Notification, owner_ids: list[int]) -> list[Message]:
    """The messages of these customer organizations, in three queries whatever their number."""
    if not owner_ids:
        return []
    rows = db.session.execute(
        _affected_entitlements(notification)
        .with_only_columns(Entitlement.id, Entitlement.code, Entitlement.owner_id, Organization.name)
        .where(Entitlement.owner_id.in_(owner_ids))
        .order_by(Entitlement.owner_id, Entitlement.code)
    ).all()
    entitlement_ids = [row.id for row in rows]
    partners: dict[int, list[dict]] = defaultdict(list)
    for row in db.session.execute(
        select(Attachment.entitlement_id, Attachment.relation, Organization.id, Organization.name,
               Organization.email, Organization.phone, Organization.website)
        .join(Organization, Organization.id == Attachment.partner_id)
        .where(Attachment.entitlement_id.in_(entitlement_ids), Attachment.active,
               Attachment.relation.in_(NAMED_RELATIONS))
        .order_by(Attachment.entitlement_id, Organization.name, Organization.id)
    ):
        partners[row.entitlement_id].append({
            "id": row.id, "name": row.name, "relation": row.relation,
            "email": row.email, "phone": row.phone, "website": row.website,
        })
    messages: dict[int, Message] = {}
    for row in rows:
        message = messages.setdefault(row.owner_id, Message(row.owner_id, row.name))
        message.content.append({"code": row.code, "product": notification.product.name,
                                "partners": partners.get(row.id, [])})
    return [messages[org_id] for org_id in owner_ids if org_id in messages]


def leak_check(messages: list[Message]) -> None:
    """Verify, from the attachments themselves, that every partner a message names is attached
    (active, ``sold`` or ``services``) to the entitlement it is listed under, and that every
    entitlement listed belongs to the message's organization. Raises ``LeakCheckFailed``."""
    codes = [item["code"] for message in messages for item in message.content]
    if not codes:
        return
    owners: dict[str, int] = {}
    attached: set[tuple[str, int]] = set()
    for start in range(0, len(codes), 1000):
        chunk = codes[start:start + 1000]
        owners.update(db.session.execute(
            select(Entitlement.code, Entitlement.owner_id).where(Entitlement.code.in_(chunk))).all())
        attached.update(db.session.execute(
            select(Entitlement.code, Attachment.partner_id)
            .join(Attachment, Attachment.entitlement_id == Entitlement.id)
            .where(Entitlement.code.in_(chunk), Attachment.active, Attachment.relation.in_(NAMED_RELATIONS))
        ).all())
    for message in messages:
        for item in message.content:
            if owners.get(item["code"]) != message.org_id:
                raise LeakCheckFailed(
                    f"the message to organization {message.org_id} lists {item['code']}, which it does not own")
            for partner in item["partners"]:
                if (item["code"], partner["id"]) not in attached:
                    raise LeakCheckFailed(
                        f"the message to organization {message.org_id} names partner {partner['id']} "
                        f"({partner['name']}) on {item['code']}, which it is not attached to")


# --- recipients -------------------------------------------------------------------------------


def contact_addresses(org: Organization | object) -> list[str]:
    """Where an organization's notices go: its notification contacts, else its contact email."""
    raw = getattr(org, "notification_emails", None) or getattr(org, "email", None) or ""
    seen: list[str] = []
    for part in raw.replace(";", ",").replace("\n", ",").split(","):
        address = part.strip()
        if address and "@" in address and address.lower() not in (s.lower() for s in seen):
            seen.append(address)
    return seen


def _email_opted_out(org_ids: list[int], kind: str) -> set[int]:
    if kind in MANDATORY_KINDS or not org_ids:
        return set()
    return set(db.session.scalars(select(NotificationPreference.org_id).where(
        NotificationPreference.org_id.in_(org_ids), NotificationPreference.kind == kind,
        NotificationPreference.email.is_(False))))


# --- preview ----------------------------------------------------------------------------------


@dataclass
class Preview:
    organizations: int
    emails: int
    partner_copies: int
    message: Message | None
    customer: Organization | None


def preview(notification: Notification, *, customer: Organization | None = None,
            first_if_none: bool = True) -> Preview:
    """How many organizations and mailboxes a send reaches, and the exact message one customer
    organization would get (``customer``, else the first affected one if ``first_if_none``)."""
    owner_ids = affected_owner_ids(notification)
    opted_out = _email_opted_out(owner_ids, notification.kind)
    emails = 0
    for start in range(0, len(owner_ids), 5000):
        chunk = [org_id for org_id in owner_ids[start:start + 5000] if org_id not in opted_out]
        for row in db.session.execute(select(Organization.notification_emails, Organization.email)
                                      .where(Organization.id.in_(chunk))):
            emails += len(contact_addresses(row))
    if customer is None and owner_ids and first_if_none:
        customer = db.session.get(Organization, owner_ids[0])
    message = None
    if customer is not None:
        built = build_messages(notification, [customer.id])
        message = built[0] if built else None
    return Preview(organizations=len(owner_ids), emails=emails,
                   partner_copies=len(_partner_copy_recipients(notification)), message=message,
                   customer=customer)


# --- rendering --------------------------------------------------------------------------------


def _base_url() -> str:
    return current_app.config["BASE_URL"].rstrip("/")


def subject_of(notification: Notification, *, reminder: bool = False) -> str:
    prefix = "Reminder: " if reminder else ""
    return f"{prefix}[{KIND_LABELS[notification.kind]}] {notification.title}"


def _producer_name() -> str:
    """The producer's name, once per application context (a batch renders hundreds of mails)."""
    if "producer_name" not in g:
        g.producer_name = db.session.scalar(select(Organization.name).where(Organization.kind == "producer"))
    return g.producer_name


def render_mail(notification: Notification, org_name: str, content: list[dict], *, reminder: bool = False,
                partner: bool = False, more: int = 0, message_id: int | None = None) -> tuple[str, str]:
    """The text and the HTML of one mail (``message_id``: the inbox message it links to)."""
    link = f"{_base_url()}/customer/inbox" + (f"/{message_id}" if message_id is not None else "")
    context = dict(notification=notification, kind_label=KIND_LABELS[notification.kind], org_name=org_name,
                   content=content, reminder=reminder, partner=partner, more=more, link=link,
                   body_html=render_markdown(notification.body), producer_name=_producer_name(),
                   mandatory=notification.kind in MANDATORY_KINDS)
    # The bare environment: mail is rendered by the worker, outside any request (and without the
    # pages' context processors, which ask who is signed in).
    env = current_app.jinja_env
    return (env.get_template("mail/notification.txt").render(**context),
            env.get_template("mail/notification.html").render(**context))


# --- send as a job ----------------------------------------------------------------------------


def send(actor: Actor, notification: Notification) -> Notification:
    """Queue the fan-out: the worker checks every message, then writes them (``advance``)."""
    if not can(actor, Action.SEND_NOTIFICATION):
        raise NotAllowed("Only producer staff send notifications.")
    if notification.state != "draft":
        raise Conflict("This notification was sent already.")
    total = count_affected_organizations(notification)
    if total == 0:
        raise ServiceError("No customer holds an active entitlement to this product: nobody would be told.")
    notification.state = "checking"
    notification.cursor = 0
    notification.organizations_total = total
    notification.organizations_done = 0
    notification.queued_at = utcnow()
    record(actor, "notification.send", notification, subject_org=actor.org,
           details={"kind": notification.kind, "title": notification.title, "organizations": total})
    return notification


def _begin_job_transaction() -> None:
    """A fresh write transaction for one batch: never a leftover read's stale snapshot."""
    session = db.session()
    if has_pending_writes(session):
        raise RuntimeError("notification jobs run their own transactions: commit or roll back first")
    if session.in_transaction():
        session.commit()
    begin_write()


def _claim_job() -> Notification | None:
    """The oldest notification with work left, locked for this worker (others skip it)."""
    query = (select(Notification).where(Notification.state.in_(("checking", "queuing")))
             .order_by(Notification.id).limit(1))
    if db.session.connection().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return db.session.scalar(query)


def advance(batch_size: int = DEFAULT_BATCH) -> str | None:
    """Do one batch of the oldest notification job in one transaction, and commit.

    Returns what happened ("checked", "queued", "sent", "stopped") or None with nothing to do.
    Call it outside any unit of work (the worker does): it raises ``RuntimeError`` rather than
    commit someone's pending changes.
    """
    _begin_job_transaction()
    notification = _claim_job()
    if notification is None:
        db.session.rollback()
        return None
    producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
    system = system_actor(producer)
    owner_ids = affected_owner_ids(notification, after=notification.cursor, limit=batch_size)
    messages = build_messages(notification, owner_ids)
    try:
        leak_check(messages)
    except LeakCheckFailed as error:
        notification.state = "stopped"
        notification.stop_reason = f"Leak check failed: {error}. Nothing was sent."
        record(system, "notification.stop", notification, subject_org=producer,
               details={"reason": notification.stop_reason})
        db.session.commit()
        return "stopped"
    if notification.state == "checking":
        if owner_ids:
            notification.cursor = owner_ids[-1]
            db.session.commit()
            return "checked"
        notification.state = "queuing"  # every message passed: write them from the first again
        notification.cursor = 0
        db.session.commit()
        return "checked"
    if owner_ids:
        _queue_messages(notification, messages)
        notification.cursor = owner_ids[-1]
        notification.organizations_done += len(messages)
        db.session.commit()
        return "queued"
    copies = _queue_partner_copies(notification)
    notification.state = "sent"
    notification.sent_at = utcnow()
    record(system, "notification.sent", notification, subject_org=producer,
           details={"organizations": notification.organizations_done, "emails": notification.emails_queued,
                    "partner_copies": copies})
    db.session.commit()
    return "sent"


def run_jobs(batch_size: int = DEFAULT_BATCH, *, max_seconds: float | None = None, stop=None) -> int:
    """Batches until no job has work left (or time is up, or ``stop`` is set); how many ran."""
    started = utcnow()
    done = 0
    while stop is None or not stop.is_set():
        if max_seconds is not None and (utcnow() - started).total_seconds() > max_seconds:
            break
        if advance(batch_size) is None:
            break
        done += 1
    return done


def _queue_messages(notification: Notification, messages: list[Message]) -> None:
    now = utcnow()
    inserted = db.session.execute(
        insert(NotificationMessage).returning(NotificationMessage.id, NotificationMessage.org_id),
        [{"notification_id": notification.id, "org_id": m.org_id, "content": m.content, "created_at": now}
         for m in messages],
    ).all()
    ids = {org_id: message_id for message_id, org_id in inserted}
    org_ids = [m.org_id for m in messages]
    opted_out = _email_opted_out(org_ids, notification.kind)
    contacts = {row.id: contact_addresses(row) for row in db.session.execute(
        select(Organization.id, Organization.notification_emails, Organization.email)
        .where(Organization.id.in_(org_ids)))}
    emails = []
    subject = subject_of(notification)
    for message in messages:
        if message.org_id in opted_out:
            continue
        addresses = contacts.get(message.org_id, [])
        if not addresses:
            continue
        text, html = render_mail(notification, message.org_name, message.content, message_id=ids[message.org_id])
        for address in addresses:
            emails.append(_outbox_row(notification, address, subject, text, html, f"notification.{notification.kind}",
                                      ids[message.org_id], now))
    if emails:
        db.session.execute(insert(OutboxEmail), emails)
    notification.emails_queued += len(emails)


def _outbox_row(notification: Notification, to: str, subject: str, text: str, html: str, category: str,
                message_id: int | None, now: datetime) -> dict:
    return {"message_id": new_message_id(), "to_addr": to, "subject": subject, "body_text": text,
            "body_html": html, "category": category, "notification_id": notification.id,
            "notification_message_id": message_id, "headers": {},
            "status": "queued", "attempts": 0, "next_attempt_at": now, "created_at": now}


# --- partner copies (opt-in) ------------------------------------------------------------------


def _partner_copy_recipients(notification: Notification) -> list[Organization]:
    """Partners that asked for a copy of this kind and are attached to an affected entitlement."""
    attached = exists().where(Attachment.partner_id == Organization.id, Attachment.active, Attachment.can_view,
                              Attachment.entitlement_id.in_(_affected_entitlements(notification)))
    return list(db.session.scalars(
        select(Organization).join(NotificationPreference, NotificationPreference.org_id == Organization.id)
        .where(NotificationPreference.kind == notification.kind, NotificationPreference.partner_copy,
               Organization.kind.in_(("distributor", "reseller", "service_provider")),
               Organization.status == "active", attached)
        .order_by(Organization.id)))


def _queue_partner_copies(notification: Notification) -> int:
    """One copy per partner that asked, listing only entitlements it is attached to."""
    now = utcnow()
    rows = []
    for partner in _partner_copy_recipients(notification):
        listed = db.session.execute(
            select(Entitlement.code, Organization.name)
            .join(Organization, Organization.id == Entitlement.owner_id)
            .join(Attachment, and_(Attachment.entitlement_id == Entitlement.id, Attachment.partner_id == partner.id,
                                   Attachment.active, Attachment.can_view))
            .where(Entitlement.id.in_(_affected_entitlements(notification)))
            .order_by(Organization.name, Entitlement.code)
            .limit(PARTNER_COPY_LIST_LIMIT + 1)
        ).all()
        total = db.session.scalar(select(func.count()).select_from(
            select(Attachment.id).where(Attachment.partner_id == partner.id, Attachment.active, Attachment.can_view,
                                        Attachment.entitlement_id.in_(_affected_entitlements(notification)))
            .subquery()))
        content = [{"code": code, "customer": customer, "partners": []}
                   for code, customer in listed[:PARTNER_COPY_LIST_LIMIT]]
        text, html = render_mail(notification, partner.name, content, partner=True,
                                 more=max(0, total - len(content)))
        for address in contact_addresses(partner):
            rows.append(_outbox_row(notification, address, f"Copy: {subject_of(notification)}", text, html,
                                    "notification.partner_copy", None, now))
    if rows:
        db.session.execute(insert(OutboxEmail), rows)
    notification.emails_queued += len(rows)
    return len(rows)


# --- acknowledgement and reminders ------------------------------------------------------------


def acknowledge(actor: Actor, message: NotificationMessage) -> bool:
    """A customer admin confirms a security patch or critical notice; False if it was already."""
    if not can(actor, Action.ACKNOWLEDGE, message):
        raise NotAllowed("Only an admin of the organization acknowledges a security patch or critical notice.")
    if message.acknowledged_at is not None:
        return False
    message.acknowledged_at = utcnow()
    message.acknowledged_by_id = actor.user.id if actor.user else None
    record(actor, "notification.acknowledge", message, subject_org=message.org,
           details={"title": message.notification.title, "kind": message.notification.kind})
    return True


def send_reminders(now: datetime | None = None, batch_size: int = DEFAULT_BATCH) -> int:
    """Recall unacknowledged security patches and critical notices whose time is up, one batch
    per notification per call, each in its own transaction; how many messages were recalled."""
    now = now or utcnow()
    queued_at = utcnow()  # the mail is due at once, whatever clock decides what is overdue
    recalled = 0
    _begin_job_transaction()
    due = list(db.session.scalars(select(Notification.id).where(
        Notification.state == "sent", Notification.kind.in_(MANDATORY_KINDS),
        Notification.remind_after_days.is_not(None))))
    db.session.commit()
    for notification_id in due:
        _begin_job_transaction()
        notification = db.session.get(Notification, notification_id)
        cutoff = now - timedelta(days=notification.remind_after_days)
        messages = list(db.session.scalars(
            select(NotificationMessage).where(
                NotificationMessage.notification_id == notification.id, NotificationMessage.acknowledged_at.is_(None),
                NotificationMessage.reminded_at.is_(None), NotificationMessage.created_at <= cutoff)
            .order_by(NotificationMessage.id).limit(batch_size)))
        if not messages:
            db.session.rollback()
            continue
        rows = []
        orgs = {org.id: org for org in db.session.scalars(
            select(Organization).where(Organization.id.in_([m.org_id for m in messages])))}
        partner_ids = {p["id"] for m in messages for item in m.content for p in item["partners"]}
        partners = {org.id: org for org in db.session.scalars(
            select(Organization).where(Organization.id.in_(partner_ids)))} if notification.remind_partners else {}
        subject = subject_of(notification, reminder=True)
        for message in messages:
            org = orgs[message.org_id]
            text, html = render_mail(notification, org.name, message.content, reminder=True, message_id=message.id)
            rows += [_outbox_row(notification, address, subject, text, html, "notification.reminder", message.id,
                                 queued_at)
                     for address in contact_addresses(org)]
            if notification.remind_partners:
                # Each partner is reminded of the entitlements it is named on, and of nothing else.
                named: dict[int, list[dict]] = defaultdict(list)
                for item in message.content:
                    for partner in item["partners"]:
                        named[partner["id"]].append({"code": item["code"], "customer": org.name, "partners": []})
                for partner_id, items in named.items():
                    partner = partners.get(partner_id)
                    if partner is None:
                        continue
                    text, html = render_mail(notification, partner.name, items, reminder=True, partner=True)
                    rows += [_outbox_row(notification, address, subject, text, html, "notification.reminder",
                                         None, queued_at)
                             for address in contact_addresses(partner)]
            message.reminded_at = now
        if rows:
            db.session.execute(insert(OutboxEmail), rows)
        notification.emails_queued += len(rows)
        producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
        record(system_actor(producer), "notification.remind", notification, subject_org=producer,
               details={"messages": len(messages), "emails": len(rows)})
        db.session.commit()
        recalled += len(messages)
    return recalled


# --- preferences ------------------------------------------------------------------------------


def preferences_of(org: Organization) -> dict[str, NotificationPreference]:
    return {p.kind: p for p in db.session.scalars(
        select(NotificationPreference).where(NotificationPreference.org_id == org.id))}


def _preference(org: Organization, kind: str) -> NotificationPreference:
    preference = db.session.get(NotificationPreference, (org.id, kind))
    if preference is None:
        preference = NotificationPreference(org_id=org.id, kind=kind, email=True, partner_copy=False)
        db.session.add(preference)
    return preference


def set_email(actor: Actor, org: Organization, kind: str, enabled: bool) -> NotificationPreference:
    """Turn a customer organization's email of one optional kind on or off."""
    if org.kind != "customer" or not can(actor, Action.EDIT, org):
        raise NotAllowed("Only an admin of the organization changes where its notices go.")
    if kind not in OPTIONAL_KINDS:
        raise ServiceError(f"{KIND_LABELS.get(kind, kind)} notices are always sent.", field="kind")
    preference = _preference(org, kind)
    if preference.email != enabled:
        preference.email = enabled
        record(actor, "notification.preference", org, subject_org=org,
               details={"kind": kind, "email": enabled})
    return preference


def set_partner_copy(actor: Actor, org: Organization, kind: str, enabled: bool) -> NotificationPreference:
    """Ask for (or stop) a copy of one kind of notice about entitlements the partner is attached to."""
    if not org.is_partner or not can(actor, Action.EDIT, org):
        raise NotAllowed("Only an admin of the partner chooses its copies.")
    if kind not in NOTIFICATION_KINDS:
        raise ServiceError("Unknown kind of notice.", field="kind")
    preference = _preference(org, kind)
    if preference.partner_copy != enabled:
        preference.partner_copy = enabled
        record(actor, "notification.preference", org, subject_org=org,
               details={"kind": kind, "partner_copy": enabled})
    return preference


# --- status per recipient ---------------------------------------------------------------------


_RECIPIENT_COUNTS = (select(OutboxEmail.status, func.count())
                     .where(OutboxEmail.notification_id == bindparam("notification_id")).group_by(OutboxEmail.status))


def recipient_counts(notification: Notification) -> dict[str, int]:
    """Mail of this notification by status (queued, sent, failed), partner copies included."""
    counts = {"queued": 0, "sent": 0, "failed": 0}
    counts.update(dict(db.session.execute(_RECIPIENT_COUNTS, {"notification_id": notification.id}).all()))
    return counts
