"""THE access policy: who may see and do what. Nothing else decides access.

Spec section 4 in code:
- producer admin/staff see everything and run the channel;
- a customer user sees the entitlements owned by its organization and every descendant
  (admins act on them fully, members activate/return/rehost and download);
- a partner sees the entitlements it owns (stock) and those with an active attachment
  of its organization, acts within each attachment's permissions, and sees only its
  own attachment on an entitlement.

Lists come from query scopes (``visible_entitlements``...) that the database answers
with indexes; single objects come from loaders that answer 404 for anything the actor
may not see; actions are then checked with ``can``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from functools import cache
from typing import Any

from flask import abort
from sqlalchemy import Date, Integer, Select, bindparam, case, event, false, func, or_, select, true, union_all
from sqlalchemy.orm import Session, aliased

from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    AuditEvent,
    Entitlement,
    EntitlementLine,
    Membership,
    NotificationMessage,
    Organization,
    PartnerSale,
    PortalRequest,
    Product,
    Release,
    ReleaseFile,
    User,
)
from portal.models.entitlements import PartnerCustomer
from portal.models.notifications import MANDATORY_KINDS
from portal.models.orgs import PARTNER_KINDS, ids_on_path

# --- the vocabulary: every question ``can`` answers ---------------------------------------


class Action(StrEnum):
    """Every action the policy knows. ``can`` raises ``UnknownAction`` for anything else, and
    for an action that does not apply to the kind of object asked about (``VOCABULARY``)."""

    # Entitlements (and their lines)
    VIEW = "view"
    DOWNLOAD = "download"
    ACTIVATE = "activate"
    RECORD_USAGE = "record_usage"
    ASSIGN = "assign"
    ATTACH = "attach"
    REVOKE = "revoke"
    SUSPEND = "suspend"
    EDIT = "edit"
    REQUEST_TRANSFER = "request_transfer"
    # Activations
    RETURN = "return"
    REHOST = "rehost"
    # Organizations
    CREATE_CHILD = "create_child"
    MOVE = "move"
    DELETE = "delete"
    INVITE = "invite"
    MANAGE_USERS = "manage_users"
    # Requests
    WITHDRAW = "withdraw"
    DECIDE = "decide"
    # Notification messages (a customer's copy of a producer notice)
    ACKNOWLEDGE = "acknowledge"
    # The portal as a whole (no object)
    MANAGE_CATALOG = "manage_catalog"
    CREATE_ENTITLEMENT = "create_entitlement"
    MODERATE = "moderate"
    SEND_NOTIFICATION = "send_notification"
    VIEW_REPORTS = "view_reports"
    VIEW_AUDIT = "view_audit"
    MANAGE_CHANNEL = "manage_channel"
    MANAGE_ORGANIZATIONS = "manage_organizations"
    IMPORT_ORDERS = "import_orders"
    MANAGE_MAIL = "manage_mail"
    MANAGE_PRODUCER_USERS = "manage_producer_users"
    ATTACH_PARTNERS = "attach_partners"
    REQUEST_ACCESS = "request_access"


A = Action
ENTITLEMENT_ACTIONS = frozenset({A.VIEW, A.DOWNLOAD, A.ACTIVATE, A.RECORD_USAGE, A.ASSIGN, A.ATTACH, A.REVOKE,
                                 A.SUSPEND, A.EDIT, A.REQUEST_TRANSFER})
ACTIVATION_ACTIONS = frozenset({A.VIEW, A.DOWNLOAD, A.RETURN, A.REHOST})
ORGANIZATION_ACTIONS = frozenset({A.VIEW, A.EDIT, A.CREATE_CHILD, A.MOVE, A.DELETE, A.INVITE, A.MANAGE_USERS})
ATTACHMENT_ACTIONS = frozenset({A.VIEW, A.REVOKE})
REQUEST_ACTIONS = frozenset({A.VIEW, A.WITHDRAW, A.DECIDE})
MESSAGE_ACTIONS = frozenset({A.VIEW, A.ACKNOWLEDGE})
AREA_ACTIONS = frozenset({A.MANAGE_CATALOG, A.CREATE_ENTITLEMENT, A.MODERATE, A.SEND_NOTIFICATION, A.VIEW_REPORTS,
                          A.VIEW_AUDIT, A.MANAGE_CHANNEL, A.MANAGE_ORGANIZATIONS, A.IMPORT_ORDERS, A.MANAGE_MAIL,
                          A.MANAGE_PRODUCER_USERS, A.MANAGE_USERS, A.ATTACH_PARTNERS, A.REQUEST_TRANSFER,
                          A.REQUEST_ACCESS})
# Which actions apply to which kind of object (None: the portal as a whole).
VOCABULARY: dict[type | None, frozenset[Action]] = {
    None: AREA_ACTIONS,
    Entitlement: ENTITLEMENT_ACTIONS,
    EntitlementLine: ENTITLEMENT_ACTIONS,
    Activation: ACTIVATION_ACTIONS,
    Organization: ORGANIZATION_ACTIONS,
    Attachment: ATTACHMENT_ACTIONS,
    PortalRequest: REQUEST_ACTIONS,
    NotificationMessage: MESSAGE_ACTIONS,
}


class UnknownAction(ValueError):
    """A misspelt action, or one that does not apply to that kind of object: a bug, never False."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user in its active organization (``user`` is None for the system).

    ``request_id`` and ``client_addr`` travel with the actor so that services can audit
    without touching the Flask request.
    """

    user: User | None
    org: Organization
    role: str
    request_id: str | None = None
    client_addr: str | None = None
    # For a partner: the customer it is currently working for (scopes every page).
    customer_id: int | None = field(default=None)

    @property
    def kind(self) -> str:
        return self.org.kind

    @property
    def is_producer(self) -> bool:
        return self.org.kind == "producer"

    @property
    def is_customer(self) -> bool:
        return self.org.kind == "customer"

    @property
    def is_partner(self) -> bool:
        return self.org.kind in PARTNER_KINDS

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def area(self) -> str:
        """The portal this actor works in: producer, customer or partner."""
        return "partner" if self.is_partner else self.org.kind

    def for_customer(self, customer_id: int | None) -> Actor:
        return replace(self, customer_id=customer_id)

    def on_behalf_of(self, owner: Organization | None) -> int | None:
        """The customer this actor acts for when it touches an object of ``owner``.

        Only a partner ever acts on behalf of someone: of the customer that owns the object,
        or, for its own objects (stock it assigns, say), of the customer it is working for.
        Producer staff and customer users act in their own name.
        """
        if not self.is_partner:
            return None
        if owner is not None and owner.kind == "customer":
            return owner.id
        return self.customer_id


def system_actor(producer: Organization, **context: Any) -> Actor:
    """The producer acting through the CLI or a background job."""
    return Actor(user=None, org=producer, role="admin", **context)


def actor_for(user: User, org: Organization, **context: Any) -> Actor | None:
    """The actor for a user in one of its organizations, or None without a membership."""
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)
    )
    if membership is None or not user.active or org.status != "active":
        return None
    return Actor(user=user, org=org, role=membership.role, **context)


# --- query scopes -------------------------------------------------------------------------


def path_within(path: str):
    """WHERE clause: ``Organization.path`` starts with ``path`` (an organization's "/1/7/"), as a
    range of the path index rather than a LIKE, which SQLite cannot serve from an index when it
    carries an ESCAPE clause. Paths hold only digits and slashes and ``path`` ends with "/", so
    "starts with /1/7/" is exactly "from /1/7/ up to, not including, /1/70" in byte order
    (the character after "/" is "0"). PostgreSQL compares bytes with the pattern operators that
    its ``varchar_pattern_ops`` index answers; SQLite's default collation compares bytes."""
    if not path.endswith("/") or not path.startswith("/"):
        raise ValueError(f"not an organization path: {path!r}")
    below = path[:-1] + chr(ord(path[-1]) + 1)
    column = Organization.path
    if db.engine.dialect.name == "postgresql":
        return _PATH_FROM(path) & _PATH_BEFORE(below)
    return (column >= path) & (column < below)


# PostgreSQL's byte-order comparisons of ``path_within``, made once (every customer page asks).
_PATH_FROM = Organization.path.op("~>=~", is_comparison=True)
_PATH_BEFORE = Organization.path.op("~<~", is_comparison=True)


def subtree_org_ids(org: Organization) -> Select:
    """Ids of an organization and all its descendants (one index range: ``path_within``)."""
    return select(Organization.id).where(path_within(org.path))


# Built once: making an aliased class costs more than the rest of the scope (it is immutable).
_HELD = aliased(Entitlement, name="held")


def partner_entitlement_ids(partner_id: int) -> Select:
    """Entitlements a partner sees: those it is attached to, and those it holds in stock.

    Each id once, without a de-duplicating UNION (a partner has at most one live attachment per
    entitlement, and stock it is also attached to comes from the first part only), so counting
    them is an index-only scan of ``ix_attachment_partner_visible``.
    """
    held = _HELD
    stock = select(held.id).where(held.owner_id == partner_id, ~_attached_ids(partner_id, held.id).exists())
    return union_all(_attached_ids(partner_id), stock)


def _attached_ids(partner_id: int, entitlement_id=None) -> Select:
    """Ids of the entitlements a partner has a live attachment with view rights to (of one
    entitlement when given), from the index ``ix_attachment_partner_visible`` alone."""
    query = select(Attachment.entitlement_id).where(
        Attachment.partner_id == partner_id, Attachment.active.is_(True), Attachment.can_view.is_(True))
    return query if entitlement_id is None else query.where(Attachment.entitlement_id == entitlement_id)


def entitlement_scope(actor: Actor):
    """The WHERE clause that limits entitlements to what ``actor`` may see."""
    if actor.is_producer:
        return true()
    if actor.is_customer:
        return Entitlement.owner_id.in_(subtree_org_ids(actor.org))
    if actor.is_partner:
        clause = Entitlement.id.in_(partner_entitlement_ids(actor.org.id))
        if actor.customer_id is not None:
            clause = clause & (Entitlement.owner_id == actor.customer_id)
        return clause
    return false()


def entitlement_row_scope(actor: Actor):
    """``entitlement_scope`` as a test of each row, for a query that stops early: a loader that
    finds one entitlement by its key, or a page of a list that walks an index in its order.

    The same rows; for a partner, an EXISTS on its live attachment to the row (or the row being
    its stock) instead of joining the list of every id it sees. PostgreSQL evaluates it as a
    filter (a hashed subplan of the partner's attachment index when many rows are tested), so
    a page reads a few hundred index entries in the list's order and stops."""
    if not actor.is_partner:
        return entitlement_scope(actor)
    partner_id = actor.org.id
    own = aliased(Attachment)  # the outer query may select attachments too (visible_attachments)
    attached = (
        select(own.id)
        .where(own.entitlement_id == Entitlement.id, own.partner_id == partner_id,
               own.active.is_(True), own.can_view.is_(True))
        .correlate(Entitlement)
        .exists()
    )
    clause = or_(Entitlement.owner_id == partner_id, attached)
    if actor.customer_id is not None:
        clause = clause & (Entitlement.owner_id == actor.customer_id)
    return clause


def line_scope(actor: Actor):
    """The WHERE clause that limits entitlement lines to those of entitlements the actor sees,
    for a query that stops at the first line it finds (is there a line of this product?).

    A partner's as two hashed tests of the line's entitlement (attached, or ours in stock),
    which the database builds once and probes per line."""
    line = EntitlementLine
    if actor.is_partner:
        partner_id = actor.org.id
        held = select(_HELD.id).where(_HELD.owner_id == partner_id)
        clause = or_(line.entitlement_id.in_(_attached_ids(partner_id)), line.entitlement_id.in_(held))
        if actor.customer_id is not None:
            clause = clause & line.entitlement_id.in_(select(_HELD.id).where(_HELD.owner_id == actor.customer_id))
        return clause
    return line.entitlement_id.in_(select(Entitlement.id).where(entitlement_scope(actor)))


def visible_entitlement_count(actor: Actor) -> int:
    """How many entitlements the actor sees (``visible_entitlements``), counted the cheapest way:
    a partner working for all its customers from its attachment index alone, without reading
    the entitlements. One statement built once per scope shape (``scope_params``)."""
    shape = scope_shape(actor)
    return db.session.execute(_count_statement(shape, _dialect()), scope_params(actor)).scalar() or 0


# --- scopes as parameters: statements built once ------------------------------------------
#
# Building a statement costs more CPU than the database spends on a small one, so a page that
# runs the same statements on every request builds them once (``functools.cache``) with the
# actor's scope as bound parameters: ``scope_shape`` names the shape of its scope and
# ``scope_params`` gives its values for the request. The clauses select exactly what
# ``entitlement_scope`` and ``entitlement_row_scope`` select (tests/test_policy_params.py):
#
# - "customer": its organization's subtree (parameters ``scope_path``, ``scope_below``: the range
#   of paths of ``path_within``);
# - "partner": its stock and its live attachments with view rights (``scope_org``);
# - "partner_customer": the same, of the one customer it works for (``scope_org``, ``scope_customer``);
# - "producer": everything; "none": nothing.
#
# Core tables, not the mapped classes: a statement of ORM attributes goes through the ORM's
# execution (about twice the CPU of the same statement of table columns) even when it selects
# plain columns.

ENTITLEMENT_TABLE = Entitlement.__table__
ORGANIZATION_TABLE = Organization.__table__
ATTACHMENT_TABLE = Attachment.__table__
LINE_TABLE = EntitlementLine.__table__


def scope_shape(actor: Actor) -> str:
    """The shape of the actor's entitlement scope (see above)."""
    if actor.is_producer:
        return "producer"
    if actor.is_customer:
        return "customer"
    if actor.is_partner:
        return "partner" if actor.customer_id is None else "partner_customer"
    return "none"


def scope_params(actor: Actor) -> dict[str, Any]:
    """The values of the actor's scope parameters (see above)."""
    if actor.is_customer:
        start, below = _path_range(actor.org.path)
        return {"scope_path": start, "scope_below": below}
    if actor.is_partner:
        return {"scope_org": actor.org.id, "scope_customer": actor.customer_id}
    return {}


def _path_range(path: str) -> tuple[str, str]:
    """``path_within``'s bounds: every path from ``path`` up to, not including, the second."""
    if not path.endswith("/") or not path.startswith("/"):
        raise ValueError(f"not an organization path: {path!r}")
    return path, path[:-1] + chr(ord(path[-1]) + 1)


def _dialect() -> str:
    return db.engine.dialect.name


@cache
def subtree_ids_param(dialect: str) -> Select:
    """``subtree_org_ids`` of the organization whose path range is in ``scope_path``,
    ``scope_below`` (Core; ``dialect``: the database's, for ``path_within``'s comparisons)."""
    path = ORGANIZATION_TABLE.c.path
    start, below = bindparam("scope_path", type_=path.type), bindparam("scope_below", type_=path.type)
    if dialect == "postgresql":
        within = path.op("~>=~", is_comparison=True)(start) & path.op("~<~", is_comparison=True)(below)
    else:
        within = (path >= start) & (path < below)
    return select(ORGANIZATION_TABLE.c.id).where(within)


def entitlement_scope_param(shape: str, dialect: str, entitlement=ENTITLEMENT_TABLE):
    """``entitlement_scope`` of a scope shape, with the shape's parameters, on ``entitlement``
    (the table, or an alias of it)."""
    if shape == "producer":
        return true()
    if shape == "customer":
        return entitlement.c.owner_id.in_(subtree_ids_param(dialect))
    if shape in ("partner", "partner_customer"):
        return entitlement_row_scope_param(shape, dialect, entitlement)
    return false()


def entitlement_row_scope_param(shape: str, dialect: str, entitlement=ENTITLEMENT_TABLE):
    """``entitlement_row_scope`` of a scope shape: for a partner, a test of each row (its
    stock, or an EXISTS of its live attachment with view rights), as a page that walks an index
    in its order needs; the others as ``entitlement_scope_param``."""
    if shape not in ("partner", "partner_customer"):
        return entitlement_scope_param(shape, dialect, entitlement)
    partner = bindparam("scope_org", type_=Integer)
    own = ATTACHMENT_TABLE.alias("scope_attachment")
    attached = (select(own.c.id)
                .where(own.c.entitlement_id == entitlement.c.id, own.c.partner_id == partner,
                       own.c.active.is_(True), own.c.can_view.is_(True))
                .correlate(entitlement).exists())
    clause = or_(entitlement.c.owner_id == partner, attached)
    if shape == "partner_customer":
        clause = clause & (entitlement.c.owner_id == bindparam("scope_customer", type_=Integer))
    return clause


def line_scope_param(shape: str, dialect: str, line=LINE_TABLE):
    """``line_scope`` of a scope shape, on ``line`` (the table or an alias): for a partner two
    hashed tests of the line's entitlement (attached, or its stock), which the database builds
    once and probes per line."""
    if shape in ("partner", "partner_customer"):
        partner = bindparam("scope_org", type_=Integer)
        own = ATTACHMENT_TABLE.alias("scope_attachment")
        held = ENTITLEMENT_TABLE.alias("held")
        attached = select(own.c.entitlement_id).where(own.c.partner_id == partner, own.c.active.is_(True),
                                                      own.c.can_view.is_(True))
        clause = or_(line.c.entitlement_id.in_(attached),
                     line.c.entitlement_id.in_(select(held.c.id).where(held.c.owner_id == partner)))
        if shape == "partner_customer":
            customer = bindparam("scope_customer", type_=Integer)
            clause = clause & line.c.entitlement_id.in_(select(held.c.id).where(held.c.owner_id == customer))
        return clause
    scoped = ENTITLEMENT_TABLE.alias("scoped")
    return line.c.entitlement_id.in_(select(scoped.c.id).where(entitlement_scope_param(shape, dialect, scoped)))


def message_scope_param(shape: str, dialect: str, message=NotificationMessage.__table__):
    """``visible_messages``' clause of a scope shape, on ``message`` (the table or an alias)."""
    if shape == "producer":
        return true()
    if shape == "customer":
        return message.c.org_id.in_(subtree_ids_param(dialect))
    return false()


def addressed_to_customer_param(dialect: str, request=PortalRequest.__table__):
    """``addressed_to_customer`` of the customer whose subtree is in the scope parameters: what
    its admins decide (joining one of its organizations, partner access to its entitlements). A
    customer user sees every such request (``visible_requests``)."""
    return request.c.kind.in_(("join_org", "partner_access")) & request.c.target_org_id.in_(subtree_ids_param(dialect))


def attachment_scope_param(shape: str, attachment=ATTACHMENT_TABLE):
    """``attachment_scope`` of a scope shape: a partner's own attachment rows (``scope_org``)."""
    if shape in ("partner", "partner_customer"):
        return attachment.c.partner_id == bindparam("scope_org", type_=Integer)
    return true()


@cache
def _count_statement(shape: str, dialect: str) -> Select:
    """``visible_entitlement_count``'s statement: a partner working for all its customers counts
    ``partner_entitlement_ids`` (its attachment index and its stock), everyone else its scope."""
    if shape == "partner":
        partner = bindparam("scope_org", type_=Integer)
        held = ENTITLEMENT_TABLE.alias("held")
        own = ATTACHMENT_TABLE.alias("scope_attachment")
        attached = select(own.c.entitlement_id).where(own.c.partner_id == partner, own.c.active.is_(True),
                                                      own.c.can_view.is_(True))
        stock = select(held.c.id).where(
            held.c.owner_id == partner,
            ~select(own.c.entitlement_id).where(own.c.partner_id == partner, own.c.active.is_(True),
                                                own.c.can_view.is_(True), own.c.entitlement_id == held.c.id)
            .correlate(held).exists())
        ids = union_all(attached, stock).subquery()
    else:
        ids = select(ENTITLEMENT_TABLE.c.id).where(entitlement_scope_param(shape, dialect)).subquery()
    return select(func.count()).select_from(ids)


def visible_entitlements(actor: Actor) -> Select:
    """``select(Entitlement)`` limited to what the actor may see; paginate it in SQL."""
    return select(Entitlement).where(entitlement_scope(actor))


def partner_stock(actor: Actor) -> Select:
    """``select(Entitlement)``: the entitlements a partner holds in stock (owns, not yet assigned to
    a customer), whichever customer it works for: stock is nobody's but its own. None for others."""
    if not actor.is_partner:
        return select(Entitlement).where(false())
    return select(Entitlement).where(Entitlement.owner_id == actor.org.id)


def customers_served_by(actor: Actor) -> Select:
    """Customer organizations that own entitlements a partner sees, by name (none for non-partners).

    Read from the ``partner_customer`` read model (one index range per partner, in name order),
    which the ORM keeps equal to the attachments in the same transaction as every change to them.
    """
    if not actor.is_partner:
        return select(Organization).where(false())
    return (
        select(Organization)
        .join(PartnerCustomer, PartnerCustomer.customer_id == Organization.id)
        .where(PartnerCustomer.partner_id == actor.org.id)
        .order_by(PartnerCustomer.customer_name, PartnerCustomer.customer_id)  # the name, from the index
    )


def partner_sales_scope(actor: Actor, model=PartnerSale):
    """The WHERE clause that limits the ``partner_sales`` read model (or ``partner_sales_end``,
    as ``model``) to the sales in a partner's figures: its own rows, which hold exactly the
    entitlements it sees (``entitlement_scope``: a live attachment with view rights) whose sales
    chain names it and that are not its stock; working for one customer, that customer's only.
    Nothing for anyone else."""
    if not actor.is_partner:
        return false()
    clause = model.partner_id == actor.org.id
    if actor.customer_id is not None:
        clause = clause & (model.owner_id == actor.customer_id)
    return clause


def visible_organizations(actor: Actor) -> Select:
    """Organizations whose name and contact data the actor may see.

    A partner working for one customer sees that customer (and itself and the producer).
    """
    if actor.is_producer:
        return select(Organization)
    if actor.is_customer:
        in_scope = Entitlement.owner_id.in_(subtree_org_ids(actor.org))
        attached_partners = (
            select(Attachment.partner_id)
            .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
            .where(in_scope, Attachment.active.is_(True))
        )
        return select(Organization).where(
            or_(
                Organization.id.in_(subtree_org_ids(actor.org)),
                Organization.id.in_(attached_partners),
                Organization.kind == "producer",
            )
        )
    if actor.is_partner:
        owners = select(Entitlement.owner_id).where(Entitlement.id.in_(partner_entitlement_ids(actor.org.id)))
        if actor.customer_id is not None:
            owners = owners.where(Entitlement.owner_id == actor.customer_id)
        return select(Organization).where(
            or_(
                Organization.id == actor.org.id,
                Organization.id.in_(owners),
                Organization.kind == "producer",
            )
        )
    return select(Organization).where(false())


def attachable_partners(actor: Actor) -> Select:
    """Partners the actor may attach to entitlements: every active partner, by name, for
    producer staff and customer admins; nobody for anyone else."""
    if not (actor.is_producer or (actor.is_customer and actor.is_admin)):
        return select(Organization).where(false())
    return (
        select(Organization)
        .where(Organization.kind.in_(PARTNER_KINDS), Organization.status == "active")
        .order_by(Organization.name, Organization.id)
    )


def attachable_partner_choices(actor: Actor) -> list[tuple[int, str, str]]:
    """(id, name, kind) of ``attachable_partners``, by name: one statement built once, of table
    columns (a customer admin's partners page offers every active partner: 600 at 200k)."""
    if not (actor.is_producer or (actor.is_customer and actor.is_admin)):
        return []
    return [tuple(row) for row in db.session.execute(_ATTACHABLE_CHOICES)]


_ATTACHABLE_CHOICES = (
    select(ORGANIZATION_TABLE.c.id, ORGANIZATION_TABLE.c.name, ORGANIZATION_TABLE.c.kind)
    .where(ORGANIZATION_TABLE.c.kind.in_(PARTNER_KINDS), ORGANIZATION_TABLE.c.status == "active")
    .order_by(ORGANIZATION_TABLE.c.name, ORGANIZATION_TABLE.c.id)
)


def assignable_customers(actor: Actor) -> Select:
    """Customers a stocking partner may hand its stock to without a directory look-up: the
    active customers it serves (only the chosen one while it works for one)."""
    if not (actor.is_partner and actor.org.stocking):
        return select(Organization).where(false())
    served = customers_served_by(actor).where(Organization.status == "active")
    if actor.customer_id is not None:
        served = served.where(Organization.id == actor.customer_id)
    return served


def customer_by_exact_name(actor: Actor, name: str) -> Organization | None:
    """The producer's customer directory, for a stocking partner that assigns stock to a new
    customer: one active top-level or nested customer whose name matches exactly (ignoring
    case and surrounding spaces), or None. It reveals nothing else: no list, no prefix search."""
    name = (name or "").strip()
    if not (actor.is_producer or (actor.is_partner and actor.org.stocking)) or not name:
        return None
    found = db.session.scalars(
        select(Organization)
        .where(Organization.kind == "customer", Organization.status == "active",
               func.lower(Organization.name) == name.lower())
        .order_by(Organization.id)
        .limit(2)
    ).all()
    return found[0] if len(found) == 1 else None  # an ambiguous name finds nobody


def access_request_target(actor: Actor, name: str) -> Organization | None:
    """The customer a partner asks for access to, named by the customer itself: one active
    customer organization whose name matches exactly (ignoring case and surrounding spaces), or
    None. Like the stock look-up it reveals nothing else: no list, no prefix search, and an
    ambiguous name finds nobody."""
    name = " ".join((name or "").split())
    if not (actor.is_partner and can(actor, Action.REQUEST_ACCESS)) or not name:
        return None
    found = db.session.scalars(
        select(Organization)
        .where(Organization.kind == "customer", Organization.status == "active",
               func.lower(Organization.name) == name.lower())
        .order_by(Organization.id)
        .limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def join_target(name: str) -> Organization | None:
    """The organization a join request may name: one active organization, other than the
    producer, whose name matches exactly (ignoring case); None sends it to producer staff."""
    name = (name or "").strip()
    if not name:
        return None
    found = db.session.scalars(
        select(Organization)
        .where(Organization.kind != "producer", Organization.status == "active",
               func.lower(Organization.name) == name.lower())
        .order_by(Organization.id)
        .limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def transfer_recipient_by_exact_name(actor: Actor, name: str) -> Organization | None:
    """The recipient a customer admin names for a transfer request: one active customer
    organization outside the admin's own tree whose name matches exactly (ignoring case and
    surrounding spaces), or None. Like the stocking partner's look-up it reveals nothing else:
    no list, no prefix search, and an ambiguous name finds nobody."""
    name = (name or "").strip()
    if not (actor.is_customer and actor.is_admin) or not name:
        return None
    found = db.session.scalars(
        select(Organization)
        .where(Organization.kind == "customer", Organization.status == "active",
               func.lower(Organization.name) == name.lower(),
               Organization.id.not_in(subtree_org_ids(actor.org)))
        .order_by(Organization.id)
        .limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def attachment_scope(actor: Actor, attachment=Attachment):
    """WHERE clause on Attachment (or an alias of it): a partner sees only its own attachment rows."""
    return attachment.partner_id == actor.org.id if actor.is_partner else true()


def visible_attachments(actor: Actor, entitlement: Entitlement) -> Select:
    """Attachments of one entitlement the actor may see: a partner only its own.

    None at all when the actor may not see the entitlement (as ``can(actor, "view", attachment)``).
    """
    query = (
        select(Attachment)
        .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
        .where(Attachment.entitlement_id == entitlement.id, entitlement_row_scope(actor), attachment_scope(actor))
    )
    return query.order_by(Attachment.granted_at, Attachment.id)


def attachments_on_visible_entitlements(actor: Actor) -> Select:
    """Attachments, live or revoked, on every entitlement the actor sees (a partner only its
    own): the list of "who is attached to our entitlements". Joins ``Entitlement``."""
    return (
        select(Attachment)
        .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
        .where(entitlement_scope(actor), attachment_scope(actor))
    )


def visible_audit_events(actor: Actor) -> Select:
    """Producer: all; customer admin: events on its subtree's objects; partner admin: its acts."""
    query = select(AuditEvent)
    if actor.is_producer:
        return query
    if actor.is_customer and actor.is_admin:
        return query.where(AuditEvent.subject_org_id.in_(subtree_org_ids(actor.org)))
    if actor.is_partner and actor.is_admin:
        # Its own acts, and what others did to the partner organization itself (its set-up,
        # its memberships, requests to join it).
        return query.where(or_(AuditEvent.org_id == actor.org.id, AuditEvent.subject_org_id == actor.org.id))
    return query.where(false())


def decidable_requests(actor: Actor) -> Select:
    """Pending requests this actor may decide."""
    query = select(PortalRequest).where(PortalRequest.state == "pending")
    if actor.is_producer:
        if can(actor, A.MANAGE_PRODUCER_USERS):
            return query
        # Joining the producer makes producer staff: a decision for its admins only.
        producer_join = (
            (PortalRequest.kind == "join_org")
            & PortalRequest.target_org_id.is_not(None)
            & PortalRequest.target_org_id.in_(select(Organization.id).where(Organization.kind == "producer"))
        )
        return query.where(~producer_join)
    if actor.is_customer and actor.is_admin:
        return query.where(addressed_to_customer(actor.org))
    if actor.is_partner and actor.is_admin:
        return query.where(PortalRequest.kind == "join_org", PortalRequest.target_org_id == actor.org.id)
    return query.where(false())


def addressed_to_customer(org: Organization):
    """WHERE clause on PortalRequest: what a customer's admins decide, joining one of its
    organizations and partner access to its entitlements (any state)."""
    return PortalRequest.kind.in_(("join_org", "partner_access")) & PortalRequest.target_org_id.in_(
        subtree_org_ids(org))


def visible_requests(actor: Actor) -> Select:
    """Requests the actor may see. Producer staff: all. Customer users, admins and members
    alike: those made by an organization of its subtree (transfers, partner invitations) and
    those addressed to one (``addressed_to_customer``), whoever made them; what a user asked in
    another of its organizations stays there. Partner users: those they made and, for admins,
    those they may decide."""
    if actor.is_producer:
        return select(PortalRequest)
    if actor.is_customer:
        return select(PortalRequest).where(
            or_(PortalRequest.requester_org_id.in_(subtree_org_ids(actor.org)), addressed_to_customer(actor.org)))
    own = PortalRequest.requester_user_id == actor.user.id if actor.user is not None else false()
    decidable = decidable_requests(actor).with_only_columns(PortalRequest.id)
    if actor.is_partner:
        # A partner's requests for access are its organization's: each of its users sees them.
        ours = (PortalRequest.requester_org_id == actor.org.id) & (PortalRequest.kind == "partner_access")
        return select(PortalRequest).where(or_(own, ours, PortalRequest.id.in_(decidable)))
    return select(PortalRequest).where(or_(own, PortalRequest.id.in_(decidable)))


# --- software downloads: which releases an actor is entitled to --------------------------------


def _downloadable(partner_id: int, attachment=Attachment) -> Select:
    """Ids of the entitlements a partner's own live attachments let it view and download, from
    the index ``ix_attachment_partner_download`` alone (its predicate: these very flags)."""
    return select(attachment.entitlement_id).where(
        attachment.partner_id == partner_id, attachment.active, attachment.can_view, attachment.can_download)


def download_entitlement_scope(actor: Actor):
    """WHERE clause on Entitlement: active entitlements whose software the actor may download.

    A customer's users: those of its subtree. A partner: those its own live attachment lets it
    view and download, and its stock (the holder may download what it is about to assign); only
    the chosen customer's while it works for one. Producer staff use the catalog instead.
    """
    active = Entitlement.status == "active"
    if actor.is_customer:
        return active & Entitlement.owner_id.in_(subtree_org_ids(actor.org))
    if actor.is_partner:
        attached = _downloadable(actor.org.id)
        if actor.customer_id is not None:
            return active & (Entitlement.owner_id == actor.customer_id) & Entitlement.id.in_(attached)
        return active & or_(Entitlement.id.in_(attached), Entitlement.owner_id == actor.org.id)
    return false()


# Built once (see _HELD): the partner's attachment probed for each entitlement a walk tests.
_OWN_DOWNLOAD = aliased(Attachment, name="own_download")


def _partner_download_row(partner_id):
    """``download_entitlement_scope`` of a partner working for all its customers as a test of
    each row, for a query that stops at the first entitlement it finds (``_walk``): the row is
    active and the partner's stock, or else one probe of ``ix_attachment_partner_download``
    finds the partner's attachment to it. ``partner_id``: its id, or a statement's parameter."""
    own = _OWN_DOWNLOAD
    attached = _downloadable(partner_id, own).where(own.entitlement_id == Entitlement.id).correlate(Entitlement)
    return (Entitlement.status == "active") & or_(Entitlement.owner_id == partner_id, attached.exists())


@dataclass(frozen=True)
class ProductRights:
    """What an actor's entitlements grant for one product, from every line in scope (``of``:
    only the dates ``decide`` reads)."""

    product_id: int
    perpetual: bool = False
    maintenance_end: Any = None  # the latest maintenance end of perpetual lines (None: no limit)
    perpetual_unlimited: bool = False  # a perpetual line without a maintenance end
    subscription_active: bool = False
    subscription_ended: Any = None  # the latest end of subscriptions over by today
    subscription_starts: Any = None  # the earliest start of subscriptions not begun yet
    usage_active: bool = False

    @classmethod
    def of(cls, product_id: int, perpetual, maintenance_end, perpetual_unlimited, subscription_active,
               subscription_ended, subscription_starts, usage_active) -> ProductRights:
        """The rights with only the dates ``decide`` reads: no maintenance end beside a perpetual
        line without one (or one on ``date.max``, which covers every release as well), no ended
        or future subscription beside a running one."""
        perpetual_unlimited = bool(perpetual_unlimited) or maintenance_end == date.max
        subscription_active = bool(subscription_active)
        return cls(product_id, bool(perpetual), None if perpetual_unlimited else maintenance_end,
                   perpetual_unlimited, subscription_active, None if subscription_active else subscription_ended,
                   None if subscription_active else subscription_starts, bool(usage_active))

    def decide(self, released_on) -> tuple[bool, str]:
        """(entitled, reason) for a release of this product dated ``released_on``."""
        if self.usage_active:
            return True, "Included in your pay-per-use entitlement."
        if self.subscription_active:
            return True, "Included in your active subscription."
        if self.perpetual and (self.perpetual_unlimited or released_on <= self.maintenance_end):
            return True, "Included in your maintenance."
        reasons = []
        if self.perpetual:
            reasons.append(f"Released after your maintenance ended on {self.maintenance_end.isoformat()}.")
        if self.subscription_ended is not None:
            reasons.append(f"Your subscription ended on {self.subscription_ended.isoformat()}.")
        if self.subscription_starts is not None:
            reasons.append(f"Your subscription starts on {self.subscription_starts.isoformat()}.")
        return False, " ".join(reasons) or "No active line of yours covers this release."


# A partner working for all its customers that may download from more entitlements than this
# walks each product's lines (``_walk``) instead of reading every line it may download from
# (``_aggregated_rights``). A walk passes about (entitlements / the partner's share) lines before
# it stops, so it suits a partner on many. At 200,000 entitlements (PostgreSQL, buffers read,
# planning apart: ~3 ms for the walk, ~1 ms for the aggregate): on 12,602 (the bench's
# reseller) walking reads 930 where aggregating read 15,500; on 1,436, 7,200 against 11,000;
# on 998, 6,900 against 7,700; on 616, 10,800 against 4,800; on 139 (the bench's
# distributor), 52,600 against 1,100.
DOWNLOAD_WALK_FROM = 1000


def download_rights(actor: Actor, today) -> dict[int, ProductRights]:
    """Per product the actor holds lines of (in ``download_entitlement_scope``), what they grant
    on ``today``; the statements follow the products, not the entitlements.

    A partner working for all its customers first lists the entitlements it may download from,
    at most ``DOWNLOAD_WALK_FROM`` + 1 of them (one statement, from two indexes): attached to
    more, it walks the products' lines; to fewer, it aggregates the lines of those. Everyone else
    aggregates (a customer's subtree, or the one customer a partner works for, is few rows away
    through the owner's index)."""
    scope = download_entitlement_scope(actor)
    if actor.is_partner and actor.customer_id is None:
        stock = select(_HELD.id).where(_HELD.owner_id == actor.org.id)
        listed = union_all(_downloadable(actor.org.id), stock).limit(DOWNLOAD_WALK_FROM + 1)
        ids = db.session.execute(listed).scalars().all()  # (session.scalars(): 5 times the CPU per row)
        if not ids:
            return {}
        if len(ids) > DOWNLOAD_WALK_FROM:
            return _walked_rights(actor.org.id, today)
        scope = scope & Entitlement.id.in_(ids)  # the scope still decides; the ids say where to look
    return _aggregated_rights(scope, today)


def _aggregated_rights(scope, today) -> dict[int, ProductRights]:
    """``download_rights`` as one aggregate over every line of the entitlements in ``scope``."""
    line = EntitlementLine
    started = or_(line.start_date.is_(None), line.start_date <= today)
    not_over = or_(line.end_date.is_(None), line.end_date >= today)
    perpetual = line.license_model == "perpetual"
    subscription = line.license_model == "subscription"
    usage = line.license_model == "usage"

    def flag(condition):
        return func.max(case((condition, 1), else_=0))

    rows = db.session.execute(
        select(
            line.product_id,
            flag(perpetual),
            func.max(case((perpetual, line.maintenance_end))),
            flag(perpetual & line.maintenance_end.is_(None)),
            flag(subscription & started & not_over),
            func.max(case((subscription & (line.end_date < today), line.end_date))),
            func.min(case((subscription & (line.start_date > today), line.start_date))),
            flag(usage & started & not_over),
        )
        .join(Entitlement, Entitlement.id == line.entitlement_id)
        .where(scope)
        .group_by(line.product_id)
    ).all()
    return {row[0]: ProductRights.of(*row) for row in rows}


def _walked_rights(partner_id: int, today) -> dict[int, ProductRights]:
    """``download_rights`` of a partner working for all its customers by walks (``_walk``)."""
    rows = db.session.execute(_walk(), {"partner": partner_id, "today": today}).all()
    rights = {}
    for product_id, subscription, usage, maintenance_end, ended, begins, any_usage in rows:
        perpetual = maintenance_end is not None
        if perpetual or subscription or ended is not None or begins is not None or any_usage:
            rights[product_id] = ProductRights.of(product_id, perpetual, maintenance_end, False, subscription,
                                                      ended, begins, usage)
    return rights


@cache
def _walk() -> Select:
    """The statement of ``_walked_rights`` (parameters: partner, today), built once: per catalog
    product a few questions, each a walk of the product's lines of one license model from the
    latest date of an index (``ix_entitlement_line_product_term``: end dates, none first;
    ``..._maintenance``: maintenance ends, none first) that stops at the first line of an
    entitlement in ``_partner_download_row``: at about one line in (entitlements / the partner's
    share), each line it passes one probe of the entitlement and of the partner's attachments.

    The latest maintenance end (a perpetual line without one reads as ``date.max``); a running
    subscription, a running pay-per-use line? Then only where the answer leaves it open: the day
    the last subscription ended and the first not begun starts, any pay-per-use line at all (a
    walk that finds nothing reads every line of its range; none runs for nothing). The running
    answers are a subquery the database computes once (``OFFSET 0``) for the others to read. A
    subscription line has both dates (``ck_entitlement_line_subscription_dates``), so one not
    begun ends after today."""
    line = EntitlementLine
    scope = _partner_download_row(bindparam("partner", type_=Integer))
    today = bindparam("today", type_=Date)

    def lines(product_id, model, *criteria, column=line.entitlement_id) -> Select:  # in both indexes
        return (select(column).select_from(line).join(Entitlement, Entitlement.id == line.entitlement_id)
                .where(line.product_id == product_id, line.license_model == model, *criteria, scope))

    def first(query: Select, order):
        return query.order_by(order).limit(1).scalar_subquery()

    def running(product_id, model):
        return first(lines(product_id, model, or_(line.end_date.is_(None), line.end_date >= today),
                           or_(line.start_date.is_(None), line.start_date <= today)),
                     line.end_date.desc().nulls_first()).is_not(None)

    answers = select(
        Product.id.label("product_id"),
        running(Product.id, "subscription").label("subscription"),
        running(Product.id, "usage").label("usage"),
    ).offset(0).subquery("answers")
    product = answers.c.product_id
    maintenance = first(lines(product, "perpetual", column=func.coalesce(line.maintenance_end, date.max)),
                        line.maintenance_end.desc().nulls_first())
    ended = first(lines(product, "subscription", line.end_date < today, column=line.end_date), line.end_date.desc())
    begins = lines(product, "subscription", line.start_date > today, line.end_date > today,
                   column=func.min(line.start_date)).scalar_subquery()
    return select(
        product, answers.c.subscription, answers.c.usage, maintenance,
        case((answers.c.subscription, None), else_=ended),
        case((answers.c.subscription, None), else_=begins),
        case((answers.c.usage, True), else_=lines(product, "usage").exists()),
    )


def entitling_entitlement(actor: Actor, product_id: int, released_on, today) -> Entitlement | None:
    """One entitlement in the actor's download scope that entitles it to a release of
    ``product_id`` dated ``released_on`` (the one a download is audited against), or None."""
    line = EntitlementLine
    started = or_(line.start_date.is_(None), line.start_date <= today)
    not_over = or_(line.end_date.is_(None), line.end_date >= today)
    grants = or_(
        (line.license_model == "perpetual") & or_(line.maintenance_end.is_(None), line.maintenance_end >= released_on),
        (line.license_model.in_(("subscription", "usage"))) & started & not_over,
    )
    # Correlated: the actor's scope drives (few rows), each probed through the line's index.
    granting = select(line.id).where(line.entitlement_id == Entitlement.id, line.product_id == product_id, grants)
    return db.session.scalar(
        select(Entitlement).where(download_entitlement_scope(actor), granting.exists())
        .order_by(Entitlement.id).limit(1)
    )


# --- single-object checks -----------------------------------------------------------------


def _in_subtree(org: Organization, root: Organization) -> bool:
    return org.path.startswith(root.path)


_ATTACHMENT_MEMO = "policy_own_attachments"


def own_attachment(actor: Actor, entitlement: Entitlement) -> Attachment | None:
    """The actor's own active attachment on an entitlement, if it is a partner.

    Remembered for the session's transaction while nothing changes (a page asks about every
    activation of an entitlement: one query, not one per question); any flush, commit or
    rollback forgets it, and a session with unflushed changes always asks the database.
    """
    if not actor.is_partner:
        return None
    session = db.session()
    memo = session.info.setdefault(_ATTACHMENT_MEMO, {})
    key = (actor.org.id, entitlement.id)
    unchanged = not (session.new or session.dirty or session.deleted)
    if unchanged and key in memo:
        return memo[key]
    found = db.session.scalar(
        select(Attachment).where(
            Attachment.entitlement_id == entitlement.id,
            Attachment.partner_id == actor.org.id,
            Attachment.active.is_(True),
        )
    )
    if unchanged:
        memo[key] = found
    return found


def _forget_attachments(session, *args) -> None:
    session.info.pop(_ATTACHMENT_MEMO, None)


for _moment in ("after_flush", "after_commit", "after_rollback", "after_soft_rollback"):
    event.listen(Session, _moment, _forget_attachments)


def _partner_sees(actor: Actor, entitlement: Entitlement, attachment: Attachment | None) -> bool:
    """A partner sees its stock and what its own live attachment lets it view."""
    if actor.customer_id is not None and entitlement.owner_id != actor.customer_id:
        return False
    return entitlement.owner_id == actor.org.id or (attachment is not None and attachment.can_view)


def sees_entitlement(actor: Actor, entitlement: Entitlement) -> bool:
    if actor.is_producer:
        return True
    if actor.is_customer:
        return _in_subtree(entitlement.owner, actor.org)
    if actor.is_partner:
        return _partner_sees(actor, entitlement, own_attachment(actor, entitlement))
    return False


def _handles_seats(actor: Actor, attachment: Attachment | None) -> bool:
    """Who works with a customer's seats at all: producer staff, the customer's users, and
    partners whose attachment allows activation (the actor already sees the entitlement)."""
    if actor.is_partner:
        return attachment is not None and attachment.can_activate
    return actor.is_producer or actor.is_customer


def _can_entitlement(actor: Actor, action: str, entitlement: Entitlement) -> bool:
    # A partner's attachment is read once here and serves both the visibility and the action.
    attachment = own_attachment(actor, entitlement) if actor.is_partner else None
    if actor.is_partner and action == A.ASSIGN:
        # Its own stock, whichever customer it works for (it assigns to that one, on its behalf).
        return (entitlement.owner_id == actor.org.id and entitlement.owner.kind != "customer"
                and entitlement.status == "active")
    if actor.is_partner:
        if not _partner_sees(actor, entitlement, attachment):
            return False
    elif not sees_entitlement(actor, entitlement):
        return False
    in_stock = entitlement.owner.kind != "customer"
    usable = entitlement.status == "active" and not in_stock
    if action == A.VIEW:
        return True
    if action in (A.ACTIVATE, A.RECORD_USAGE):
        # New seats and usage need an active entitlement in a customer's hands.
        return usable and _handles_seats(actor, attachment)
    if actor.is_producer:
        if action == A.ASSIGN:  # stock only; moving a customer's entitlement is a transfer
            return in_stock
        if action == A.REQUEST_TRANSFER:  # producer staff transfer directly, on a request
            return False
        return action in (A.DOWNLOAD, A.EDIT, A.ATTACH, A.REVOKE, A.SUSPEND)
    if actor.is_customer:
        if action == A.DOWNLOAD:
            return entitlement.status == "active"
        if action in (A.ATTACH, A.REVOKE, A.REQUEST_TRANSFER):
            return actor.is_admin
        return False
    if actor.is_partner:
        if action == A.ASSIGN:
            return in_stock and entitlement.owner_id == actor.org.id and entitlement.status == "active"
        if action == A.DOWNLOAD:
            # Stock: the holder may download what it is about to assign, whatever its own
            # attachment says (revoked or view-only); everyone else per its attachment.
            holds = entitlement.owner_id == actor.org.id
            may = holds or (attachment is not None and attachment.can_download)
            return may and entitlement.status == "active"
    return False


def _can_activation(actor: Actor, action: str, activation: Activation) -> bool:
    entitlement = activation.line.entitlement
    if action == A.VIEW:
        return sees_entitlement(actor, entitlement)
    if not activation.active:
        return False
    if action == A.RETURN:
        # Seats can always be given back, also on a suspended or returned entitlement.
        attachment = own_attachment(actor, entitlement) if actor.is_partner else None
        if actor.is_partner and not _partner_sees(actor, entitlement, attachment):
            return False
        if not actor.is_partner and not sees_entitlement(actor, entitlement):
            return False
        return _handles_seats(actor, attachment)
    if action == A.REHOST:  # a new activation: as activating the line
        return _can_entitlement(actor, A.ACTIVATE, entitlement)
    if action == A.DOWNLOAD:  # the .lic file: as downloading the entitlement's software
        return _can_entitlement(actor, A.DOWNLOAD, entitlement)
    return False


def _can_organization(actor: Actor, action: str, org: Organization) -> bool:
    if action == A.VIEW:
        return db.session.scalar(
            visible_organizations(actor).where(Organization.id == org.id).with_only_columns(Organization.id)
        ) is not None
    if actor.is_producer:
        if org.kind == "producer":
            # The producer's own organization: its users and roles are for its admins only.
            if action in (A.INVITE, A.MANAGE_USERS):
                return can(actor, A.MANAGE_PRODUCER_USERS)
            return action == A.EDIT and actor.is_admin
        if action == A.CREATE_CHILD:
            return org.kind == "customer"
        if action == A.MOVE:
            return org.kind == "customer"
        return action in (A.EDIT, A.DELETE, A.INVITE, A.MANAGE_USERS)
    if not actor.is_admin:
        return False
    if actor.is_customer and org.kind == "customer" and _in_subtree(org, actor.org):
        if action in (A.EDIT, A.CREATE_CHILD, A.INVITE, A.MANAGE_USERS):
            return True
        # The actor's own top organization is anchored above: only its descendants move.
        if action in (A.MOVE, A.DELETE):
            return org.id != actor.org.id
    if actor.is_partner and org.id == actor.org.id:
        return action in (A.EDIT, A.INVITE, A.MANAGE_USERS)
    return False


def _can_attachment(actor: Actor, action: str, attachment: Attachment) -> bool:
    entitlement = attachment.entitlement
    if actor.is_partner:
        return action == A.VIEW and attachment.partner_id == actor.org.id and sees_entitlement(actor, entitlement)
    if action == A.VIEW:
        return sees_entitlement(actor, entitlement)
    if action == A.REVOKE:
        return attachment.active and _can_entitlement(actor, A.REVOKE, entitlement)
    return False


def _can_request(actor: Actor, action: str, req: PortalRequest) -> bool:
    if action == A.VIEW:
        return db.session.scalar(
            visible_requests(actor).where(PortalRequest.id == req.id).with_only_columns(PortalRequest.id)
        ) is not None
    if action == A.WITHDRAW:
        # The requester, or an admin of the customer organization (or one above it) that made it.
        is_requester = actor.user is not None and req.requester_user_id == actor.user.id
        ours = (actor.is_customer and actor.is_admin and req.requester_org is not None
                and _in_subtree(req.requester_org, actor.org))
        # A partner's admins withdraw the access requests their organization made.
        ours = ours or (actor.is_partner and actor.is_admin and req.kind == "partner_access"
                        and req.requester_org_id == actor.org.id)
        return req.state == "pending" and (is_requester or ours)
    if action == A.DECIDE:
        return db.session.scalar(
            decidable_requests(actor).where(PortalRequest.id == req.id).with_only_columns(PortalRequest.id)
        ) is not None
    return False


# Actions on the portal as a whole (no object), by area and role.
_PRODUCER_STAFF = AREA_ACTIONS - {A.MANAGE_PRODUCER_USERS, A.MANAGE_USERS, A.ATTACH_PARTNERS, A.REQUEST_TRANSFER,
                                  A.REQUEST_ACCESS}
AREA_GRANTS: dict[str, frozenset[Action]] = {
    # Staff run the channel and moderate; only admins manage the producer's own users and roles.
    "producer_admin": _PRODUCER_STAFF | {A.MANAGE_PRODUCER_USERS, A.MANAGE_USERS},
    "producer_staff": _PRODUCER_STAFF,
    "customer_admin": frozenset({A.MANAGE_USERS, A.VIEW_AUDIT, A.ATTACH_PARTNERS, A.REQUEST_TRANSFER}),
    "customer_member": frozenset(),
    "partner_admin": frozenset({A.MANAGE_USERS, A.VIEW_AUDIT, A.VIEW_REPORTS, A.REQUEST_ACCESS}),
    "partner_member": frozenset({A.REQUEST_ACCESS}),
}


def area_role(actor: Actor) -> str:
    """'producer_admin', 'producer_staff', 'customer_member', 'partner_admin'..."""
    if actor.is_producer:
        return "producer_admin" if actor.is_admin else "producer_staff"
    return f"{actor.area}_{'admin' if actor.is_admin else 'member'}"


def check_action(action: str, obj: Any = None) -> Action:
    """The action as a member of the vocabulary, or ``UnknownAction`` (a bug in the caller)."""
    kind = None if obj is None else type(obj)
    allowed = VOCABULARY.get(kind)
    if allowed is None:
        raise UnknownAction(f"the policy knows no actions on {kind.__name__} objects")
    try:
        member = Action(action)
    except ValueError:
        raise UnknownAction(f"unknown action {action!r}") from None
    if member not in allowed:
        on = "the portal as a whole" if kind is None else f"a {kind.__name__}"
        raise UnknownAction(f"{action!r} is not an action on {on}")
    return member


def can(actor: Actor | None, action: str, obj: Any = None) -> bool:
    """May ``actor`` do ``action`` on ``obj``? The one question every view and template asks.

    An action outside the vocabulary for that kind of object raises ``UnknownAction``.
    """
    action = check_action(action, obj)
    if actor is None:
        return False
    if obj is None:
        return action in AREA_GRANTS.get(area_role(actor), frozenset())
    if isinstance(obj, Entitlement):
        return _can_entitlement(actor, action, obj)
    if isinstance(obj, EntitlementLine):
        return _can_entitlement(actor, action, obj.entitlement)
    if isinstance(obj, Activation):
        return _can_activation(actor, action, obj)
    if isinstance(obj, Organization):
        return _can_organization(actor, action, obj)
    if isinstance(obj, Attachment):
        return _can_attachment(actor, action, obj)
    if isinstance(obj, NotificationMessage):
        return _can_message(actor, action, obj)
    return _can_request(actor, action, obj)


def _can_message(actor: Actor, action: Action, message: NotificationMessage) -> bool:
    """Everyone whose inbox holds it reads it; an admin of the customer hierarchy that holds it
    acknowledges a security patch or critical notice (producer staff read, never acknowledge)."""
    visible = db.session.scalar(
        visible_messages(actor).where(NotificationMessage.id == message.id).with_only_columns(NotificationMessage.id)
    ) is not None
    if action == A.VIEW:
        return visible
    return (visible and actor.is_customer and actor.is_admin
            and message.notification.kind in MANDATORY_KINDS)


# --- loaders: 404 for anything not visible ------------------------------------------------


def _one_or_404(query: Select):
    """The one row of a scoped query, or 404: exactly as if it did not exist."""
    found = db.session.scalar(query)
    if found is None:
        abort(404)
    return found


def load_entitlement(actor: Actor, code: str) -> Entitlement:
    return _one_or_404(select(Entitlement).where(Entitlement.code == code, entitlement_row_scope(actor)))


def load_line(actor: Actor, line_id: int) -> EntitlementLine:
    return _one_or_404(
        select(EntitlementLine)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .where(EntitlementLine.id == line_id, entitlement_row_scope(actor))
    )


def load_activation(actor: Actor, activation_id: int) -> Activation:
    return _one_or_404(
        select(Activation)
        .join(EntitlementLine, EntitlementLine.id == Activation.line_id)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .where(Activation.id == activation_id, entitlement_row_scope(actor))
    )


def load_organization(actor: Actor, org_id: int) -> Organization:
    return _one_or_404(visible_organizations(actor).where(Organization.id == org_id))


def load_attachment(actor: Actor, attachment_id: int) -> Attachment:
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or not can(actor, "view", attachment):
        abort(404)
    return attachment


def load_request(actor: Actor, request_id: int) -> PortalRequest:
    req = db.session.get(PortalRequest, request_id)
    if req is None or not can(actor, "view", req):
        abort(404)
    return req


def catalog_products(actor: Actor) -> Select:
    """Products whose catalog entry (releases, every file) the actor manages: producer staff all,
    nobody else any (customers and partners see releases through ``download_rights``)."""
    if not can(actor, Action.MANAGE_CATALOG):
        return select(Product).where(false())
    return select(Product)


def load_product(actor: Actor, product_id: int) -> Product:
    return _one_or_404(catalog_products(actor).where(Product.id == product_id))


def load_release(actor: Actor, release_id: int) -> Release:
    return _one_or_404(select(Release).where(Release.id == release_id, Release.product_id.in_(
        catalog_products(actor).with_only_columns(Product.id))))


def load_release_file(actor: Actor, file_id: int) -> ReleaseFile:
    return _one_or_404(select(ReleaseFile).join(Release, Release.id == ReleaseFile.release_id).where(
        ReleaseFile.id == file_id, Release.product_id.in_(catalog_products(actor).with_only_columns(Product.id))))


# --- a customer's own hierarchy: its organizations, their users, their inbox ----------------


def tree_organizations(actor: Actor) -> Select:
    """The organizations of a customer user's own hierarchy (its organization and every
    descendant) in path order; none for anyone else. Its admins edit them (``can``)."""
    if not actor.is_customer:
        return select(Organization).where(false())
    return select(Organization).where(Organization.id.in_(subtree_org_ids(actor.org))).order_by(Organization.path)


def visible_memberships(actor: Actor) -> Select:
    """Memberships whose user and role the actor may see: a customer's users those of its
    hierarchy, a partner's those of its own organization, producer staff all."""
    query = select(Membership)
    if actor.is_producer:
        return query
    if actor.is_customer:
        return query.where(Membership.org_id.in_(subtree_org_ids(actor.org)))
    if actor.is_partner:
        return query.where(Membership.org_id == actor.org.id)
    return query.where(false())


def visible_messages(actor: Actor) -> Select:
    """Notification messages in the actor's inbox: a customer's users see those of every
    organization of their hierarchy; producer staff all; partners none (mail reaches them)."""
    query = select(NotificationMessage)
    if actor.is_producer:
        return query
    if actor.is_customer:
        return query.where(NotificationMessage.org_id.in_(subtree_org_ids(actor.org)))
    return query.where(false())


def join_requests_to_tree(actor: Actor) -> Select:
    """Pending requests to join an organization of a customer's hierarchy, oldest first."""
    if not actor.is_customer:
        return select(PortalRequest).where(false())
    return (
        select(PortalRequest)
        .where(PortalRequest.kind == "join_org", PortalRequest.state == "pending",
               PortalRequest.target_org_id.in_(subtree_org_ids(actor.org)))
        .order_by(PortalRequest.created_at, PortalRequest.id)
    )


def load_tree_organization(actor: Actor, org_id: int) -> Organization:
    """One organization of the actor's own hierarchy, or 404 (partners and the producer,
    visible elsewhere, are not part of it)."""
    return _one_or_404(tree_organizations(actor).where(Organization.id == org_id))


def load_membership(actor: Actor, membership_id: int) -> Membership:
    return _one_or_404(visible_memberships(actor).where(Membership.id == membership_id))


def load_message(actor: Actor, message_id: int, *options) -> NotificationMessage:
    """A message the actor's inbox holds, or 404; ``options`` load what the page shows with it."""
    return _one_or_404(visible_messages(actor).where(NotificationMessage.id == message_id).options(*options))


def hierarchy_paths(orgs: list[Organization]) -> dict[int, str]:
    """Hierarchy paths of many organizations with one query for all their ancestors."""
    ids = {i for org in orgs for i in org.ancestor_ids[:-1]}
    # Asked even when every one is top-level: a page costs the same whoever it shows.
    names = dict(db.session.execute(_NAMES_OF, {"ids": list(ids)}).all()) if orgs else {}
    return {org.id: path_label(org.path, org.name, names) for org in orgs}


_NAMES_OF = select(Organization.id, Organization.name).where(Organization.id.in_(bindparam("ids", expanding=True)))


def path_label(path: str, name: str, names: dict[int, str]) -> str:
    """'Contoso Group > Contoso Germany > Contoso Munich Plant': the names above an organization
    (``names``: id -> name of its ancestors) and its own."""
    return " > ".join([*(names.get(i, "?") for i in ids_on_path(path)[:-1]), name])


def hierarchy_path(org: Organization) -> str:
    """'Contoso Group > Contoso Germany > Contoso Munich Plant' (one query for the ancestors)."""
    return hierarchy_paths([org])[org.id]


__all__ = [
    "Action",
    "Actor",
    "UnknownAction",
    "access_request_target",
    "actor_for",
    "addressed_to_customer",
    "assignable_customers",
    "attachments_on_visible_entitlements",
    "attachable_partners",
    "can",
    "catalog_products",
    "customer_by_exact_name",
    "customers_served_by",
    "decidable_requests",
    "download_entitlement_scope",
    "download_rights",
    "entitling_entitlement",
    "entitlement_row_scope",
    "entitlement_scope",
    "hierarchy_path",
    "path_label",
    "join_requests_to_tree",
    "join_target",
    "load_activation",
    "load_attachment",
    "load_entitlement",
    "load_line",
    "load_membership",
    "load_message",
    "load_organization",
    "load_product",
    "load_release",
    "load_release_file",
    "load_request",
    "load_tree_organization",
    "own_attachment",
    "path_within",
    "partner_stock",
    "sees_entitlement",
    "system_actor",
    "transfer_recipient_by_exact_name",
    "tree_organizations",
    "visible_attachments",
    "visible_audit_events",
    "visible_entitlements",
    "visible_memberships",
    "visible_messages",
    "visible_organizations",
    "visible_requests",
]
