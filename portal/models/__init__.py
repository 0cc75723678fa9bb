"""All models, one module per aggregate."""

from portal.models.activations import Activation, UsageRecord
from portal.models.audit import AuditEvent
from portal.models.base import utcnow
from portal.models.catalog import Product, Release, ReleaseFile
from portal.models.channel import ChannelCustomer, ChannelEnding, ChannelMonth, TierMonth
from portal.models.entitlements import Attachment, Entitlement, EntitlementLine, SalesChainLink
from portal.models.notifications import (
    Notification,
    NotificationMessage,
    NotificationPreference,
    NotificationRead,
    OutboxEmail,
)
from portal.models.orgs import ChannelRelationship, Identity, Invitation, Membership, Organization, User
from portal.models.requests import PortalRequest
from portal.models.sales import PartnerSale, PartnerSaleEnd

__all__ = [
    "Activation",
    "Attachment",
    "AuditEvent",
    "ChannelCustomer",
    "ChannelEnding",
    "ChannelMonth",
    "ChannelRelationship",
    "Entitlement",
    "EntitlementLine",
    "Identity",
    "Invitation",
    "Membership",
    "Notification",
    "NotificationMessage",
    "NotificationPreference",
    "NotificationRead",
    "Organization",
    "OutboxEmail",
    "PartnerSale",
    "PartnerSaleEnd",
    "PortalRequest",
    "Product",
    "Release",
    "ReleaseFile",
    "SalesChainLink",
    "TierMonth",
    "UsageRecord",
    "User",
    "utcnow",
]
