"""Sign-in (OIDC providers, local accounts where enabled), invitations, sign-out, and the
active-organization switcher."""

from __future__ import annotations

import hashlib
import math
import time
from urllib.parse import urlsplit

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_limiter import RateLimitExceeded
from flask_login import current_user
from limits import RateLimitItem, parse
from werkzeug.exceptions import TooManyRequests

from portal import oidc
from portal.auth_session import end_session, memberships_of, start_session
from portal.blueprints.auth import bp
from portal.blueprints.auth.forms import InvitationForm, LocalLoginForm, LogoutForm, SetPasswordForm, SwitchOrgForm
from portal.blueprints.guards import login_redirect
from portal.database import begin_write
from portal.extensions import client_network, db, limiter
from portal.models import User
from portal.services import identities
from portal.services.accounts import (
    accept_invitation,
    accept_invitation_with_password,
    authenticate_local,
    find_invitation,
    invitation_may_set_password,
    mask_email,
    note_sign_in,
)
from portal.services.errors import Conflict, ServiceError
from portal.web import render


def safe_next(target: str | None) -> str:
    """Only our own paths: no scheme, no host, no protocol-relative or backslash tricks."""
    if not target or any(ord(char) < 32 or ord(char) == 127 for char in target):
        return url_for("public.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("public.index")
    return target


def _failed(response) -> bool:
    """Only failures count against the sign-in limits (a refused attempt checked nothing)."""
    return response.status_code >= 400 and response.status_code != 429


def _failure_limit() -> str:
    return current_app.config["LOGIN_FAILURE_LIMIT"]


def _account_counters(email: str) -> tuple[RateLimitItem, list[str], list[str]]:
    """The per-account limit, and the keys of its two counters: failures for the account from
    all addresses, and failures for it from this address (hashed: no email addresses in the
    rate-limit store)."""
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    prefix = [current_app.config["RATELIMIT_KEY_PREFIX"]] if current_app.config.get("RATELIMIT_KEY_PREFIX") else []
    return (parse(current_app.config["LOGIN_ACCOUNT_FAILURE_LIMIT"]),
            [*prefix, "login-account", account],
            [*prefix, "login-account-address", account, client_network()])


def _check_account_limit(email: str) -> None:
    """Once an account's failures from all addresses reach its limit, the addresses that failed
    for it wait for the window to end; an address that has not failed for it may still try.
    So nobody can lock a user out by failing on purpose from elsewhere."""
    if not limiter.enabled:
        return
    item, account, this_address = _account_counters(email)
    if limiter.limiter.test(item, *account):
        return
    if limiter.limiter.get_window_stats(item, *this_address).remaining >= item.amount:
        return
    reset_at = limiter.limiter.get_window_stats(item, *account).reset_time
    raise TooManyRequests(retry_after=max(1, math.ceil(reset_at - time.time())))


def _count_account_failure(email: str) -> None:
    if limiter.enabled:
        item, account, this_address = _account_counters(email)
        limiter.limiter.hit(item, *account)
        limiter.limiter.hit(item, *this_address)


@bp.app_errorhandler(429)
def too_many_attempts(error: TooManyRequests):
    """Every 429 says when to come back: a ``Retry-After`` header and the same on the page."""
    retry_after = error.retry_after if isinstance(error.retry_after, int) else None
    breached = limiter.current_limit if isinstance(error, RateLimitExceeded) else None
    if breached is not None and breached.breached:
        retry_after = max(1, math.ceil(breached.window.reset_time - time.time()))
    retry_after = retry_after or 60
    wait = f"{retry_after} seconds" if retry_after < 120 else f"{math.ceil(retry_after / 60)} minutes"
    message = f"Too many attempts. Try again in {wait}."
    fragment_error = TooManyRequests(description=message)
    response = render("auth/too_many_attempts.html", fragment="errors/fragment.html", status=429,
                      message=message, error=fragment_error)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _context() -> dict:
    return {"request_id": g.request_id, "client_addr": request.remote_addr}


def _finish_sign_in(user: User, *, method: str, next_url: str, oidc_session: dict | None = None):
    """Everything a successful sign-in does, whichever way it came."""
    messages = []
    if identities.complete_pending_link(session.get("pending_link"), user, **_context()):
        messages.append("Your new sign-in is now linked to this account.")
    invitation_token = session.get("invitation_token")
    if invitation_token and find_invitation(invitation_token) is not None:
        # Never accepted silently: the invitation page asks, and checks it is this user's.
        next_url = url_for("auth.invitation", token=invitation_token)
    note_sign_in(user, method=method, **_context())
    db.session.commit()
    start_session(user)  # a new session: nothing of the anonymous one survives
    if oidc_session:
        session["oidc"] = oidc_session
    for message in messages:
        flash(message)
    return redirect(next_url)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_failure_limit, methods=["POST"], deduct_when=_failed)
def login():
    """The sign-in page: the configured identity providers, and local accounts where enabled."""
    form = LocalLoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    context = {"form": form, "providers": oidc.providers(), "next": form.next.data or ""}
    if request.method == "POST":
        if not current_app.config["LOCAL_LOGIN_ENABLED"]:
            abort(404)
        if form.validate_on_submit():
            _check_account_limit(form.email.data)
            user = authenticate_local(form.email.data, form.password.data)
            if user is not None:
                return _finish_sign_in(user, method="local", next_url=safe_next(form.next.data))
            _count_account_failure(form.email.data)
            note_sign_in(None, method="local", email=form.email.data, **_context())
            db.session.commit()
        # One message for every failure: it never says whether the account exists.
        form.password.errors = ["Email or password is not right."]
        return render("auth/login.html", status=401, **context)
    return render("auth/login.html", **context)


