"""Partners on our entitlements: who is attached with which relation and permissions; attach a
partner of the producer's channel to one or many entitlements, change what an attachment allows,
revoke it (the seller's too); invite a partner that is not on the portal yet; and, per
entitlement, "who can see this".

Thin views: form -> service verb -> one commit. Every list comes from a policy scope
(``attachments_on_visible_entitlements``, ``visible_entitlements``, ``visible_attachments``),
every single object from a policy loader (404 when it is not ours). Admins act, members see:
a member's POST gets 403. For htmx each action answers with the part of the page it changed
(the table row, the form, the whole table out of band) and a toast; a form with a bad value
answers 422 with the message next to the field. Without JavaScript a success redirects back to
the page, and an error renders the page with the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import NamedTuple

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from sqlalchemy import Integer, bindparam, func, or_, select
from sqlalchemy.orm import joinedload

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer.forms_partners import (
    MAX_ENTITLEMENTS_AT_ONCE,
    ActionForm,
    AttachForm,
    DecisionForm,
    EntitlementChoice,
    InviteForm,
    PermissionBoxes,
    PermissionsForm,
)
from portal.extensions import db
from portal.forms import has_control_characters
from portal.models import (
    Attachment,
    Entitlement,
    Membership,
    Organization,
    PortalRequest,
    Product,
    User,
)
from portal.paging import contains, contains_param, paged, statement_page
from portal.services.entitlements import attach_partner, revoke_attachment, set_attachment_permissions
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.requests import invite_partner
from portal.ui import Column, Filter, Table, parse_list_args, toast
from portal.web import is_htmx, query_text, render

CHOICES_SHOWN = 20  # entitlements offered at once in a chooser; a search narrows them
CHOOSERS = ("attach", "invite")
RELATION_LABELS = {"sold": "Seller", "distributed": "Distributor", "services": "Services"}
RELATION_WHY = {
    "sold": "sold it to you (from the sales chain)",
    "distributed": "distributed it to the seller (from the sales chain)",
    "services": "works on it for you",
}


# --- helpers the request pages share --------------------------------------------------------


def entitlement_url(code: str) -> str:
    """The entitlement's own page (``customer.entitlement``), or who can see it while that page
    is not registered."""
    if "customer.entitlement" in current_app.view_functions:
        return url_for("customer.entitlement", code=code)
    return url_for("customer.entitlement_visibility", code=code)


def answer(template: str, *, status: int = 200, message: str | None = None, kind: str = "success", **context):
    """An htmx answer: a fragment, its status, and the toast."""
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return toast(response, message, kind) if message else response


def show_error(form, error: ServiceError) -> None:
    """A service's refusal next to the field it names, or above the form."""
    target = getattr(form, error.field, None) if error.field else None
    if target is None or not hasattr(target, "errors"):
        form.form_errors.append(error.message)
    else:
        target.errors = [*target.errors, error.message]


def product_names(entitlement_ids: list[int]) -> dict[int, str]:
    """'Acme Studio, Acme Cloud Sync' per entitlement, in one query."""
    names: dict[int, list[str]] = {}
    if entitlement_ids:
        for entitlement_id, name in db.session.execute(_PRODUCT_NAMES, {"ids": list(entitlement_ids)}):
            if name not in names.setdefault(entitlement_id, []):
                names[entitlement_id].append(name)
    return {i: ", ".join(n) for i, n in names.items()}


_LINE, _PRODUCT = policy.LINE_TABLE, Product.__table__
_PRODUCT_NAMES = (select(_LINE.c.entitlement_id, _PRODUCT.c.name)
                  .select_from(_LINE.join(_PRODUCT, _PRODUCT.c.id == _LINE.c.product_id))
                  .where(_LINE.c.entitlement_id.in_(bindparam("ids", expanding=True))).order_by(_LINE.c.id))


def permission_words(permissions: list[str]) -> str:
    """['view', 'download'] -> 'view and download'."""
    return " and ".join([", ".join(permissions[:-1]), permissions[-1]]) if len(permissions) > 1 else permissions[0]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@bp.context_processor
def _partner_words() -> dict:
    return {"entitlement_url": entitlement_url, "relation_labels": RELATION_LABELS}


