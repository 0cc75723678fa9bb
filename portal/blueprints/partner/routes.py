"""The partner portal (a shell for now: the customers it serves and the switcher)."""

from flask import abort, current_app, redirect, request, session, url_for
from sqlalchemy import func, select, true

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Organization
from portal.models.entitlements import PartnerCustomer
from portal.web import query_int, query_text, render


def _customers_page(actor, query: str, page: int):
    """One page of the customers served, filtered by name, with their hierarchy paths.

    Everything but the 25 organizations shown is read from the ``partner_customer`` index
    (the customer's name is copied there): the filter, the order and the count.
    """
    scope = policy.customers_served_by(actor)
    name_filter = PartnerCustomer.search_name.contains(query.lower(), autoescape=True) if query else true()
    pagination = db.paginate(scope.where(name_filter), page=page, per_page=current_app.config["PAGE_SIZE"],
                             error_out=False, count=False)
    # The same rows as the scope, counted without visiting each organization.
    pagination.total = db.session.scalar(
        select(func.count()).select_from(PartnerCustomer).where(PartnerCustomer.partner_id == actor.org.id,
                                                                name_filter))
    return pagination, policy.hierarchy_paths(pagination.items)


def _entitlement_count(actor) -> int:
    """How many entitlements the partner sees (of the customer it works for, when it chose one)."""
    if actor.customer_id is not None:
        return db.session.scalar(select(PartnerCustomer.entitlements).where(
            PartnerCustomer.partner_id == actor.org.id, PartnerCustomer.customer_id == actor.customer_id)) or 0
    # Each visible entitlement's id once: count the ids, without visiting the entitlements.
    return db.session.scalar(select(func.count()).select_from(
        policy.partner_entitlement_ids(actor.org.id).subquery()))


@bp.get("/")
def home():
    """Landing page of a partner user: the customers it serves, derived from its attachments."""
    actor = current_actor()
    entitlements = _entitlement_count(actor)
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
