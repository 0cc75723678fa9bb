"""The partner portal (a shell for now: the customers it serves and the switcher)."""

from flask import abort, redirect, request, session, url_for
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.models import Organization
from portal.web import render


@bp.get("/")
def home():
    """Landing page of a partner user: the customers it serves, derived from its attachments."""
    actor = current_actor()
    customers = db.session.scalars(policy.customers_served_by(actor).limit(200)).all()
    entitlements = db.session.scalar(
        select(func.count()).select_from(policy.visible_entitlements(actor).subquery())
    )
    current = db.session.get(Organization, actor.customer_id) if actor.customer_id else None
    return render("partner/home.html", customers=customers, entitlement_count=entitlements, current=current)


@bp.post("/customer")
def switch_customer():
    """Work for one of the customers served (or all of them): scopes every page."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    actor = current_actor()
    raw = request.form.get("customer_id", "")
    if raw == "":
        session.pop("customer_id", None)
        return redirect(url_for("partner.home"))
    if not raw.isdigit():
        abort(404)
    served = db.session.scalar(
        policy.customers_served_by(actor).where(Organization.id == int(raw)).with_only_columns(Organization.id)
    )
    if served is None:
        abort(404)
    session["customer_id"] = served
    return redirect(url_for("partner.home"))
