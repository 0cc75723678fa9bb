"""``/customer/users``: the people of the customer's hierarchy, organization by organization.

Admins invite someone by email with a role (the link goes out through the mail outbox and is
never shown on the page), change a member's role, remove a member, and decide the requests to
join an organization of the hierarchy. Members see the same lists and act on nothing (403).
Anything outside the hierarchy answers 404; a tampered organization id in a form is an error
next to its field.
"""

from __future__ import annotations

from flask import abort, current_app, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.customer.replies import current_query, done, fragment, list_state, refuse, show_error
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Invitation, Membership, Organization, PortalRequest, User, utcnow
from portal.models.orgs import ROLES_BY_KIND
from portal.services.accounts import invite_user
from portal.services.errors import NotAllowed, ServiceError
from portal.services.orgs import add_member, remove_member
from portal.services.requests import decide_request
from portal.ui import Column, Filter, Table, parse_list_args
from portal.web import is_htmx, render

ROLES = [("member", "Member"), ("admin", "Admin")]
ROLE_CHOICES = [SelectChoice(value, label) for value, label in ROLES]
ROLE_HINT = "Members see everything and activate licenses; admins also manage users, partners and the hierarchy."
SHOWN = 50  # join requests and open invitations shown at once, oldest and newest first


class InviteForm(PortalForm):
    """Built with the prefix "invite" (the top bar has an org_id of its own)."""

    email = StringField("Email", validators=[
        DataRequired("Enter the email address of the person to invite."), Length(max=254)])
    org_id = SelectField("Organization", validate_choice=False,
                         validators=[DataRequired("Choose the organization to invite them to.")])
    role = SelectField("Role", choices=ROLE_CHOICES, validate_choice=False, validators=[DataRequired("Choose a role.")])


class RoleForm(PortalForm):
    role = SelectField("Role", choices=ROLE_CHOICES, validate_choice=False, validators=[DataRequired("Choose a role.")])


class RemoveForm(PortalForm):
    pass


class DecisionForm(PortalForm):
    decision = StringField(validators=[AnyOf(("approve", "reject"), message="Approve or reject the request.")])
    note = StringField("Note to the requester", validators=[Optional(), Length(max=2000)])


# --- what the page shows ----------------------------------------------------------------------


def _tree(actor) -> tuple[list[Organization], dict[int, str]]:
    """The hierarchy's organizations (one query) and each one's path for display."""
    orgs = db.session.scalars(policy.tree_organizations(actor)).all()
    names = {org.id: org.name for org in orgs}
    paths = {org.id: " > ".join(names[i] for i in org.ancestor_ids if i in names) for org in orgs}
    return orgs, paths


def _org_choices(actor, orgs: list[Organization], action: str) -> list[SelectChoice]:
    depth = len(actor.org.ancestor_ids)
    return [SelectChoice(str(o.id), "— " * (len(o.ancestor_ids) - depth) + o.name)
            for o in orgs if policy.can(actor, action, o)]


def _members_table(actor, orgs: list[Organization], args, *, after_change: bool) -> tuple[Table, list[Filter]]:
    depth = len(actor.org.ancestor_ids)
    filters = [
        Filter("org", "Organization", [(str(o.id), "— " * (len(o.ancestor_ids) - depth) + o.name) for o in orgs],
               all_label="All organizations"),
        Filter("role", "Role", ROLES, all_label="All roles"),
    ]
    def parse(given):
        return parse_list_args(given, endpoint="customer.users", sorts={"name", "email", "org", "role"},
                               default_sort="org", filters=filters)

    state = list_state(parse, args) if after_change else parse(args)
    query = (policy.visible_memberships(actor).join(User, User.id == Membership.user_id)
             .join(Organization, Organization.id == Membership.org_id)
             .options(joinedload(Membership.user), joinedload(Membership.org)))
    if state.q:
        query = query.where(User.display_name.icontains(state.q, autoescape=True)
                            | User.email.icontains(state.q.lower(), autoescape=True))
    if "org" in state.filters:
        query = query.where(Membership.org_id == int(state.filters["org"]))
    if "role" in state.filters:
        query = query.where(Membership.role == state.filters["role"])
    keys = {"name": [User.display_name, User.email], "email": [User.email], "org": [Organization.path, User.email],
            "role": [Membership.role, User.email]}[state.sort]
    query = query.order_by(*[k.desc() if state.descending else k for k in keys], Membership.id)
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    columns = [Column("name", "Name", sortable=True), Column("email", "Email", sortable=True),
               Column("org", "Organization", sortable=True), Column("role", "Role", sortable=True)]
    if policy.can(actor, "manage_users"):
        columns.append(Column("actions", "Actions", label_hidden=True))
    table = Table(id="members", columns=columns, pagination=pagination, state=state, noun="member", nouns="members",
                  caption="Members of your organizations", empty_text="Nobody is a member yet.")
    return table, filters