# --- the attachments table --------------------------------------------------------------------

COLUMNS = [
    Column("partner", "Partner and relation", sortable=True),
    Column("entitlement", "Entitlement", sortable=True),
    Column("permissions", "Permissions"),
    Column("granted", "Attached", sortable=True),
    Column("actions", "Actions", label_hidden=True),
]
SORT_KEYS = ("partner", "entitlement", "granted")


class Named(NamedTuple):
    name: str
    kind: str | None = None


class EntitlementRef(NamedTuple):
    code: str
    owner: Named


class UserRef(NamedTuple):
    display_name: str


class AttachmentRow(NamedTuple):
    """One row of the attachments table, with what the row shows of its partner, entitlement
    (and its owner) and who granted and revoked it, under the names an ``Attachment`` has."""

    id: int
    entitlement_id: int
    partner_id: int
    relation: str
    can_view: bool
    can_download: bool
    can_activate: bool
    active: bool
    granted_at: datetime
    revoked_at: datetime | None
    partner: Named
    entitlement: EntitlementRef
    granted_by: UserRef | None
    revoked_by: UserRef | None

    @property
    def permissions(self) -> list[str]:
        flags = (("view", self.can_view), ("download", self.can_download), ("activate", self.can_activate))
        return [name for name, on in flags if on]

    @classmethod
    def of(cls, row) -> AttachmentRow:
        (id_, entitlement_id, partner_id, relation, view, download, activate, active, granted_at, revoked_at,
         partner_name, partner_kind, code, owner_name, granted_by, revoked_by) = row
        return cls(id_, entitlement_id, partner_id, relation, view, download, activate, active, granted_at,
                   revoked_at, Named(partner_name, partner_kind), EntitlementRef(code, Named(owner_name)),
                   UserRef(granted_by) if granted_by is not None else None,
                   UserRef(revoked_by) if revoked_by is not None else None)


def _filters(actor) -> list[Filter]:
    partners = db.session.execute(_ATTACHED_PARTNERS(db.engine.dialect.name), policy.scope_params(actor)).all()
    return [
        Filter("state", "Status", [("revoked", "Revoked"), ("any", "Active and revoked")], all_label="Active"),
        Filter("relation", "Relation", [(key, label) for key, label in RELATION_LABELS.items()], all_label="Any"),
        Filter("partner", "Partner", [(str(i), name) for i, name in partners], all_label="Any"),
    ]


_ORG, _ATTACHMENT, _USER = policy.ORGANIZATION_TABLE, policy.ATTACHMENT_TABLE, User.__table__
_ON = policy.ENTITLEMENT_TABLE.alias("on_entitlement")  # the attachment's entitlement


def _on_our_entitlements(dialect: str):
    """``attachments_on_visible_entitlements`` of a customer, from the scope's parameters (Core)."""
    return (_ATTACHMENT.join(_ON, _ON.c.id == _ATTACHMENT.c.entitlement_id),
            policy.entitlement_scope_param("customer", dialect, _ON) & policy.attachment_scope_param("customer"))


@cache
def _ATTACHED_PARTNERS(dialect: str):  # noqa: N802 (a statement, built once per dialect)
    """(id, name) of every partner attached, now or once, to one of our entitlements, by name."""
    joined, scope = _on_our_entitlements(dialect)
    partner_ids = select(_ATTACHMENT.c.partner_id).select_from(joined).where(scope)
    return select(_ORG.c.id, _ORG.c.name).where(_ORG.c.id.in_(partner_ids)).order_by(_ORG.c.name, _ORG.c.id)


def _name_of(column, key):
    """``column`` of the row whose id is ``key``: a look-up per row shown (after the page's
    ``LIMIT``), never a join the planner may turn into a walk of a whole table."""
    return select(column).where(column.table.c.id == key).scalar_subquery()


