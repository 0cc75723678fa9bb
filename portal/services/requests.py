"""Requests and their moderation: join, partner access, transfer, partner application."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Entitlement, Membership, Organization, PortalRequest, User, utcnow
from portal.models.orgs import PARTNER_KINDS
from portal.policy import Actor, can, path_within
from portal.services.accounts import invite_user, normalize_email
from portal.services.audit import record, record_user_event
from portal.services.entitlements import attach_partner, transfer_entitlement
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.mail import queue_email
from portal.services.orgs import new_organization


def _message(text: str | None) -> str | None:
    text = (text or "").strip()
    if len(text) > 2000:
        raise ServiceError("Keep the message under 2,000 characters.", field="message")
    return text or None


MAX_PENDING_JOIN_REQUESTS = 3  # per user: no unbounded spam into anyone's queue


def _pending_duplicate(**criteria) -> PortalRequest | None:
    query = select(PortalRequest).where(PortalRequest.state == "pending")
    for key, value in criteria.items():
        query = query.where(getattr(PortalRequest, key) == value)
    return db.session.scalar(query.limit(1))


def _insert(req: PortalRequest, duplicate_message: str) -> PortalRequest:
    """Add a request; a concurrent duplicate (the database's one-pending-request indexes)
    answers ``Conflict`` instead of an error, and leaves the caller's transaction usable."""
    try:
        with db.session.begin_nested():
            db.session.add(req)
            db.session.flush()
    except IntegrityError:
        raise Conflict(duplicate_message) from None
    return req


def _same_name(name: str) -> str:
    return " ".join(name.split()).lower()


def request_to_join(user: User, org: Organization | None, *, message: str | None = None,
                    organization_name: str | None = None) -> PortalRequest:
    """A signed-in user without a membership asks to join an organization.

    ``org`` is the organization the name matched (``policy.join_target``), or None: then the
    request goes to producer staff. Both cases look the same to the requester: the name is
    kept as typed, asking twice for the same name returns the pending request, and at most
    ``MAX_PENDING_JOIN_REQUESTS`` wait at once whether or not the names exist.
    """
    typed = " ".join((organization_name or (org.name if org else "")).split())
    if not typed:
        raise ServiceError("Name the organization you work for.", field="organization")
    if len(typed) > 200:
        raise ServiceError("Keep the name under 200 characters.", field="organization")
    db.session.refresh(user, with_for_update=True)  # one user's requests are counted one at a time
    pending = db.session.scalars(
        select(PortalRequest).where(PortalRequest.kind == "join_org", PortalRequest.state == "pending",
                                    PortalRequest.requester_user_id == user.id)
    ).all()
    for earlier in pending:
        if _same_name(earlier.details.get("organization_name", "")) == _same_name(typed) or (
                org is not None and earlier.target_org_id == org.id):
            return earlier
    if len(pending) >= MAX_PENDING_JOIN_REQUESTS:
        raise ServiceError(f"You have {len(pending)} requests waiting for a decision; withdraw one "
                           "before you ask to join another organization.", field="organization")
    req = _insert(PortalRequest(
        kind="join_org", requester_user_id=user.id, target_org=org, message=_message(message),
        details={"organization_name": typed}, created_at=utcnow(),
    ), "You asked to join this organization already.")
    # The requester belongs to no organization: a user event, visible to the target's admins.
    record_user_event(user, "request.create", subject_org=org, details={
        "kind": "join_org", "request_id": req.id, "organization": typed})
    return req


def withdraw_join_request(user: User, req: PortalRequest, *, request_id: str | None = None,
                          client_addr: str | None = None) -> PortalRequest:
    """A requester without any membership withdraws its own pending join request."""
    if req.kind != "join_org" or req.requester_user_id != user.id:
        raise NotAllowed("You may not withdraw this request.")
    db.session.refresh(req, with_for_update=True)
    if req.state != "pending":
        raise Conflict(f"This request is {req.state} already.")
    req.state = "withdrawn"
    req.decided_at = utcnow()
    record_user_event(user, "request.withdraw", subject_org=req.target_org, request_id=request_id,
                      client_addr=client_addr, details={"kind": "join_org", "request_id": req.id})
    return req


def request_partner_access(actor: Actor, customer: Organization, entitlement_codes: Sequence[str],
                           *, permissions: Sequence[str] = ("view",), message: str | None = None) -> PortalRequest:
    """A partner asks to be attached to some of a customer's entitlements."""
    if not can(actor, "request_access"):
        raise NotAllowed("Only partners request access.")
    if customer.kind != "customer":
        raise ServiceError("Choose a customer organization.", field="customer")
    codes = sorted({c.strip().upper() for c in entitlement_codes if c.strip()})
    if not codes:
        raise ServiceError("Name at least one entitlement code.", field="entitlements")
    busy = "You have a pending request to this customer; withdraw it or wait for the decision."
    if _pending_duplicate(kind="partner_access", requester_org_id=actor.org.id, target_org_id=customer.id):
        raise Conflict(busy)
    req = _insert(PortalRequest(
        kind="partner_access", requester_user_id=actor.user.id, requester_org_id=actor.org.id,
        target_org=customer, message=_message(message),
        details={"codes": codes, "permissions": sorted(set(permissions) | {"view"})}, created_at=utcnow(),
    ), busy)
    # Not on behalf of the customer: the customer has granted nothing yet.
    record(actor, "request.create", req, subject_org=customer,
           details={"kind": "partner_access", "codes": codes})
    return req


def request_transfer(actor: Actor, entitlement: Entitlement, recipient: Organization,
                     *, message: str | None = None) -> PortalRequest:
    """A customer admin asks producer staff to move an entitlement outside its own tree."""
    if not can(actor, "request_transfer", entitlement):
        raise NotAllowed("You may not transfer this entitlement.")
    if recipient.kind != "customer":
        raise ServiceError("Choose a customer organization.", field="recipient")
    if recipient.path.startswith(actor.org.path):
        raise ServiceError("That organization is in your own tree; no transfer needed.", field="recipient")
    busy = "A transfer of this entitlement is pending already."
    if _pending_duplicate(kind="transfer", entitlement_id=entitlement.id):
        raise Conflict(busy)
    req = _insert(PortalRequest(
        kind="transfer", requester_user_id=actor.user.id, requester_org_id=actor.org.id,
        target_org=recipient, entitlement=entitlement, message=_message(message), details={},
        created_at=utcnow(),
    ), busy)
    record(actor, "request.create", req, subject_org=entitlement.owner,
           details={"kind": "transfer", "code": entitlement.code, "to": recipient.name})
    return req


def apply_as_partner(user: User, *, company: str, kind: str, email: str | None = None,
                     website: str | None = None, message: str | None = None) -> PortalRequest:
    """A company applies to become a partner; producer staff decide."""
    if kind not in PARTNER_KINDS:
        raise ServiceError("Choose distributor, reseller or service provider.", field="kind")
    if not (company or "").strip():
        raise ServiceError("Enter the company name.", field="company")
    for field, value, limit in (("company", company, 200), ("email", email, 254), ("website", website, 300)):
        if value and len(value.strip()) > limit:
            raise ServiceError(f"Keep it under {limit} characters.", field=field)
    busy = "Your application is waiting for a decision already."
    if _pending_duplicate(kind="partner_application", requester_user_id=user.id):
        raise Conflict(busy)
    req = _insert(PortalRequest(
        kind="partner_application", requester_user_id=user.id, message=_message(message),
        details={"company": company.strip(), "kind": kind, "email": email, "website": website},
        created_at=utcnow(),
    ), busy)
    record_user_event(user, "request.create", details={
        "kind": "partner_application", "request_id": req.id, "company": company.strip()})
    return req


INVITED_PARTNER_KIND = "service_provider"  # a partner a customer brings in works on its entitlements


def invite_partner(actor: Actor, *, company: str, email: str, entitlements: Sequence[Entitlement],
                   permissions: Sequence[str] = ("view",), message: str | None = None) -> PortalRequest:
    """A customer admin invites a partner that is not on the portal yet onto chosen entitlements.

    It becomes a ``partner_application`` for producer staff, made by the customer, with the
    company, its admin's email, the entitlement codes and the permissions in ``details``. On
    approval the partner is created (a service provider), attached as asked with the relation
    ``services``, and its admin is invited by mail (``_carry_out``).
    """
    if not can(actor, "attach_partners"):
        raise NotAllowed("Only your organization's admins invite partners.")
    company = " ".join((company or "").split())
    if not company:
        raise ServiceError("Enter the company's name.", field="company")
    if len(company) > 200:
        raise ServiceError("Keep the name under 200 characters.", field="company")
    email = normalize_email(email)
    permissions = sorted(set(permissions) | {"view"})
    if not set(permissions) <= {"view", "download", "activate"}:
        raise ServiceError("Permissions are view, download and activate.", field="permissions")
    entitlements = list({e.id: e for e in entitlements}.values())
    if not entitlements:
        raise ServiceError("Choose at least one entitlement.", field="entitlements")
    for entitlement in entitlements:
        if not can(actor, "attach", entitlement):
            raise NotAllowed(f"You may not attach partners to {entitlement.code}.")
    on_portal = db.session.scalar(
        select(Organization.name).where(Organization.kind.in_(PARTNER_KINDS), Organization.status == "active",
                                        func.lower(Organization.name) == company.lower()).limit(1))
    if on_portal is not None:
        raise ServiceError(f"{on_portal} is on the portal already: choose it under “Attach a partner”.",
                           field="company")
    busy = ("Your invitation of another partner is waiting for producer staff; withdraw it under Requests, "
            "or wait for their decision, before you invite the next one.")
    pending = _pending_duplicate(kind="partner_application", requester_user_id=actor.user.id)
    if pending is not None:
        if _same_name(pending.details.get("company", "")) == _same_name(company):
            raise Conflict(f"You invited {company} already; producer staff have not decided yet.", field="company")
        if pending.details.get("email") == email:
            raise Conflict(f"You invited {email} already (for {pending.details.get('company')}); producer staff "
                           "have not decided yet.", field="email")
        raise Conflict(busy, field="company")
    codes = sorted(e.code for e in entitlements)
    req = _insert(PortalRequest(
        kind="partner_application", requester_user_id=actor.user.id, requester_org_id=actor.org.id,
        message=_message(message), created_at=utcnow(),
        details={"invitation": True, "company": company, "kind": INVITED_PARTNER_KIND, "email": email,
                 "customer": actor.org.name, "customer_id": actor.org.id, "codes": codes,
                 "permissions": permissions},
    ), busy)
    record(actor, "request.create", req, subject_org=actor.org, details={
        "kind": "partner_application", "invitation": True, "company": company, "email": email, "codes": codes,
        "permissions": permissions})
    return req


def withdraw_request(actor: Actor, req: PortalRequest) -> PortalRequest:
    """The requester (or an admin of the customer that asked) withdraws a pending request."""
    db.session.refresh(req, with_for_update=True)  # a decision at the same moment: one of them wins
    if req.state != "pending":
        raise Conflict(f"This request was {req.state} already.")
    if not can(actor, "withdraw", req):
        raise NotAllowed("You may not withdraw this request.")
    req.state = "withdrawn"
    req.decided_at = utcnow()
    record(actor, "request.withdraw", req, subject_org=req.target_org,
           details={"kind": req.kind})
    return req


def decide_request(actor: Actor, req: PortalRequest, *, approve: bool, note: str | None = None) -> PortalRequest:
    """Approve or reject a pending request, carry out an approval, tell the requester."""
    # Two deciders at once: the second waits for the first, then sees its decision.
    db.session.refresh(req, with_for_update=True)
    # Views load the request through the policy first, so the state is no secret here.
    if req.state != "pending":
        raise Conflict(f"This request is {req.state} already.")
    if not can(actor, "decide", req):
        raise NotAllowed("You may not decide this request.")
    if approve:
        _carry_out(actor, req)
    # Read everything first: a lazy load between the assignments would autoflush a decided
    # state without its time (refused by the database's check).
    decided_by_id = actor.user.id if actor.user else None
    req.state, req.decided_by_id, req.decided_at = ("approved" if approve else "rejected"), decided_by_id, utcnow()
    req.decision_note = (note or "").strip() or None
    db.session.flush()
    # A customer's invitation of a partner: the customer's admins follow what became of it.
    subject_org = req.requester_org if req.details.get("invitation") else req.target_org
    record(actor, f"request.{req.state}", req, subject_org=subject_org,
           details={"kind": req.kind, "note": req.decision_note})
    queue_email(
        to=req.requester.email,
        subject=f"Your {req.kind.replace('_', ' ')} request was {req.state}",
        body=f"Your request #{req.id} was {req.state}."
        + (f"\n\nNote: {req.decision_note}" if req.decision_note else ""),
        category="request",
    )
    return req


def _carry_out(actor: Actor, req: PortalRequest) -> None:
    if req.kind == "join_org":
        if req.target_org is None:
            raise ServiceError("Choose the organization to add the user to before approving.")
        exists = db.session.scalar(
            select(Membership).where(Membership.user_id == req.requester_user_id,
                                     Membership.org_id == req.target_org_id))
        if exists is None:
            role = "staff" if req.target_org.kind == "producer" else "member"
            db.session.add(Membership(user_id=req.requester_user_id, org_id=req.target_org_id, role=role))
            db.session.flush()
    elif req.kind == "partner_access":
        codes = req.details.get("codes", [])
        entitlements = list(db.session.scalars(
            select(Entitlement).where(Entitlement.code.in_(codes),
                                      Entitlement.owner_id.in_(select(Organization.id).where(
                                          path_within(req.target_org.path))))
        ))
        if not entitlements:
            raise ServiceError("None of the requested entitlements belongs to this customer.")
        attach_partner(actor, entitlements, req.requester_org, relation="services",
                       permissions=req.details.get("permissions", ["view"]), merge=True)
    elif req.kind == "transfer":
        transfer_entitlement(actor, req.entitlement, req.target_org)
    elif req.kind == "partner_application" and req.details.get("invitation"):
        _carry_out_invitation(actor, req)
    elif req.kind == "partner_application":
        details = req.details
        org = new_organization(kind=details["kind"], name=details["company"], status="active",
                               email=details.get("email"), website=details.get("website"))
        db.session.add(Membership(user_id=req.requester_user_id, org_id=org.id, role="admin"))
        req.target_org = org
        db.session.flush()
        record(actor, "organization.create", org, subject_org=org,
               details={"kind": org.kind, "name": org.name, "from_request": req.id})


def _carry_out_invitation(actor: Actor, req: PortalRequest) -> None:
    """An approved invitation: the partner is created, attached to those of the chosen
    entitlements its customer still holds, and its admin invited by mail."""
    details, customer = req.details, req.requester_org
    entitlements = list(db.session.scalars(
        select(Entitlement).where(Entitlement.code.in_(details.get("codes", [])),
                                  Entitlement.owner_id.in_(select(Organization.id).where(
                                      path_within(customer.path))))
        .order_by(Entitlement.code)))
    if not entitlements:
        raise ServiceError(f"None of the chosen entitlements belongs to {customer.name} any more.")
    org = new_organization(kind=details.get("kind", INVITED_PARTNER_KIND), name=details["company"],
                           status="active", email=details.get("email"))
    req.target_org = org
    record(actor, "organization.create", org, subject_org=org,
           details={"kind": org.kind, "name": org.name, "from_request": req.id, "invited_by": customer.name})
    attach_partner(actor, entitlements, org, relation="services", permissions=details.get("permissions", ["view"]))
    invite_user(actor, org, details["email"], "admin")
