"""``/partner/organization``: our contacts (what customers see in notifications about the
entitlements we are attached to), our users and invitations, and our audit trail.

Admins edit the contacts, invite someone by email with a role (the link goes out through the
mail outbox), change a member's role and remove a member; members see the same and act on
nothing (403). The forms and the audit list are the customer portal's (``customer/users.py``,
``customer/audit.py``): the same rules, the same services.
"""

from __future__ import annotations

import csv
import io

from flask import Response, abort, current_app, request, url_for
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer.audit import _query as audit_query
from portal.blueprints.customer.audit import (
    action_label,
    audit_state,
    csv_cells,
    csv_events,
    event_page,
    require_audit_access,
    summary,
)
from portal.blueprints.customer.organization import OrganizationForm
from portal.blueprints.customer.replies import done, refuse, show_error
from portal.blueprints.customer.users import ROLE_CHOICES, ROLES, RemoveForm, RoleForm
from portal.blueprints.partner import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import AuditEvent, Invitation, Membership, User, utcnow
from portal.models.orgs import ROLES_BY_KIND
from portal.services.accounts import invite_user
from portal.services.errors import NotAllowed, ServiceError
from portal.services.orgs import add_member, remove_member, update_organization
from portal.ui import Column, Filter, ListState, Table, parse_list_args
from portal.web import render

SHOWN = 50  # open invitations shown at once, newest first
ROLE_HINT = ("Members work on the entitlements you are attached to and ask customers for access; admins also "
             "manage users and contacts, and see the audit trail and reports.")


class ContactsForm(OrganizationForm):
    """Our contact data and notification contacts (the name is the producer's to change)."""

    name = None


class InviteForm(PortalForm):
    """Built with the prefix "invite"."""

    email = StringField("Email", validators=[
        DataRequired("Enter the email address of the person to invite."), Length(max=254)])
    role = SelectField("Role", choices=ROLE_CHOICES, validate_choice=False, validators=[DataRequired("Choose a role.")])


def _members(actor, args) -> tuple[Table, list[Filter]]:
    filters = [Filter("role", "Role", ROLES, all_label="All roles")]
    state = parse_list_args(args, endpoint="partner.organization", sorts={"name", "email", "role"},
                            default_sort="name", filters=filters)
    query = (policy.visible_memberships(actor).join(User, User.id == Membership.user_id)
             .options(joinedload(Membership.user)))
    if state.q:
        query = query.where(User.display_name.icontains(state.q, autoescape=True)
                            | User.email.icontains(state.q.lower(), autoescape=True))
    if "role" in state.filters:
        query = query.where(Membership.role == state.filters["role"])
    keys = {"name": [User.display_name, User.email], "email": [User.email], "role": [Membership.role, User.email]}
    query = query.order_by(*[k.desc() if state.descending else k for k in keys[state.sort]], Membership.id)
    pagination = db.paginate(query, page=state.page, per_page=current_app.config["PAGE_SIZE"], error_out=False)
    columns = [Column("name", "Name", sortable=True), Column("email", "Email", sortable=True),
               Column("role", "Role", sortable=True)]
    if policy.can(actor, "manage_users", actor.org):
        columns.append(Column("actions", "Actions", label_hidden=True))
    table = Table(id="members", columns=columns, pagination=pagination, state=state, noun="user", nouns="users",
                  caption="Users of your organization", empty_text="Nobody is a member yet.")
    return table, filters


def _page(actor, *, status: int = 200, args=None, **forms):
    admin = policy.can(actor, "manage_users", actor.org)
    editor = policy.can(actor, "edit", actor.org)
    org = actor.org
    contacts = forms.get("contacts") or (ContactsForm(formdata=None, prefix="org", obj=org) if editor else None)
    invite = forms.get("invite") or (InviteForm(formdata=None, prefix="invite", role="member") if admin else None)
    invitations = db.session.scalars(
        select(Invitation).where(Invitation.org_id == org.id, Invitation.used_at.is_(None),
                                 Invitation.expires_at > utcnow())
        .order_by(Invitation.created_at.desc(), Invitation.id.desc()).limit(SHOWN)).all() if admin else []
    members, filters = _members(actor, request.args if args is None else args)
    return render("partner/organization.html", fragment="partner/_members_table.html", status=status, org=org,
                  contacts=contacts, invite=invite, invitations=invitations, members=members, filters=filters,
                  admin=admin, editor=editor, role_hint=ROLE_HINT, row_errors=forms.get("row_errors", {}))


@bp.get("/organization")
def organization():
    """Our contacts, users and open invitations."""
    return _page(current_actor())


