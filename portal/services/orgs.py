"""Organizations, the channel, and customer hierarchies (materialized paths)."""

from __future__ import annotations

from sqlalchemy import String, func, literal, select, text, update

from portal.extensions import db
from portal.models import (
    ChannelRelationship,
    Membership,
    Organization,
    User,
)
from portal.models.entitlements import refresh_search_texts
from portal.models.orgs import ORG_KINDS, PARTNER_KINDS, ROLES_BY_KIND
from portal.policy import Actor, can, path_within, system_actor
from portal.services.audit import record
from portal.services.errors import Conflict, NotAllowed, ServiceError

CONTACT_FIELDS = ("email", "phone", "website", "address", "notification_emails")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Enter a name.", field="name")
    if len(name) > 200:
        raise ServiceError("Keep the name under 200 characters.", field="name")
    return name


def _next_organization_id() -> int:
    """An id for a new organization before its row exists: the path, which the database
    checks on insert, ends with it. PostgreSQL: the id sequence; SQLite: after the highest
    id, under the write transaction's lock."""
    if db.session.connection().dialect.name == "postgresql":
        return db.session.scalar(text("SELECT nextval(pg_get_serial_sequence('organization', 'id'))"))
    return db.session.scalar(select(func.coalesce(func.max(Organization.id), 0) + 1))


def new_organization(*, kind: str, name: str, parent: Organization | None = None, **fields) -> Organization:
    """THE place an organization row is made: id and materialized path together, flushed.

    No checks and no audit: callers decide who may create what and record it.
    """
    if parent is not None:
        lock_hierarchy()
        db.session.refresh(parent)  # a concurrent move may have changed its path
    org_id = _next_organization_id()
    org = Organization(id=org_id, kind=kind, name=name, parent=parent,
                       path=Organization.path_under(parent, org_id), **fields)
    db.session.add(org)
    db.session.flush()
    return org


HIERARCHY_LOCK = 0x504F5254414C  # any constant: the advisory lock of customer hierarchies


def lock_hierarchy() -> None:
    """Serialize changes of customer hierarchies until the transaction ends.

    Moves read paths, check for cycles and rewrite subtrees; two crossing moves checked side
    by side could each pass and together make a cycle. PostgreSQL takes a transaction-level
    advisory lock; on SQLite the write transaction (``begin_write``) already serializes them.
    """
    if db.session.connection().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HIERARCHY_LOCK})


def create_organization(
    actor: Actor,
    *,
    kind: str,
    name: str,
    parent: Organization | None = None,
    status: str = "active",
    stocking: bool = False,
    **contacts: str | None,
) -> Organization:
    """Producer staff create any organization; a customer admin creates a child in its subtree."""
    if kind not in ORG_KINDS:
        raise ServiceError("Choose a valid kind of organization.", field="kind")
    if parent is not None:
        if kind != "customer" or parent.kind != "customer":
            raise ServiceError("Only customer organizations have a parent.", field="parent")
        if not can(actor, "create_child", parent):
            raise NotAllowed("You may not add organizations here.")
    elif not can(actor, "manage_organizations"):
        raise NotAllowed("Only producer staff create top-level organizations.")
    if kind == "producer" and db.session.scalar(select(Organization.id).where(Organization.kind == "producer")):
        raise Conflict("This installation has its producer already.", field="kind")
    unknown = set(contacts) - set(CONTACT_FIELDS)
    if unknown:
        raise TypeError(f"unknown contact fields: {sorted(unknown)}")
    org = new_organization(kind=kind, name=_clean_name(name), parent=parent, status=status, stocking=stocking,
                           **contacts)
    record(actor, "organization.create", org, subject_org=org,
           details={"kind": kind, "name": org.name, "parent_id": parent.id if parent else None})
    return org