@bp.get("/login/oidc/<name>")
def oidc_start(name: str):
    """Send the browser to the identity provider (code flow, PKCE S256, state and nonce)."""
    client = oidc.client_for(name)
    if client is None:
        abort(404)
    # One flow at a time: drop the state of flows that never came back (the cookie stays small).
    for key in [k for k in session if k.startswith("_state_")]:
        session.pop(key)
    session["oidc_started"] = name
    session["oidc_next"] = safe_next(request.args.get("next"))
    return client.authorize_redirect(url_for("auth.oidc_callback", name=name, _external=True))


@bp.get("/login/oidc/<name>/callback")
@limiter.limit(_failure_limit, deduct_when=_failed)
def oidc_callback(name: str):
    """The provider sends the browser back here: check everything, then sign in."""
    if oidc.client_for(name) is None:
        abort(404)
    begin_write()  # a GET that creates users: take SQLite's write lock before reading
    started_with = session.pop("oidc_started", None)
    try:
        verified = oidc.complete_sign_in(name, started_with, request.args)
    except oidc.SignInError as error:
        note_sign_in(None, method=f"oidc:{name}", **_context())
        db.session.commit()
        return render("auth/sign_in_problem.html", message=str(error), status=400)
    outcome = identities.resolve(verified, invitation_token=session.get("invitation_token"), **_context())
    if outcome.kind == "refused":
        note_sign_in(None, method=f"oidc:{name}", email=verified.email, **_context())
        db.session.commit()
        return render("auth/sign_in_problem.html", message=outcome.message, status=403)
    if outcome.kind == "link_pending":
        db.session.commit()
        session["pending_link"] = identities.pending_link_payload(outcome.user, verified)
        return render("auth/link_account.html", email=verified.email, providers=oidc.providers())
    return _finish_sign_in(
        outcome.user,
        method=f"oidc:{name}",
        next_url=session.get("oidc_next") or url_for("public.index"),
        oidc_session={"provider": name, "id_token": verified.id_token},
    )


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str):
    """An invitation link: sign in to accept it (the first identity that does is bound to it),
    or, with local sign-in on and no account for the email yet, set a password here.

    The page names the organization that invites, never the invited address in full: a
    forwarded link does not tell whoever opens it whose it was.
    """
    invite = find_invitation(token)
    if invite is None:
        return render("auth/invitation_invalid.html", status=410)  # unknown, used or expired: all alike
    form = InvitationForm()
    password_form = problem = None
    status = 200
    if current_user.is_authenticated:
        if request.method == "POST" and form.validate_on_submit():
            try:
                accept_invitation(token, current_user._get_current_object(), **_context())
            except ServiceError as error:
                db.session.rollback()
                return render("auth/sign_in_problem.html", message=error.message, status=403)
            db.session.commit()
            session.pop("invitation_token", None)
            session["org_id"] = invite.org_id
            flash(f"You joined {invite.org.name}.")
            return redirect(url_for("public.index"))
    elif request.method == "POST":
        if not current_app.config["LOCAL_LOGIN_ENABLED"]:
            abort(400)
        password_form = SetPasswordForm()
        status = 422
        if password_form.validate_on_submit():
            org_id, org_name = invite.org_id, invite.org.name
            try:
                user = accept_invitation_with_password(token, password_form.password.data,
                                                       display_name=password_form.display_name.data, **_context())
            except Conflict as error:  # the email has an account someone signs in to
                db.session.rollback()
                password_form, problem, status = None, error.message, error.status
            except ServiceError as error:
                db.session.rollback()
                if error.field != "password":  # used meanwhile
                    return render("auth/invitation_invalid.html", status=410)
                password_form.password.errors.append(error.message)
            else:
                note_sign_in(user, method="local", **_context())
                db.session.commit()  # account, membership, invitation used and their audit: all or nothing
                start_session(user)
                session["org_id"] = org_id
                flash(f"Welcome! You joined {org_name}. Next time, sign in with {user.email} and your password.")
                return redirect(url_for("public.index"))
    else:
        session["invitation_token"] = token
        if current_app.config["LOCAL_LOGIN_ENABLED"] and invitation_may_set_password(invite):
            password_form = SetPasswordForm()
    is_invitee = current_user.is_authenticated and current_user.email == invite.email
    return render("auth/invitation.html", invite=invite, form=form, password_form=password_form,
                  is_invitee=is_invitee, masked_email=mask_email(invite.email), problem=problem,
                  providers=oidc.providers(), status=status)


@bp.post("/logout")
def logout():
    """Sign out here, and at the identity provider when it offers RP-initiated logout."""
    if not LogoutForm().validate_on_submit():
        abort(400)
    provider = session.get("oidc") or {}
    end_session(current_user)
    target = None
    if provider.get("provider"):
        target = oidc.end_session_url(provider["provider"], provider.get("id_token"),
                                      url_for("auth.login", _external=True))
    flash("You are signed out.")
    return redirect(target or url_for("auth.login"))


@bp.post("/switch-org")
def switch_org():
    """Choose the active organization among the user's memberships."""
    if not current_user.is_authenticated:
        return login_redirect()
    form = SwitchOrgForm()
    if not form.validate_on_submit():
        abort(400)
    membership = next((m for m in memberships_of(current_user) if m.org_id == form.org_id.data), None)
    if membership is None:
        abort(404)
    session["org_id"] = membership.org_id
    session.pop("customer_id", None)
    db.session.rollback()
    return redirect(url_for(f"{'partner' if membership.org.is_partner else membership.org.kind}.home"))
