"""/customer/users: members per organization, invitations through the outbox, roles, removal,
join decisions. Admins act; members see; another customer's people are never listed."""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Invitation, Membership, OutboxEmail, PortalRequest, User
from portal.services.accounts import create_user
from portal.services.outbox import deliver_due
from portal.services.requests import request_to_join
from tests.customer.tree_world import build_tree_world
from tests.smtp_server import SmtpServer

HX = {"HX-Request": "true"}


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app_config(smtp_server):
    return smtp_server.app_config(MAIL_FROM="Acme Entitlement Portal <portal@acme.example>")


@pytest.fixture
def world(make):
    world = build_tree_world(make)
    for n, org in enumerate([world.germany, world.munich, world.usa]):
        make.user(org, "member", email=f"person{n}@contoso.example")
    make.user(world.tailspin, "member", email="person9@tailspin.example")  # decoys with matching emails
    make.user(world.tailspin_site, "admin", email="contoso.fan@tailspin.example")
    return world


@pytest.fixture
def admin(world, login_as):
    return login_as(world.admin, world.contoso)


def emails(body: str) -> list[str]:
    return re.findall(r'<tr class="member-row" id="member-\d+">\s*<td>[^<]*(?:<span[^>]*>You</span>)?</td>\s*'
                      r"<td>([^<]+)</td>", body)


def summary(body: str) -> str:
    return html.unescape(re.search(r'id="members-summary"[^>]*>([^<]*)<', body).group(1))


def toast(response) -> dict:
    return json.loads(response.headers["HX-Trigger"])["portal:toast"]


def field_errors(body: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'<p class="error"[^>]* id="([^"]+)-error">([^<]*)</p>', body)}


def state() -> tuple:
    """Memberships, invitations, queued mail, requests and the audit trail's length, as committed."""
    db.session.rollback()
    return (
        db.session.execute(select(Membership.user_id, Membership.org_id, Membership.role)
                           .order_by(Membership.id)).all(),
        db.session.scalar(select(func.count(Invitation.id))),
        db.session.scalar(select(func.count(OutboxEmail.id))),
        db.session.execute(select(PortalRequest.id, PortalRequest.state)).all(),
        db.session.scalar(select(func.count(AuditEvent.id))),
    )


def membership(email: str) -> Membership:
    db.session.rollback()
    return db.session.scalar(select(Membership).join(User).where(User.email == email))


# --- the list ---------------------------------------------------------------------------------


def test_members_of_every_organization_of_ours_and_nobody_else(world, admin):
    body = admin.get("/customer/users").get_data(as_text=True)
    assert summary(body) == "5 members"
    # In hierarchy order, then by email.
    assert emails(body) == ["admin@contoso.example", "it@contoso-de.example", "person0@contoso.example",
                            "person1@contoso.example", "person2@contoso.example"]
    assert "tailspin" not in body.lower()
    assert "Contoso Group &gt; Contoso Germany &gt; Contoso Munich Plant" in body


@pytest.mark.parametrize(("query", "expected"), [
    ({"q": "person"}, ["person0@contoso.example", "person1@contoso.example", "person2@contoso.example"]),
    ({"q": "CONTOSO.EXAMPLE", "sort": "-email"}, ["person2@contoso.example", "person1@contoso.example",
                                                  "person0@contoso.example", "admin@contoso.example"]),
    ({"org": "germany"}, ["it@contoso-de.example", "person0@contoso.example"]),
    ({"role": "admin"}, ["admin@contoso.example"]),
])
def test_search_filter_and_sort_are_in_the_url(world, admin, query, expected):
    if "org" in query:
        query = {"org": str(world.orgs[query["org"]].id)}
    response = admin.get("/customer/users", query_string=query, headers=HX)
    body = response.get_data(as_text=True)
    assert "<html" not in body  # the table's fragment
    assert emails(body) == expected


def test_a_tampered_organization_filter_answers_400(world, admin):
    assert admin.get("/customer/users", query_string={"org": str(world.tailspin.id)}).status_code == 400


def test_a_member_of_a_subsidiary_sees_its_subtree_and_no_forms(world, login_as):
    client = login_as(world.member, world.germany)
    body = client.get("/customer/users").get_data(as_text=True)
    assert emails(body) == ["it@contoso-de.example", "person0@contoso.example", "person1@contoso.example"]
    assert "<form method=\"post\"" not in body.split('id="users-body"')[1]
    assert "Invite someone" not in body


# --- invitations ------------------------------------------------------------------------------


