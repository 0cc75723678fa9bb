"""Routes open to everyone: the front door, health, the published signing key."""

from flask import jsonify, redirect, url_for
from flask_login import current_user

from portal.auth_session import current_actor
from portal.blueprints.public import bp
from portal.services.licenses import public_jwks
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


@bp.get("/no-access")
def no_access():
    """A signed-in user without any membership: nothing to see until someone approves."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_actor() is not None:
        return redirect(url_for("public.index"))
    return render("auth/no_access.html")


@bp.get("/.well-known/jwks.json")
def jwks():
    """The public key that verifies license certificates offline."""
    response = jsonify(public_jwks())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}
