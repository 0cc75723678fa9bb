"""``/customer/organization``: the customer's hierarchy as a tree, and what its admins change in
it: add a subsidiary or site, rename, contacts and notification contacts, move (never under its
own descendants), delete when empty, and move an entitlement between its organizations.

The tree comes from one query of the subtree in path order (templates never walk the raw
graph). Each organization has a panel that opens in place (loaded by htmx on first opening;
a page of its own without JavaScript). Every form answers with the tree, the panel still open,
and a toast; bad input answers 422 with the message next to its field and changes nothing.
Members see the tree and the contacts; every change is for admins (403 for members) and
anything outside the customer's own hierarchy is 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from flask import url_for
from sqlalchemy import func, select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, Email, Length, Optional, ValidationError

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer.replies import done, fragment, refuse, show_error
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Entitlement, Membership, Organization
from portal.services.entitlements import move_within_tree
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.orgs import create_organization, delete_organization, move_organization, update_organization
from portal.web import is_htmx, render

DATALIST_CODES = 100  # entitlement codes suggested in the "move an entitlement" field
MAX_NOTIFICATION_CONTACTS = 20


def _blank_to_none(value):
    value = value.strip() if isinstance(value, str) else value
    return value or None


def _notification_contacts(form, field) -> None:
    """Comma-separated addresses, each a valid one; stored normalized, one ", " between them."""
    if not field.data:
        return
    parts = [p.strip() for p in field.data.replace(";", ",").replace("\n", ",").split(",") if p.strip()]
    if len(parts) > MAX_NOTIFICATION_CONTACTS:
        raise ValidationError(f"Name at most {MAX_NOTIFICATION_CONTACTS} addresses.")
    cleaned = []
    for part in parts:
        try:
            cleaned.append(validate_email(part, check_deliverability=False).normalized.lower())
        except EmailNotValidError:
            raise ValidationError(f"“{part[:80]}” is not an email address.") from None
    field.data = ", ".join(dict.fromkeys(cleaned)) or None


class OrganizationForm(PortalForm):
    """Name, contact data and notification contacts of one organization."""

    name = StringField("Name", filters=[_blank_to_none], validators=[
        DataRequired("Enter a name."), Length(max=200, message="Keep the name under 200 characters.")])
    email = StringField("Email", filters=[_blank_to_none], validators=[
        Optional(), Length(max=254), Email("Enter a valid email address.")])
    phone = StringField("Phone", filters=[_blank_to_none], validators=[Optional(), Length(max=50)])
    website = StringField("Website", filters=[_blank_to_none], validators=[
        Optional(), Length(max=300), URL(message="Enter a web address starting with https://.")])
    address = TextAreaField("Address", filters=[_blank_to_none], validators=[Optional(), Length(max=1000)])
    notification_emails = TextAreaField(
        "Notification contacts", filters=[_blank_to_none],
        description="Addresses that receive the producer's notices by email, separated by commas.",
        validators=[Optional(), Length(max=4000), _notification_contacts])


class SubsidiaryForm(PortalForm):
    name = StringField("Name of the subsidiary or site", filters=[_blank_to_none], validators=[
        DataRequired("Enter a name."), Length(max=200, message="Keep the name under 200 characters.")])


class MoveForm(PortalForm):
    """The new parent; offered: the organizations it may move under. Checked: the hierarchy."""

    parent_id = SelectField("New parent organization", validate_choice=False,
                            validators=[DataRequired("Choose the new parent organization.")])


class MoveEntitlementForm(PortalForm):
    code = StringField("Entitlement code", filters=[lambda v: v.strip().upper() if isinstance(v, str) else v],
                       validators=[DataRequired("Enter the code of the entitlement to move."), Length(max=32)])
    org_id = SelectField("Move it to", validate_choice=False,
                         validators=[DataRequired("Choose the organization that takes it over.")])


class DeleteForm(PortalForm):
    pass


@dataclass
class Node:
    """One organization of the tree, with what the page shows about it."""

    org: Organization
    depth: int
    members: int = 0
    entitlements: int = 0
    subsidiaries: list[Node] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.members or self.entitlements or self.subsidiaries)


@dataclass
class Panel:
    """The open panel of one organization: its forms, and the choices they offer."""

    node: Node
    path: str
    edit: OrganizationForm | None = None
    child: SubsidiaryForm | None = None
    move: MoveForm | None = None
    move_entitlement: MoveEntitlementForm | None = None
    delete: DeleteForm | None = None
    delete_refusal: str | None = None
    codes: list[str] = field(default_factory=list)


@dataclass
class Tree:
    root: Node
    nodes: dict[int, Node]

    def __iter__(self):
        """Every node, depth first, subsidiaries by name."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.subsidiaries))

    def path(self, node: Node) -> str:
        names = [self.nodes[i].org.name for i in node.org.ancestor_ids if i in self.nodes]
        return " > ".join(names)

    def subtree_ids(self, node: Node) -> set[int]:
        return {n.org.id for n in self.nodes.values() if n.org.path.startswith(node.org.path)}