def test_invite_sends_the_link_by_mail_and_never_shows_it(world, admin, smtp_server):
    response = admin.post("/customer/users/invitations", headers=HX, data={
        "invite-email": " Alice@Contoso.Example ", "invite-org_id": world.germany.id, "invite-role": "admin"})
    assert response.status_code == 200
    assert toast(response)["message"] == ("Invited alice@contoso.example to Contoso Germany as admin. "
                                          "The invitation is on its way by email.")
    body = response.get_data(as_text=True)
    assert "/invitations/" not in body
    assert re.search(r'<tr class="invitation-row"><td>alice@contoso.example</td><td>Contoso Group &gt; '
                     r"Contoso Germany</td><td>Admin</td>", body)
    db.session.rollback()
    invitation = db.session.scalar(select(Invitation))
    assert (invitation.email, invitation.org_id, invitation.role) == ("alice@contoso.example", world.germany.id,
                                                                      "admin")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "invitation.create"))
    assert (event.user_id, event.subject_org_id) == (world.admin.id, world.germany.id)
    # The mail goes through the outbox to the SMTP server, with the link the page never showed.
    assert deliver_due()["sent"] == 1
    (message,) = smtp_server.messages
    assert message["To"] == "alice@contoso.example"
    link = re.search(r"http://127.0.0.1:5000/invitations/(\S+)", message.get_body(("plain",)).get_content())
    assert link and link.group(1) not in body
    assert link.group(1) not in admin.get("/customer/users").get_data(as_text=True)


@pytest.mark.parametrize(("data", "errors"), [
    ({"invite-email": "not an address"}, {"invite-email": "Enter a valid email address (An email address must "
                                                          "have an @-sign.)."}),
    ({"invite-email": "bob@contoso.example\x00"}, {"invite-email": "Remove control characters from this field."}),
    ({"invite-email": ""}, {"invite-email": "Enter the email address of the person to invite."}),
    ({"invite-org_id": "tailspin"}, {"invite-org_id": "Choose an organization of your own hierarchy."}),
    ({"invite-org_id": "bluesky"}, {"invite-org_id": "Choose an organization of your own hierarchy."}),
    ({"invite-org_id": "12abc"}, {"invite-org_id": "Choose an organization of your own hierarchy."}),
    ({"invite-role": "owner"}, {"invite-role": "Choose one of: admin, member."}),
])
def test_bad_invitations_are_refused_next_to_the_field_and_send_nothing(world, admin, data, errors):
    form = {"invite-email": "bob@contoso.example", "invite-org_id": world.germany.id, "invite-role": "member"}
    form |= {k: (world.orgs[v].id if v in world.orgs else v) for k, v in data.items()}
    before = state()
    response = admin.post("/customer/users/invitations", data=form, headers=HX)
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True)) == errors
    assert state() == before


# --- roles and removal ---------------------------------------------------------------------------


def test_change_a_role(world, admin):
    target = membership("person1@contoso.example")
    response = admin.post(f"/customer/users/members/{target.id}/role", data={f"m-{target.id}-role": "admin"},
                          headers=HX)
    assert response.status_code == 200
    assert toast(response)["message"] == "person1@contoso.example is now admin of Contoso Munich Plant."
    assert membership("person1@contoso.example").role == "admin"
    event = db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()))
    assert (event.action, event.details) == ("membership.set", {"user": "person1@contoso.example", "role": "admin"})


def test_the_list_keeps_its_search_after_a_change(world, admin):
    """htmx sends the page's URL along: the re-rendered list is the one the admin was looking at."""
    target = membership("person1@contoso.example")
    response = admin.post(f"/customer/users/members/{target.id}/role", data={f"m-{target.id}-role": "admin"},
                          headers=HX | {"HX-Current-URL": "http://localhost/customer/users?q=person&sort=-email"})
    assert emails(response.get_data(as_text=True)) == ["person2@contoso.example", "person1@contoso.example",
                                                       "person0@contoso.example"]


def test_remove_a_member_ends_their_sessions(world, admin):
    target = membership("person0@contoso.example")
    version = target.user.session_version
    response = admin.post(f"/customer/users/members/{target.id}/remove", headers=HX)
    assert response.status_code == 200
    assert toast(response)["message"] == "Removed person0@contoso.example from Contoso Germany."
    body = response.get_data(as_text=True)
    assert summary(body) == "4 members" and "person0@" not in body
    assert membership("person0@contoso.example") is None
    assert db.session.scalar(select(User.session_version).where(User.email == "person0@contoso.example")) == version + 1


def test_an_admin_can_neither_remove_nor_demote_itself(world, admin):
    own = membership("admin@contoso.example")
    before = state()
    response = admin.post(f"/customer/users/members/{own.id}/remove", headers=HX)
    assert response.status_code == 409
    assert "You cannot remove yourself" in response.get_data(as_text=True)
    response = admin.post(f"/customer/users/members/{own.id}/role", data={f"m-{own.id}-role": "member"}, headers=HX)
    assert response.status_code == 422
    assert toast(response) == {"message": "You cannot change your own role here; ask another admin.", "kind": "error"}
    assert state() == before
    # The page offers neither.
    body = admin.get("/customer/users").get_data(as_text=True)
    assert f"/customer/users/members/{own.id}/" not in body


