"""Users, local passwords and invitations."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.models import Invitation, Membership, Organization, User, utcnow
from portal.models.orgs import ROLES_BY_KIND
from portal.policy import Actor, can
from portal.services.audit import record, record_user_event
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.mail import queue_email

INVITATION_LIFETIME = timedelta(days=7)
PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 500  # hashing a megabyte of "password" is work nobody should get for free
# Compared against when the email is unknown, so a miss costs as much time as a hit.
_DUMMY_HASH = generate_password_hash("not-a-password", method="scrypt")


def normalize_email(email: str, *, check_deliverability: bool = False) -> str:
    try:
        return validate_email((email or "").strip(), check_deliverability=check_deliverability).normalized.lower()
    except EmailNotValidError as error:
        raise ServiceError(f"Enter a valid email address ({error}).", field="email") from None


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email.strip().lower()))


def create_user(email: str, display_name: str, *, password: str | None = None, actor: Actor | None = None,
                request_id: str | None = None, client_addr: str | None = None) -> User:
    """A new user account (no membership yet); the email is unique, case-insensitively.

    ``actor`` is whoever creates it; without one the user signed itself up.
    """
    email = normalize_email(email)
    if find_user_by_email(email) is not None:
        raise Conflict("A user with this email exists already.", field="email")
    user = User(email=email, display_name=(display_name or "").strip() or email.split("@")[0])
    if password is not None:
        set_password(user, password)
    db.session.add(user)
    db.session.flush()
    if actor is not None:
        record(actor, "user.create", user, details={"email": email})
    else:
        record_user_event(user, "user.create", request_id=request_id, client_addr=client_addr,
                          details={"email": email})
    return user


def set_password(user: User, password: str) -> None:
    if len(password or "") < PASSWORD_MIN_LENGTH:
        raise ServiceError(f"Use at least {PASSWORD_MIN_LENGTH} characters.", field="password")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ServiceError(f"Use at most {PASSWORD_MAX_LENGTH} characters.", field="password")
    user.password_hash = generate_password_hash(password, method="scrypt")


def authenticate_local(email: str, password: str) -> User | None:
    """The user for this email and password, or None; the same work is done either way."""
    user = find_user_by_email(email or "")
    if user is None or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or ""):
        return None
    return user if user.active else None


def note_sign_in(user: User | None, *, method: str, email: str | None = None, request_id: str | None = None,
                 client_addr: str | None = None) -> None:
    """Audit a sign-in, or a failed attempt (``user`` None or not the one who succeeded)."""
    record_user_event(
        user,
        f"session.{'sign_in' if user is not None else 'sign_in_failed'}",
        request_id=request_id,
        client_addr=client_addr,
        details={"method": method} | ({"email": email} if email else {}),
    )


def sign_out(user: User, *, request_id: str | None = None, client_addr: str | None = None) -> None:
    """End every session of this user's current version: the old cookie stops working."""
    user.session_version += 1
    record_user_event(user, "session.sign_out", request_id=request_id, client_addr=client_addr)


def set_user_active(actor: Actor, user: User, active: bool) -> User:
    """Disable or re-enable a user; disabling ends every open session at its next request."""
    if not actor.is_producer:
        orgs = [m.org for m in user.memberships]
        if not orgs or not all(can(actor, "manage_users", org) for org in orgs):
            raise NotAllowed("You may not change this user.")
    user.active = active
    user.session_version += 1
    record(actor, "user.enable" if active else "user.disable", user, details={"email": user.email})
    return user


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_user(actor: Actor, org: Organization, email: str, role: str) -> tuple[Invitation, str]:
    """Invite someone into an organization; the link (single use, 7 days) goes out by mail.

    Returns the invitation and the raw token (only its hash is stored).
    """
    if not can(actor, "invite", org):
        raise NotAllowed("You may not invite users to this organization.")
    email = normalize_email(email)
    if role not in ROLES_BY_KIND[org.kind]:
        raise ServiceError(f"Choose one of: {', '.join(ROLES_BY_KIND[org.kind])}.", field="role")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    invitation = Invitation(
        token_hash=_hash_token(token), email=email, org=org, role=role,
        invited_by_id=actor.user.id if actor.user else None,
        created_at=now, expires_at=now + INVITATION_LIFETIME,
    )
    db.session.add(invitation)
    db.session.flush()
    link = f"{current_app.config['BASE_URL'].rstrip('/')}/invitations/{token}"
    queue_email(
        to=email,
        subject=f"You are invited to {org.name} on the Entitlement Portal",
        body=(
            f"{actor.user.display_name if actor.user else 'The portal team'} invited you to join "
            f"{org.name} as {role}.\n\nAccept within 7 days (the link works once):\n{link}\n"
        ),
        category="invitation",
    )
    record(actor, "invitation.create", invitation, subject_org=org,
           details={"email": email, "role": role})
    return invitation, token