def build_tree(actor) -> Tree:
    """The actor's hierarchy: one query for the organizations, one per figure (members, entitlements)."""
    orgs = db.session.scalars(policy.tree_organizations(actor)).all()
    in_tree = policy.subtree_org_ids(actor.org)
    members = dict(db.session.execute(
        select(Membership.org_id, func.count()).where(Membership.org_id.in_(in_tree)).group_by(Membership.org_id)
    ).all())
    entitlements = dict(db.session.execute(
        select(Entitlement.owner_id, func.count()).where(Entitlement.owner_id.in_(in_tree))
        .group_by(Entitlement.owner_id)
    ).all())
    base = len(actor.org.ancestor_ids)
    nodes: dict[int, Node] = {}
    for org in orgs:  # path order: every parent before its subsidiaries
        node = Node(org, depth=len(org.ancestor_ids) - base, members=members.get(org.id, 0),
                    entitlements=entitlements.get(org.id, 0))
        nodes[org.id] = node
        parent = nodes.get(org.parent_id) if org.id != actor.org.id else None
        if parent is not None:
            parent.subsidiaries.append(node)
    for node in nodes.values():
        node.subsidiaries.sort(key=lambda n: (n.org.name.lower(), n.org.id))
    return Tree(root=nodes[actor.org.id], nodes=nodes)


def _choices(nodes) -> list[SelectChoice]:
    """Options of a select of organizations, indented by depth, "Choose…" first."""
    return [SelectChoice("", "Choose…"), *(SelectChoice(str(n.org.id), "— " * n.depth + n.org.name) for n in nodes)]


def _panel(actor, tree: Tree, org: Organization, **forms) -> Panel:
    """The panel of ``org``: fresh forms where none is given (a form with errors is)."""
    node = tree.nodes[org.id]
    panel = Panel(node=node, path=tree.path(node), delete_refusal=forms.pop("delete_refusal", None))
    if policy.can(actor, "edit", org):
        panel.edit = forms.get("edit") or OrganizationForm(formdata=None, obj=org, prefix=f"org-{org.id}")
        panel.move_entitlement = forms.get("move_entitlement") or MoveEntitlementForm(
            formdata=None, prefix=f"ent-{org.id}")
        panel.move_entitlement.org_id.choices = _choices(n for n in tree if n.org.id != org.id)
        panel.codes = db.session.scalars(
            select(Entitlement.code).where(Entitlement.owner_id == org.id).order_by(Entitlement.code)
            .limit(DATALIST_CODES)).all() if node.entitlements else []
    if policy.can(actor, "create_child", org):
        panel.child = forms.get("child") or SubsidiaryForm(formdata=None, prefix=f"child-{org.id}")
    if policy.can(actor, "move", org):
        panel.move = forms.get("move") or MoveForm(formdata=None, prefix=f"move-{org.id}")
        below = tree.subtree_ids(node)
        targets = (n for n in tree if n.org.id not in below and n.org.id != org.parent_id)
        panel.move.parent_id.choices = _choices(targets)
    if policy.can(actor, "delete", org):
        panel.delete = DeleteForm(formdata=None, prefix=f"delete-{org.id}")
    return panel


def _page(actor, org: Organization | None = None, *, status: int = 200, message: str | None = None,
          kind: str = "success", **forms):
    """The answer to any request of this page family, for htmx or not, with ``org``'s panel open."""
    tree = build_tree(actor)
    panel = _panel(actor, tree, org, **forms) if org is not None and org.id in tree.nodes else None
    context = {"tree": tree, "panel": panel}
    if is_htmx():
        return fragment("customer/_org_tree.html", status=status, message=message, kind=kind, **context)
    return render("customer/organization.html", status=status, **context)


def _changed(actor, org: Organization | None, message: str):
    """After a commit: the tree with ``org``'s panel open (htmx), or a redirect (no JavaScript)."""
    if is_htmx():
        return _page(actor, org, message=message)
    if org is None or org.id == actor.org.id:
        return done(url_for("customer.organization"), message)
    return done(url_for("customer.organization_detail", org_id=org.id, _anchor=f"org-{org.id}"), message)


def _admin_of(actor, org: Organization, action: str) -> None:
    if not policy.can(actor, action, org):
        refuse(NotAllowed({
            "edit": "Only your organization's admins change its hierarchy.",
            "create_child": "Only your organization's admins add organizations.",
            "move": "Only your organization's admins move organizations; your own top organization stays where it is.",
            "delete": "Only your organization's admins delete organizations; your own top organization stays.",
        }[action]))


def _tree_org_from_field(actor, form_field) -> Organization | None:
    """The organization a select names, if it is one of the actor's hierarchy (else an error
    next to the field: a tampered id of someone else's organization tells nothing)."""
    raw = form_field.data or ""
    found = None
    if raw.isascii() and raw.isdigit() and len(raw) < 10:
        found = db.session.scalar(policy.tree_organizations(actor).where(Organization.id == int(raw)))
    if found is None:
        form_field.errors = [*form_field.errors, "Choose an organization of your own hierarchy."]
    return found


