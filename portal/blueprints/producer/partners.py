"""``/producer/partners`` and ``/producer/channel``: the channel as producer staff run it.

- the partners' directory (search by name, filters by kind and status), a form to add a
  partner, and the pending ``partner_application`` requests decided in place;
- a partner's page: contacts and stocking flag (edit), status (activate/suspend), its figures,
  its attachments (paginated) and the customers it serves (from the ``partner_customer`` read
  model);
- the channel: supplier -> buyer edges as a table (add, remove while no sales chain uses it)
  and as a drawing of the tiers, summarised so that it stays readable with hundreds of partners.

Thin views: form -> service verb -> one commit; plain forms that redirect with a flash message
(the lists are htmx tables), and 422 with the message next to the field for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, current_app, flash, redirect, request, url_for
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import aliased, joinedload
from wtforms.fields.choices import SelectChoice

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer.replies import refuse, show_error
from portal.blueprints.producer import bp
from portal.blueprints.producer.forms_channel import (
    KIND_LABELS,
    STATUS_LABELS,
    DecisionForm,
    EdgeForm,
    PartnerEditForm,
    PartnerForm,
    RemoveEdgeForm,
    StatusForm,
)
from portal.blueprints.producer.paging import table_only
from portal.extensions import db
from portal.models import (
    Attachment,
    ChannelRelationship,
    Entitlement,
    Organization,
    PortalRequest,
)
from portal.models.channel import ChannelMonth
from portal.models.entitlements import PartnerCustomer
from portal.models.orgs import PARTNER_KINDS
from portal.services.channel import remove_channel_relationship, set_partner_status, set_stocking
from portal.services.errors import NotAllowed, ServiceError
from portal.services.orgs import add_channel_relationship, create_organization, update_organization
from portal.services.requests import decide_request
from portal.ui import Column, Filter, Table, parse_list_args
from portal.web import query_int, render

SERVED_PAGE = 20
DRAWN_DISTRIBUTORS = 8  # distributors drawn by name; the others are one summary box
DRAWN_BUYERS = 24  # a focused distributor's buyers drawn by name


def _require(action: str) -> None:
    if not policy.can(current_actor(), action):
        abort(403)


def load_partner(actor, partner_id: int) -> Organization:
    """A partner organization, or 404 (a customer's id names no partner)."""
    org = policy.load_organization(actor, partner_id)
    if org.kind not in PARTNER_KINDS:
        abort(404)
    return org


def _suppliers() -> list:
    """(id, name, kind) of the producer and the distributors: the producer first, then by name."""
    return db.session.execute(
        select(Organization.id, Organization.name, Organization.kind)
        .where(Organization.kind.in_(("producer", "distributor")))
        .order_by(case((Organization.kind == "producer", 0), else_=1), Organization.name)).all()


def _supplier_choices(rows: list | None = None) -> list[tuple[str, str]]:
    rows = _suppliers() if rows is None else rows
    return [SelectChoice("", "Nobody yet")] + [
        SelectChoice(str(i), f"{name} ({KIND_LABELS.get(kind, 'producer')})") for i, name, kind in rows]


# --- the directory ------------------------------------------------------------------------

COLUMNS = [
    Column("name", "Partner", sortable=True),
    Column("kind", "Kind", sortable=True),
    Column("status", "Status", sortable=True),
    Column("suppliers", "Supplied by"),
    Column("created", "Since", sortable=True),
]
SORTS = {"name": Organization.name, "kind": Organization.kind, "status": Organization.status,
         "created": Organization.created_at}
FILTERS = [
    Filter("kind", "Kind", list(KIND_LABELS.items()), all_label="Any kind"),
    Filter("status", "Status", list(STATUS_LABELS.items()), all_label="Any status"),
    Filter("stocking", "Stock", [("yes", "Stocking partners"), ("no", "Not stocking")], all_label="Any"),
]


def partners_table(args) -> Table:
    state = parse_list_args(args, endpoint="producer.partners", sorts=SORTS, default_sort="name", filters=FILTERS)
    query = policy.visible_organizations(current_actor()).where(Organization.kind.in_(PARTNER_KINDS))
    chosen = state.filters
    if "kind" in chosen:
        query = query.where(Organization.kind == chosen["kind"])
    if "status" in chosen:
        query = query.where(Organization.status == chosen["status"])
    if "stocking" in chosen:
        query = query.where(Organization.stocking.is_(chosen["stocking"] == "yes"))
    if state.q:
        query = query.where(or_(Organization.name.icontains(state.q, autoescape=True),
                                Organization.email.icontains(state.q, autoescape=True)))
    order = SORTS[state.sort]
    query = query.order_by(order.desc() if state.descending else order, Organization.id)
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    return Table(id="partners", columns=COLUMNS, pagination=pagination, state=state, noun="partner",
                 nouns="partners", caption="Partners of the channel", empty_text="No partner yet.")


def suppliers_of(ids: list[int]) -> dict[int, list[str]]:
    """Names of each buyer's suppliers, one query for a page of partners."""
    found: dict[int, list[str]] = {}
    if ids:
        supplier = aliased(Organization)
        for buyer_id, name in db.session.execute(
                select(ChannelRelationship.buyer_id, supplier.name)
                .join(supplier, supplier.id == ChannelRelationship.supplier_id)
                .where(ChannelRelationship.buyer_id.in_(ids)).order_by(supplier.name)):
            found.setdefault(buyer_id, []).append(name)
    return found


def pending_applications() -> list[PortalRequest]:
    return list(db.session.scalars(
        policy.decidable_requests(current_actor())
        .where(PortalRequest.kind == "partner_application", PortalRequest.state == "pending")
        .options(joinedload(PortalRequest.requester))
        .order_by(PortalRequest.created_at, PortalRequest.id).limit(50)))


def _partners_page(form: PartnerForm | None = None, status: int = 200):
    table = partners_table(request.args)
    if table_only():
        return render("producer/partners.html", fragment="producer/_partners_table.html", table=table,
                      suppliers=suppliers_of([o.id for o in table.rows]), kind_labels=KIND_LABELS)
    form = form or PartnerForm(formdata=None)
    form.supplier_id.choices = _supplier_choices()
    applications = pending_applications()
    return render("producer/partners.html", fragment="producer/_partners_table.html", status=status,
                  table=table, filters=FILTERS, form=form, suppliers=suppliers_of([o.id for o in table.rows]),
                  applications=applications, decision_forms={r.id: DecisionForm(formdata=None, prefix=f"r-{r.id}")
                                                             for r in applications},
                  kind_labels=KIND_LABELS)


@bp.get("/partners")
def partners():
    """The partners' directory, the form to add one and the pending applications."""
    return _partners_page()


@bp.post("/partners")
def create_partner():
    """Add a distributor, reseller or service provider (and its first supplier edge)."""
    actor = current_actor()
    _require("manage_channel")
    form = PartnerForm()
    form.supplier_id.choices = _supplier_choices()
    if not form.validate():
        return _partners_page(form, 422)
    supplier = None
    raw = form.supplier_id.data or ""
    if raw:
        supplier = db.session.scalar(select(Organization).where(
            Organization.id == int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else False,
            Organization.kind.in_(("producer", "distributor"))))
        if supplier is None:
            form.supplier_id.errors = ["Choose the producer or a distributor."]
            return _partners_page(form, 422)
    try:
        partner = create_organization(actor, kind=form.kind.data, name=form.name.data,
                                      stocking=bool(form.stocking.data), email=form.email.data,
                                      phone=form.phone.data, website=form.website.data, address=form.address.data,
                                      notification_emails=form.notification_emails.data)
        if supplier is not None:
            add_channel_relationship(actor, supplier, partner)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error, fields={"buyer": "kind", "supplier": "supplier_id"})
        return _partners_page(form, 422)
    db.session.commit()
    flash(f"Added {partner.name}.")
    return redirect(url_for("producer.partner", partner_id=partner.id))


