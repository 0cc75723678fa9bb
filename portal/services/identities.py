"""Who an OIDC identity is: a known identity, an invitation, a link, or a newcomer.

Users are keyed by issuer + subject. A verified email that matches an existing user is
linked to that user only through an invitation or after the user re-authenticates with a
way of signing in it already has; an email alone never grants an account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from portal.extensions import db
from portal.models import Identity, User, utcnow
from portal.oidc import VerifiedIdentity
from portal.services.accounts import accept_invitation, create_user, find_invitation, find_user_by_email
from portal.services.audit import record_user_event
from portal.services.errors import ServiceError

LINK_WINDOW = timedelta(minutes=10)


@dataclass
class Outcome:
    """``kind``: signed_in, new_user (no membership yet), link_pending, refused."""

    kind: str
    user: User | None = None
    message: str | None = None


def _find_identity(issuer: str, subject: str) -> Identity | None:
    return db.session.scalar(select(Identity).where(Identity.issuer == issuer, Identity.subject == subject))


def _has_identity_from(user: User, issuer: str) -> bool:
    return db.session.scalar(
        select(Identity.id).where(Identity.user_id == user.id, Identity.issuer == issuer)
    ) is not None


def link_identity(user: User, issuer: str, subject: str, email: str | None, *, how: str,
                  request_id: str | None = None, client_addr: str | None = None) -> Identity:
    identity = Identity(user_id=user.id, issuer=issuer, subject=subject, email=email,
                        created_at=utcnow(), last_login_at=utcnow())
    db.session.add(identity)
    db.session.flush()
    record_user_event(user, "identity.link", request_id=request_id, client_addr=client_addr,
                      details={"issuer": issuer, "subject": subject, "how": how})
    return identity


def resolve(verified: VerifiedIdentity, *, invitation_token: str | None = None,
            request_id: str | None = None, client_addr: str | None = None) -> Outcome:
    """Decide who is signing in with this verified identity (flushes; the caller commits)."""
    context = {"request_id": request_id, "client_addr": client_addr}
    identity = _find_identity(verified.issuer, verified.subject)
    if identity is not None:
        user = identity.user
        if not user.active:
            return Outcome("refused", message="This account is disabled. Ask your administrator.")
        identity.last_login_at = utcnow()
        if verified.email:
            identity.email = verified.email
        return Outcome("signed_in", user)  # a pending invitation is confirmed on its page

    if invitation_token and (invitation := find_invitation(invitation_token)) is not None:
        # The first identity that signs in with the link becomes the invited user's.
        user = find_user_by_email(invitation.email)
        if user is None:
            user = create_user(invitation.email, verified.name or invitation.email)
        elif not (verified.email_verified and verified.email == invitation.email) or _has_identity_from(
                user, verified.issuer):
            # The invited email has an account already: a link must not hand it to whoever holds it.
            return Outcome("refused", message="This invitation is for an existing account. Sign in to that "
                                              "account the usual way, then open the invitation link again.")
        if not user.active:
            return Outcome("refused", message="This account is disabled. Ask your administrator.")
        link_identity(user, verified.issuer, verified.subject, verified.email, how="invitation", **context)
        accept_invitation(invitation_token, user)
        return Outcome("signed_in", user)

    if not verified.email or not verified.email_verified:
        # An unverified email could be anyone's: it never names an account here.
        return Outcome("refused", message="Your identity provider did not confirm your email address; "
                                          "the portal needs it. Ask your administrator for an invitation.")
    existing = find_user_by_email(verified.email)
    if existing is not None:
        if not _has_identity_from(existing, verified.issuer) and existing.active:
            return Outcome("link_pending", existing)
        return Outcome("refused", message="An account with this email exists already. Ask your "
                                          "administrator for an invitation to link this sign-in to it.")
    try:
        user = create_user(verified.email, verified.name or verified.email)
    except ServiceError as error:
        return Outcome("refused", message=error.message)
    link_identity(user, verified.issuer, verified.subject, verified.email, how="sign_up", **context)
    return Outcome("new_user", user)


def pending_link_payload(user: User, verified: VerifiedIdentity) -> dict:
    """What the session keeps while the user proves it owns the existing account."""
    return {"user_id": user.id, "issuer": verified.issuer, "subject": verified.subject,
            "email": verified.email, "expires": (utcnow() + LINK_WINDOW).timestamp()}


def complete_pending_link(payload: dict | None, user: User, *, request_id: str | None = None,
                          client_addr: str | None = None) -> bool:
    """After a re-authentication as ``user``: link the identity that was waiting, if it is still valid."""
    if not payload or payload.get("user_id") != user.id or payload.get("expires", 0) < utcnow().timestamp():
        return False
    if _find_identity(payload["issuer"], payload["subject"]) is not None or _has_identity_from(user, payload["issuer"]):
        return False
    link_identity(user, payload["issuer"], payload["subject"], payload.get("email"), how="re_authentication",
                  request_id=request_id, client_addr=client_addr)
    return True