def mask_email(email: str) -> str:
    """``alice@contoso.example`` -> ``a•••@contoso.example``: its owner recognizes it, nobody else learns it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


def find_invitation(token: str) -> Invitation | None:
    """A usable invitation for this token: not used, not expired."""
    invitation = db.session.scalar(select(Invitation).where(Invitation.token_hash == _hash_token(token or "")))
    if invitation is None or invitation.used_at is not None or invitation.expires_at <= utcnow():
        return None
    return invitation


def _use_invitation(token: str) -> Invitation:
    """The usable invitation, locked: a second use at the same moment waits, then finds it used."""
    invitation = find_invitation(token)
    if invitation is not None:
        db.session.refresh(invitation, with_for_update=True)
    if invitation is None or invitation.used_at is not None:
        raise ServiceError("This invitation link is not valid any more.")
    return invitation


def accept_invitation(token: str, user: User, *, request_id: str | None = None,
                      client_addr: str | None = None) -> Membership:
    """Use an invitation once: the user joins the organization with the invited role."""
    invitation = _use_invitation(token)
    if user.email != invitation.email:
        # An invitation is for one person: a forwarded or leaked link joins nobody else,
        # and does not tell whoever holds it whose address it was sent to.
        raise NotAllowed(f"This invitation is for {mask_email(invitation.email)}; you are signed in as "
                         f"{user.email}. Sign out, then open the link again.")
    invitation.used_at = utcnow()
    invitation.used_by_id = user.id
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.org_id == invitation.org_id)
    )
    if membership is None:
        membership = Membership(user=user, org_id=invitation.org_id, role=invitation.role)
        db.session.add(membership)
    db.session.flush()
    actor = Actor(user=user, org=invitation.org, role=invitation.role, request_id=request_id, client_addr=client_addr)
    record(actor, "invitation.accept", invitation, subject_org=invitation.org,
           details={"email": user.email, "role": invitation.role})
    return membership


def _unclaimed(user: User) -> bool:
    """An account nobody can sign in to and that belongs nowhere: the invitation may give it a password."""
    return user.active and not user.password_hash and not user.identities and not user.memberships


def invitation_may_set_password(invitation: Invitation) -> bool:
    """Whether the link may set a password: no account for the email yet (or an unclaimed one).

    An account someone already signs in to (a password or an identity provider) never gets
    its password from a link: whoever got hold of the link would take the account over.
    Its owner signs in the usual way, then accepts.
    """
    user = find_user_by_email(invitation.email)
    return user is None or _unclaimed(user)


def accept_invitation_with_password(token: str, password: str, *, display_name: str | None = None,
                                    request_id: str | None = None, client_addr: str | None = None) -> User:
    """Set a password from an invitation link: the invited account is made with it and joins.

    For local sign-in. Only where ``invitation_may_set_password``; the caller commits and
    signs the user in.
    """
    invitation = _use_invitation(token)
    context = {"request_id": request_id, "client_addr": client_addr}
    user = find_user_by_email(invitation.email)
    if user is None:
        user = create_user(invitation.email, display_name or "", password=password, **context)
    elif _unclaimed(user):
        set_password(user, password)
        if (display_name or "").strip():
            user.display_name = display_name.strip()
        record_user_event(user, "user.set_password", details={"how": "invitation"}, **context)
    else:
        raise Conflict("This email has an account already. Sign in to it the usual way, then open this "
                       "link again to accept.")
    accept_invitation(token, user, **context)
    return user