# --- pages --------------------------------------------------------------------------------


@bp.get("/organization")
def organization():
    """The hierarchy as a tree: each organization with its members, entitlements and panel."""
    return _page(current_actor())


@bp.get("/organization/<int:org_id>")
def organization_detail(org_id: int):
    """One organization's panel: in place for htmx, a page of its own otherwise."""
    actor = current_actor()
    org = policy.load_tree_organization(actor, org_id)
    if is_htmx():
        tree = build_tree(actor)
        return fragment("customer/_org_panel.html", panel=_panel(actor, tree, org))
    return _page(actor, org)


# --- changes ------------------------------------------------------------------------------


@bp.post("/organization/<int:org_id>/edit")
def edit_organization(org_id: int):
    """Rename an organization or change its contacts and notification contacts."""
    actor = current_actor()
    org = policy.load_tree_organization(actor, org_id)
    _admin_of(actor, org, "edit")
    form = OrganizationForm(prefix=f"org-{org.id}")
    if not form.validate():
        return _page(actor, org, status=422, edit=form)
    old_name = org.name
    try:
        update_organization(actor, org, name=form.name.data, email=form.email.data, phone=form.phone.data,
                            website=form.website.data, address=form.address.data,
                            notification_emails=form.notification_emails.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _page(actor, org, status=422, edit=form)
    db.session.commit()
    message = f"Renamed {old_name} to {org.name}." if org.name != old_name else f"Saved {org.name}."
    return _changed(actor, org, message)


@bp.post("/organization/<int:org_id>/subsidiaries")
def add_subsidiary(org_id: int):
    """Add a subsidiary or site under an organization of the hierarchy."""
    actor = current_actor()
    parent = policy.load_tree_organization(actor, org_id)
    _admin_of(actor, parent, "create_child")
    form = SubsidiaryForm(prefix=f"child-{parent.id}")
    if not form.validate():
        return _page(actor, parent, status=422, child=form)
    try:
        child = create_organization(actor, kind="customer", name=form.name.data, parent=parent)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _page(actor, parent, status=422, child=form)
    db.session.commit()
    return _changed(actor, parent, f"Added {child.name} under {parent.name}.")


@bp.post("/organization/<int:org_id>/move")
def move(org_id: int):
    """Move an organization (with everything below it) under another one of the hierarchy."""
    actor = current_actor()
    org = policy.load_tree_organization(actor, org_id)
    _admin_of(actor, org, "move")
    form = MoveForm(prefix=f"move-{org.id}")
    if not form.validate():
        return _page(actor, org, status=422, move=form)
    parent = _tree_org_from_field(actor, form.parent_id)
    if parent is None:
        return _page(actor, org, status=422, move=form)
    try:
        move_organization(actor, org, parent)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error, fields={"parent": "parent_id"})
        return _page(actor, db.session.get(Organization, org_id), status=422, move=form)
    db.session.commit()
    return _changed(actor, org, f"Moved {org.name} under {parent.name}.")


@bp.post("/organization/<int:org_id>/delete")
def delete(org_id: int):
    """Delete an organization that holds nothing and has no history; else say why not."""
    actor = current_actor()
    org = policy.load_tree_organization(actor, org_id)
    _admin_of(actor, org, "delete")
    if not DeleteForm(prefix=f"delete-{org.id}").validate():
        return _page(actor, org, status=422)
    name, parent_id = org.name, org.parent_id
    try:
        delete_organization(actor, org)
    except Conflict as error:
        db.session.rollback()
        org = db.session.get(Organization, org_id)
        reason = f"{org.name} cannot be deleted: {error.message}"
        # htmx swaps 422 answers only (base.html): the reason then stays next to the button.
        return _page(actor, org, status=422 if is_htmx() else 409, message=reason, kind="error",
                     delete_refusal=reason)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    return _changed(actor, db.session.get(Organization, parent_id), f"Deleted {name}.")


@bp.post("/organization/<int:org_id>/entitlements")
def move_entitlement(org_id: int):
    """Move one of this organization's entitlements to another organization of the hierarchy."""
    actor = current_actor()
    org = policy.load_tree_organization(actor, org_id)
    _admin_of(actor, org, "edit")
    form = MoveEntitlementForm(prefix=f"ent-{org.id}")
    if not form.validate():
        return _page(actor, org, status=422, move_entitlement=form)
    entitlement = db.session.scalar(
        policy.visible_entitlements(actor).where(Entitlement.code == form.code.data, Entitlement.owner_id == org.id))
    if entitlement is None:
        form.code.errors = [*form.code.errors, f"{org.name} holds no entitlement with this code."]
    target = _tree_org_from_field(actor, form.org_id)
    if entitlement is None or target is None:
        return _page(actor, org, status=422, move_entitlement=form)
    try:
        move_within_tree(actor, entitlement, target)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _page(actor, org, status=422, move_entitlement=form)
    db.session.commit()
    return _changed(actor, org, f"Moved {entitlement.code} from {org.name} to {target.name}.")
