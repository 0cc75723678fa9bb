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

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import contains_eager, joinedload

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
    EntitlementLine,
    Membership,
    Organization,
    PortalRequest,
    Product,
)
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
        rows = db.session.execute(
            select(EntitlementLine.entitlement_id, Product.name).join(Product, Product.id == EntitlementLine.product_id)
            .where(EntitlementLine.entitlement_id.in_(entitlement_ids)).order_by(EntitlementLine.id))
        for entitlement_id, name in rows:
            if name not in names.setdefault(entitlement_id, []):
                names[entitlement_id].append(name)
    return {i: ", ".join(n) for i, n in names.items()}


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
SORTS = {"partner": Organization.name, "entitlement": Entitlement.code, "granted": Attachment.granted_at}


def _filters(actor) -> list[Filter]:
    partners = db.session.execute(
        select(Organization.id, Organization.name)
        .where(Organization.id.in_(policy.attachments_on_visible_entitlements(actor)
                                   .with_only_columns(Attachment.partner_id)))
        .order_by(Organization.name, Organization.id)).all()
    return [
        Filter("state", "Status", [("revoked", "Revoked"), ("any", "Active and revoked")], all_label="Active"),
        Filter("relation", "Relation", [(key, label) for key, label in RELATION_LABELS.items()], all_label="Any"),
        Filter("partner", "Partner", [(str(i), name) for i, name in partners], all_label="Any"),
    ]


def attachments_table(actor, args=None) -> tuple[Table, list[Filter]]:
    """One page of the attachments on our entitlements, as the URL's search, filters and sort ask."""
    filters = _filters(actor)
    state = parse_list_args(request.args if args is None else args, endpoint="customer.partners",
                            sorts=SORTS, default_sort="-granted", filters=filters)
    query = (policy.attachments_on_visible_entitlements(actor)
             .join(Organization, Organization.id == Attachment.partner_id)
             .options(contains_eager(Attachment.partner), contains_eager(Attachment.entitlement)
                      .joinedload(Entitlement.owner), joinedload(Attachment.granted_by),
                      joinedload(Attachment.revoked_by)))
    chosen = state.filters
    if chosen.get("state") == "revoked":
        query = query.where(Attachment.active.is_(False))
    elif chosen.get("state") != "any":
        query = query.where(Attachment.active.is_(True))
    if "relation" in chosen:
        query = query.where(Attachment.relation == chosen["relation"])
    if "partner" in chosen:
        query = query.where(Attachment.partner_id == int(chosen["partner"]))
    if state.q:
        query = query.where(or_(Organization.name.icontains(state.q, autoescape=True),
                                Entitlement.code.icontains(state.q, autoescape=True)))
    order = SORTS[state.sort]
    query = query.order_by(order.desc() if state.descending else order, Attachment.id.desc())
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
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


def chooser(actor, prefix: str, *, search: str = "", chosen_ids=(), chosen_codes=(), products: bool = True) -> Chooser:
    """The chooser of the form ``prefix``: what the actor may pick, through the policy (without
    the product names when ``products`` is false: the caller looks them up for several at once)."""
    scope = policy.visible_entitlements(actor).options(joinedload(Entitlement.owner))
    ids = sorted({i for i in chosen_ids if i is not None})[:MAX_ENTITLEMENTS_AT_ONCE]
    chosen: list[Entitlement] = []
    if ids or chosen_codes:
        chosen = list(db.session.scalars(
            scope.where(or_(Entitlement.id.in_(ids), Entitlement.code.in_(list(chosen_codes))))
            .order_by(Entitlement.code)))
    rest = scope.where(Entitlement.id.not_in([e.id for e in chosen])) if chosen else scope
    if search:
        product_match = exists().where(EntitlementLine.entitlement_id == Entitlement.id,
                                       EntitlementLine.product_id == Product.id,
                                       Product.name.icontains(search, autoescape=True))
        rest = rest.join(Organization, Organization.id == Entitlement.owner_id).where(or_(
            Entitlement.code.icontains(search, autoescape=True),
            Organization.name.icontains(search, autoescape=True), product_match))
    matching = db.session.scalar(select(func.count()).select_from(rest.order_by(None).subquery()))
    offered = list(db.session.scalars(rest.order_by(Entitlement.code).limit(CHOICES_SHOWN)))
    return Chooser(prefix, search, chosen, offered, matching,
                   product_names(sorted({e.id for e in chosen + offered})) if products else {})


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
    partners = db.session.execute(
        policy.attachable_partners(actor).with_only_columns(Organization.id, Organization.name, Organization.kind))
    return [("", "Choose a partner…")] + [(i, f"{name} ({kind.replace('_', ' ')})") for i, name, kind in partners]


def attach_form(actor, form: AttachForm | None = None) -> AttachForm:
    form = form or AttachForm(formdata=None, prefix="attach")
    form.partner.choices = _partner_choices(actor)
    return form


def access_requests(actor) -> tuple[list[PortalRequest], int]:
    """Pending partner-access requests addressed to us, oldest first (at most 20) and how many."""
    waiting = policy.visible_requests(actor).where(PortalRequest.state == "pending",
                                                   PortalRequest.kind == "partner_access",
                                                   policy.addressed_to_customer(actor.org))
    count = db.session.scalar(select(func.count()).select_from(waiting.subquery()))
    shown = list(db.session.scalars(
        waiting.options(joinedload(PortalRequest.requester), joinedload(PortalRequest.requester_org),
                        joinedload(PortalRequest.target_org))
        .order_by(PortalRequest.created_at, PortalRequest.id).limit(20)))
    return shown, count


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