@cache
def _attachment_statements(dialect: str, state: str, relation: bool, partner: bool, search: bool, sort: str,
                           descending: bool):
    """(rows, count) of the attachments table in one state of its filters, built once, with the
    scope's parameters and those of the filters (relation, partner, search) and of the page."""
    joined, scope = _on_our_entitlements(dialect)
    partner_org = _ORG.alias("partner_org")
    joined = joined.join(partner_org, partner_org.c.id == _ATTACHMENT.c.partner_id)
    where = [scope]
    if state == "revoked":
        where.append(_ATTACHMENT.c.active.is_(False))
    elif state != "any":
        where.append(_ATTACHMENT.c.active.is_(True))
    if relation:
        where.append(_ATTACHMENT.c.relation == bindparam("relation"))
    if partner:
        where.append(_ATTACHMENT.c.partner_id == bindparam("partner", type_=Integer))
    if search:
        where.append(or_(contains(partner_org.c.name, "search"), contains(_ON.c.code, "search")))
    key = {"partner": partner_org.c.name, "entitlement": _ON.c.code, "granted": _ATTACHMENT.c.granted_at}[sort]
    order = (key.desc() if descending else key, _ATTACHMENT.c.id.desc())
    owner = _ORG.alias("owner")
    rows = (select(_ATTACHMENT.c.id, _ATTACHMENT.c.entitlement_id, _ATTACHMENT.c.partner_id, _ATTACHMENT.c.relation,
                   _ATTACHMENT.c.can_view, _ATTACHMENT.c.can_download, _ATTACHMENT.c.can_activate,
                   _ATTACHMENT.c.active, _ATTACHMENT.c.granted_at, _ATTACHMENT.c.revoked_at, partner_org.c.name,
                   partner_org.c.kind, _ON.c.code, _name_of(owner.c.name, _ON.c.owner_id),
                   _name_of(_USER.c.display_name, _ATTACHMENT.c.granted_by_id),
                   _name_of(_USER.alias("revoker").c.display_name, _ATTACHMENT.c.revoked_by_id))
            .select_from(joined).where(*where).order_by(*order))
    count = select(func.count()).select_from(joined).where(*where)
    return paged(rows), count


def attachments_table(actor, args=None) -> tuple[Table, list[Filter]]:
    """One page of the attachments on our entitlements, as the URL's search, filters and sort ask."""
    filters = _filters(actor)
    state = parse_list_args(request.args if args is None else args, endpoint="customer.partners",
                            sorts=SORT_KEYS, default_sort="-granted", filters=filters)
    chosen = state.filters
    rows, count = _attachment_statements(db.engine.dialect.name, chosen.get("state", ""), "relation" in chosen,
                                         "partner" in chosen, bool(state.q), state.sort, state.descending)
    params = {**policy.scope_params(actor), "relation": chosen.get("relation"),
              "partner": int(chosen["partner"]) if "partner" in chosen else None,
              "search": contains_param(state.q.lower()) if state.q else None}
    pagination = statement_page(rows, params, page=state.page, count=count)
    pagination.items = [AttachmentRow.of(row) for row in pagination.items]
    table = Table(id="attachments", columns=COLUMNS, pagination=pagination, state=state, noun="attachment",
                  nouns="attachments", caption="Partners attached to your entitlements",
                  empty_text="No partner is attached to your entitlements.")
    return table, filters


@dataclass
class RowContext:
    """What a row of the attachments table shows besides the attachment itself."""

    products: dict[int, str]
    forms: dict[int, PermissionsForm] = field(default_factory=dict)

    def form_for(self, attachment: Attachment) -> PermissionsForm | PermissionBoxes:
        form = self.forms.get(attachment.id)
        if form is None:
            form = PermissionBoxes.of(f"attachment-{attachment.id}", view=attachment.can_view,
                                      download=attachment.can_download, activate=attachment.can_activate)
        return form


def attachment_rows(attachments: list[Attachment], forms: dict | None = None) -> RowContext:
    return RowContext(products=product_names(sorted({a.entitlement_id for a in attachments})), forms=forms or {})


# --- the entitlement chooser --------------------------------------------------------------------


@dataclass
class Chooser:
    """The entitlements a form offers: those chosen (kept checked across searches) and up to
    ``CHOICES_SHOWN`` more that match the search."""

    prefix: str
    search: str
    chosen: list[Entitlement]
    offered: list[Entitlement]
    matching: int
    products: dict[int, str]

    @property
    def chosen_ids(self) -> set[int]:
        return {e.id for e in self.chosen}


