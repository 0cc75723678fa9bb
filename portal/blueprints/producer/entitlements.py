"""Entitlements for producer staff: the list across all customers (search, filters, sort, pages,
CSV), entering an order (drop-ship or into a stocking partner's stock, along the channel, lines
of any license model), and one entitlement's page with everything about it: owner and hierarchy
path, sales chain, every attachment and who granted it; suspend/reactivate, correct, attach and
revoke partners, decide a pending transfer.

At 200,000 entitlements: the unfiltered count is the ``row_count`` read model, a filtered one
stops at 10,000 (``paging``); sorts run on indexes (code, entry order).
"""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, request, url_for
from sqlalchemy import literal, or_, select, union_all
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    FormField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import queries as q
from portal.blueprints.listing import clean_code, csv_stream, row_details
from portal.blueprints.producer import bp
from portal.blueprints.producer.paging import CheapTable, paginate
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import (
    Activation,
    Attachment,
    ChannelRelationship,
    Entitlement,
    EntitlementLine,
    Organization,
    PortalRequest,
    Product,
    SalesChainLink,
)
from portal.models.entitlements import ENTITLEMENT_STATUSES, LICENSE_MODELS, RELATIONS, RowCount
from portal.models.orgs import PARTNER_KINDS
from portal.services.entitlements import (
    LineSpec,
    attach_partner,
    correct_entitlement,
    create_entitlement,
    revoke_attachment,
    set_entitlement_status,
)
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.ui import Column, Filter, parse_list_args, push_url
from portal.web import render

SORTS = {"entered": Entitlement.id, "code": Entitlement.code}
COLUMNS = [
    Column("code", "Entitlement", sortable=True),
    Column("owner", "Owner"),
    Column("products", "Products"),
    Column("seller", "Sold through"),
    Column("seats", "Seats used", numeric=True),
    Column("entered", "Entered", sortable=True),
    Column("status", "Status"),
]
HELD = [("customer", "By customers"), ("stock", "In a partner's stock"), ("old_stock", "Stock older than 90 days")]
MAX_LINES = 4
MAX_TIERS = 3


def _c(pairs) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


def _filters() -> list[Filter]:
    """Filters whose options are small tables: products and partners (a few hundred at most)."""
    products, sellers = [], []
    for is_seller, i, name in db.session.execute(_FILTER_OPTIONS):
        (sellers if is_seller else products).append((i, name))
    return [
        Filter("status", "Status", [(s, s.capitalize()) for s in ENTITLEMENT_STATUSES]),
        Filter("product", "Product", [(str(i), name) for i, name in products], all_label="Any product"),
        Filter("model", "License model", [(m, m.capitalize()) for m in LICENSE_MODELS]),
        Filter("seller", "Sold through", [("direct", "Direct"), *((str(i), name) for i, name in sellers)],
               all_label="Anyone"),
        Filter("held", "Held", HELD, all_label="By anyone"),
        Filter("ending", "Subscription ends", [("30", "Within 30 days"), ("90", "Within 90 days")],
               all_label="Any time"),
    ]


# The products and the partners, each by name, in one statement (is_seller, id, name).
_FILTER_OPTIONS = union_all(
    select(literal(0).label("is_seller"), Product.id, Product.name),
    select(literal(1), Organization.id, Organization.name).where(Organization.kind.in_(PARTNER_KINDS)),
).order_by("is_seller", "name", "id")


def _where(state) -> list:
    on = q.today()
    chosen = state.filters
    clauses = []
    if state.q:
        text = state.q.strip()
        owners = select(Organization.id).where(Organization.name.icontains(text, autoescape=True))
        clauses.append(or_(Entitlement.code == text.upper(), Entitlement.code.startswith(text.upper(), autoescape=True),
                           Entitlement.order_ref == text, Entitlement.owner_id.in_(owners)))
    if "status" in chosen:
        clauses.append(Entitlement.status == chosen["status"])
    if "product" in chosen:
        clauses.append(q.has_product(int(chosen["product"])))
    if "model" in chosen:
        clauses.append(q.has_license_model(chosen["model"]))
    if "seller" in chosen:
        clauses.append(q.sold_direct() if chosen["seller"] == "direct" else q.sold_through(int(chosen["seller"])))
    if "held" in chosen:
        partners = select(Organization.id).where(Organization.kind.in_(PARTNER_KINDS))
        if chosen["held"] == "customer":
            clauses.append(~Entitlement.owner_id.in_(partners))
        else:
            clauses.append(Entitlement.owner_id.in_(partners))
            if chosen["held"] == "old_stock":
                clauses.append(Entitlement.purchase_date < on - timedelta(days=90))
    if "ending" in chosen:
        clauses.append(q.ending_within(int(chosen["ending"]), on))
    return clauses


