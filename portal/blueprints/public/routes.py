"""Routes open to everyone: the front door, health, the published signing key."""

from flask import abort, flash, g, jsonify, redirect, request, url_for
from flask_login import current_user
from sqlalchemy import select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.auth.forms import RequestAccessForm, WithdrawForm
from portal.blueprints.public import bp
from portal.extensions import db
from portal.models import PortalRequest
from portal.services.errors import ServiceError
from portal.services.licenses import public_jwks
from portal.services.requests import request_to_join
from portal.services.requests import withdraw_join_request as withdraw_join_request_service
from portal.web import render


@bp.get("/")
def index():
    """Send a signed-in user to its portal, anyone else to sign in."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    actor = current_actor()
    if actor is None:
        return redirect(url_for("public.no_access"))
    return redirect(url_for(f"{actor.area}.home"))


@bp.route("/no-access", methods=["GET", "POST"])
def no_access():
    """A signed-in user without any membership: it may ask to join, and sees nothing else.

    The request goes to the admins of the organization named (``policy.join_target``: an
    exact, case-insensitive match) or, when no organization has that name, to producer
    staff; the page answers the same either way (the name is shown as typed, a repeated
    request is the same request), so it cannot be used to find out which organizations exist.
    """
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_actor() is not None:
        return redirect(url_for("public.index"))
    user = current_user._get_current_object()
    form = RequestAccessForm()
    if form.validate_on_submit():
        name = form.organization.data
        try:
            request_to_join(user, policy.join_target(name), message=form.message.data, organization_name=name)
        except ServiceError as error:
            db.session.rollback()
            form.organization.errors = [error.message]
            return render("auth/no_access.html", form=form, pending=_pending(user), status=error.status)
        db.session.commit()
        flash("Your request was sent. You will get an email when it is decided.")
        return redirect(url_for("public.no_access"))
    status = 422 if form.errors else 200
    return render("auth/no_access.html", form=form, pending=_pending(user), status=status)


@bp.post("/no-access/requests/<int:request_id>/withdraw")
def withdraw_join_request(request_id: int):
    """The requester withdraws one of its own pending join requests (anyone else's: 404)."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if not WithdrawForm().validate_on_submit():
        abort(400)
    user = current_user._get_current_object()
    req = next((r for r in _pending(user) if r.id == request_id), None)
    if req is None:
        abort(404)
    try:
        withdraw_join_request_service(user, req, request_id=g.request_id, client_addr=request.remote_addr)
    except ServiceError as error:
        db.session.rollback()
        abort(error.status, error.message)
    db.session.commit()
    flash("Your request was withdrawn.")
    return redirect(url_for("public.no_access"))


def _pending(user):
    return db.session.scalars(
        select(PortalRequest).where(PortalRequest.requester_user_id == user.id, PortalRequest.kind == "join_org",
                                    PortalRequest.state == "pending").order_by(PortalRequest.created_at)
    ).all()


@bp.get("/.well-known/jwks.json")
def jwks():
    """The public key that verifies license certificates offline."""
    response = jsonify(public_jwks())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}
