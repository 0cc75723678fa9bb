"""The partner portal (a shell for now: the customers it serves and the switcher)."""

from flask import abort, current_app, redirect, request, session, url_for
from sqlalchemy import func, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Organization
from portal.web import query_int, query_text, render


def _customers_page(actor, query: str, page: int):
    """One page of the customers served, filtered by name, with their hierarchy paths."""
    scope = policy.customers_served_by(actor)
    if query:
        scope = scope.where(Organization.name.icontains(query, autoescape=True))
    pagination = db.paginate(scope, page=page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    return pagination, policy.hierarchy_paths(pagination.items)


@bp.get("/")
def home():
    """Landing page of a partner user: the customers it serves, derived from its attachments."""
    actor = current_actor()
    entitlements = db.session.scalar(
        select(func.count()).select_from(policy.visible_entitlements(actor).subquery())
    )
    current = db.session.get(Organization, actor.customer_id) if actor.customer_id else None
    pagination, paths = _customers_page(actor, "", 1)
    return render("partner/home.html", entitlement_count=entitlements, current=current,
                  pagination=pagination, paths=paths, query="")


@bp.get("/customers")
def customers():
    """The customers served, searchable and paginated (an htmx fragment inside the home page)."""
    actor = current_actor()
    query = query_text("q", max_length=100)
    page = query_int("page", default=1, minimum=1, maximum=100_000)
    pagination, paths = _customers_page(actor, query, page)
    return render("partner/customers.html", fragment="partner/_customers.html", pagination=pagination,
                  paths=paths, query=query)


@bp.post("/customer")
def switch_customer():
    """Work for one of the customers served (or all of them): scopes every page."""
    if not PortalForm().validate_on_submit():
        abort(400)
    actor = current_actor()
    raw = request.form.get("customer_id", "")
    if raw == "":
        session.pop("customer_id", None)
        return redirect(url_for("partner.home"))
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        abort(404)
    served = db.session.scalar(
        policy.customers_served_by(actor).where(Organization.id == int(raw)).with_only_columns(Organization.id)
    )
    if served is None:
        abort(404)
    session["customer_id"] = served
    return redirect(url_for("partner.home"))