def _state():
    filters = _filters()
    state = parse_list_args(request.args, endpoint="producer.entitlements", sorts=SORTS, default_sort="-entered",
                            filters=filters)
    return state, filters, _where(state)


def entitlements_table(actor) -> tuple[CheapTable, list[Filter]]:
    state, filters, where = _state()
    key = SORTS[state.sort]
    query = (policy.visible_entitlements(actor).where(*where).options(joinedload(Entitlement.owner))
             .order_by(key.desc() if state.descending else key))
    # Unfiltered: the read model's count, not 200,000 rows counted.
    total = None if where else db.session.scalar(select(RowCount.value).where(RowCount.name == "entitlement")) or 0
    table = CheapTable(id="entitlements", columns=COLUMNS, pagination=paginate(query, page=state.page, total=total),
                       state=state, noun="entitlement", nouns="entitlements", caption="Entitlements of every customer",
                       csv_url=state.url("producer.entitlements_csv", page=1),
                       empty_text="Enter an order to create the first entitlement.")
    return table, filters


@bp.get("/entitlements")
def entitlements():
    """Every entitlement, newest first, searchable and filtered; the table alone for htmx."""
    actor = current_actor()
    table, filters = entitlements_table(actor)
    rows = table.rows
    paths = policy.hierarchy_paths([e.owner for e in rows])
    response = render("producer/entitlements.html", fragment="producer/_entitlements_table.html", table=table,
                      filters=filters, details=row_details(rows), paths=paths)
    return push_url(response, table.state)


@bp.get("/entitlements.csv")
def entitlements_csv():
    """Every entitlement the search and filters select (all pages) as CSV."""
    actor = current_actor()
    _, _, where = _state()
    # Streamed: a fixed number of statements whatever the number of rows (portal.exchange).
    return csv_stream(actor, where=where)


# --- entering an order ----------------------------------------------------------------------


class LineForm(PortalForm):
    """One line of an order; a line without a product is left out."""

    class Meta:
        csrf = False

    product_id = SelectField("Product", coerce=str, validate_choice=False)
    license_model = SelectField("License model", choices=_c((m, m.capitalize()) for m in LICENSE_MODELS),
                                default="perpetual", validate_choice=False)
    quantity = IntegerField("Seats or units", validators=[Optional(), NumberRange(
        min=1, max=1_000_000, message="Enter a quantity from 1 to 1,000,000.")])
    start_date = DateField("Start (subscription, usage)", validators=[Optional()])
    end_date = DateField("End (subscription)", validators=[Optional()])
    maintenance_end = DateField("Maintenance until (perpetual)", validators=[Optional()])
    usage_period = SelectField("Period (usage)", choices=_c([("month", "Month"), ("year", "Year")]), default="month",
                               validate_choice=False)


class EntitlementForm(PortalForm):
    fulfilment = RadioField("Fulfilment", choices=_c([("drop_ship", "Drop-ship to a customer"),
                                                      ("stocking", "Into the seller's stock")]), default="drop_ship")
    customer = StringField("Customer", validators=[Optional(), Length(max=200)],
                           description="The customer's exact name (drop-ship).")
    tiers = FieldList(SelectField("Tier", coerce=str, validate_choice=False), min_entries=MAX_TIERS,
                      max_entries=MAX_TIERS)
    order_ref = StringField("Order reference", validators=[Optional(), Length(max=100)])
    purchase_date = DateField("Purchase date", validators=[Optional()])
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=2000)])
    lines = FieldList(FormField(LineForm), min_entries=MAX_LINES, max_entries=MAX_LINES)


def _id(text: str | None) -> int | None:
    """An id from a select's value, or None (anything but a number an INTEGER column holds)."""
    text = text or ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _posted() -> MultiDict:
    """The posted form without nameless parts (a multipart part without a name has the key None,
    which ``FieldList`` cannot read)."""
    return MultiDict([(key, value) for key, value in request.form.items(multi=True) if isinstance(key, str)])


def _choices(form: EntitlementForm) -> None:
    products = _c([("", "— none —"), *((str(i), f"{name} ({sku})") for i, name, sku in db.session.execute(
        select(Product.id, Product.name, Product.sku).order_by(Product.name)))])
    partners = [("", "— none —"), *((str(i), name) for i, name in db.session.execute(
        select(Organization.id, Organization.name).where(Organization.kind.in_(PARTNER_KINDS),
                                                         Organization.status == "active")
        .order_by(Organization.name)))]
    partners = _c(partners)
    for entry in form.lines:
        entry.form.product_id.choices = products
    for entry in form.tiers:
        entry.choices = partners


