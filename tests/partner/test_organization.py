"""Our organization: contacts (admins edit), users and invitations (through the outbox), our audit
trail (what our users did, for whichever customer), members see and change nothing."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Invitation, Membership, OutboxEmail
from portal.services.activations import activate
from tests.factories import write_transaction
from tests.partner.conftest import HX


def test_contacts_are_edited_by_admins_only(channel, bluesky, login_as):
    response = bluesky.post("/partner/organization/contacts", data={
        "org-email": "desk@bluesky.example", "org-phone": "+1 555 0111",
        "org-notification_emails": "a@bluesky.example; B@bluesky.example"})
    assert response.status_code == 302
    db.session.rollback()
    org = channel.orgs["bluesky"]
    assert (org.email, org.phone, org.notification_emails, org.name) == (
        "desk@bluesky.example", "+1 555 0111", "a@bluesky.example, b@bluesky.example", "BlueSky Resellers")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "organization.update"))
    assert event.org_id == org.id and event.subject_org_id == org.id
    bad = bluesky.post("/partner/organization/contacts", data={"org-email": "not-an-email"})
    assert bad.status_code == 422 and "Enter a valid email address." in bad.get_data(as_text=True)
    member = login_as(channel.users["bluesky_member"])
    page = member.get("/partner/organization").get_data(as_text=True)
    assert "desk@bluesky.example" in page and 'id="contacts-form"' not in page and 'id="invite-form"' not in page
    assert member.post("/partner/organization/contacts", data={"org-email": "x@example.com"}).status_code == 403


def test_users_of_our_organization_only(channel, bluesky):
    html = bluesky.get("/partner/organization").get_data(as_text=True)
    assert html.count('<tr class="member-row">') == 2
    assert "admin@bluesky.example" in html and "member@bluesky.example" in html
    for decoy in ("admin@northwind.example", "admin@redrock.example"):
        assert decoy not in html
    fragment = bluesky.get("/partner/organization?q=member", headers=HX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="members"') and fragment.count('<tr class="member-row">') == 1


def test_invite_goes_through_the_outbox_and_never_shows_the_link(channel, bluesky):
    response = bluesky.post("/partner/organization/invitations",
                            data={"invite-email": "New.Person@Example.com", "invite-role": "admin"})
    assert response.status_code == 302
    db.session.rollback()
    invitation = db.session.scalar(select(Invitation))
    assert (invitation.email, invitation.org_id, invitation.role) == (
        "new.person@example.com", channel.orgs["bluesky"].id, "admin")
    mails = db.session.scalars(select(OutboxEmail).where(OutboxEmail.to_addr == "new.person@example.com")).all()
    assert len(mails) == 1 and "/invitations/" in mails[0].body_text
    page = bluesky.get("/partner/organization").get_data(as_text=True)
    assert "new.person@example.com · admin" in page and "/invitations/" not in page
    bad = bluesky.post("/partner/organization/invitations", data={"invite-email": "x@example.com",
                                                                  "invite-role": "staff"})
    assert bad.status_code == 422 and "Choose member or admin." in bad.get_data(as_text=True)


def test_change_role_and_remove(channel, bluesky, login_as):
    member = db.session.scalar(select(Membership).where(Membership.user_id == channel.users["bluesky_member"].id))
    assert bluesky.post(f"/partner/organization/members/{member.id}/role",
                        data={f"m-{member.id}-role": "admin"}).status_code == 302
    db.session.rollback()
    assert member.role == "admin"
    own = db.session.scalar(select(Membership).where(Membership.user_id == channel.users["bluesky_admin"].id))
    refused = bluesky.post(f"/partner/organization/members/{own.id}/remove")
    assert refused.status_code == 409
    other = db.session.scalar(select(Membership).where(Membership.user_id == channel.users["redrock_admin"].id))
    assert bluesky.post(f"/partner/organization/members/{other.id}/remove").status_code == 404
    member_id, other_id = member.id, other.id
    assert bluesky.post(f"/partner/organization/members/{member_id}/remove").status_code == 302
    db.session.rollback()
    db.session.expunge_all()
    assert db.session.get(Membership, member_id) is None
    assert db.session.get(Membership, other_id) is not None


def test_audit_trail_shows_our_acts_with_on_behalf_of(make, channel, bluesky, login_as):
    from portal.policy import Actor

    write_transaction()
    ours = Actor(user=channel.users["bluesky_admin"], org=channel.orgs["bluesky"], role="admin")
    activate(ours, channel.entitlements["germany"].lines[0], "bluesky-for-de")
    initech = Actor(user=channel.users["initech_admin"], org=channel.orgs["initech"], role="admin")
    activate(initech, channel.entitlements["germany"].lines[0], "initech-host")  # decoy: not ours
    db.session.commit()
    html = bluesky.get("/partner/organization/audit?action=activation.create").get_data(as_text=True)
    assert html.count('<tr class="audit-row">') == 1
    assert "of BlueSky Resellers on behalf of Contoso Germany" in html and "Initech" not in html
    full = bluesky.get("/partner/organization/audit").get_data(as_text=True)
    assert "Zephyr" not in full and "Initech" not in full  # others' attachments on our stock: not ours to see
    rows = list(csv.reader(io.StringIO(bluesky.get("/partner/organization/audit.csv?action=activation.create")
                                       .get_data(as_text=True))))
    assert len(rows) == 2 and rows[1][4] == "Contoso Germany" and rows[1][5] == "activation.create"
    member = login_as(channel.users["bluesky_member"])
    assert member.get("/partner/organization/audit").status_code == 403
    assert member.get("/partner/organization/audit.csv").status_code == 403


def test_query_count_does_not_grow_with_users(make, channel, bluesky, count_queries):
    def measure(url):
        db.session.commit()
        with count_queries() as counter:
            assert bluesky.get(url).status_code == 200
        return counter.count

    urls = ["/partner/organization", "/partner/organization/audit"]
    small = [measure(u) for u in urls]
    for n in range(15):
        user = make.user(channel.orgs["bluesky"], "member")
        bluesky.post("/partner/organization/invitations", data={"invite-email": f"p{n}@example.com",
                                                                "invite-role": "member"})
        assert user
    large = [measure(u) for u in urls]
    assert small == large
