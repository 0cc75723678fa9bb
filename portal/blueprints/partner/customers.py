"""``/partner/customers``: the customers a partner serves, derived from what it sees (the
``partner_customer`` read model behind ``policy.customers_served_by``), searchable by the
customer's name and by any name on its hierarchy path; and working for one of them, which
scopes every partner page to that customer (the top bar shows it and switches it).

A reseller may serve thousands: the list pages in SQL and reads the read model's index only for
its filter, order and count; the top bar's chooser shows a handful of matches, never all.
"""

from __future__ import annotations

import re

from flask import abort, current_app, redirect, request, session, url_for
from sqlalchemy import bindparam, func, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Organization
from portal.models.entitlements import PartnerCustomer
from portal.paging import LIKE_ESCAPE, contains_param
from portal.ui import Column, Table, parse_list_args, push_url
from portal.web import query_text, render

CHOOSER_SIZE = 8
# Where "Work for" may send the browser back to: a partner list page (a detail page of another
# customer would be 404 once the switch is made).
NEXT_PAGE = re.compile(r"/partner/[a-z]*")


# The read model's clause for a search: the customer's name or any name above it (parameter "q",
# the search in lower case as ``contains_param`` gives it).
_MATCHING = PartnerCustomer.search_name.contains(bindparam("q"), escape=LIKE_ESCAPE)
# Built once: how many customers a partner serves (matching a search), and their entitlements.
_SERVED_COUNT = (select(func.count()).select_from(PartnerCustomer)
                 .where(PartnerCustomer.partner_id == bindparam("partner_id")))
_SERVED_MATCHING_COUNT = _SERVED_COUNT.where(_MATCHING)
_ENTITLEMENT_COUNTS = (
    select(PartnerCustomer.customer_id, PartnerCustomer.entitlements)
    .where(PartnerCustomer.partner_id == bindparam("partner_id"),
           PartnerCustomer.customer_id.in_(bindparam("ids", expanding=True)))
)


def customers_page(actor, query: str, page: int, per_page: int):
    """One page of the customers served, filtered, with their total, paths and entitlement counts
    (four queries, whatever the page or the number of customers)."""
    params = {"partner_id": actor.org.id, "q": contains_param(query.lower())}
    served = policy.customers_served_by(actor)
    if query:
        served = served.where(_MATCHING).params(q=params["q"])
    pagination = db.paginate(served, page=page, per_page=per_page, error_out=False, count=False)
    # The same rows as the scope, counted from the index without visiting each organization.
    pagination.total = db.session.scalar(_SERVED_MATCHING_COUNT if query else _SERVED_COUNT, params)
    counts = dict(db.session.execute(_ENTITLEMENT_COUNTS, {**params, "ids": [c.id for c in pagination.items]}).all())
    return pagination, policy.hierarchy_paths(pagination.items), counts


@bp.get("/customers")
def customers():
    """The customers we serve, searchable (name or hierarchy path) and paginated, search in the URL."""
    actor = current_actor()
    state = parse_list_args(request.args, endpoint="partner.customers", sorts={"name"}, default_sort="name")
    pagination, paths, counts = customers_page(actor, state.q, state.page, current_app.config["PAGE_SIZE"])
    columns = [Column("name", "Customer"), Column("path", "Hierarchy"), Column("contact", "Contact"),
               Column("entitlements", "Entitlements", numeric=True), Column("actions", "Actions", label_hidden=True)]
    table = Table(id="customers", columns=columns, pagination=pagination, state=state, noun="customer",
                  nouns="customers", caption="Customers you serve",
                  empty_text="Customers appear here once an entitlement of theirs is attached to you.")
    response = render("partner/customers.html", fragment="partner/_customers_table.html", customers=table,
                      paths=paths, counts=counts)
    return push_url(response, state)


@bp.get("/customers/choose")
def choose_customer():
    """The top bar's chooser: a few customers served matching a search (by name or path)."""
    actor = current_actor()
    query = query_text("q", max_length=100)
    pagination, paths, _ = customers_page(actor, query, 1, CHOOSER_SIZE)
    return render("partner/customers_choose.html", fragment="partner/_customers_choose.html",
                  choices=pagination, paths=paths, query=query)


def _next_url() -> str:
    raw = request.form.get("next", "")
    return raw if NEXT_PAGE.fullmatch(raw) else url_for("partner.home")


@bp.post("/customer")
def switch_customer():
    """Work for one of the customers served (or all of them again): scopes every page."""
    if not PortalForm().validate_on_submit():
        abort(400)
    actor = current_actor()
    if "customer_id" not in request.form:
        # Enter in the chooser's search box with nothing to choose: nothing changes.
        return redirect(_next_url())
    raw = request.form["customer_id"]
    if raw == "":
        session.pop("customer_id", None)
        return redirect(_next_url())
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        abort(404)
    served = db.session.scalar(
        policy.customers_served_by(actor).where(Organization.id == int(raw)).with_only_columns(Organization.id)
    )
    if served is None:
        abort(404)
    session["customer_id"] = served
    return redirect(_next_url())