def _channel_edges() -> list[tuple[str, str]]:
    """Supplier -> buyer names of the channel, shown next to the chain to pick along them."""
    supplier, buyer = db.aliased(Organization), db.aliased(Organization)
    return db.session.execute(
        select(supplier.name, buyer.name).select_from(ChannelRelationship)
        .join(supplier, supplier.id == ChannelRelationship.supplier_id)
        .join(buyer, buyer.id == ChannelRelationship.buyer_id)
        .order_by(supplier.kind != "producer", supplier.name, buyer.name)).all()


def _new_page(form: EntitlementForm, status: int = 200):
    return render("producer/entitlement_new.html", status=status, form=form, edges=_channel_edges())


def _line_specs(form: EntitlementForm) -> list[LineSpec] | None:
    specs, ok = [], True
    products = {p.id: p for p in db.session.scalars(select(Product))}
    for entry in form.lines:
        line = entry.form
        if not line.product_id.data:
            continue
        raw = line.product_id.data
        product = products.get(_id(raw))
        if product is None:
            line.product_id.errors.append("Choose a product.")
            ok = False
            continue
        if not line.quantity.data:
            line.quantity.errors.append("Enter the seats or units.")
            ok = False
            continue
        model = line.license_model.data
        specs.append(LineSpec(product, model, line.quantity.data,
                              start_date=line.start_date.data if model != "perpetual" else None,
                              end_date=line.end_date.data if model == "subscription" else None,
                              maintenance_end=line.maintenance_end.data if model == "perpetual" else None,
                              usage_period=line.usage_period.data if model == "usage" else None))
    if ok and not specs:
        form.lines.entries[0].form.product_id.errors.append("An entitlement needs at least one line: choose a product.")
        ok = False
    return specs if ok else None


def _show(form: EntitlementForm, error: ServiceError) -> None:
    """A service's refusal next to its field (``lines-0-quantity`` and the like included)."""
    name = error.field or ""
    target = None
    if name.startswith("lines-"):
        _, index, field = name.split("-", 2)
        if index.isdigit() and int(index) < len(form.lines.entries):
            target = getattr(form.lines.entries[int(index)].form, field, None)
    elif name == "sales_chain":
        target = form.tiers.entries[0]
    elif name == "owner":
        target = form.customer
    else:
        target = getattr(form, name, None)
    if target is None or not hasattr(target, "errors"):
        form.form_errors.append(error.message)
    else:
        target.errors = [*target.errors, error.message]


@bp.route("/entitlements/new", methods=["GET", "POST"], endpoint="new_entitlement")
def new_entitlement():
    """Enter an order: the owner, the sales chain along the channel, one or more lines."""
    actor = current_actor()
    if not policy.can(actor, "create_entitlement"):
        abort(403)
    form = EntitlementForm(formdata=_posted() if request.method == "POST" else None)
    _choices(form)
    if request.method == "GET" or not form.validate():
        return _new_page(form, 200 if request.method == "GET" else 422)
    chosen = [entry for entry in form.tiers if entry.data]
    partners = {o.id: o for o in db.session.scalars(select(Organization).where(
        Organization.id.in_([_id(entry.data) for entry in chosen]), Organization.kind.in_(PARTNER_KINDS)))}
    chain = []
    for entry in chosen:
        if _id(entry.data) in partners:
            chain.append(partners[_id(entry.data)])
        else:
            entry.errors.append("Choose a partner of the list.")
    specs = _line_specs(form)
    if len(chain) != len(chosen):
        return _new_page(form, 422)
    owner = None
    if form.fulfilment.data == "stocking":
        owner = chain[-1] if chain else None
        if owner is None:
            form.tiers.entries[0].errors.append("Stock goes to the seller: choose the sales chain down to it.")
    else:
        owner = policy.customer_by_exact_name(actor, form.customer.data or "")
        if owner is None:
            form.customer.errors.append("No active customer has exactly this name (or several have).")
    if owner is None or specs is None:
        return _new_page(form, 422)
    try:
        entitlement = create_entitlement(actor, owner=owner, lines=specs, sales_chain=chain,
                                         fulfilment=form.fulfilment.data, order_ref=form.order_ref.data,
                                         purchase_date=form.purchase_date.data, notes=form.notes.data or None)
    except NotAllowed as error:
        db.session.rollback()
        abort(403, error.message)
    except ServiceError as error:
        db.session.rollback()
        _show(form, error)
        return _new_page(form, 422)
    db.session.commit()
    flash(f"Entered {entitlement.code} for {owner.name}.")
    return redirect(url_for("producer.entitlement", code=entitlement.code))