def test_another_customers_members_are_404(world, admin):
    decoy = membership("person9@tailspin.example")
    before = state()
    assert admin.post(f"/customer/users/members/{decoy.id}/remove").status_code == 404
    response = admin.post(f"/customer/users/members/{decoy.id}/role", data={f"m-{decoy.id}-role": "admin"})
    assert response.status_code == 404
    assert state() == before


# --- join requests --------------------------------------------------------------------------------


@pytest.fixture
def joiners(world):
    nina = create_user("nina@newhire.example", "Nina Newhire")
    decoy = create_user("dan@elsewhere.example", "Dan Decoy")
    requests = {
        "nina": request_to_join(nina, world.munich, message="I run the Munich plant's IT now.",
                                organization_name="Contoso Munich Plant"),
        "decoy": request_to_join(decoy, world.tailspin, organization_name="Tailspin Toys"),
    }
    db.session.commit()
    return requests


@pytest.mark.parametrize(("decision", "member"), [("approve", True), ("reject", False)])
def test_decide_a_join_request(world, admin, joiners, smtp_server, decision, member):
    req = joiners["nina"]
    body = admin.get("/customer/users").get_data(as_text=True)
    assert "Requests to join (1)" in body and "Dan Decoy" not in body
    response = admin.post(f"/customer/users/requests/{req.id}", headers=HX,
                          data={f"r-{req.id}-decision": decision, f"r-{req.id}-note": "Welcome aboard"})
    assert response.status_code == 200
    expected = ("Nina Newhire joined Contoso Munich Plant as member." if member
                else "Rejected Nina Newhire's request to join Contoso Munich Plant.")
    assert toast(response)["message"] == expected
    assert "Requests to join" not in response.get_data(as_text=True)
    joined = membership("nina@newhire.example")
    assert (joined is not None) == member
    if member:
        assert (joined.org_id, joined.role) == (world.munich.id, "member")
    assert deliver_due()["sent"] == 1  # the requester hears of it
    assert smtp_server.messages[0]["To"] == "nina@newhire.example"


def test_join_decisions_refuse_junk_members_and_other_customers(world, admin, login_as, joiners):
    req, decoy = joiners["nina"], joiners["decoy"]
    before = state()
    response = admin.post(f"/customer/users/requests/{req.id}", data={f"r-{req.id}-decision": "maybe"}, headers=HX)
    assert response.status_code == 422
    assert f'id="r-{req.id}-error">Approve or reject the request.<' in response.get_data(as_text=True)
    assert admin.post(f"/customer/users/requests/{decoy.id}", data={f"r-{decoy.id}-decision": "approve"}
                      ).status_code == 404
    member = login_as(world.member, world.germany)
    body = member.get("/customer/users").get_data(as_text=True)
    assert "Nina Newhire" in body and "Waiting for an admin's decision" in body  # members see
    assert member.post(f"/customer/users/requests/{req.id}", data={f"r-{req.id}-decision": "approve"}
                       ).status_code == 403
    assert state() == before


@pytest.mark.parametrize(("url", "data"), [
    ("/customer/users/invitations", {"invite-email": "x@contoso.example", "invite-org_id": "germany",
                                     "invite-role": "member"}),
    ("/customer/users/members/{m}/role", {"m-{m}-role": "admin"}),
    ("/customer/users/members/{m}/remove", {}),
])
def test_a_member_gets_403_and_nothing_changes(world, login_as, url, data):
    target = membership("person1@contoso.example").id
    client = login_as(world.member, world.germany)
    form = {k.format(m=target): (world.orgs[v].id if v in world.orgs else v) for k, v in data.items()}
    before = state()
    assert client.post(url.format(m=target), data=form, headers=HX).status_code == 403
    assert state() == before


def test_users_page_queries_do_not_grow_with_rows(world, make, login_as, count_queries, joiners):
    client = login_as(world.admin, world.contoso)

    def measure():
        db.session.commit()
        with count_queries() as counter:
            assert client.get("/customer/users").status_code == 200
        return counter.count

    small = measure()
    for n in range(12):
        make.user(world.usa if n % 2 else world.munich, "member")
        request_to_join(create_user(f"joiner{n}@example.com", "Joiner"), world.usa, organization_name="Contoso USA")
    db.session.commit()
    large = measure()
    print(f"users page: {small} statements")
    assert small == large


def test_a_forged_page_url_after_a_change_shows_the_list_from_its_start(world, admin):
    """The change is made before the list is drawn again: junk in HX-Current-URL must not turn
    a done change into a 400."""
    target = membership("person1@contoso.example")
    response = admin.post(f"/customer/users/members/{target.id}/role", data={f"m-{target.id}-role": "admin"},
                          headers=HX | {"HX-Current-URL": "http://localhost/customer/users?sort=password&org=999"})
    assert response.status_code == 200
    assert summary(response.get_data(as_text=True)) == "5 members"
    assert membership("person1@contoso.example").role == "admin"
