"""Entering entitlements, assigning stock, attaching and revoking partners."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    ChannelRelationship,
    Entitlement,
    EntitlementLine,
    Organization,
    Product,
    SalesChainLink,
    utcnow,
)
from portal.models.entitlements import LICENSE_MODELS, RELATIONS
from portal.models.orgs import PARTNER_KINDS
from portal.policy import Actor, can
from portal.services.audit import record
from portal.services.codes import activation_code, entitlement_code
from portal.services.errors import Conflict, NotAllowed, ServiceError

# What the sales chain grants automatically (spec section 4).
SELLER_PERMISSIONS = ("view", "download", "activate")
DISTRIBUTOR_PERMISSIONS = ("view",)


@dataclass
class LineSpec:
    """One line of an order, as entered or imported."""

    product: Product
    license_model: str
    quantity: int
    start_date: date | None = None
    end_date: date | None = None
    maintenance_end: date | None = None
    usage_period: str | None = None


def validate_chain(chain: Sequence[Organization]) -> None:
    """A sales chain runs producer -> chain[0] -> ... -> seller along existing edges."""
    if not chain:
        return
    for partner in chain:
        if partner.kind not in PARTNER_KINDS:
            raise ServiceError(f"{partner.name} is not a partner.", field="sales_chain")
        if partner.status != "active":
            raise ServiceError(f"{partner.name} is not an active partner.", field="sales_chain")
    if len({p.id for p in chain}) != len(chain):
        raise ServiceError("A partner appears twice in the sales chain.", field="sales_chain")
    producer_id = db.session.scalar(select(Organization.id).where(Organization.kind == "producer"))
    pairs = [(producer_id, chain[0].id)] + [(a.id, b.id) for a, b in zip(chain, chain[1:], strict=False)]
    edges = set(
        db.session.execute(
            select(ChannelRelationship.supplier_id, ChannelRelationship.buyer_id).where(
                ChannelRelationship.buyer_id.in_([b for _, b in pairs])
            )
        ).all()
    )
    names = {p.id: p.name for p in chain}
    for supplier_id, buyer_id in pairs:
        if (supplier_id, buyer_id) not in edges:
            supplier = names.get(supplier_id, "the producer")
            raise ServiceError(
                f"{names[buyer_id]} is not supplied by {supplier}; the chain must follow the channel.",
                field="sales_chain",
            )


def _validate_line(spec: LineSpec, index: int) -> None:
    field = f"lines-{index}"
    if spec.license_model not in LICENSE_MODELS:
        raise ServiceError("Choose perpetual, subscription or usage.", field=f"{field}-license_model")
    if not isinstance(spec.quantity, int) or spec.quantity <= 0:
        raise ServiceError("The quantity must be a whole number above zero.", field=f"{field}-quantity")
    if spec.license_model == "subscription" and (spec.start_date is None or spec.end_date is None):
        raise ServiceError("A subscription needs a start and an end date.", field=f"{field}-end_date")
    if spec.start_date and spec.end_date and spec.end_date < spec.start_date:
        raise ServiceError("The end date comes before the start date.", field=f"{field}-end_date")
    if spec.license_model == "usage" and spec.usage_period not in ("month", "year"):
        raise ServiceError("A usage line needs a period: month or year.", field=f"{field}-usage_period")


def create_entitlement(
    actor: Actor,
    *,
    owner: Organization,
    lines: Sequence[LineSpec],
    sales_chain: Sequence[Organization] = (),
    fulfilment: str = "drop_ship",
    order_ref: str | None = None,
    purchase_date: date | None = None,
    notes: str | None = None,
    code: str | None = None,
) -> Entitlement:
    """Producer staff enter an order: drop-ship to a customer or into a stocking partner's stock.

    The chain must follow channel edges; the seller gets a ``sold`` attachment (view,
    download, activate) and each upstream tier a ``distributed`` one (view).
    """
    if not can(actor, "create_entitlement"):
        raise NotAllowed("Only producer staff enter entitlements.")
    if fulfilment == "drop_ship":
        if owner.kind != "customer":
            raise ServiceError("A drop-ship entitlement is owned by a customer.", field="owner")
    elif fulfilment == "stocking":
        if not sales_chain or owner.id != sales_chain[-1].id:
            raise ServiceError("Stock is held by the seller, the last partner of the chain.", field="owner")
        if not owner.stocking:
            raise ServiceError(f"{owner.name} is not a stocking partner.", field="owner")
    else:
        raise ServiceError("Choose drop-ship or stocking.", field="fulfilment")
    if owner.status != "active":
        raise ServiceError(f"{owner.name} is not active.", field="owner")
    if not lines:
        raise ServiceError("An entitlement needs at least one line.", field="lines")
    for index, spec in enumerate(lines):
        _validate_line(spec, index)
    validate_chain(sales_chain)

    entitlement = Entitlement(
        code=code or entitlement_code(),
        owner=owner,
        fulfilment=fulfilment,
        order_ref=(order_ref or "").strip() or None,
        purchase_date=purchase_date or utcnow().date(),
        notes=notes,
    )
    db.session.add(entitlement)
    for spec in lines:
        entitlement.lines.append(
            EntitlementLine(
                product=spec.product,
                license_model=spec.license_model,
                quantity=spec.quantity,
                start_date=spec.start_date,
                end_date=spec.end_date,
                maintenance_end=spec.maintenance_end,
                usage_period=spec.usage_period if spec.license_model == "usage" else None,
                activation_code=activation_code(),
            )
        )
    for position, partner in enumerate(sales_chain):
        entitlement.chain.append(SalesChainLink(position=position, partner=partner))
        is_seller = position == len(sales_chain) - 1
        permissions = SELLER_PERMISSIONS if is_seller else DISTRIBUTOR_PERMISSIONS
        entitlement.attachments.append(
            _new_attachment(actor, partner, "sold" if is_seller else "distributed", permissions)
        )
    db.session.flush()
    record(actor, "entitlement.create", entitlement, subject_org=owner, details={
        "code": entitlement.code,
        "owner": owner.name,
        "fulfilment": fulfilment,
        "sales_chain": [p.name for p in sales_chain],
        "lines": [{"sku": s.product.sku, "model": s.license_model, "quantity": s.quantity} for s in lines],
    })
    return entitlement


def _new_attachment(actor: Actor, partner: Organization, relation: str, permissions: Iterable[str]) -> Attachment:
    permissions = set(permissions) | {"view"}
    return Attachment(
        partner=partner,
        relation=relation,
        can_view=True,
        can_download="download" in permissions,
        can_activate="activate" in permissions,
        active=True,
        granted_by_id=actor.user.id if actor.user else None,
        granted_at=utcnow(),
    )


def lock_entitlement(entitlement: Entitlement) -> Entitlement:
    """Lock the entitlement's row and re-read it, so a check-then-write sees the latest state
    (PostgreSQL: ``FOR UPDATE``; SQLite: the write transaction already serializes writers)."""
    db.session.refresh(entitlement, with_for_update=True)
    return entitlement


def assign_stock(actor: Actor, entitlement: Entitlement, customer: Organization) -> Entitlement:
    """A stocking partner hands an entitlement to a customer: ownership moves, the chain stays."""
    lock_entitlement(entitlement)  # two assignments at once: the second sees the first's owner
    if not can(actor, "assign", entitlement):
        raise NotAllowed("You may not assign this entitlement.")
    if customer.kind != "customer" or customer.status != "active":
        raise ServiceError("Choose an active customer organization.", field="customer")
    previous = entitlement.owner
    entitlement.owner = customer
    db.session.flush()
    record(actor, "entitlement.assign", entitlement, subject_org=customer,
           on_behalf_of=actor.on_behalf_of(previous),
           details={"code": entitlement.code, "from": previous.name, "to": customer.name})
    return entitlement


def move_within_tree(actor: Actor, entitlement: Entitlement, org: Organization) -> Entitlement:
    """Move an entitlement between organizations of one customer hierarchy (a site takes over a
    subsidiary's licenses, say): a customer admin whose subtree holds both, or producer staff.

    Only the owner changes. Lines, activations, the sales chain and every attachment stay as
    they are: partners are connected to the entitlement, not to the organization that holds it.
    Outside the hierarchy it is a transfer, which producer staff decide.
    """
    lock_entitlement(entitlement)
    previous = entitlement.owner
    if not (can(actor, "view", entitlement) and previous.kind == "customer" and can(actor, "edit", previous)):
        raise NotAllowed("You may not move this entitlement.")
    same_tree = org.kind == "customer" and org.ancestor_ids[:1] == previous.ancestor_ids[:1]
    if not same_tree or not can(actor, "edit", org):
        raise ServiceError("Choose an organization of your own hierarchy; anywhere else is a transfer.",
                           field="org")
    if org.status != "active":
        raise ServiceError(f"{org.name} is not active.", field="org")
    if org.id == previous.id:
        return entitlement
    entitlement.owner = org
    db.session.flush()
    record(actor, "entitlement.move", entitlement, subject_org=org, details={
        "code": entitlement.code, "from": previous.name, "from_org_id": previous.id, "to": org.name,
    })
    return entitlement


def transfer_entitlement(actor: Actor, entitlement: Entitlement, recipient: Organization) -> list[Attachment]:
    """Move a customer's entitlement to another organization (an approved transfer).

    The sales chain and its partners' attachments stay; every other live attachment (the
    partners the old owner, or producer staff for it, brought in) is revoked, so the new
    owner's entitlement is visible to no partner it never chose. Returns those revoked.
    """
    lock_entitlement(entitlement)
    if not can(actor, "edit", entitlement):
        raise NotAllowed("Only producer staff transfer entitlements.")
    if recipient.kind != "customer" or recipient.status != "active":
        raise ServiceError("Choose an active customer organization.", field="recipient")
    previous = entitlement.owner
    chain_partners = {link.partner_id for link in entitlement.chain}
    revoked = []
    for attachment in db.session.scalars(
        select(Attachment).where(Attachment.entitlement_id == entitlement.id, Attachment.active.is_(True))
        .order_by(Attachment.id)
    ):
        if attachment.partner_id not in chain_partners:
            revoked.append(_revoke(actor, attachment, reason="transfer"))
    entitlement.owner = recipient
    db.session.flush()
    record(actor, "entitlement.transfer", entitlement, subject_org=recipient, details={
        "code": entitlement.code, "from": previous.name, "from_org_id": previous.id, "to": recipient.name,
        "revoked_attachments": [a.id for a in revoked],
    })
    return revoked


def attach_partner(
    actor: Actor,
    entitlements: Sequence[Entitlement],
    partner: Organization,
    *,
    relation: str = "services",
    permissions: Iterable[str] = ("view",),
    merge: bool = False,
) -> list[Attachment]:
    """Attach one partner to one or many entitlements with chosen permissions (all or none).

    Customer admins add ``services`` attachments only: ``sold`` and ``distributed`` come from
    the sales chain or from producer staff, because the channel's figures count them. An
    existing live attachment of that partner gets the new permissions and keeps its relation
    unless producer staff change it (``merge=True``: the union of old and new permissions, so
    a granted request never takes rights away from the seller). The audit records the
    relation and permissions actually kept.
    """
    permissions = set(permissions)
    entitlements = list({e.id: e for e in entitlements}.values())
    if relation not in RELATIONS:
        raise ServiceError("Choose sold, distributed or services.", field="relation")
    if relation != "services" and not actor.is_producer:
        raise ServiceError("Partners you bring in are attached as service providers (services); "
                           "sold and distributed come from the sales chain.", field="relation")
    if not permissions <= {"view", "download", "activate"}:
        raise ServiceError("Permissions are view, download and activate.", field="permissions")
    permissions.add("view")  # attaching is letting see (as a new attachment does); the rest adds to it
    if partner.kind not in PARTNER_KINDS or partner.status != "active":
        raise ServiceError("Choose an active partner.", field="partner")
    if not entitlements:
        raise ServiceError("Choose at least one entitlement.", field="entitlements")
    for entitlement in entitlements:
        if not can(actor, "attach", entitlement):
            raise NotAllowed(f"You may not attach partners to {entitlement.code}.")
    existing = {
        a.entitlement_id: a
        for a in db.session.scalars(
            select(Attachment).where(
                Attachment.partner_id == partner.id,
                Attachment.active.is_(True),
                Attachment.entitlement_id.in_([e.id for e in entitlements]),
            )
        )
    }
    result = []
    for entitlement in entitlements:
        attachment = existing.get(entitlement.id)
        if attachment is None:
            attachment = _new_attachment(actor, partner, relation, permissions)
            entitlement.attachments.append(attachment)
            action = "attachment.grant"
        else:
            if merge:
                attachment.can_view = attachment.can_view or "view" in permissions
                attachment.can_download = attachment.can_download or "download" in permissions
                attachment.can_activate = attachment.can_activate or "activate" in permissions
            else:
                if actor.is_producer:
                    attachment.relation = relation
                attachment.can_view = "view" in permissions
                attachment.can_download = "download" in permissions
                attachment.can_activate = "activate" in permissions
            action = "attachment.update"
        db.session.flush()
        record(actor, action, attachment, subject_org=entitlement.owner, details={
            "code": entitlement.code, "partner": partner.name, "relation": attachment.relation,
            "permissions": attachment.permissions,
        })
        result.append(attachment)
    return result


def set_attachment_permissions(actor: Actor, attachment: Attachment, permissions: Iterable[str]) -> Attachment:
    """Change what a live attachment allows (its relation stays): whoever may attach partners to
    the entitlement may, the seller's attachment included. View stays: taking every right away
    is revoking, and download or activate without view would be rights nobody can use."""
    permissions = set(permissions)
    if not permissions <= {"view", "download", "activate"}:
        raise ServiceError("Permissions are view, download and activate.", field="permissions")
    if "view" not in permissions:
        raise ServiceError("A partner attached to an entitlement can always view it; to take its access away, "
                           "revoke the attachment.", field="permissions")
    db.session.refresh(attachment, with_for_update=True)  # a revocation at the same moment wins
    entitlement = attachment.entitlement
    if not can(actor, "attach", entitlement):
        raise NotAllowed(f"You may not change partners' permissions on {entitlement.code}.")
    if not attachment.active:
        raise Conflict(f"{attachment.partner.name} was already revoked from {entitlement.code}.")
    before = attachment.permissions
    attachment.can_download = "download" in permissions
    attachment.can_activate = "activate" in permissions
    db.session.flush()
    record(actor, "attachment.update", attachment, subject_org=entitlement.owner, details={
        "code": entitlement.code, "partner": attachment.partner.name, "relation": attachment.relation,
        "permissions": attachment.permissions, "before": before,
    })
    return attachment


def revoke_attachment(actor: Actor, attachment: Attachment) -> Attachment:
    """Revoke any attachment, the seller's included: access ends at once, the chain stays."""
    db.session.refresh(attachment, with_for_update=True)  # two revocations at once: the second sees the first
    if not attachment.active:
        raise Conflict(f"{attachment.partner.name} was already revoked from {attachment.entitlement.code}.")
    if not can(actor, "revoke", attachment):
        raise NotAllowed("You may not revoke this attachment.")
    return _revoke(actor, attachment)