# --- one entitlement ------------------------------------------------------------------------


class StatusForm(PortalForm):
    status = SelectField("Status", choices=_c((s, s.capitalize()) for s in ENTITLEMENT_STATUSES))


class CorrectLineForm(PortalForm):
    class Meta:
        csrf = False

    quantity = IntegerField("Quantity", validators=[DataRequired("Enter a quantity."), NumberRange(
        min=1, max=1_000_000, message="Enter a quantity from 1 to 1,000,000.")])
    start_date = DateField("Start", validators=[Optional()])
    end_date = DateField("End", validators=[Optional()])
    maintenance_end = DateField("Maintenance until", validators=[Optional()])


class CorrectForm(PortalForm):
    order_ref = StringField("Order reference", validators=[Optional(), Length(max=100)])
    notes = TextAreaField("Notes", validators=[Optional(), Length(max=2000)])
    lines = FieldList(FormField(CorrectLineForm))


class AttachForm(PortalForm):
    partner_id = SelectField("Partner", coerce=str, validate_choice=False)
    relation = SelectField("Relation", choices=_c((r, r.capitalize()) for r in RELATIONS), default="services")
    download = BooleanField("Download")
    activate = BooleanField("Activate")


def _correct_form(entitlement: Entitlement, formdata=None) -> CorrectForm:
    data = {"order_ref": entitlement.order_ref, "notes": entitlement.notes,
            "lines": [{"quantity": line.quantity, "start_date": line.start_date, "end_date": line.end_date,
                       "maintenance_end": line.maintenance_end} for line in entitlement.lines]}
    if formdata is None:
        return CorrectForm(formdata=None, data=data, prefix="correct")
    return CorrectForm(formdata=_posted(), prefix="correct")


def _attach_form(formdata=None) -> AttachForm:
    form = AttachForm(prefix="attach") if formdata else AttachForm(formdata=None, prefix="attach")
    partners = db.session.execute(policy.attachable_partners(current_actor())
                                  .with_only_columns(Organization.id, Organization.name))  # not 600 entities
    form.partner_id.choices = _c([("", "Choose a partner"), *((str(i), name) for i, name in partners)])
    return form


def _load(actor, code: str) -> Entitlement:
    return policy.load_entitlement(actor, clean_code(code))


def _page(actor, entitlement: Entitlement, *, status: int = 200, correct: CorrectForm | None = None,
          attach: AttachForm | None = None):
    entitlement = db.session.scalar(
        select(Entitlement).where(Entitlement.id == entitlement.id).options(
            joinedload(Entitlement.owner), selectinload(Entitlement.lines).joinedload(EntitlementLine.product),
            selectinload(Entitlement.chain).joinedload(SalesChainLink.partner)).execution_options(
            populate_existing=True))
    attachments = list(db.session.scalars(policy.visible_attachments(actor, entitlement).options(
        joinedload(Attachment.partner), joinedload(Attachment.granted_by), joinedload(Attachment.revoked_by))))
    used = dict(db.session.execute(
        select(Activation.line_id, db.func.sum(Activation.seats))
        .where(Activation.line_id.in_([line.id for line in entitlement.lines]), Activation.active.is_(True))
        .group_by(Activation.line_id)).all())
    transfers = list(db.session.scalars(
        policy.visible_requests(actor).where(PortalRequest.kind == "transfer", PortalRequest.state == "pending",
                                             PortalRequest.entitlement_id == entitlement.id)
        .options(joinedload(PortalRequest.requester), joinedload(PortalRequest.target_org))))
    return render("producer/entitlement.html", status=status, e=entitlement, path=policy.hierarchy_path(
        entitlement.owner), attachments=attachments, used=used, transfers=transfers,
        status_form=StatusForm(formdata=None, prefix="status", status=entitlement.status),
        correct_form=correct or _correct_form(entitlement), attach_form=attach or _attach_form())


@bp.get("/entitlements/<code>", endpoint="entitlement")
def entitlement(code: str):
    """Everything about one entitlement, and what producer staff may change on it."""
    actor = current_actor()
    return _page(actor, _load(actor, code))


def _done(entitlement: Entitlement, message: str):
    flash(message)
    return redirect(url_for("producer.entitlement", code=entitlement.code))