@bp.post("/partners/applications/<int:request_id>")
def decide_application(request_id: int):
    """Approve (the company becomes a partner, its applicant its admin) or reject an application."""
    actor = current_actor()
    req = policy.load_request(actor, request_id)
    if req.kind != "partner_application":
        abort(404)
    form = DecisionForm(prefix=f"r-{req.id}")
    if not form.validate() or form.decision.data not in ("approve", "reject"):
        abort(422, "Choose approve or reject.")
    try:
        decide_request(actor, req, approve=form.decision.data == "approve", note=form.note.data)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    company = req.details.get("company", "the applicant")
    flash(f"Approved {company}: it is a partner now." if req.state == "approved" else f"Rejected {company}.")
    if req.state == "approved" and req.target_org_id:
        return redirect(url_for("producer.partner", partner_id=req.target_org_id))
    return redirect(url_for("producer.partners"))


# --- one partner --------------------------------------------------------------------------

ATTACHMENT_COLUMNS = [
    Column("entitlement", "Entitlement", sortable=True),
    Column("customer", "Owner"),
    Column("relation", "Relation", sortable=True),
    Column("permissions", "Permissions"),
    Column("granted", "Attached", sortable=True),
]
ATTACHMENT_SORTS = {"entitlement": Entitlement.code, "relation": Attachment.relation,
                    "granted": Attachment.granted_at}