def _revoke(actor: Actor, attachment: Attachment, *, reason: str | None = None) -> Attachment:
    attachment.active = False
    attachment.revoked_at = utcnow()
    attachment.revoked_by_id = actor.user.id if actor.user else None
    db.session.flush()
    entitlement = attachment.entitlement
    details = {"code": entitlement.code, "partner": attachment.partner.name, "relation": attachment.relation}
    if reason:
        details["reason"] = reason
    record(actor, "attachment.revoke", attachment, subject_org=entitlement.owner, details=details)
    return attachment


def set_entitlement_status(actor: Actor, entitlement: Entitlement, status: str) -> Entitlement:
    """Producer staff suspend, reactivate or mark an entitlement returned."""
    if not can(actor, "suspend", entitlement):
        raise NotAllowed("You may not change this entitlement's status.")
    if status not in ("active", "suspended", "returned"):
        raise ServiceError("Choose active, suspended or returned.", field="status")
    previous = entitlement.status
    entitlement.status = status
    record(actor, "entitlement.status", entitlement, subject_org=entitlement.owner,
           details={"code": entitlement.code, "from": previous, "to": status})
    return entitlement


def correct_entitlement(actor: Actor, entitlement: Entitlement, *, order_ref: str | None, notes: str | None,
                        lines: dict[int, dict] | None = None) -> dict:
    """Producer staff correct an order: its reference and notes, and per line the quantity and
    dates (``lines``: line id -> {quantity, start_date, end_date, maintenance_end}).

    Sane rules: a quantity stays above zero and never below the seats active on the line; an end
    never comes before its start; a subscription keeps both dates. Returns the changes (audited
    as ``entitlement.correct`` with before and after), empty when nothing changed.
    """
    lock_entitlement(entitlement)
    if not can(actor, "edit", entitlement):
        raise NotAllowed("Only producer staff correct entitlements.")
    changes: dict = {}
    order_ref = (order_ref or "").strip() or None
    notes = (notes or "").strip() or None
    if order_ref is not None and len(order_ref) > 100:
        raise ServiceError("Keep the order reference under 100 characters.", field="order_ref")
    for name, value in (("order_ref", order_ref), ("notes", notes)):
        if getattr(entitlement, name) != value:
            changes[name] = [getattr(entitlement, name), value]
            setattr(entitlement, name, value)
    by_id = {line.id: line for line in entitlement.lines}
    for line_id, wanted in (lines or {}).items():
        line = by_id.get(line_id)
        if line is None:
            raise ServiceError("That line is not part of this entitlement.", field="lines")
        field = f"line-{line_id}"
        quantity = wanted.get("quantity", line.quantity)
        if not isinstance(quantity, int) or quantity <= 0:
            raise ServiceError("The quantity must be a whole number above zero.", field=f"{field}-quantity")
        if line.license_model != "usage":
            in_use = db.session.scalar(select(func.coalesce(func.sum(Activation.seats), 0)).where(
                Activation.line_id == line.id, Activation.active.is_(True)))
            if quantity < in_use:
                raise ServiceError(f"{in_use} seats are activated on this line; return some before lowering it "
                                   f"below {in_use}.", field=f"{field}-quantity")
        start = wanted.get("start_date", line.start_date)
        end = wanted.get("end_date", line.end_date)
        if line.license_model == "subscription" and (start is None or end is None):
            raise ServiceError("A subscription needs a start and an end date.", field=f"{field}-end_date")
        if start and end and end < start:
            raise ServiceError("The end date comes before the start date.", field=f"{field}-end_date")
        for name, value in (("quantity", quantity), ("start_date", start), ("end_date", end),
                            ("maintenance_end", wanted.get("maintenance_end", line.maintenance_end))):
            before = getattr(line, name)
            if before != value:
                changes.setdefault("lines", {}).setdefault(str(line_id), {})[name] = [
                    before.isoformat() if isinstance(before, date) else before,
                    value.isoformat() if isinstance(value, date) else value]
                setattr(line, name, value)
    if changes:
        db.session.flush()
        record(actor, "entitlement.correct", entitlement, subject_org=entitlement.owner,
               details={"code": entitlement.code, **changes})
    return changes
