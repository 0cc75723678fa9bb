"""Routes open to everyone: the front door, health, the published signing key."""

from flask import flash, jsonify, redirect, url_for
from flask_login import current_user
from sqlalchemy import func, select

from portal.auth_session import current_actor
from portal.blueprints.auth.forms import RequestAccessForm
from portal.blueprints.public import bp
from portal.extensions import db
from portal.models import Organization, PortalRequest
from portal.services.errors import ServiceError
from portal.services.licenses import public_jwks
from portal.services.requests import request_to_join
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

    The request goes to the admins of the organization named (an exact, case-insensitive
    match) or, when no organization has that name, to producer staff; the page says the
    same either way, so it cannot be used to find out which organizations exist.
    """
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_actor() is not None:
        return redirect(url_for("public.index"))
    user = current_user._get_current_object()
    form = RequestAccessForm()
    if form.validate_on_submit():
        name = form.organization.data.strip()
        org = db.session.scalar(
            select(Organization).where(func.lower(Organization.name) == name.lower(),
                                       Organization.status == "active")
        )
        try:
            request_to_join(user, org, message=form.message.data, organization_name=name)
        except ServiceError as error:
            form.organization.errors = [error.message]
            return render("auth/no_access.html", form=form, pending=_pending(user), status=409)
        db.session.commit()
        flash("Your request was sent. You will get an email when it is decided.")
        return redirect(url_for("public.no_access"))
    status = 422 if form.errors else 200
    return render("auth/no_access.html", form=form, pending=_pending(user), status=status)


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