ATTACHMENT_FILTERS = [
    Filter("state", "Attachment", [("revoked", "Revoked"), ("any", "Active and revoked")], all_label="Active"),
    Filter("relation", "Relation", [("sold", "Sold"), ("distributed", "Distributed"), ("services", "Services")],
           all_label="Any relation"),
]


@dataclass
class PartnerFigures:
    active: dict[str, int]  # live attachments by relation
    sold: int
    distributed: int
    services: int
    seats_sold: int
    in_stock: int
    customers: int
    suppliers: list[Organization]
    buyers: list[Organization]


def live_attachments(partner: Organization) -> dict[str, int]:
    """The partner's live attachments counted by relation (ix_attachment_partner_relation alone)."""
    return dict(db.session.execute(
        select(Attachment.relation, func.count()).where(Attachment.partner_id == partner.id,
                                                        Attachment.active.is_(True))
        .group_by(Attachment.relation)).all())


def partner_figures(partner: Organization) -> PartnerFigures:
    """The partner's figures in four aggregate queries, whatever its size."""
    by_relation = live_attachments(partner)
    # Seats of the lines of every entitlement whose chain names the partner, per chain link: the
    # monthly sums of the channel's read model (a few dozen rows, not one probe per sale).
    seats = db.session.scalar(
        select(func.coalesce(func.sum(ChannelMonth.seats), 0)).where(ChannelMonth.partner_id == partner.id))
    in_stock = db.session.scalar(
        select(func.count()).select_from(Entitlement).where(Entitlement.owner_id == partner.id))
    customers = db.session.scalar(select(func.count()).select_from(PartnerCustomer)
                                  .where(PartnerCustomer.partner_id == partner.id))
    supplier, buyer = aliased(Organization), aliased(Organization)
    edges = db.session.execute(
        select(ChannelRelationship.supplier_id, supplier, buyer)
        .join(supplier, supplier.id == ChannelRelationship.supplier_id)
        .join(buyer, buyer.id == ChannelRelationship.buyer_id)
        .where(or_(ChannelRelationship.supplier_id == partner.id, ChannelRelationship.buyer_id == partner.id))
        .order_by(supplier.name, buyer.name)).all()
    return PartnerFigures(
        active=by_relation, sold=by_relation.get("sold", 0), distributed=by_relation.get("distributed", 0),
        services=by_relation.get("services", 0), seats_sold=seats or 0, in_stock=in_stock or 0,
        customers=customers or 0,
        suppliers=[s for sid, s, b in edges if b.id == partner.id],
        buyers=[b for sid, s, b in edges if sid == partner.id])