def bootstrap_producer(name: str, **contacts: str | None) -> Organization:
    """The installation's one producer, created before anyone can act (CLI set-up)."""
    org = new_organization(kind="producer", name=_clean_name(name), status="active", **contacts)
    record(system_actor(org), "organization.create", org, subject_org=org,
           details={"kind": "producer", "name": org.name})
    return org


def update_organization(actor: Actor, org: Organization, *, name: str | None = None,
                        **contacts: str | None) -> Organization:
    """Rename an organization or change its contact data."""
    if not can(actor, "edit", org):
        raise NotAllowed("You may not edit this organization.")
    changes = {}
    if name is not None and name.strip() != org.name:
        changes["name"] = [org.name, _clean_name(name)]
        org.name = _clean_name(name)
    for key, value in contacts.items():
        if key not in CONTACT_FIELDS:
            raise TypeError(f"unknown contact field {key}")
        if getattr(org, key) != value:
            changes[key] = [getattr(org, key), value]
            setattr(org, key, value)
    if changes:
        record(actor, "organization.update", org, subject_org=org, details=changes)
    return org


def move_organization(actor: Actor, org: Organization, new_parent: Organization | None) -> Organization:
    """Re-parent a customer organization; the paths of its whole subtree follow, no cycles."""
    if org.kind != "customer":
        raise ServiceError("Only customer organizations form a hierarchy.", field="parent")
    lock_hierarchy()  # then re-read: a crossing move may have committed meanwhile
    db.session.refresh(org)
    if new_parent is not None:
        db.session.refresh(new_parent)
    if not can(actor, "move", org):
        raise NotAllowed("You may not move this organization.")
    if new_parent is None:
        if not actor.is_producer:
            raise NotAllowed("Only producer staff make an organization top-level.")
    else:
        if new_parent.kind != "customer":
            raise ServiceError("A customer organization can only sit under another customer.", field="parent")
        if not can(actor, "create_child", new_parent):
            raise NotAllowed("You may not move organizations there.")
        if new_parent.path.startswith(org.path):
            raise ServiceError("An organization cannot move under itself or its own descendants.",
                               field="parent")
    old_path = org.path
    new_path = Organization.path_under(new_parent, org.id)
    if new_path == old_path:
        return org
    old_parent_id = org.parent_id
    org.parent = new_parent
    db.session.flush()
    # Rewrite every descendant's path (and the org's own) in one statement.
    db.session.execute(
        update(Organization)
        .where(path_within(old_path))
        .values(path=literal(new_path, String) + func.substr(Organization.path, len(old_path) + 1))
        .execution_options(synchronize_session=False)
    )
    # The partners' customer search reads the hierarchy path's names: those under it changed.
    refresh_search_texts(db.session.connection(), new_path)
    db.session.expire_all()
    record(actor, "organization.move", org, subject_org=org,
           details={"from_parent_id": old_parent_id, "to_parent_id": new_parent.id if new_parent else None})
    return org


# What keeps an organization on record, by the table that refers to it (the reason shown).
_HISTORY = {
    "organization": "Move or delete its subsidiaries first.",
    "entitlement": "It still owns entitlements; transfer them first.",
    "membership": "It still has members; remove them first.",
    "invitation": "It has invitations on record; it stays for their history.",
    "portal_request": "It has requests on record; it stays for their history.",
    "sales_chain_link": "It is in the sales chain of entitlements; it stays for the channel's history.",
    "attachment": "It has been attached to entitlements; it stays for their history.",
    "channel_relationship": "It has channel relationships; it stays for the channel's history.",
    "activation": "Its users activated seats; it stays for their history.",
    "notification_message": "It has received notices; it stays for their history.",
}


def _references_to(org: Organization) -> list[str]:
    """The tables with a row that refers to ``org`` (every foreign key to organizations,
    so a table added later keeps its history too). A foreign key that cascades is settings,
    not history (which notices it gets by email): those rows go with the organization."""
    found = []
    for table in db.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name != "organization" or (fk.ondelete or "").upper() == "CASCADE":
                continue
            if db.session.execute(select(fk.parent).where(fk.parent == org.id).limit(1)).first() is not None:
                found.append(table.name)
                break
    return found