@bp.post("/organization/contacts")
def edit_contacts():
    """Change our contact data and notification contacts (admins)."""
    actor = current_actor()
    if not policy.can(actor, "edit", actor.org):
        refuse(NotAllowed("Only your organization's admins change its contacts."))
    form = ContactsForm(prefix="org")
    if not form.validate():
        return _page(actor, status=422, args={}, contacts=form)
    try:
        update_organization(actor, actor.org, email=form.email.data, phone=form.phone.data,
                            website=form.website.data, address=form.address.data,
                            notification_emails=form.notification_emails.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _page(actor, status=422, args={}, contacts=form)
    db.session.commit()
    return done(url_for("partner.organization"), "Saved your organization's contacts.")


def _require_admin(actor) -> None:
    if not policy.can(actor, "manage_users", actor.org):
        refuse(NotAllowed("Only your organization's admins manage its users."))


@bp.post("/organization/invitations")
def invite():
    """Invite someone by email into our organization, with a role; the link goes out by mail."""
    actor = current_actor()
    _require_admin(actor)
    form = InviteForm(prefix="invite")
    if not form.validate() or form.role.data not in ROLES_BY_KIND[actor.org.kind]:
        if not form.role.errors and form.role.data not in ROLES_BY_KIND[actor.org.kind]:
            form.role.errors = ["Choose member or admin."]
        return _page(actor, status=422, args={}, invite=form)
    try:
        invitation, _token = invite_user(actor, actor.org, form.email.data, form.role.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        show_error(form, error)
        return _page(actor, status=422, args={}, invite=form)
    db.session.commit()
    # The link went into the outbox; the page never shows it (it is the invitee's key).
    return done(url_for("partner.organization"),
                f"Invited {invitation.email} as {invitation.role}. The invitation is on its way by email.")


@bp.post("/organization/members/<int:membership_id>/role")
def change_role(membership_id: int):
    """Give one of our users another role."""
    actor = current_actor()
    membership = policy.load_membership(actor, membership_id)
    _require_admin(actor)
    form = RoleForm(prefix=f"m-{membership.id}")
    if not form.validate() or form.role.data not in ROLES_BY_KIND[actor.org.kind]:
        return _page(actor, status=422, args={}, row_errors={membership.id: "Choose member or admin."})
    user = membership.user
    try:
        add_member(actor, actor.org, user, form.role.data)
    except NotAllowed as error:
        refuse(error)
    except ServiceError as error:
        db.session.rollback()
        return _page(actor, status=422, args={}, row_errors={membership_id: error.message})
    db.session.commit()
    return done(url_for("partner.organization"), f"{user.email} is {form.role.data} of {actor.org.name}.")


@bp.post("/organization/members/<int:membership_id>/remove")
def remove(membership_id: int):
    """Remove one of our users; their sessions end at once."""
    actor = current_actor()
    membership = policy.load_membership(actor, membership_id)
    _require_admin(actor)
    if not RemoveForm().validate():
        abort(400)
    email = membership.user.email
    try:
        remove_member(actor, membership)
    except ServiceError as error:
        refuse(error)
    db.session.commit()
    return done(url_for("partner.organization"), f"Removed {email} from {actor.org.name}.")


# --- our audit trail -------------------------------------------------------------------------


def _our_audit(actor, state: ListState):
    """The policy's events for a partner admin, less what others did to partner attachments on
    our stock: those name the other partners (rule 3), and they are the customer's business."""
    return audit_query(actor, state).where(
        or_(AuditEvent.org_id == actor.org.id, AuditEvent.subject_type != "attachment"))


@bp.get("/organization/audit")
def audit():
    """What our users did (for whichever customer), and what was done to our organization."""
    actor = current_actor()
    require_audit_access(actor)
    state, filters = audit_state(request.args, "partner.audit")
    pagination = event_page(_our_audit(actor, state), state.page)
    table = Table(
        id="audit", pagination=pagination, state=state, noun="event", nouns="events",
        caption="What your organization's users did",
        columns=[Column("at", "When", sortable=True), Column("who", "Who"), Column("action", "Action", sortable=True),
                 Column("details", "Details")],
        csv_url=state.url("partner.audit_csv", page=1),
        empty_text="What your users do in the portal appears here.",
    )
    return render("partner/audit.html", fragment="customer/_audit_table.html", audit=table, filters=filters,
                  summary=summary, action_label=action_label)


@bp.get("/organization/audit.csv")
def audit_csv():
    """Every event the filters select (all pages), in the list's order, as CSV."""
    actor = current_actor()
    require_audit_access(actor)
    state, _ = audit_state(request.args, "partner.audit")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", "who", "user_email", "organization", "on_behalf_of", "action", "subject", "details",
                     "request_id"])
    for event in csv_events(_our_audit(actor, state)):
        writer.writerow(csv_cells(event))
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