def attachments_table(partner: Organization, args, active: dict[str, int] | None = None) -> Table:
    """The partner's attachments; ``active``: its live ones counted by relation (its figures), the
    total of the default list (live ones, of a relation or all) without counting them again."""
    state = parse_list_args(args, endpoint="producer.partner", sorts=ATTACHMENT_SORTS, default_sort="-granted",
                            filters=ATTACHMENT_FILTERS, url_values={"partner_id": partner.id})
    query = (select(Attachment).join(Entitlement, Entitlement.id == Attachment.entitlement_id)
             .where(Attachment.partner_id == partner.id, policy.entitlement_scope(current_actor()))
             .options(joinedload(Attachment.entitlement).joinedload(Entitlement.owner),
                      joinedload(Attachment.granted_by)))
    chosen = state.filters
    if chosen.get("state") == "revoked":
        query = query.where(Attachment.active.is_(False))
    elif chosen.get("state") != "any":
        query = query.where(Attachment.active.is_(True))
    if "relation" in chosen:
        query = query.where(Attachment.relation == chosen["relation"])
    if state.q:
        query = query.where(Entitlement.code.icontains(state.q, autoescape=True))
    order = ATTACHMENT_SORTS[state.sort]
    query = query.order_by(order.desc() if state.descending else order, Attachment.id.desc())
    known = active is not None and not state.q and chosen.get("state") not in ("revoked", "any")
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False,
                             count=not known)
    if known:
        pagination.total = active.get(chosen["relation"], 0) if "relation" in chosen else sum(active.values())
    return Table(id="attachments", columns=ATTACHMENT_COLUMNS, pagination=pagination, state=state,
                 noun="attachment", nouns="attachments", caption=f"Entitlements {partner.name} is attached to",
                 empty_text="This partner is attached to no entitlement.")


def served_page(partner: Organization) -> tuple[list[PartnerCustomer], int, int]:
    page = query_int("served", default=1, maximum=100_000)
    base = select(PartnerCustomer).where(PartnerCustomer.partner_id == partner.id)
    rows = list(db.session.scalars(base.order_by(PartnerCustomer.customer_name, PartnerCustomer.customer_id)
                                   .offset((page - 1) * SERVED_PAGE).limit(SERVED_PAGE)))
    return rows, page, SERVED_PAGE


def _partner_page(partner: Organization, *, edit: PartnerEditForm | None = None, status: int = 200):
    if table_only():
        return render("producer/partner.html", fragment="producer/_partner_attachments.html",
                      table=attachments_table(partner, request.args, live_attachments(partner)))
    figures = partner_figures(partner)
    served, served_at, served_size = served_page(partner)
    edit = edit or PartnerEditForm(formdata=None, obj=partner)
    return render("producer/partner.html", fragment="producer/_partner_attachments.html", status=status,
                  partner=partner, figures=figures, table=attachments_table(partner, request.args, figures.active),
                  filters=ATTACHMENT_FILTERS, served=served, served_at=served_at, served_size=served_size,
                  edit=edit, status_form=StatusForm(formdata=None, status=partner.status),
                  kind_labels=KIND_LABELS)


@bp.get("/partners/<int:partner_id>")
def partner(partner_id: int):
    """A partner: contacts, status, figures, attachments and customers served."""
    return _partner_page(load_partner(current_actor(), partner_id))


@bp.post("/partners/<int:partner_id>/edit")
def edit_partner(partner_id: int):
    """Change a partner's name, contacts and stocking flag."""
    actor = current_actor()
    partner = load_partner(actor, partner_id)
    _require("manage_channel")
    form = PartnerEditForm()
    if not form.validate():
        return _partner_page(partner, edit=form, status=422)
    try:
        update_organization(actor, partner, name=form.name.data, email=form.email.data, phone=form.phone.data,
                            website=form.website.data, address=form.address.data,
                            notification_emails=form.notification_emails.data)
        set_stocking(actor, partner, bool(form.stocking.data))
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _partner_page(partner, edit=form, status=422)
    db.session.commit()
    flash(f"Saved {partner.name}.")
    return redirect(url_for("producer.partner", partner_id=partner.id))