def delete_organization(actor: Actor, org: Organization) -> None:
    """Delete an organization that has no subsidiaries, entitlements, members or history.

    Anything on record that refers to it (attachments, chain links, channel edges,
    activations, messages, requests...) keeps it: the refusal names the first reason.
    """
    if not can(actor, "delete", org):
        raise NotAllowed("You may not delete this organization.")
    lock_hierarchy()  # no child can be added under it meanwhile
    references = _references_to(org)
    if references:
        first = min(references, key=lambda t: list(_HISTORY).index(t) if t in _HISTORY else len(_HISTORY))
        raise Conflict(_HISTORY.get(first, "It has history on record; it stays for that history."))
    parent = org.parent
    record(actor, "organization.delete", org, subject_org=parent,
           details={"name": org.name, "path": org.path})
    db.session.delete(org)
    db.session.flush()


def add_channel_relationship(actor: Actor, supplier: Organization, buyer: Organization) -> ChannelRelationship:
    """A supplier -> buyer edge: producer -> partner, or partner -> partner (multi-tier)."""
    if not can(actor, "manage_channel"):
        raise NotAllowed("Only producer staff manage the channel.")
    if supplier.id == buyer.id:
        raise ServiceError("A partner cannot supply itself.", field="buyer")
    if supplier.kind not in ("producer", *PARTNER_KINDS):
        raise ServiceError("The supplier must be the producer or a partner.", field="supplier")
    if buyer.kind not in PARTNER_KINDS:
        raise ServiceError("The buyer must be a partner.", field="buyer")
    existing = db.session.scalar(
        select(ChannelRelationship).where(
            ChannelRelationship.supplier_id == supplier.id, ChannelRelationship.buyer_id == buyer.id
        )
    )
    if existing is not None:
        return existing
    edge = ChannelRelationship(supplier=supplier, buyer=buyer)
    db.session.add(edge)
    db.session.flush()
    record(actor, "channel.add", edge, subject_org=buyer,
           details={"supplier": supplier.name, "buyer": buyer.name})
    return edge


def _is_own_seat(actor: Actor, user_id: int, org_id: int) -> bool:
    """The membership the actor is acting through right now."""
    return actor.user is not None and actor.user.id == user_id and actor.org.id == org_id


def add_member(actor: Actor, org: Organization, user: User, role: str) -> Membership:
    """Give a user a role in an organization (admins of that organization, or the producer)."""
    if not can(actor, "manage_users", org):
        raise NotAllowed("You may not manage this organization's users.")
    if role not in ROLES_BY_KIND[org.kind]:
        raise ServiceError(f"Choose one of: {', '.join(ROLES_BY_KIND[org.kind])}.", field="role")
    if _is_own_seat(actor, user.id, org.id) and role != actor.role:
        # An admin demoting itself would lose the rights it acts with, mid-request.
        raise ServiceError("You cannot change your own role here; ask another admin.", field="role")
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)
    )
    if membership is None:
        membership = Membership(user=user, org=org, role=role)
        db.session.add(membership)
    else:
        membership.role = role
    db.session.flush()
    record(actor, "membership.set", membership, subject_org=org, details={"user": user.email, "role": role})
    return membership


def remove_member(actor: Actor, membership: Membership) -> None:
    """End a membership; the user's open sessions end at their next request."""
    if not can(actor, "manage_users", membership.org):
        raise NotAllowed("You may not manage this organization's users.")
    if _is_own_seat(actor, membership.user_id, membership.org_id):
        raise Conflict("You cannot remove yourself from the organization you work in; ask another admin.")
    user = membership.user
    user.session_version += 1
    record(actor, "membership.remove", membership, subject_org=membership.org,
           details={"user": user.email, "role": membership.role})
    db.session.delete(membership)
    db.session.flush()