class ChoiceRow(NamedTuple):
    """An entitlement a chooser offers: its id and code, and its owner's name."""

    id: int
    code: str
    owner: Named


def chooser(actor, prefix: str, *, search: str = "", chosen_ids=(), chosen_codes=(), products: bool = True) -> Chooser:
    """The chooser of the form ``prefix``: what the actor may pick, through the policy (without
    the product names when ``products`` is false: the caller looks them up for several at once).
    Its statements are built once per shape (a search or not, some chosen or not)."""
    dialect = db.engine.dialect.name
    params = {**policy.scope_params(actor), "search": contains_param(search.lower()) if search else None}
    ids = sorted({i for i in chosen_ids if i is not None})[:MAX_ENTITLEMENTS_AT_ONCE]
    chosen: list[ChoiceRow] = []
    if ids or chosen_codes:
        chosen = [ChoiceRow(i, code, Named(owner)) for i, code, owner in db.session.execute(
            _chosen_choices(dialect), {**params, "chosen_ids": ids, "chosen_codes": list(chosen_codes)})]
    rows, count = _choice_statements(dialect, bool(chosen), bool(search))
    params["exclude"] = [e.id for e in chosen]
    matching = db.session.execute(count, params).scalar() or 0
    offered = [ChoiceRow(i, code, Named(owner)) for i, code, owner in db.session.execute(rows, params)]
    return Chooser(prefix, search, chosen, offered, matching,
                   product_names(sorted({e.id for e in chosen + offered})) if products else {})


_CHOICE = policy.ENTITLEMENT_TABLE.alias("choice")
_CHOICE_OWNER = policy.ORGANIZATION_TABLE.alias("choice_owner")


@cache
def _chosen_choices(dialect: str):
    """The entitlements a form has chosen (``chosen_ids``, ``chosen_codes``) among ours, by code."""
    return (select(_CHOICE.c.id, _CHOICE.c.code, _CHOICE_OWNER.c.name)
            .select_from(_CHOICE.join(_CHOICE_OWNER, _CHOICE_OWNER.c.id == _CHOICE.c.owner_id))
            .where(policy.entitlement_scope_param("customer", dialect, _CHOICE),
                   or_(_CHOICE.c.id.in_(bindparam("chosen_ids", expanding=True)),
                       _CHOICE.c.code.in_(bindparam("chosen_codes", expanding=True))))
            .order_by(_CHOICE.c.code))


@cache
def _choice_statements(dialect: str, exclude: bool, search: bool):
    """(rows, count) of what a chooser offers besides the chosen (``exclude``), matching the
    search (the code, the owner's name or a product's name contain ``search``)."""
    where = [policy.entitlement_scope_param("customer", dialect, _CHOICE)]
    if exclude:
        where.append(_CHOICE.c.id.not_in(bindparam("exclude", expanding=True)))
    joined = _CHOICE.join(_CHOICE_OWNER, _CHOICE_OWNER.c.id == _CHOICE.c.owner_id)
    if search:
        product_match = (select(_LINE.c.id).select_from(_LINE.join(_PRODUCT, _PRODUCT.c.id == _LINE.c.product_id))
                         .where(_LINE.c.entitlement_id == _CHOICE.c.id, contains(_PRODUCT.c.name, "search"))
                         .exists())
        where.append(or_(contains(_CHOICE.c.code, "search"), contains(_CHOICE_OWNER.c.name, "search"), product_match))
    count = select(func.count()).select_from(joined if search else _CHOICE).where(*where)
    rows = (select(_CHOICE.c.id, _CHOICE.c.code, _CHOICE_OWNER.c.name).select_from(joined).where(*where)
            .order_by(_CHOICE.c.code).limit(CHOICES_SHOWN))
    return rows, count


def chosen_entitlements(actor, form: EntitlementChoice) -> list[Entitlement]:
    """The form's entitlements, each one of ours; otherwise an error next to the field and []."""
    if form.entitlements.errors:
        return []
    ids = form.entitlements.data or []
    if None in ids:
        form.entitlements.errors = ["Choose entitlements from the list."]
        return []
    found = list(db.session.scalars(policy.visible_entitlements(actor).where(Entitlement.id.in_(set(ids)))))
    if len(found) != len(set(ids)):
        # Another customer's id and an id that exists nowhere read the same.
        form.entitlements.errors = ["Choose entitlements from the list: one of them is not among yours."]
        return []
    return found


