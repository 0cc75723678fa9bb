"""The pages to time, found in the app itself: every GET route of the customer, partner and
producer blueprints, for the actors that work there.

Path parameters are filled with objects the actor can see, found through the policy's
scopes (``RESOLVERS``, by parameter name). A page added later is timed without editing
this file; a page with a parameter of a kind nobody taught the bench is reported as
unfillable (and fails the smoke test), so it cannot silently go unmeasured.

A page whose template has an htmx fragment (``render(..., fragment=...)``) is timed twice:
as a full page and with ``HX-Request: true``; the runner finds out by asking (``has_fragment``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Flask, url_for
from sqlalchemy import func, select

from portal import policy
from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    AuditEvent,
    ChannelRelationship,
    Entitlement,
    EntitlementLine,
    Membership,
    Notification,
    NotificationMessage,
    Organization,
    PortalRequest,
    Product,
    Release,
    ReleaseFile,
    User,
)
from portal.models.orgs import PARTNER_KINDS

AREAS = ("customer", "partner", "producer")
# Query strings worth timing besides the bare page (a search, a page deep in a list).
EXTRA_QUERIES: dict[str, list[str]] = {
    "partner.customers": ["q=a&page=3"],
}


class Unfillable(Exception):
    """A path parameter the bench does not know how to fill."""


@dataclass(frozen=True)
class Page:
    key: str  # the route with its query string: the same at every size ("/partner/customers?q=a&page=3")
    endpoint: str
    url: str  # filled in for this actor
    htmx: bool = False

    @property
    def label(self) -> str:
        return self.key + (" [HX]" if self.htmx else "")


def _scalar(query) -> Any:
    return db.session.scalar(query.limit(1))


def _entitlement(actor: policy.Actor) -> Entitlement | None:
    """A visible entitlement with many lines (among the first 200 by id): a rich detail page."""
    ids = select(Entitlement.id).where(policy.entitlement_scope(actor)).order_by(Entitlement.id).limit(200)
    best = db.session.scalar(
        select(EntitlementLine.entitlement_id)
        .where(EntitlementLine.entitlement_id.in_(ids.scalar_subquery()))
        .group_by(EntitlementLine.entitlement_id)
        .order_by(func.count().desc(), EntitlementLine.entitlement_id)
        .limit(1)
    )
    return db.session.get(Entitlement, best) if best is not None else None


def _line(actor):
    entitlement = _entitlement(actor)
    return entitlement.lines[0] if entitlement is not None and entitlement.lines else None


def _activation(actor):
    """A live activation of an active entitlement whose certificate the actor may download.

    A partner may see an activation without the right to its certificate (a view-only
    attachment): among the first hundred it sees, the first the policy lets it download.
    """
    candidates = db.session.scalars(
        select(Activation)
        .join(EntitlementLine, EntitlementLine.id == Activation.line_id)
        .join(Entitlement, Entitlement.id == EntitlementLine.entitlement_id)
        .where(policy.entitlement_scope(actor), Activation.active.is_(True), Entitlement.status == "active")
        .order_by(Activation.id)
        .limit(100)
    )
    return next((a.id for a in candidates if policy.can(actor, "download", a)), None)


def _attachment(actor):
    return _scalar(
        select(Attachment.id)
        .join(Entitlement, Entitlement.id == Attachment.entitlement_id)
        .where(policy.entitlement_scope(actor), policy.attachment_scope(actor))
        .order_by(Attachment.active.desc(), Attachment.id)
    )


def _organization(actor, kinds=("customer",)):
    """A visible organization of these kinds, other than the actor's own when there is one."""
    if actor.is_partner and "customer" in kinds:
        found = _scalar(policy.customers_served_by(actor).with_only_columns(Organization.id))
        if found is not None:
            return found
    visible = policy.visible_organizations(actor).with_only_columns(Organization.id)
    return _scalar(visible.where(Organization.kind.in_(kinds))
                   .order_by((Organization.id == actor.org.id).asc(), Organization.id))


def _request(actor):
    scope = getattr(policy, "visible_requests", None)
    query = scope(actor) if scope else policy.decidable_requests(actor)
    found = _scalar(query.with_only_columns(PortalRequest.id).order_by(PortalRequest.id))
    if found is None and actor.user is not None:
        found = _scalar(select(PortalRequest.id).where(PortalRequest.requester_user_id == actor.user.id))
    return found


def _user(actor):
    scope = getattr(policy, "visible_users", None)
    if scope is not None:
        return _scalar(scope(actor).with_only_columns(User.id).order_by(User.id))
    return _scalar(select(Membership.user_id).where(Membership.org_id == actor.org.id).order_by(Membership.id))


def _audit_event(actor):
    return _scalar(policy.visible_audit_events(actor).with_only_columns(AuditEvent.id)
                   .order_by(AuditEvent.id.desc()))


def _product(actor):
    entitlement = _entitlement(actor)
    if entitlement is not None and entitlement.lines:
        return entitlement.lines[0].product
    return _scalar(select(Product).order_by(Product.id))


def _release(actor):
    product = _product(actor)
    return _scalar(select(Release).where(Release.product_id == product.id).order_by(Release.id.desc())) \
        if product is not None else None


