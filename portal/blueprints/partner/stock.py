"""A stocking partner's stock: the entitlements it owns and has not assigned yet, with their
age in stock, and assigning one or several at once to a customer: one it serves (a chooser
searched among ``policy.assignable_customers``) or one found by its exact name in the producer's
customer directory (``policy.customer_by_exact_name``, which reveals nothing else).

Ownership moves, the sales chain stays (``services.entitlements.assign_stock``, audited per
entitlement). A bulk assignment is all or nothing: one transaction, one commit. While the
partner works for one customer, stock goes to that customer only, on its behalf.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from sqlalchemy import func, select
from wtforms import SelectField, SelectMultipleField, StringField
from wtforms.validators import Length, Optional

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints import listing
from portal.blueprints.customer import queries as q
from portal.blueprints.customer.forms_partners import MAX_ENTITLEMENTS_AT_ONCE, id_or_none
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Entitlement, Organization
from portal.models.entitlements import PartnerCustomer
from portal.services.entitlements import assign_stock
from portal.services.errors import ServiceError
from portal.ui import Column, Table, parse_list_args, push_url, toast
from portal.web import is_htmx, query_text, render

COLUMNS = [
    Column("select", "Select", label_hidden=True),
    Column("code", "Entitlement", sortable=True),
    Column("purchased", "In stock", sortable=True),
    Column("products", "Products"),
    Column("status", "Status", sortable=True),
]
CHOICES_SHOWN = 10
NO_SUCH_CUSTOMER = "No customer with exactly that name."


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class AssignStockForm(PortalForm):
    """Entitlements of our stock (by id) and one customer: served (``customer``) or named."""

    class Meta:
        csrf = False  # CSRFProtect checks every POST of the app

    entitlements = SelectMultipleField("Entitlements", coerce=id_or_none, validate_choice=False)
    customer = SelectField("A customer you serve", coerce=id_or_none, validate_choice=False,
                           validators=[Optional()])
    customer_name = StringField("Or a customer's exact name", filters=[_strip],
                                description="As the producer knows it; nothing is listed, only an exact match.",
                                validators=[Optional(), Length(max=200)])


def _state():
    return parse_list_args(request.args, endpoint="partner.stock", sorts=set(listing.SORTS),
                           default_sort="purchased")


def _stock_page(actor, state):
    query = policy.partner_stock(actor)
    if state.q:
        query = query.where(q.matches_search(state.q))
    keys = listing.SORTS[state.sort]
    query = query.order_by(*(key.desc() if state.descending else key for key in keys))
    return db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)


def _served_choices(actor, text: str) -> tuple[list[Organization], int]:
    """Customers we may assign to whose name contains ``text`` (the first few, and how many)."""
    scope = policy.assignable_customers(actor)
    # Only a stocking partner's scope reads the customers served (the index searched here); for
    # anyone else it is empty, and asked all the same: the page costs the same for every partner.
    if text and actor.org.stocking:
        scope = scope.where(PartnerCustomer.search_name.contains(text.lower(), autoescape=True))
    found = db.session.scalars(scope.limit(CHOICES_SHOWN)).all()
    total = db.session.scalar(select(func.count()).select_from(scope.with_only_columns(Organization.id).subquery()))
    return found, total


def _context(actor, form: AssignStockForm, *, customer_q: str = "", errors: list[str] | None = None):
    state = _state()
    pagination = _stock_page(actor, state)
    table = Table(
        id="stock-table", columns=COLUMNS, pagination=pagination, state=state,
        noun="entitlement in stock", nouns="entitlements in stock", caption="Entitlements in your stock",
        empty_text="Entitlements the producer delivers into your stock appear here until you assign them.",
    )
    choices, choices_total = _served_choices(actor, customer_q)
    chosen = set(form.entitlements.data or [])
    return dict(
        table=table, form=form, details=listing.row_details(pagination.items, seller=False), today=q.today(),
        chosen=chosen, choices=choices, choices_total=choices_total, customer_q=customer_q,
        working_for_id=actor.customer_id, assign_errors=errors or [],
    )


def _blank_form() -> AssignStockForm:
    return AssignStockForm(prefix="assign", formdata=None)


@bp.get("/stock")
def stock():
    """Our stock, oldest first, with the form that assigns what is ticked (the table alone for htmx)."""
    actor = current_actor()
    customer_q = query_text("customer_q", max_length=100)
    context = _context(actor, _blank_form(), customer_q=customer_q)
    response = render("partner/stock.html", fragment="partner/_stock_table.html", **context)
    return push_url(response, context["table"].state)


@bp.get("/stock/customers")
def stock_customers():
    """The customers we serve whose name matches, to choose whom to assign to (htmx: the choices)."""
    actor = current_actor()
    customer_q = query_text("customer_q", max_length=100)
    context = _context(actor, _blank_form(), customer_q=customer_q)
    return render("partner/stock.html", fragment="partner/_stock_customers.html", **context)


def _recipient(actor, form: AssignStockForm) -> Organization | None:
    """The customer the form names, or None with the error next to its field."""
    if form.customer.raw_data and form.customer.raw_data[0]:
        found = db.session.scalar(policy.assignable_customers(actor).where(Organization.id == form.customer.data)) \
            if form.customer.data is not None else None
        if found is None:
            form.customer.errors = ["Choose one of the customers you serve."]
        return found
    if form.customer_name.data:
        if actor.customer_id is not None:
            form.customer_name.errors = ["While you work for one customer, stock goes to that customer."]
            return None
        found = policy.customer_by_exact_name(actor, form.customer_name.data)
        if found is None:
            form.customer_name.errors = [NO_SUCH_CUSTOMER]
        return found
    form.customer.errors = ["Choose a customer you serve, or give a customer's exact name."]
    return None


def _chosen_stock(actor, form: AssignStockForm) -> list[Entitlement]:
    """The ticked entitlements, each one of our stock that we may assign; else a field error."""
    ids = form.entitlements.data or []
    if not ids:
        form.entitlements.errors = ["Tick at least one entitlement of your stock."]
        return []
    if len(ids) > MAX_ENTITLEMENTS_AT_ONCE:
        form.entitlements.errors = [f"Assign at most {MAX_ENTITLEMENTS_AT_ONCE} entitlements at once."]
        return []
    wanted = set(ids)
    found = db.session.scalars(policy.partner_stock(actor).where(Entitlement.id.in_([i for i in wanted if i]))
                               .order_by(Entitlement.code)).all()
    if None in wanted or len(found) != len(wanted):
        form.entitlements.errors = ["Choose entitlements of your stock only."]
        return []
    blocked = [e.code for e in found if not policy.can(actor, "assign", e)]
    if blocked:
        form.entitlements.errors = [f"{', '.join(blocked)} cannot be assigned: only active stock can."]
        return []
    return found


def _refuse(actor, form: AssignStockForm, errors: list[str] | None = None):
    db.session.rollback()
    context = _context(actor, form, errors=errors)
    return render("partner/stock.html", fragment="partner/_stock_region.html", status=422, **context)


@bp.post("/stock/assign")
def assign():
    """Assign the ticked entitlements to one customer: all of them or none."""
    actor = current_actor()
    form = AssignStockForm(prefix="assign")
    form.validate()
    chosen = _chosen_stock(actor, form)
    customer = _recipient(actor, form)
    if form.errors or not chosen or customer is None:
        return _refuse(actor, form)
    try:
        for entitlement in chosen:
            assign_stock(actor, entitlement, customer)
    except ServiceError as error:
        if error.status == 403:
            db.session.rollback()
            abort(403, error.message)
        return _refuse(actor, form, [error.message])
    db.session.commit()
    n = len(chosen)
    codes = ", ".join(e.code for e in chosen)
    message = f"Assigned {n} entitlement{'' if n == 1 else 's'} to {customer.name}: {codes}."
    if not is_htmx():
        flash(message)
        return redirect(url_for("partner.stock"))
    context = _context(actor, _blank_form())
    response = render("partner/stock.html", fragment="partner/_stock_region.html", **context)
    return toast(response, message)