# --- the page -----------------------------------------------------------------------------------


def _partner_choices(actor) -> list[tuple[int | str, str]]:
    partners = policy.attachable_partner_choices(actor)
    return [("", "Choose a partner…")] + [(i, f"{name} ({kind.replace('_', ' ')})") for i, name, kind in partners]


def attach_form(actor, form: AttachForm | None = None) -> AttachForm:
    form = form or AttachForm(formdata=None, prefix="attach")
    form.partner.choices = _partner_choices(actor)
    return form


def access_requests(actor) -> tuple[list[PortalRequest], int]:
    """Pending partner-access requests addressed to us, oldest first (at most 20) and how many:
    two statements built once (a customer user sees every request addressed to its hierarchy)."""
    count, shown = _access_request_statements(db.engine.dialect.name)
    params = policy.scope_params(actor)
    return list(db.session.scalars(shown, params).unique()), db.session.execute(count, params).scalar() or 0


@cache
def _access_request_statements(dialect: str):
    request_table = PortalRequest.__table__
    waiting = ((request_table.c.state == "pending") & (request_table.c.kind == "partner_access")
               & policy.addressed_to_customer_param(dialect))
    count = select(func.count()).select_from(request_table).where(waiting)
    shown = (select(PortalRequest).where(waiting)
             .options(joinedload(PortalRequest.requester), joinedload(PortalRequest.requester_org),
                      joinedload(PortalRequest.target_org))
             .order_by(PortalRequest.created_at, PortalRequest.id).limit(20))
    return count, shown


def request_cards(actor, requests: list[PortalRequest], forms: dict | None = None) -> dict:
    """What the request cards need, in a constant number of queries: which the actor may
    decide, and which of the codes a partner asked for are ours."""
    ids = [r.id for r in requests]
    decidable = set(db.session.scalars(
        policy.decidable_requests(actor).where(PortalRequest.id.in_(ids)).with_only_columns(PortalRequest.id))
    ) if ids else set()
    codes = {c for r in requests for c in (r.details or {}).get("codes", []) if isinstance(c, str)}
    ours = set(db.session.scalars(
        policy.visible_entitlements(actor).where(Entitlement.code.in_(codes)).with_only_columns(Entitlement.code))
    ) if codes else set()
    forms = dict(forms or {})
    for r in requests:
        if r.id in decidable and r.id not in forms:
            forms[r.id] = DecisionForm(formdata=None, prefix=f"request-{r.id}")
    return {"decidable": decidable, "our_codes": ours, "decision_forms": forms}


def partners_page(actor, *, status: int = 200, attach: AttachForm | None = None,
                  invite: InviteForm | None = None, row_forms: dict | None = None, decision_forms: dict | None = None,
                  choosers: dict[str, Chooser] | None = None):
    """The partners page, with the forms as given (their errors shown) or fresh ones."""
    table, filters = attachments_table(actor)
    admin = policy.can(actor, "attach_partners")
    if is_htmx() and request.method == "GET":  # the table's search, filters, sort or pages: only the table
        return render("customer/partners.html", fragment="customer/_attachments_table.html", table=table,
                      rows=attachment_rows(table.rows), admin=admin)
    preselect = query_text("entitlement", max_length=32).upper() if request.method == "GET" else ""
    choosers = dict(choosers or {})
    if admin:
        built: dict[tuple, Chooser] = {}  # two forms asking the same (on a fresh page) share one lookup
        for prefix, form in (("attach", attach), ("invite", invite)):
            if prefix not in choosers:
                ids = tuple(form.entitlements.data or ()) if form is not None else ()
                codes = (preselect,) if preselect else ()
                same = built.get((ids, codes))
                choosers[prefix] = replace(same, prefix=prefix) if same else chooser(
                    actor, prefix, chosen_ids=ids, chosen_codes=codes, products=False)
                built[(ids, codes)] = choosers[prefix]
        # The product names of the choosers that have none yet, in one query.
        unnamed = [prefix for prefix in CHOOSERS if not choosers[prefix].products]
        if unnamed:
            names = product_names(sorted({e.id for prefix in unnamed for e in choosers[prefix].chosen
                                          + choosers[prefix].offered}))
            for prefix in unnamed:
                choosers[prefix] = replace(choosers[prefix], products=names)
    waiting, waiting_count = access_requests(actor)
    return render(
        "customer/partners.html", fragment="customer/_attachments_table.html", status=status,
        table=table, filters=filters, rows=attachment_rows(table.rows, row_forms), admin=admin,
        attach_form=attach_form(actor, attach) if admin else None,
        invite_form=(invite or InviteForm(formdata=None, prefix="invite")) if admin else None,
        choosers=choosers, waiting=waiting, waiting_count=waiting_count,
        cards=request_cards(actor, waiting, decision_forms), return_to="partners",
    )