def _release_file(actor):
    """A release file the actor may open: any for producer staff, an entitled one for the rest."""
    if actor.is_producer:
        return _scalar(select(ReleaseFile.id).order_by(ReleaseFile.id))
    today = date.today()
    rights = policy.download_rights(actor, today)
    rows = db.session.execute(
        select(ReleaseFile.id, Release.product_id, Release.released_on).join(Release)
        .where(Release.product_id.in_(list(rights))).order_by(Release.released_on.desc(), ReleaseFile.id)
        .limit(200)).all() if rights else []
    return next((file_id for file_id, product_id, released_on in rows
                 if rights[product_id].decide(released_on)[0]), None)


def _attr(getter: Callable, name: str) -> Callable:
    return lambda actor: getattr(getter(actor), name, None)


RESOLVERS: dict[str, Callable[[policy.Actor], Any]] = {
    "code": _attr(_entitlement, "code"),
    "entitlement_code": _attr(_entitlement, "code"),
    "entitlement_id": _attr(_entitlement, "id"),
    "line_id": _attr(_line, "id"),
    "activation_code": _attr(_line, "activation_code"),
    "activation_id": _activation,
    # The customer's first message (each data set has one sent security patch, see portal/seed.py;
    # the customer admin's hierarchy is always among those told).
    "message_id": lambda a: _scalar(policy.visible_messages(a).with_only_columns(NotificationMessage.id)
                                    .order_by(NotificationMessage.id)),
    "attachment_id": _attachment,
    # Producer notifications: the latest (each data set has one, sent, from portal/seed.py).
    "notification_id": lambda a: _scalar(select(Notification.id).order_by(Notification.id.desc()))
    if a.is_producer else None,
    # A customer's organization pages are of its own tree: its own organization.
    "org_id": lambda a: a.org.id if a.is_customer else _organization(a, ("customer", *PARTNER_KINDS)),
    "organization_id": lambda a: _organization(a, ("customer", *PARTNER_KINDS)),
    "customer_id": _organization,
    "partner_id": lambda a: _organization(a, PARTNER_KINDS),
    "request_id": _request,
    "user_id": _user,
    "event_id": _audit_event,
    "audit_event_id": _audit_event,
    "product_id": _attr(_product, "id"),
    "sku": _attr(_product, "sku"),
    "release_id": _attr(_release, "id"),
    "version": _attr(_release, "version"),
    "file_id": _release_file,
    "edge_id": lambda a: _scalar(select(ChannelRelationship.id).order_by(ChannelRelationship.id)),
}


@dataclass
class Skipped:
    key: str
    reason: str
    unfillable: bool  # True: the bench lacks a resolver; False: this actor sees no such object


def routes(app: Flask, area: str):
    """The GET rules of one area's blueprint, in a stable order."""
    rules = [r for r in app.url_map.iter_rules()
             if r.endpoint.startswith(area + ".") and "GET" in (r.methods or ())]
    return sorted(rules, key=lambda r: r.rule)


def discover(app: Flask, area: str, actor: policy.Actor) -> tuple[list[Page], list[Skipped]]:
    """The pages of ``area`` for ``actor`` (inside an app context), and those it could not fill."""
    pages: list[Page] = []
    skipped: list[Skipped] = []
    for rule in routes(app, area):
        values = {}
        try:
            for name in sorted(rule.arguments - set(rule.defaults or {})):
                resolver = RESOLVERS.get(name)
                if resolver is None:
                    raise Unfillable(f"no resolver for <{name}>: add one to bench/pages.py RESOLVERS")
                value = resolver(actor)
                if value is None:
                    raise LookupError(f"nothing visible to fill <{name}>")
                values[name] = value
        except Unfillable as error:
            skipped.append(Skipped(rule.rule, str(error), True))
            continue
        except LookupError as error:
            skipped.append(Skipped(rule.rule, str(error), False))
            continue
        with app.test_request_context():
            url = url_for(rule.endpoint, **values)
        pages.append(Page(rule.rule, rule.endpoint, url))
        for query in EXTRA_QUERIES.get(rule.endpoint, []):
            pages.append(Page(f"{rule.rule}?{query}", rule.endpoint, f"{url}?{query}"))
    return pages, skipped


def has_fragment(full_body: bytes, htmx_body: bytes) -> bool:
    """The page answers htmx with a fragment of itself (not the whole document)."""
    return htmx_body != full_body and b"<html" not in htmx_body.lower()


def errors(results: list[tuple[str, str, int]]) -> list[str]:
    """What counts as a page answering an error, from (actor, page label, status) triples.

    Any 5xx is one. A 4xx for one actor while another actor of the same area gets 200 is a
    page not meant for that actor (a member on an admin page), not an error; a page that
    gives no actor a 200 is one.
    """
    found = []
    ok_pages = {page for _, page, status in results if status == 200}
    for actor, page, status in results:
        if status >= 500:
            found.append(f"{page} as {actor}: {status}")
        elif status != 200 and page not in ok_pages:
            found.append(f"{page} as {actor}: {status} (no actor gets this page)")
    return found