@bp.post("/entitlements/<code>/status", endpoint="entitlement_status")
def change_status(code: str):
    """Suspend, reactivate or mark returned."""
    actor = current_actor()
    entitlement = _load(actor, code)
    if not policy.can(actor, "suspend", entitlement):
        abort(403)
    form = StatusForm(prefix="status")
    if not form.validate():
        abort(422, "Choose active, suspended or returned.")
    set_entitlement_status(actor, entitlement, form.status.data)
    db.session.commit()
    return _done(entitlement, f"{entitlement.code} is {entitlement.status} now.")


@bp.post("/entitlements/<code>/correct", endpoint="correct_entitlement")
def correct(code: str):
    """Correct the order reference, notes, and line quantities and dates."""
    actor = current_actor()
    entitlement = _load(actor, code)
    if not policy.can(actor, "edit", entitlement):
        abort(403)
    form = _correct_form(entitlement, formdata=True)
    if len(form.lines.entries) != len(entitlement.lines):
        db.session.rollback()
        form = _correct_form(entitlement)
        form.form_errors.append("Send every line's quantity and dates (the lines changed meanwhile?); "
                                "the page shows them as they are.")
        return _page(actor, entitlement, status=422, correct=form)
    if not form.validate():
        db.session.rollback()
        return _page(actor, entitlement, status=422, correct=form)
    lines = {line.id: {"quantity": entry.form.quantity.data, "start_date": entry.form.start_date.data,
                       "end_date": entry.form.end_date.data, "maintenance_end": entry.form.maintenance_end.data}
             for line, entry in zip(entitlement.lines, form.lines.entries, strict=True)}
    try:
        changes = correct_entitlement(actor, entitlement, order_ref=form.order_ref.data, notes=form.notes.data,
                                      lines=lines)
    except ServiceError as error:
        db.session.rollback()
        name = error.field or ""
        target = None
        if name.startswith("line-"):
            _, line_id, field = name.split("-", 2)
            index = next((i for i, line in enumerate(entitlement.lines) if str(line.id) == line_id), None)
            if index is not None:
                target = getattr(form.lines.entries[index].form, field, None)
        target = target or getattr(form, name, None)
        if target is None:
            form.form_errors.append(error.message)
        else:
            target.errors = [*target.errors, error.message]
        return _page(actor, entitlement, status=422, correct=form)
    db.session.commit()
    return _done(entitlement, f"Corrected {entitlement.code}." if changes else "Nothing to correct: no change.")


@bp.post("/entitlements/<code>/attach", endpoint="attach_partner")
def attach(code: str):
    """Attach a partner with any relation and chosen permissions."""
    actor = current_actor()
    entitlement = _load(actor, code)
    if not policy.can(actor, "attach", entitlement):
        abort(403)
    form = _attach_form(formdata=True)
    partner = None
    if form.validate():
        partner_id = form.partner_id.data or ""
        partner = db.session.scalar(policy.attachable_partners(actor).where(
            Organization.id == _id(partner_id)))
        if partner is None:
            form.partner_id.errors.append("Choose an active partner.")
    if partner is None:
        db.session.rollback()
        return _page(actor, entitlement, status=422, attach=form)
    permissions = {"view"} | {p for p in ("download", "activate") if getattr(form, p).data}
    try:
        attach_partner(actor, [entitlement], partner, relation=form.relation.data, permissions=permissions)
    except ServiceError as error:
        db.session.rollback()
        form.partner_id.errors.append(error.message)
        return _page(actor, entitlement, status=422, attach=form)
    db.session.commit()
    return _done(entitlement, f"Attached {partner.name} to {entitlement.code} ({form.relation.data}).")


@bp.post("/entitlements/<code>/attachments/<int:attachment_id>/revoke", endpoint="revoke_attachment")
def revoke(code: str, attachment_id: int):
    """Revoke any attachment, the seller's included: access ends at once, the chain stays."""
    actor = current_actor()
    entitlement = _load(actor, code)
    attachment = db.session.scalar(policy.visible_attachments(actor, entitlement).where(
        Attachment.id == attachment_id))
    if attachment is None:
        abort(404)
    StatusForm(prefix="revoke")  # the CSRF token was checked with the request
    try:
        revoke_attachment(actor, attachment)
    except Conflict as error:
        db.session.rollback()
        abort(409, error.message)
    except NotAllowed as error:
        db.session.rollback()
        abort(403, error.message)
    db.session.commit()
    return _done(entitlement, f"Revoked {attachment.partner.name} from {entitlement.code}.")