@bp.get("/partners")
def partners():
    """Who is attached to our entitlements, with which relation and permissions; the forms to
    attach and invite partners (admins); partners asking for access. The table is the fragment
    for htmx (search, filters, sort and pages in place)."""
    return partners_page(current_actor())


@bp.get("/partners/choices")
def partner_entitlement_choices():
    """The entitlement chooser of the attach or the invite form, narrowed by a search; the chosen
    ones stay chosen. Without JavaScript, the whole page with that chooser."""
    actor = current_actor()
    prefix = query_text("form", max_length=10) or CHOOSERS[0]  # the attach form's, unless named
    if prefix not in CHOOSERS:
        abort(404)
    search = query_text("eq", max_length=100)
    form = EntitlementChoice(formdata=request.args, prefix=prefix, meta={"csrf": False})
    raw = form.entitlements.raw_data or []
    if any(has_control_characters(value) for value in raw):
        abort(400, "Remove control characters from the chosen entitlements.")
    # Without htmx the page around it looks up the product names of both choosers at once.
    found = chooser(actor, prefix, search=search, chosen_ids=form.entitlements.data or (), products=is_htmx())
    if is_htmx():
        return answer("customer/_entitlement_choices.html", chooser=found)
    return partners_page(actor, choosers={prefix: found})


def _attachable(actor, partner_id: int | None) -> Organization | None:
    if partner_id is None:
        return None
    return db.session.scalar(policy.attachable_partners(actor).where(Organization.id == partner_id))


@bp.post("/partners/attach", endpoint="attach_partner")
def attach():
    """Attach a partner to one or many of our entitlements (relation ``services``)."""
    actor = current_actor()
    if not policy.can(actor, "attach_partners"):
        abort(403, "Only your organization's admins attach partners.")
    form = attach_form(actor, AttachForm(prefix="attach"))
    valid = form.validate()
    partner = _attachable(actor, form.partner.data)
    if form.partner.data is not None and partner is None and not form.partner.errors:
        form.partner.errors = ["Choose a partner from the list."]
    entitlements = chosen_entitlements(actor, form)
    if not (valid and partner and entitlements):
        return _attach_refused(actor, form)
    already = set(db.session.scalars(select(Attachment.entitlement_id).where(
        Attachment.partner_id == partner.id, Attachment.active.is_(True),
        Attachment.entitlement_id.in_([e.id for e in entitlements]))))
    try:
        attach_partner(actor, entitlements, partner, relation="services", permissions=form.permissions)
    except NotAllowed as error:
        db.session.rollback()
        abort(403, error.message)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _attach_refused(actor, attach_form(actor, form))
    db.session.commit()
    added = [e for e in entitlements if e.id not in already]
    words = permission_words(form.permissions)
    if len(added) == len(entitlements):
        message = f"Attached {partner.name} to {plural(len(added), 'entitlement')} ({words})."
    elif not added:
        message = (f"{partner.name} was attached already; it may now {words} on "
                   f"{plural(len(entitlements), 'entitlement')}.")
    else:
        message = (f"Attached {partner.name} to {plural(len(added), 'entitlement')}; on "
                   f"{len(entitlements) - len(added)} more it was attached already. It may {words}.")
    if not is_htmx():
        flash(message)
        return redirect(url_for("customer.partners"))
    table, filters = attachments_table(actor, args={})
    response = answer("customer/_attach_answer.html", message=message, form=attach_form(actor),
                      chooser=chooser(actor, "attach"), table=table, filters=filters,
                      rows=attachment_rows(table.rows), admin=True)
    response.headers["HX-Replace-Url"] = url_for("customer.partners")  # the table is in its first state again
    return response