@bp.post("/partners/<int:partner_id>/status")
def partner_status(partner_id: int):
    """Activate or suspend a partner."""
    actor = current_actor()
    partner = load_partner(actor, partner_id)
    form = StatusForm()
    if not form.validate():
        abort(422, "Choose active, pending or suspended.")
    try:
        set_partner_status(actor, partner, form.status.data)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    flash(f"{partner.name} is {partner.status} now.")
    return redirect(url_for("producer.partner", partner_id=partner.id))


# --- the channel: edges as a table and as a drawing -------------------------------------------

EDGE_COLUMNS = [
    Column("supplier", "Supplier", sortable=True),
    Column("buyer", "Buyer", sortable=True),
    Column("kind", "Buyer's kind"),
    Column("actions", "Actions", label_hidden=True),
]
_supplier, _buyer = aliased(Organization), aliased(Organization)
EDGE_SORTS = {"supplier": _supplier.name, "buyer": _buyer.name}
EDGE_FILTERS = [Filter("kind", "Buyer's kind", list(KIND_LABELS.items()), all_label="Any kind")]


def edges_table(args, total: int | None = None) -> Table:
    """The channel's edges; ``total``: how many there are (known to the drawing), for the list
    that no search or filter narrows."""
    state = parse_list_args(args, endpoint="producer.channel", sorts=EDGE_SORTS, default_sort="supplier",
                            filters=EDGE_FILTERS)
    query = (select(ChannelRelationship)
             .join(_supplier, _supplier.id == ChannelRelationship.supplier_id)
             .join(_buyer, _buyer.id == ChannelRelationship.buyer_id)
             .options(joinedload(ChannelRelationship.supplier), joinedload(ChannelRelationship.buyer)))
    if "kind" in state.filters:
        query = query.where(_buyer.kind == state.filters["kind"])
    if state.q:
        query = query.where(or_(_supplier.name.icontains(state.q, autoescape=True),
                                _buyer.name.icontains(state.q, autoescape=True)))
    order = EDGE_SORTS[state.sort]
    other = EDGE_SORTS["buyer" if state.sort == "supplier" else "supplier"]
    query = query.order_by(order.desc() if state.descending else order, other, ChannelRelationship.id)
    known = total is not None and not state.q and not state.filters
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False,
                             count=not known)
    if known:
        pagination.total = total
    return Table(id="edges", columns=EDGE_COLUMNS, pagination=pagination, state=state, noun="channel relationship",
                 nouns="channel relationships", caption="Channel relationships, supplier to buyer",
                 empty_text="No channel relationship yet.")


@dataclass
class Box:
    x: int
    y: int
    w: int
    label: str
    sub: str = ""
    url: str | None = None
    kind: str = "partner"


@dataclass
class Drawing:
    width: int
    height: int
    boxes: list[Box]
    lines: list[tuple[int, int, int, int]]
    title: str
    desc: str


def edge_counts() -> dict[int, dict[str, int]]:
    """Per supplier, how many partners of each kind it supplies (every edge counted once)."""
    counts: dict[int, dict[str, int]] = {}
    for supplier_id, kind, count in db.session.execute(_BUYERS_OF):
        counts.setdefault(supplier_id, {})[kind] = count
    return counts


