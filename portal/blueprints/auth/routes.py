"""Sign-in, sign-out and the active-organization switcher."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user

from portal.auth_session import end_session, memberships_of, start_session
from portal.blueprints.auth import bp
from portal.blueprints.auth.forms import LocalLoginForm, LogoutForm, SwitchOrgForm
from portal.blueprints.guards import login_redirect
from portal.extensions import db
from portal.services.accounts import authenticate_local, note_sign_in
from portal.web import render


def safe_next(target: str | None) -> str:
    """Only our own paths: no scheme, no host, no protocol-relative or backslash tricks."""
    if not target:
        return url_for("public.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("public.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in page: local accounts where enabled (OIDC providers come next)."""
    form = LocalLoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    local_enabled = current_app.config["LOCAL_LOGIN_ENABLED"]
    if request.method == "POST":
        if not local_enabled:
            abort(404)
        if form.validate_on_submit():
            user = authenticate_local(form.email.data, form.password.data)
            note_sign_in(user, method="local", email=None if user else form.email.data,
                         request_id=g.request_id, client_addr=request.remote_addr)
            db.session.commit()
            if user is not None:
                start_session(user)
                return redirect(safe_next(form.next.data))
        # One message for every failure: it never says whether the account exists.
        form.password.errors = ["Email or password is not right."]
        return render("auth/login.html", form=form, local_enabled=local_enabled, status=401)
    return render("auth/login.html", form=form, local_enabled=local_enabled)


@bp.post("/logout")
def logout():
    """Sign out; the old session cookie is worthless afterwards."""
    if not LogoutForm().validate_on_submit():
        abort(400)
    end_session(current_user)
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


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
