"""Running the channel: partners' status and stocking flag, and removing channel edges.

Creating partners and adding edges reuse ``services.orgs`` (``create_organization``,
``add_channel_relationship``); these are the verbs it does not have.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.models import ChannelRelationship, Organization, SalesChainLink
from portal.models.orgs import ORG_STATUSES, PARTNER_KINDS
from portal.policy import Actor, can
from portal.services.audit import record
from portal.services.errors import Conflict, NotAllowed, ServiceError


def _partner(actor: Actor, org: Organization) -> None:
    if not can(actor, "manage_channel"):
        raise NotAllowed("Only producer staff manage the channel.")
    if org.kind not in PARTNER_KINDS:
        raise ServiceError("This organization is not a partner.")


def set_partner_status(actor: Actor, partner: Organization, status: str) -> Organization:
    """Activate or suspend a partner. A suspended partner signs in to nothing and cannot be put
    into new sales chains or attached; its attachments and the chains it is in stay."""
    _partner(actor, partner)
    if status not in ORG_STATUSES:
        raise ServiceError("Choose pending, active or suspended.", field="status")
    previous = partner.status
    if previous == status:
        return partner
    partner.status = status
    db.session.flush()
    record(actor, "organization.status", partner, subject_org=partner,
           details={"name": partner.name, "from": previous, "to": status})
    return partner


def set_stocking(actor: Actor, partner: Organization, stocking: bool) -> Organization:
    """Whether orders may be delivered into this partner's stock (it assigns them later)."""
    _partner(actor, partner)
    if partner.stocking == stocking:
        return partner
    partner.stocking = stocking
    db.session.flush()
    record(actor, "organization.stocking", partner, subject_org=partner,
           details={"name": partner.name, "stocking": stocking})
    return partner


def chains_using(edge: ChannelRelationship) -> int:
    """How many entitlements' sales chains run along ``supplier -> buyer``."""
    if edge.supplier.kind == "producer":
        return db.session.scalar(select(func.count()).select_from(SalesChainLink).where(
            SalesChainLink.partner_id == edge.buyer_id, SalesChainLink.position == 0)) or 0
    upper, lower = aliased(SalesChainLink), aliased(SalesChainLink)
    return db.session.scalar(
        select(func.count()).select_from(upper)
        .join(lower, (lower.entitlement_id == upper.entitlement_id) & (lower.position == upper.position + 1))
        .where(upper.partner_id == edge.supplier_id, lower.partner_id == edge.buyer_id)) or 0


def remove_channel_relationship(actor: Actor, edge: ChannelRelationship) -> None:
    """Remove a supplier -> buyer edge that no entitlement was sold along.

    Refused once a sales chain runs along it: the chains are the channel's history (reports
    per tier read them) and must keep following existing edges. To stop a partner selling,
    suspend it instead.
    """
    if not can(actor, "manage_channel"):
        raise NotAllowed("Only producer staff manage the channel.")
    used = chains_using(edge)
    if used:
        raise Conflict(
            f"{used} entitlement{'s were' if used != 1 else ' was'} sold along {edge.supplier.name} -> "
            f"{edge.buyer.name}; the edge stays for the channel's history. Suspend the partner to stop new sales.")
    record(actor, "channel.remove", edge, subject_org=edge.buyer,
           details={"supplier": edge.supplier.name, "buyer": edge.buyer.name})
    db.session.delete(edge)
    db.session.flush()