def tier_drawing(focus: Organization | None, suppliers: list, counts: dict[int, dict[str, int]]) -> Drawing:
    """Producer on top, distributors below it, resellers and service providers at the bottom.

    Summarised with aggregate queries: the largest distributors by name (the rest as one box),
    per distributor the number of partners it supplies (``counts``), and one box for the
    partners the producer supplies directly. ``focus`` (a distributor) draws its buyers by name
    instead. ``suppliers``: ``_suppliers()``, the producer and the distributors by name.
    """
    producer = next((row for row in suppliers if row.kind == "producer"), None)
    distributors = [row for row in suppliers if row.kind == "distributor"]
    distributors.sort(key=lambda d: -sum(counts.get(d.id, {}).values()))
    shown = distributors[:DRAWN_DISTRIBUTORS]
    if focus is not None and focus.id not in {d.id for d in shown}:
        shown = [*shown[:DRAWN_DISTRIBUTORS - 1], type("D", (), {"id": focus.id, "name": focus.name})()]
    hidden = len(distributors) - len(shown)
    direct = counts.get(producer.id, {}) if producer else {}
    unconnected = db.session.scalar(select(func.count()).select_from(Organization).where(
        Organization.kind.in_(PARTNER_KINDS),
        Organization.id.not_in(select(ChannelRelationship.buyer_id)),
        Organization.id.not_in(select(ChannelRelationship.supplier_id)))) or 0

    def words(kinds: dict[str, int]) -> str:
        parts = [f"{kinds.get(k, 0)} {label.lower()}{'s' if kinds.get(k, 0) != 1 else ''}"
                 for k, label in KIND_LABELS.items() if kinds.get(k)]
        return ", ".join(parts) or "supplies nobody"

    def total(kinds: dict[str, int]) -> str:
        count = sum(kinds.values())
        return f"{count} partner{'s' if count != 1 else ''}"

    box_w, gap = 176, 14
    columns = len(shown) + (1 if hidden else 0) + 1  # + the producer's direct buyers
    width = max(columns * (box_w + gap) + gap, 700)
    boxes: list[Box] = []
    lines: list[tuple[int, int, int, int]] = []
    top = Box(width // 2 - 110, 16, 220, producer.name if producer else "Producer", "Producer", kind="producer")
    boxes.append(top)
    x = gap
    mid_y, low_y = 120, 230
    for d in shown:
        kinds = counts.get(d.id, {})
        box = Box(x, mid_y, box_w, d.name, "Distributor", url_for("producer.channel", focus=d.id),
                  kind="distributor")
        boxes.append(box)
        lines.append((top.x + top.w // 2, top.y + 56, x + box_w // 2, mid_y))
        if focus is None or focus.id != d.id:
            boxes.append(Box(x, low_y, box_w, f"Supplies {total(kinds)}", words(kinds),
                             url_for("producer.channel", q=d.name), kind="summary"))
            lines.append((x + box_w // 2, mid_y + 56, x + box_w // 2, low_y))
        x += box_w + gap
    if hidden:
        boxes.append(Box(x, mid_y, box_w, f"{hidden} more distributors", "see the table",
                         url_for("producer.partners", kind="distributor"), kind="summary"))
        lines.append((top.x + top.w // 2, top.y + 56, x + box_w // 2, mid_y))
        x += box_w + gap
    # Partners the producer supplies directly are a tier below it too, beside the distributors.
    boxes.append(Box(x, mid_y, box_w, f"Direct: {total(direct)}", words(direct),
                     url_for("producer.channel", q=producer.name if producer else ""), kind="summary"))
    lines.append((top.x + top.w // 2, top.y + 56, x + box_w // 2, mid_y))
    height = 310
    if focus is not None:
        names = list(db.session.execute(
            select(_buyer.id, _buyer.name, _buyer.kind)
            .join(ChannelRelationship, ChannelRelationship.buyer_id == _buyer.id)
            .where(ChannelRelationship.supplier_id == focus.id).order_by(_buyer.name).limit(DRAWN_BUYERS)).all())
        focus_box = next(b for b in boxes if b.label == focus.name and b.kind == "distributor")
        per_row = max((width - gap) // (box_w + gap), 1)
        named_y = low_y + 110  # below the summaries of the other tiers
        for i, (bid, name, kind) in enumerate(names):
            bx, by = gap + (i % per_row) * (box_w + gap), named_y + (i // per_row) * 80
            boxes.append(Box(bx, by, box_w, name, KIND_LABELS[kind], url_for("producer.partner", partner_id=bid)))
            lines.append((focus_box.x + box_w // 2, mid_y + 56, bx + box_w // 2, by))
        rows = (len(names) + per_row - 1) // per_row
        height = named_y + rows * 80 + 20
    desc = (f"{producer.name if producer else 'The producer'} supplies {len(distributors)} distributors and "
            f"{words(direct)} directly. " + " ".join(
                f"{d.name} supplies {words(counts.get(d.id, {}))}." for d in shown)
            + (f" {hidden} more distributors are listed in the table." if hidden else "")
            + (f" {unconnected} partners have no channel relationship." if unconnected else ""))
    return Drawing(width, height, boxes, lines, "Tiers of the channel", desc)


_BUYERS_OF = (select(ChannelRelationship.supplier_id, _buyer.kind, func.count())
              .join(_buyer, _buyer.id == ChannelRelationship.buyer_id)
              .group_by(ChannelRelationship.supplier_id, _buyer.kind))


def _channel_page(form: EdgeForm | None = None, status: int = 200):
    actor = current_actor()
    focus = None
    raw = request.args.get("focus", "")
    if raw:
        if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
            abort(400, "Choose a distributor to focus on.")
        focus = db.session.scalar(policy.visible_organizations(actor).where(
            Organization.id == int(raw), Organization.kind == "distributor"))
        if focus is None:
            abort(404)
    if table_only():
        return render("producer/channel.html", fragment="producer/_edges_table.html",
                      table=edges_table({k: v for k, v in request.args.items() if k != "focus"}),
                      kind_labels=KIND_LABELS)
    suppliers, counts = _suppliers(), edge_counts()
    table = edges_table({k: v for k, v in request.args.items() if k != "focus"},
                        total=sum(n for kinds in counts.values() for n in kinds.values()))
    form = form or EdgeForm(formdata=None)
    form.supplier_id.choices = _supplier_choices(suppliers)[1:]
    form.buyer_id.choices = [SelectChoice(str(i), f"{n} ({KIND_LABELS[k]})") for i, n, k in db.session.execute(
        select(Organization.id, Organization.name, Organization.kind).where(Organization.kind.in_(PARTNER_KINDS))
        .order_by(Organization.name).limit(1000))]
    return render("producer/channel.html", fragment="producer/_edges_table.html", status=status, table=table,
                  filters=EDGE_FILTERS, form=form, drawing=tier_drawing(focus, suppliers, counts), focus=focus,
                  remove_form=RemoveEdgeForm(formdata=None), kind_labels=KIND_LABELS)


@bp.get("/channel")
def channel():
    """The channel's supplier -> buyer edges: a drawing of the tiers and the table."""
    return _channel_page()


def _org_from(field, kinds) -> Organization | None:
    raw = field.data or ""
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        return None
    return db.session.scalar(policy.visible_organizations(current_actor()).where(
        Organization.id == int(raw), Organization.kind.in_(kinds)))


@bp.post("/channel")
def add_edge():
    """Add a supplier -> buyer edge (producer or distributor -> partner)."""
    actor = current_actor()
    _require("manage_channel")
    form = EdgeForm()
    if not form.validate():
        return _channel_page(form, 422)
    supplier = _org_from(form.supplier_id, ("producer", *PARTNER_KINDS))
    buyer = _org_from(form.buyer_id, PARTNER_KINDS)
    if supplier is None:
        form.supplier_id.errors = ["Choose the producer or a partner."]
    if buyer is None:
        form.buyer_id.errors = ["Choose a partner."]
    if supplier is None or buyer is None:
        return _channel_page(form, 422)
    try:
        add_channel_relationship(actor, supplier, buyer)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error, fields={"supplier": "supplier_id", "buyer": "buyer_id"})
        return _channel_page(form, 422)
    db.session.commit()
    flash(f"{supplier.name} supplies {buyer.name} now.")
    return redirect(url_for("producer.channel"))


@bp.post("/channel/<int:edge_id>/remove")
def remove_edge(edge_id: int):
    """Remove an edge no sales chain runs along (409 with the reason otherwise)."""
    actor = current_actor()
    edge = db.session.get(ChannelRelationship, edge_id)
    if edge is None or not policy.can(actor, "manage_channel"):
        abort(404)
    RemoveEdgeForm()  # the CSRF token is checked app-wide
    names = f"{edge.supplier.name} -> {edge.buyer.name}"
    try:
        remove_channel_relationship(actor, edge)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    flash(f"Removed {names}.")
    return redirect(url_for("producer.channel"))