def _attach_refused(actor, form: AttachForm):
    db.session.rollback()
    found = chooser(actor, "attach", chosen_ids=form.entitlements.data or ())
    if not is_htmx():
        return partners_page(actor, status=422, attach=form, choosers={"attach": found})
    return answer("customer/_attach_form.html", status=422, form=form, chooser=found)


@bp.post("/partners/invite", endpoint="invite_partner")
def invite():
    """Invite a partner that is not on the portal yet: a partner application for producer staff."""
    actor = current_actor()
    if not policy.can(actor, "attach_partners"):
        abort(403, "Only your organization's admins invite partners.")
    form = InviteForm(prefix="invite")
    valid = form.validate()
    entitlements = chosen_entitlements(actor, form)
    if not (valid and entitlements):
        return _invite_refused(actor, form)
    try:
        req = invite_partner(actor, company=form.company.data, email=form.email.data, entitlements=entitlements,
                             permissions=form.permissions, message=form.message.data)
    except NotAllowed as error:
        db.session.rollback()
        abort(403, error.message)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _invite_refused(actor, form)
    db.session.commit()
    message = (f"Invitation of {req.details['company']} sent to producer staff. Once they approve it, "
               f"{req.details['email']} gets an invitation and the partner is attached to "
               f"{plural(len(entitlements), 'entitlement')}.")
    if not is_htmx():
        flash(message)
        return redirect(url_for("customer.partners"))
    return answer("customer/_invite_form.html", message=message, form=InviteForm(formdata=None, prefix="invite"),
                  chooser=chooser(actor, "invite"))


def _invite_refused(actor, form: InviteForm):
    db.session.rollback()
    found = chooser(actor, "invite", chosen_ids=form.entitlements.data or ())
    if not is_htmx():
        return partners_page(actor, status=422, invite=form, choosers={"invite": found})
    return answer("customer/_invite_form.html", status=422, form=form, chooser=found)


def _row_answer(actor, attachment: Attachment, *, status: int = 200, message: str | None = None,
                form: PermissionsForm | None = None):
    """The attachment's row for htmx; else back to the page (with the row's error when there is one)."""
    forms = {attachment.id: form} if form is not None else None
    if is_htmx():
        return answer("customer/_attachment_row.html", status=status, message=message, a=attachment,
                      rows=attachment_rows([attachment], forms), admin=True)
    if status < 400:
        if message:
            flash(message)
        return redirect(url_for("customer.partners"))
    return partners_page(actor, status=status, row_forms=forms)


def _live_attachment(actor, attachment_id: int) -> Attachment:
    """One of the attachments on our entitlements (else 404), still active (else 409)."""
    attachment = policy.load_attachment(actor, attachment_id)
    if not attachment.active:
        abort(409, f"{attachment.partner.name} was already revoked from {attachment.entitlement.code}.")
    return attachment


@bp.post("/partners/<int:attachment_id>/permissions")
def attachment_permissions(attachment_id: int):
    """Change what an attachment allows: view, download, activate."""
    actor = current_actor()
    attachment = _live_attachment(actor, attachment_id)
    if not policy.can(actor, "attach", attachment.entitlement):
        abort(403, "Only your organization's admins change partners' permissions.")
    form = PermissionsForm(prefix=f"attachment-{attachment.id}")
    if not form.validate():
        return _row_answer(actor, attachment, status=422, form=form)
    try:
        set_attachment_permissions(actor, attachment, form.permissions)
    except (NotAllowed, Conflict) as error:
        db.session.rollback()
        abort(error.status, error.message)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _row_answer(actor, attachment, status=422, form=form)
    db.session.commit()
    message = (f"{attachment.partner.name} may now {permission_words(attachment.permissions)} "
               f"on {attachment.entitlement.code}.")
    return _row_answer(actor, attachment, message=message)