def _context(actor, args=None, **forms) -> dict:
    """Everything the page shows, for admins and members alike (forms for admins only)."""
    orgs, paths = _tree(actor)
    table, filters = _members_table(actor, orgs, current_query() if args is None else args,
                                    after_change=args is None)
    requests = db.session.scalars(
        policy.join_requests_to_tree(actor).options(joinedload(PortalRequest.requester)).limit(SHOWN)).all()
    decidable = set(db.session.scalars(
        policy.decidable_requests(actor).where(PortalRequest.id.in_([r.id for r in requests]))
        .with_only_columns(PortalRequest.id))) if requests else set()
    admin = policy.can(actor, "manage_users")
    invite = None
    invitations = []
    if admin:
        invite = forms.get("invite") or InviteForm(formdata=None, prefix="invite", org_id=str(actor.org.id),
                                                  role="member")
        invite.org_id.choices = _org_choices(actor, orgs, "invite")
        invitations = db.session.scalars(
            select(Invitation).where(Invitation.org_id.in_(policy.subtree_org_ids(actor.org)),
                                     Invitation.used_at.is_(None), Invitation.expires_at > utcnow())
            .order_by(Invitation.created_at.desc(), Invitation.id.desc()).limit(SHOWN)).all()
    return {
        "members": table, "filters": filters, "paths": paths, "admin": admin, "invite": invite,
        "invitations": invitations, "role_hint": ROLE_HINT, "join_requests": requests, "decidable": decidable,
        "row_errors": forms.get("row_errors", {}), "request_errors": forms.get("request_errors", {}),
    }


def _answer(actor, *, status: int = 200, message: str | None = None, kind: str = "success", **forms):
    """After a form: the page's body for htmx (its list as it was), else a redirect or the page."""
    if is_htmx():
        return fragment("customer/_users_body.html", status=status, message=message, kind=kind,
                        **_context(actor, **forms))
    if status < 400:
        return done(url_for("customer.users"), message or "Saved.")
    return render("customer/users.html", status=status, **_context(actor, **forms))


def _require_admin(actor) -> None:
    if not policy.can(actor, "manage_users"):
        refuse(NotAllowed("Only your organization's admins manage its users."))


# --- pages --------------------------------------------------------------------------------


@bp.get("/users")
def users():
    """Members per organization of the hierarchy; invitations and join requests for admins."""
    actor = current_actor()
    context = _context(actor, args=request.args)
    return render("customer/users.html", fragment="customer/_members.html", **context)


# --- changes ------------------------------------------------------------------------------


@bp.post("/users/invitations")
def invite():
    """Invite someone by email into an organization of the hierarchy, with a role."""
    actor = current_actor()
    _require_admin(actor)
    form = InviteForm(prefix="invite")
    if not form.validate():
        return _answer(actor, status=422, invite=form)
    org = None
    raw = form.org_id.data or ""
    if raw.isascii() and raw.isdigit() and len(raw) < 10:
        org = db.session.scalar(policy.tree_organizations(actor).where(Organization.id == int(raw)))
    if org is None:
        form.org_id.errors = [*form.org_id.errors, "Choose an organization of your own hierarchy."]
        return _answer(actor, status=422, invite=form)
    try:
        invitation, _token = invite_user(actor, org, form.email.data, form.role.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _answer(actor, status=422, invite=form)
    db.session.commit()
    # The link went into the outbox; the page never shows it (it is the invitee's key).
    return _answer(actor, message=f"Invited {invitation.email} to {org.name} as {invitation.role}. "
                                  "The invitation is on its way by email.")


@bp.post("/users/members/<int:membership_id>/role")
def change_role(membership_id: int):
    """Give a member of the hierarchy another role."""
    actor = current_actor()
    membership = policy.load_membership(actor, membership_id)
    _require_admin(actor)
    form = RoleForm(prefix=f"m-{membership.id}")
    role_of = membership.role
    if not form.validate() or form.role.data not in ROLES_BY_KIND["customer"]:
        return _answer(actor, status=422, row_errors={membership.id: "Choose member or admin."})
    user, org = membership.user, membership.org
    try:
        add_member(actor, org, user, form.role.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        return _answer(actor, status=422, message=error.message, kind="error",
                       row_errors={membership_id: error.message})
    db.session.commit()
    if form.role.data == role_of:
        return _answer(actor, message=f"{user.email} is {role_of} of {org.name} already.")
    return _answer(actor, message=f"{user.email} is now {form.role.data} of {org.name}.")


@bp.post("/users/members/<int:membership_id>/remove")
def remove(membership_id: int):
    """Remove someone from an organization of the hierarchy; their sessions end at once."""
    actor = current_actor()
    membership = policy.load_membership(actor, membership_id)
    _require_admin(actor)
    email, org_name = membership.user.email, membership.org.name
    try:
        remove_member(actor, membership)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    return _answer(actor, message=f"Removed {email} from {org_name}.")


@bp.post("/users/requests/<int:request_id>")
def decide_join(request_id: int):
    """Approve or reject a request to join an organization of the hierarchy."""
    actor = current_actor()
    req = policy.load_request(actor, request_id)
    if req.kind != "join_org":  # other requests have their own pages
        abort(404)
    if req.state != "pending":
        abort(409, f"This request is {req.state} already.")
    if not policy.can(actor, "decide", req):
        refuse(NotAllowed("Only your organization's admins decide requests to join it."))
    form = DecisionForm(prefix=f"r-{req.id}")
    if not form.validate():
        errors = [e for f in (form.decision, form.note) for e in f.errors]
        return _answer(actor, status=422, request_errors={req.id: " ".join(errors)})
    approve = form.decision.data == "approve"
    name, org_name = req.requester.display_name, req.target_org.name
    try:
        decide_request(actor, req, approve=approve, note=form.note.data)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    if approve:
        return _answer(actor, message=f"{name} joined {org_name} as member.")
    return _answer(actor, message=f"Rejected {name}'s request to join {org_name}.")