@bp.post("/partners/<int:attachment_id>/revoke", endpoint="revoke_attachment")
def revoke(attachment_id: int):
    """Revoke an attachment, the seller's too: the partner loses access at once."""
    actor = current_actor()
    attachment = _live_attachment(actor, attachment_id)
    if not policy.can(actor, "revoke", attachment):
        abort(403, "Only your organization's admins revoke partners.")
    ActionForm()  # the CSRF token was checked with the request; nothing else to read
    try:
        revoke_attachment(actor, attachment)
    except (NotAllowed, Conflict) as error:
        db.session.rollback()
        abort(error.status, error.message)
    db.session.commit()
    message = f"Revoked {attachment.partner.name} from {attachment.entitlement.code}: it has no access to it any more."
    return _row_answer(actor, attachment, message=message)


# --- who can see this ---------------------------------------------------------------------------


@dataclass
class Party:
    """One party that sees the entitlement: an organization, why, and (where we may count them)
    how many of its users."""

    org: Organization
    why: str
    users: dict[str, int] | None = None
    attachment: Attachment | None = None


def _user_counts(org_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    # Asked even for no organization: the panel costs the same whatever it shows.
    for org_id, role, n in db.session.execute(
            select(Membership.org_id, Membership.role, func.count()).where(Membership.org_id.in_(org_ids))
            .group_by(Membership.org_id, Membership.role)):
        counts.setdefault(org_id, {})[role] = n
    return counts


def visibility(actor, entitlement: Entitlement) -> dict:
    """Every party that can see the entitlement and why: the owner and the organizations above
    it, each live attachment that lets its partner view it, producer staff; and the partners
    whose attachment was revoked (they see nothing, the sales chain keeps them for reports)."""
    # Read, not lazy-loaded: the same cost whether or not the owner is already known.
    owner = db.session.scalar(select(Organization).where(Organization.id == entitlement.owner_id))
    chain_ids = owner.ancestor_ids
    orgs = {o.id: o for o in db.session.scalars(select(Organization).where(Organization.id.in_(chain_ids)))}
    counts = _user_counts([i for i in chain_ids if orgs[i].path.startswith(actor.org.path)])
    hierarchy = []
    for org_id in chain_ids:
        org = orgs[org_id]
        why = "owns it" if org_id == owner.id else f"is above {owner.name} in your hierarchy"
        # Users of organizations above the actor's own are not the actor's to count.
        hierarchy.append(Party(org, why, counts.get(org_id, {}) if org.path.startswith(actor.org.path) else None))
    attachments = list(db.session.scalars(
        policy.visible_attachments(actor, entitlement).options(
            joinedload(Attachment.partner), joinedload(Attachment.granted_by), joinedload(Attachment.revoked_by))))
    live = [a for a in attachments if a.active and a.can_view]
    live_partners = {a.partner_id for a in live}
    partners = [Party(a.partner, RELATION_WHY[a.relation], attachment=a) for a in live]
    revoked: dict[int, Attachment] = {}
    for a in attachments:
        if not a.active and a.partner_id not in live_partners:
            revoked[a.partner_id] = a  # the latest revocation of each partner (attachments come oldest first)
    producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
    return {"entitlement": entitlement, "hierarchy": hierarchy, "partners": partners,
            "revoked": list(revoked.values()), "producer": producer,
            "products": product_names([entitlement.id]).get(entitlement.id, "")}


@bp.get("/entitlements/<code>/visibility")
def entitlement_visibility(code: str):
    """"Who can see this": a panel the entitlement's page loads, and a page of its own."""
    actor = current_actor()
    if len(code) > 32 or has_control_characters(code):
        abort(404)
    entitlement = policy.load_entitlement(actor, code.upper())
    crumbs = [("Overview", url_for("customer.home"))]
    if "customer.entitlements" in current_app.view_functions:
        crumbs.append(("Entitlements", url_for("customer.entitlements")))
    if "customer.entitlement" in current_app.view_functions:
        crumbs.append((entitlement.code, url_for("customer.entitlement", code=entitlement.code)))
    crumbs.append(("Who can see this", None))
    parties = visibility(actor, entitlement)  # first: it reads the owner, which the check below needs
    return render("customer/visibility.html", fragment="customer/_visibility.html", crumbs=crumbs,
                  admin=policy.can(actor, "attach", entitlement), **parties)
