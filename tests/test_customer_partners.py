"""The customer's partner pages and requests page through the real client (issue 8, items 4 and 9).

A world with decoys: Fabrikam (another customer) has its own attachments, a decoy service
provider on them, and its own requests; nothing of it may show on Contoso's pages, and no form
may reach it. Lists assert exact counts; every change is checked in the database and in the
audit trail; bad input gets its message next to the field and changes nothing.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, select

from portal import policy
from portal.extensions import db
from portal.models import (
    Attachment,
    AuditEvent,
    Invitation,
    Membership,
    Organization,
    OutboxEmail,
    PortalRequest,
)
from portal.services.accounts import create_user
from portal.services.entitlements import revoke_attachment
from portal.services.requests import (
    apply_as_partner,
    decide_request,
    invite_partner,
    request_partner_access,
    request_to_join,
    request_transfer,
)

HTMX = {"HX-Request": "true"}


@pytest.fixture
def world(make):
    """Contoso Group (admin) with Contoso Germany (member) and its Munich plant; Fabrikam the decoy."""
    w = {
        "northwind": make.partner("distributor", "Northwind Distribution"),
        "redrock": make.partner("reseller", "RedRock IT", email="desk@redrock.example"),
        "initech": make.partner("service_provider", "Initech Services"),
        "zephyr": make.partner("service_provider", "Zephyr Decoy Services", email="zephyr@decoy.example"),
    }
    w["bluesky"] = make.partner("reseller", "BlueSky Resellers", supplied_by=w["northwind"])
    w["contoso"] = make.customer("Contoso Group")
    w["germany"] = make.customer("Contoso Germany", parent=w["contoso"])
    w["munich"] = make.customer("Contoso Munich Plant", parent=w["germany"])
    w["fabrikam"] = make.customer("Fabrikam Inc")
    w["studio_de"] = make.entitlement(w["germany"], [w["northwind"], w["bluesky"]])  # distributed + sold
    w["sync"] = make.entitlement(w["contoso"], [w["redrock"]])  # sold
    w["credits"] = make.entitlement(w["contoso"])  # direct: nobody attached
    w["fab1"] = make.entitlement(w["fabrikam"], [w["redrock"]])
    w["fab2"] = make.entitlement(w["fabrikam"], [w["northwind"], w["bluesky"]])
    make.attach([w["fab1"], w["fab2"]], w["zephyr"], permissions=("view", "download"))
    w["admin"] = make.user(w["contoso"], "admin", email="admin@contoso.example")
    w["member"] = make.user(w["germany"], "member", email="it@contoso-de.example")
    w["fab_admin"] = make.user(w["fabrikam"], "admin", email="admin@fabrikam.example")
    w["staff"] = make.user(make.producer(), "staff", email="staff@acme.example")
    return w


def _actor(world, key="admin"):
    user = world[key]
    org = {"admin": world["contoso"], "member": world["germany"], "fab_admin": world["fabrikam"],
           "staff": db.session.scalar(select(Organization).where(Organization.kind == "producer"))}[key]
    return policy.Actor(user=user, org=org, role=db.session.scalar(
        select(Membership.role).where(Membership.user_id == user.id, Membership.org_id == org.id)))


def _fresh() -> None:
    """See what the requests committed: end this session's transaction (its snapshot) first."""
    db.session.rollback()
    db.session.expire_all()


def _count(model, *where) -> int:
    _fresh()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _rows(body: str, css: str) -> list[str]:
    return re.findall(rf'<tr id="[^"]+" class="{css}', body)


def _field_error(body: str, field_id: str) -> str:
    found = re.search(rf'<p class="error[^"]*" id="{field_id}-error">([^<]*)</p>', body)
    return html.unescape(found.group(1)) if found else ""


def _table(body: str) -> str:
    """The attachments' table and its controls, without the forms above them."""
    return body.split('id="attachments-region"', 1)[-1]


def _toast(response) -> str:
    return json.loads(response.headers["HX-Trigger"])["portal:toast"]["message"]


# --- the partners list ------------------------------------------------------------------------


def test_partners_list_shows_exactly_our_attachments(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    body = admin.get("/customer/partners").get_data(as_text=True)
    # Germany's studio: Northwind (distributed) and BlueSky (sold); Contoso's sync: RedRock (sold).
    assert len(_rows(body, "attachment-row")) == 3
    assert re.search(r'<p class="mb-0 table-summary" id="attachments-summary"[^>]*>3 attachments</p>', body)
    for decoy in ("Zephyr Decoy Services", world["fab1"].code, world["fab2"].code, "Fabrikam"):
        assert decoy not in _table(body)
    # Every active partner may be attached (the producer's channel), whoever it works for now.
    assert '>Zephyr Decoy Services (service provider)</option>' in body
    assert world["fab1"].code not in body
    # Search, filters: exact counts, still no decoy.
    for query, expected in [({"q": "bluesky"}, 1), ({"q": world["studio_de"].code.lower()}, 2),
                            ({"relation": "sold"}, 2), ({"relation": "services"}, 0),
                            ({"partner": str(world["redrock"].id)}, 1), ({"state": "revoked"}, 0)]:
        fragment = admin.get("/customer/partners", query_string=query, headers=HTMX).get_data(as_text=True)
        assert len(_rows(fragment, "attachment-row")) == expected, query
        assert "Zephyr" not in fragment and "<html" not in fragment
    # A partner attached only to another customer's entitlements is no filter choice of ours.
    assert admin.get("/customer/partners", query_string={"partner": world["zephyr"].id}).status_code == 400

    # The member of Contoso Germany sees its subtree only, and no forms.
    member = login_as(world["member"], world["germany"])
    body = member.get("/customer/partners").get_data(as_text=True)
    assert len(_rows(body, "attachment-row")) == 2
    assert world["sync"].code not in body
    assert 'id="attach-form"' not in body and 'id="invite-form"' not in body and ">Revoke<span" not in body


def test_revoked_attachments_are_listed_on_request(world, login_as, make):
    seller = db.session.scalar(select(Attachment).where(Attachment.partner_id == world["redrock"].id,
                                                        Attachment.entitlement_id == world["sync"].id))
    revoke_attachment(make.system, seller)
    decoy = db.session.scalar(select(Attachment).where(Attachment.partner_id == world["zephyr"].id).limit(1))
    revoke_attachment(make.system, decoy)
    db.session.commit()
    admin = login_as(world["admin"], world["contoso"])
    active = admin.get("/customer/partners", headers=HTMX).get_data(as_text=True)
    revoked = admin.get("/customer/partners?state=revoked", headers=HTMX).get_data(as_text=True)
    both = admin.get("/customer/partners?state=any", headers=HTMX).get_data(as_text=True)
    assert (len(_rows(active, "attachment-row")), len(_rows(revoked, "attachment-row")),
            len(_rows(both, "attachment-row"))) == (2, 1, 3)
    assert "RedRock IT" in revoked and ">Revoke<span" not in revoked and "Zephyr" not in revoked


# --- attach -----------------------------------------------------------------------------------


def _attach(client, world, *, partner=None, entitlements=(), view=True, download=False, activate=False,
            headers=None, **extra):
    data = {"attach-partner": partner if partner is not None else world["initech"].id,
            "attach-entitlements": [e.id if hasattr(e, "id") else e for e in entitlements]}
    data.update({f"attach-{name}": "y" for name, on in (("view", view), ("download", download),
                                                        ("activate", activate)) if on})
    data.update(extra)
    return client.post("/customer/partners/attach", data=data, headers=headers or {})


def test_attach_a_partner_to_several_entitlements(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    response = _attach(admin, world, entitlements=[world["sync"], world["studio_de"]], download=True, headers=HTMX)
    assert response.status_code == 200
    assert _toast(response) == "Attached Initech Services to 2 entitlements (view and download)."
    assert response.headers["HX-Replace-Url"] == "/customer/partners"
    body = response.get_data(as_text=True)
    assert 'id="attach-form"' in body and 'hx-swap-oob="innerHTML:#attachments-region"' in body
    assert len(_rows(body, "attachment-row")) == 5
    _fresh()
    attachments = db.session.scalars(select(Attachment).where(Attachment.partner_id == world["initech"].id)).all()
    assert sorted((a.entitlement_id, a.relation, tuple(a.permissions), a.granted_by_id) for a in attachments) == sorted(
        (e.id, "services", ("view", "download"), world["admin"].id) for e in (world["sync"], world["studio_de"]))
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "attachment.grant",
                                                         AuditEvent.user_id == world["admin"].id)).all()
    assert sorted(e.details["code"] for e in events) == sorted([world["sync"].code, world["studio_de"].code])


def test_attaching_the_seller_again_changes_its_permissions_not_its_relation(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    response = _attach(admin, world, partner=world["redrock"].id, entitlements=[world["sync"]])
    assert response.status_code == 302
    _fresh()
    seller = db.session.scalar(select(Attachment).where(Attachment.partner_id == world["redrock"].id,
                                                        Attachment.entitlement_id == world["sync"].id))
    assert (seller.relation, seller.permissions, seller.active) == ("sold", ["view"], True)
    assert _count(Attachment, Attachment.partner_id == world["redrock"].id) == 2  # Fabrikam's stays


@pytest.mark.parametrize(("case", "field", "message"), [
    ("unknown partner", "attach-partner", "Choose a partner from the list."),
    ("a customer as partner", "attach-partner", "Choose a partner from the list."),
    ("no partner", "attach-partner", "Choose a partner."),
    ("control characters in partner", "attach-partner", "Remove control characters from this field."),
    ("another customer's entitlement", "attach-entitlements",
     "Choose entitlements from the list: one of them is not among yours."),
    ("an entitlement that does not exist", "attach-entitlements",
     "Choose entitlements from the list: one of them is not among yours."),
    ("junk as entitlement", "attach-entitlements", "Choose entitlements from the list."),
    ("no entitlement", "attach-entitlements", "Choose at least one entitlement."),
    ("download without view", "attach-view",
     "Download and Activate need View: a partner cannot use what it cannot see."),
    ("nothing ticked", "attach-view", "Tick at least View."),
])
def test_attach_refuses_bad_input_at_the_field_and_changes_nothing(world, login_as, case, field, message):
    admin = login_as(world["admin"], world["contoso"])
    ours = [world["sync"]]
    kwargs = {
        "unknown partner": {"partner": 2**31 - 1, "entitlements": ours},
        "a customer as partner": {"partner": world["fabrikam"].id, "entitlements": ours},
        "no partner": {"partner": "", "entitlements": ours},
        "control characters in partner": {"partner": f"{world['initech'].id}\x00", "entitlements": ours},
        "another customer's entitlement": {"entitlements": [world["sync"], world["fab1"]]},
        "an entitlement that does not exist": {"entitlements": [world["sync"], 2**31 - 1]},
        "junk as entitlement": {"entitlements": ["12abc"]},
        "no entitlement": {"entitlements": []},
        "download without view": {"entitlements": ours, "view": False, "download": True},
        "nothing ticked": {"entitlements": ours, "view": False},
    }[case]
    before = (_count(Attachment), _count(AuditEvent))
    for headers in ({}, HTMX):
        response = _attach(admin, world, headers=headers, **kwargs)
        body = response.get_data(as_text=True)
        assert response.status_code == 422
        assert _field_error(body, field) == message
        assert "Fabrikam" not in body and world["fab1"].code not in body
    assert (_count(Attachment), _count(AuditEvent)) == before


def test_a_tampered_entitlement_id_reads_like_one_that_does_not_exist(world, login_as):
    """Another customer's id and an id that exists nowhere get the same answer: no existence leak."""
    admin = login_as(world["admin"], world["contoso"])
    theirs = _attach(admin, world, entitlements=[world["fab1"]], headers=HTMX).get_data(as_text=True)
    nobodys = _attach(admin, world, entitlements=[2**31 - 2], headers=HTMX).get_data(as_text=True)
    strip = re.compile(r'value="\d+"|name="csrf_token" value="[^"]*"')
    assert strip.sub("", theirs) == strip.sub("", nobodys)


# --- change permissions and revoke ------------------------------------------------------------


def _attachment(world, partner, entitlement) -> Attachment:
    _fresh()
    return db.session.scalar(select(Attachment).where(Attachment.partner_id == world[partner].id,
                                                      Attachment.entitlement_id == world[entitlement].id)
                             .order_by(Attachment.id.desc()))


def test_change_permissions_of_the_seller_then_revoke_it(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    seller = _attachment(world, "bluesky", "studio_de")
    url = f"/customer/partners/{seller.id}"
    response = admin.post(f"{url}/permissions", data={f"attachment-{seller.id}-view": "y",
                                                      f"attachment-{seller.id}-download": "y"}, headers=HTMX)
    assert response.status_code == 200
    assert _toast(response) == f"BlueSky Resellers may now view and download on {world['studio_de'].code}."
    assert response.get_data(as_text=True).strip().startswith(f'<tr id="attachment-{seller.id}"')
    seller = _attachment(world, "bluesky", "studio_de")
    assert (seller.relation, seller.permissions) == ("sold", ["view", "download"])
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "attachment.update"))
    assert event.details["before"] == ["view", "download", "activate"]
    assert event.details["permissions"] == ["view", "download"]
    assert event.subject_org_id == world["germany"].id and event.user_id == world["admin"].id

    # View cannot be taken away here: that is revoking.
    refused = admin.post(f"{url}/permissions", data={f"attachment-{seller.id}-download": "y"}, headers=HTMX)
    assert refused.status_code == 422
    assert "Download and Activate need View" in _field_error(refused.get_data(as_text=True),
                                                             f"attachment-{seller.id}-view")
    assert _attachment(world, "bluesky", "studio_de").permissions == ["view", "download"]

    response = admin.post(f"{url}/revoke", headers=HTMX)
    assert response.status_code == 200
    assert _toast(response) == (f"Revoked BlueSky Resellers from {world['studio_de'].code}: "
                                "it has no access to it any more.")
    seller = _attachment(world, "bluesky", "studio_de")
    assert (seller.active, seller.revoked_by_id) == (False, world["admin"].id)
    assert not policy.sees_entitlement(policy.Actor(user=None, org=world["bluesky"], role="admin"),
                                       world["studio_de"])
    assert _count(AuditEvent, AuditEvent.action == "attachment.revoke") == 1
    # Twice: the state changed, it says so; nothing is written again.
    for action, data in (("revoke", {}), ("permissions", {f"attachment-{seller.id}-view": "y"})):
        again = admin.post(f"{url}/{action}", data=data, headers=HTMX)
        assert again.status_code == 409
        assert "BlueSky Resellers was already revoked" in again.get_data(as_text=True)
    assert _count(AuditEvent, AuditEvent.action.in_(("attachment.revoke", "attachment.update"))) == 2


def test_members_see_but_do_not_act_and_other_customers_get_404(world, login_as):
    seller = _attachment(world, "bluesky", "studio_de")
    events = _count(AuditEvent)
    member = login_as(world["member"], world["germany"])
    assert member.post(f"/customer/partners/{seller.id}/revoke").status_code == 403
    assert member.post(f"/customer/partners/{seller.id}/permissions",
                       data={f"attachment-{seller.id}-view": "y"}).status_code == 403
    assert _attach(member, world, entitlements=[world["studio_de"]]).status_code == 403
    other = login_as(world["fab_admin"], world["fabrikam"])
    assert other.post(f"/customer/partners/{seller.id}/revoke").status_code == 404
    assert other.get(f"/customer/entitlements/{world['studio_de'].code}/visibility").status_code == 404
    assert _attachment(world, "bluesky", "studio_de").active
    assert _count(AuditEvent) == events


# --- invite a partner that is not on the portal ------------------------------------------------


def _invite(client, world, entitlements, headers=None, **fields):
    data = {"invite-company": "Litware Support", "invite-email": "boss@litware.example", "invite-view": "y",
            "invite-activate": "y", "invite-entitlements": [e.id if hasattr(e, "id") else e for e in entitlements]}
    data.update(fields)
    return client.post("/customer/partners/invite", data=data, headers=headers or {})


def test_invite_a_partner_then_producer_staff_approve_it(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    response = _invite(admin, world, [world["studio_de"], world["credits"]], headers=HTMX,
                       **{"invite-message": "They run our render farm."})
    assert response.status_code == 200
    assert _toast(response).startswith("Invitation of Litware Support sent to producer staff.")
    _fresh()
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "partner_application"))
    assert (req.requester_user_id, req.requester_org_id, req.state, req.message) == (
        world["admin"].id, world["contoso"].id, "pending", "They run our render farm.")
    assert req.details == {"invitation": True, "company": "Litware Support", "kind": "service_provider",
                           "email": "boss@litware.example", "customer": "Contoso Group",
                           "customer_id": world["contoso"].id,
                           "codes": sorted([world["studio_de"].code, world["credits"].code]),
                           "permissions": ["activate", "view"]}
    assert _count(AuditEvent, AuditEvent.action == "request.create",
                  AuditEvent.subject_org_id == world["contoso"].id) == 1
    # Producer staff see it in their queue and approve it.
    staff = _actor(world, "staff")
    assert req.id in db.session.scalars(policy.decidable_requests(staff).with_only_columns(PortalRequest.id)).all()
    decide_request(staff, req, approve=True, note="Welcome")
    db.session.commit()
    litware = db.session.scalar(select(Organization).where(Organization.name == "Litware Support"))
    assert (litware.kind, litware.status, litware.email) == ("service_provider", "active", "boss@litware.example")
    attached = db.session.scalars(select(Attachment).where(Attachment.partner_id == litware.id)).all()
    assert sorted((a.entitlement_id, a.relation, tuple(a.permissions)) for a in attached) == sorted(
        (e.id, "services", ("view", "activate")) for e in (world["studio_de"], world["credits"]))
    invitation = db.session.scalar(select(Invitation).where(Invitation.org_id == litware.id))
    assert (invitation.email, invitation.role) == ("boss@litware.example", "admin")
    assert _count(OutboxEmail, OutboxEmail.to_addr == "boss@litware.example") == 1
    # The customer admin who invited is told, and is NOT made the new partner's admin.
    assert _count(OutboxEmail, OutboxEmail.to_addr == "admin@contoso.example") == 1
    assert _count(Membership, Membership.org_id == litware.id) == 0
    # The customer's admins follow what became of their invitation in their audit trail.
    seen = db.session.scalars(policy.visible_audit_events(_actor(world)).with_only_columns(AuditEvent.action)).all()
    assert "request.approved" in seen


def test_an_approved_invitation_attaches_only_what_the_customer_still_holds(world, make):
    req = invite_partner(_actor(world), company="Litware", email="boss@litware.example",
                         entitlements=[world["sync"], world["credits"]], permissions=["view"])
    db.session.commit()
    request_transfer(_actor(world), world["credits"], world["fabrikam"])
    db.session.commit()
    transfer = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "transfer"))
    decide_request(make.system, transfer, approve=True)
    decide_request(make.system, req, approve=True)
    db.session.commit()
    litware = db.session.scalar(select(Organization).where(Organization.name == "Litware"))
    assert db.session.scalars(select(Attachment.entitlement_id).where(Attachment.partner_id == litware.id)).all() == [
        world["sync"].id]


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"invite-company": "  initech services "}, "invite-company",
     "Initech Services is on the portal already: choose it under “Attach a partner”."),
    ({"invite-company": ""}, "invite-company", "Enter the company's name."),
    ({"invite-email": "not an email"}, "invite-email", "Enter a valid email address"),
    ({"invite-email": "boss\x07@litware.example"}, "invite-email", "Remove control characters from this field."),
    ({"invite-message": "x" * 2001}, "invite-message", "Keep the message under 2,000 characters."),
])
def test_invite_refuses_bad_input_at_the_field(world, login_as, fields, field, message):
    admin = login_as(world["admin"], world["contoso"])
    response = _invite(admin, world, [world["sync"]], headers=HTMX, **fields)
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), field).startswith(message)
    assert _count(PortalRequest) == 0 and _count(Organization, Organization.name.like("Litware%")) == 0


def test_invite_refuses_another_customers_entitlement_and_a_second_pending_invitation(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    response = _invite(admin, world, [world["fab2"]])
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), "invite-entitlements") == (
        "Choose entitlements from the list: one of them is not among yours.")
    assert _count(PortalRequest) == 0
    assert _invite(admin, world, [world["sync"]]).status_code == 302
    again = _invite(admin, world, [world["sync"]], **{"invite-company": "Adventure Works",
                                                      "invite-email": "ceo@adventure-works.example"})
    assert again.status_code == 422
    assert "Your invitation of another partner is waiting for producer staff" in _field_error(
        again.get_data(as_text=True), "invite-company")
    assert _count(PortalRequest) == 1


# --- requests -----------------------------------------------------------------------------------


@pytest.fixture
def requests_world(world, make):
    """Ours: a transfer by Contoso, an invitation by Contoso. To us: a join to Contoso, partner access
    to Contoso and to Contoso Germany. Decoys: Fabrikam's transfer and invitation, access asked of
    Fabrikam, an applicant's own partner application, a join request to Fabrikam."""
    admin, fab = _actor(world), _actor(world, "fab_admin")
    redrock = make.actor(world["redrock"])
    zephyr = make.actor(world["zephyr"])
    w = dict(world)
    w["transfer"] = request_transfer(admin, world["credits"], world["fabrikam"], message="Sold the farm")
    w["invitation"] = invite_partner(admin, company="Litware", email="boss@litware.example",
                                     entitlements=[world["sync"]])
    w["join"] = request_to_join(create_user("new@contoso.example", "Nina Newhire"), world["contoso"])
    w["access"] = request_partner_access(redrock, world["contoso"], [world["credits"].code, world["fab1"].code],
                                         permissions=["view", "download"])
    w["access_de"] = request_partner_access(zephyr, world["germany"], [world["studio_de"].code])
    request_transfer(fab, world["fab1"], world["contoso"])
    invite_partner(fab, company="Fabrikam's Friend", email="f@friend.example", entitlements=[world["fab2"]])
    request_partner_access(make.actor(world["initech"]), world["fabrikam"], [world["fab2"].code])
    apply_as_partner(create_user("founder@globex.example", "Grace"), company="Globex", kind="reseller")
    request_to_join(create_user("someone@fabrikam.example", "Sam"), world["fabrikam"])
    db.session.commit()
    return w


def _request_rows(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="request-row-(\d+)" class="request-row"', body)]


def _cards(body: str) -> list[int]:
    return [int(i) for i in re.findall(r'<article class="card mb-3 request-card" id="request-(\d+)"', body)]


def test_requests_lists_exactly_ours_and_those_waiting_for_us(requests_world, login_as):
    w = requests_world
    admin = login_as(w["admin"], w["contoso"])
    body = admin.get("/customer/requests").get_data(as_text=True)
    ours = [w["invitation"].id, w["transfer"].id]
    to_us = [w["access_de"].id, w["access"].id, w["join"].id]
    assert _request_rows(body) == sorted(ours + to_us, reverse=True)  # newest first
    assert _cards(body) == sorted(to_us)  # oldest first
    for decoy in ("Fabrikam's Friend", "Globex", "someone@fabrikam.example", w["fab2"].code):
        assert decoy not in body
    for query, expected in [({"direction": "ours"}, ours), ({"direction": "to_us"}, to_us),
                            ({"kind": "partner_access"}, [w["access"].id, w["access_de"].id]),
                            ({"kind": "partner_application"}, [w["invitation"].id]),
                            ({"q": "litware"}, []), ({"q": "nina"}, [w["join"].id]),
                            ({"q": w["credits"].code}, [w["transfer"].id]), ({"state": "approved"}, [])]:
        fragment = admin.get("/customer/requests", query_string=query, headers=HTMX).get_data(as_text=True)
        assert sorted(_request_rows(fragment)) == sorted(expected), query
    # The access request names a code that is not ours: shown as such, not linked.
    assert f"{w['fab1'].code} (not one of yours: ignored)" in body
    # Withdraw on our pending requests; "Decide above" on those waiting for us.
    assert body.count(">Withdraw<span") == 2 and body.count(">Decide above<") == 3

    # A member of Contoso Germany sees its subtree's requests only, without decision forms.
    member = login_as(w["member"], w["germany"])
    body = member.get("/customer/requests").get_data(as_text=True)
    assert _request_rows(body) == [w["access_de"].id] and _cards(body) == [w["access_de"].id]
    assert 'class="decision-form"' not in body and ">Withdraw<span" not in body and 'id="transfer-form"' not in body


def test_approve_partner_access_attaches_only_our_entitlements(requests_world, login_as):
    w = requests_world
    admin = login_as(w["admin"], w["contoso"])
    req = w["access"]
    response = admin.post(f"/customer/requests/{req.id}/decide", headers=HTMX,
                          data={f"request-{req.id}-decision": "approve", f"request-{req.id}-note": "Welcome"})
    assert response.status_code == 200
    assert _toast(response).startswith("Approved: RedRock IT is attached")
    body = response.get_data(as_text=True)
    assert "Approved" in body and 'class="decision-form"' not in body
    # The requests table below is answered out of band, this request approved in it.
    assert 'hx-swap-oob="innerHTML:#requests-region"' in body
    assert re.search(rf'<tr id="request-row-{req.id}"(?:(?!</tr>).)*Approved', body, re.S)
    _fresh()
    attached = db.session.scalars(select(Attachment).where(Attachment.partner_id == w["redrock"].id,
                                                           Attachment.relation == "services")).all()
    assert [(a.entitlement_id, a.permissions) for a in attached] == [(w["credits"].id, ["view", "download"])]
    assert (req.state, req.decision_note, req.decided_by_id) == ("approved", "Welcome", w["admin"].id)
    assert _count(AuditEvent, AuditEvent.action == "request.approved") == 1
    assert _count(OutboxEmail, OutboxEmail.subject.like("%approved%")) == 1
    again = admin.post(f"/customer/requests/{req.id}/decide", data={f"request-{req.id}-decision": "reject"})
    assert again.status_code == 409 and "This request was approved already." in again.get_data(as_text=True)


@pytest.mark.parametrize(("data", "message"), [
    ({"decision": "maybe"}, "Choose Approve or Reject."),
    ({"decision": ""}, "Choose Approve or Reject."),
    ({"decision": "reject", "note": "x" * 2001}, "Keep the note under 2,000 characters."),
    ({"decision": "reject", "note": "bad\x00note"}, "Remove control characters from this field."),
])
def test_a_decision_with_bad_input_changes_nothing(requests_world, login_as, data, message):
    w = requests_world
    req = w["join"]
    admin = login_as(w["admin"], w["contoso"])
    response = admin.post(f"/customer/requests/{req.id}/decide", headers=HTMX,
                          data={f"request-{req.id}-{k}": v for k, v in data.items()})
    assert response.status_code == 422 and message in html.unescape(response.get_data(as_text=True))
    _fresh()
    assert req.state == "pending" and _count(Membership, Membership.org_id == w["contoso"].id) == 1


def test_who_decides_what(requests_world, login_as):
    w = requests_world
    member = login_as(w["member"], w["germany"])
    admin = login_as(w["admin"], w["contoso"])
    other = login_as(w["fab_admin"], w["fabrikam"])
    reject = {"decision": "reject"}

    def decide(client, req):
        return client.post(f"/customer/requests/{req.id}/decide",
                           data={f"request-{req.id}-{k}": v for k, v in reject.items()}).status_code

    assert decide(member, w["access_de"]) == 403  # members see, admins act
    assert decide(other, w["access_de"]) == 404  # not Fabrikam's to see
    assert decide(admin, w["transfer"]) == 403  # ours, but producer staff decide transfers
    assert decide(admin, w["access_de"]) == 302  # Germany is in Contoso's tree
    _fresh()
    assert (w["access_de"].state, w["transfer"].state) == ("rejected", "pending")


def test_withdraw_our_request(requests_world, login_as, make):
    w = requests_world
    colleague = make.user(w["contoso"], "admin")
    member = login_as(w["member"], w["germany"])
    other = login_as(w["fab_admin"], w["fabrikam"])
    url = f"/customer/requests/{w['transfer'].id}/withdraw"
    assert member.post(url).status_code == 404  # Germany's member does not see Contoso Group's transfer
    assert other.post(url).status_code == 404
    response = login_as(colleague, w["contoso"]).post(url, headers=HTMX)  # an admin of the requesting org
    assert response.status_code == 200
    assert _toast(response) == f"Withdrew your transfer request #{w['transfer'].id}."
    assert "Withdrawn" in response.get_data(as_text=True)
    _fresh()
    assert w["transfer"].state == "withdrawn"
    assert _count(AuditEvent, AuditEvent.action == "request.withdraw", AuditEvent.user_id == colleague.id) == 1
    assert login_as(w["admin"], w["contoso"]).post(url).status_code == 409
    # Requests addressed to us are decided, not withdrawn.
    assert login_as(w["admin"], w["contoso"]).post(f"/customer/requests/{w['join'].id}/withdraw").status_code == 403


# --- transfer requests ----------------------------------------------------------------------------


def _transfer(client, code, recipient, headers=None, **extra):
    data = {"transfer-code": code, "transfer-recipient": recipient, **extra}
    return client.post("/customer/requests/transfer", data=data, headers=headers or {})


def test_ask_for_a_transfer(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    response = _transfer(admin, f" {world['studio_de'].code.lower()} ", "  FABRIKAM inc ", headers=HTMX,
                         **{"transfer-message": "Fabrikam bought the plant"})
    assert response.status_code == 200
    assert _toast(response) == (f"Asked producer staff to transfer {world['studio_de'].code} to Fabrikam Inc. "
                                "You can withdraw the request while it waits.")
    assert 'hx-swap-oob="innerHTML:#requests-region"' in response.get_data(as_text=True)
    _fresh()
    req = db.session.scalar(select(PortalRequest).where(PortalRequest.kind == "transfer"))
    assert (req.entitlement_id, req.target_org_id, req.requester_org_id, req.message) == (
        world["studio_de"].id, world["fabrikam"].id, world["contoso"].id, "Fabrikam bought the plant")
    assert _count(AuditEvent, AuditEvent.action == "request.create") == 1
    again = _transfer(admin, world["studio_de"].code, "Fabrikam Inc")
    assert again.status_code == 422
    assert _field_error(again.get_data(as_text=True), "transfer-code") == (
        "A transfer of this entitlement is pending already.")


@pytest.mark.parametrize(("code", "recipient", "field", "message"), [
    ("ENT-NOPE-0000-0000", "Fabrikam Inc", "transfer-code", "None of your entitlements has this code."),
    ("fab1", "Fabrikam Inc", "transfer-code", "None of your entitlements has this code."),
    ("sync", "Contoso Germany", "transfer-recipient", "No customer organization outside your own"),
    ("sync", "Fabrikam", "transfer-recipient", "No customer organization outside your own"),
    ("sync", "RedRock IT", "transfer-recipient", "No customer organization outside your own"),
    ("sync", "Fabrikam\x1bInc", "transfer-recipient", "Remove control characters from this field."),
    ("", "Fabrikam Inc", "transfer-code", "Enter the entitlement's code."),
])
def test_transfer_refuses_bad_input_at_the_field(world, login_as, code, recipient, field, message):
    admin = login_as(world["admin"], world["contoso"])
    code = world[code].code if code in world else code
    response = _transfer(admin, code, recipient, headers=HTMX)
    assert response.status_code == 422
    assert _field_error(response.get_data(as_text=True), field).startswith(message)
    assert _count(PortalRequest) == 0


def test_transfer_recipient_scope(world, make):
    admin, member = _actor(world), _actor(world, "member")
    find = policy.transfer_recipient_by_exact_name
    assert find(admin, " fabrikam INC ") == world["fabrikam"]
    assert find(admin, "Fabrikam") is None  # no prefix search
    assert find(admin, "Contoso Munich Plant") is None  # our own tree: no transfer needed
    assert find(member, "Fabrikam Inc") is None  # admins ask for transfers
    assert find(make.actor(world["redrock"]), "Fabrikam Inc") is None
    make.customer("Fabrikam Inc")
    assert find(admin, "Fabrikam Inc") is None  # ambiguous: nobody


# --- who can see this -------------------------------------------------------------------------------


def _parties(body: str) -> set[int]:
    return {int(i) for i in re.findall(r'class="(?:[^"]*\s)?party(?:\s[^"]*)?" data-org="(\d+)"', body)}


def test_who_can_see_names_exactly_the_parties_the_policy_lets_see(world, login_as, make):
    make.attach(world["studio_de"], world["initech"], permissions=("view", "activate"))
    revoke_attachment(make.system, _attachment(world, "bluesky", "studio_de"))
    db.session.commit()
    entitlement = world["studio_de"]
    admin = login_as(world["admin"], world["contoso"])
    body = admin.get(f"/customer/entitlements/{entitlement.code}/visibility", headers=HTMX).get_data(as_text=True)
    assert body.startswith('<section class="card mb-4 visibility" id="visibility"')
    every_org = db.session.scalars(select(Organization)).all()
    expected = {org.id for org in every_org
                if policy.sees_entitlement(policy.Actor(user=None, org=org, role="member"), entitlement)}
    assert _parties(body) == expected
    assert {o.name for o in every_org if o.id in expected} == {
        "Contoso Group", "Contoso Germany", "Northwind Distribution", "Initech Services", "Acme Software"}
    assert re.search(rf'class="revoked-party" data-org="{world["bluesky"].id}">BlueSky Resellers \(seller, revoked',
                     body)
    assert "Zephyr" not in body and "Munich" not in body
    assert "Its users see it: no admins and 1 member." in body  # Contoso Germany, counted for Contoso's admin

    # Contoso Germany's member: the same parties; the users of Contoso Group above it are not counted.
    member = login_as(world["member"], world["germany"])
    page = member.get(f"/customer/entitlements/{entitlement.code.lower()}/visibility").get_data(as_text=True)
    assert _parties(page) == expected and "<h1" in page
    assert page.count("user-count") == 1 and "Attach or revoke partners" not in page


@pytest.mark.parametrize("code", ["ENT-\x00", "x" * 33, "ENT-NOPE"])
def test_who_can_see_an_unknown_code_is_404(world, login_as, code):
    client = login_as(world["admin"], world["contoso"])
    assert client.get(f"/customer/entitlements/{code}/visibility").status_code == 404


# --- fragments and the chooser ---------------------------------------------------------------------


def test_the_entitlement_chooser_offers_only_ours_and_keeps_the_ticked(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    url = "/customer/partners/choices"
    body = admin.get(url, query_string={"form": "attach"}, headers=HTMX).get_data(as_text=True)
    offered = re.findall(r'name="attach-entitlements" value="(\d+)"', body)
    assert sorted(map(int, offered)) == sorted(world[k].id for k in ("studio_de", "sync", "credits"))
    # Ticked ones stay (and come first), the search narrows the rest; another customer's id is dropped.
    body = admin.get(url, headers=HTMX, query_string={"form": "invite", "eq": world["sync"].code[-4:],
                                                      "invite-entitlements": [world["credits"].id,
                                                                              world["fab1"].id]}).get_data(as_text=True)
    assert re.findall(r'name="invite-entitlements" value="(\d+)"\s+id="[^"]+"( checked)?', body) == [
        (str(world["credits"].id), " checked"), (str(world["sync"].id), "")]
    assert world["fab1"].code not in body
    assert admin.get(url, query_string={"form": "other"}).status_code == 404
    page = admin.get(url, query_string={"form": "attach", "eq": "Studio"})
    assert page.status_code == 200 and "<h1" in page.get_data(as_text=True)  # without JavaScript: the page


def test_the_partners_page_preselects_an_entitlement_from_the_link(world, login_as):
    admin = login_as(world["admin"], world["contoso"])
    body = admin.get(f"/customer/partners?entitlement={world['credits'].code.lower()}").get_data(as_text=True)
    for prefix in ("attach", "invite"):
        assert f'name="{prefix}-entitlements" value="{world["credits"].id}"\n           id="{prefix}-entitlement-' \
               f'{world["credits"].id}" checked>' in body


@pytest.mark.parametrize("url", ["/customer/partners", "/customer/requests", "/customer/partners/choices?form=attach",
                                 "/customer/partners?sort=-partner&page=2"])
def test_fragments_answer_htmx_with_their_own_context(world, login_as, url):
    response = login_as(world["admin"], world["contoso"]).get(url, headers=HTMX)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    body = response.get_data(as_text=True)
    assert "<html" not in body and "<nav" not in body.split("Pages of")[0]


# --- the number of SQL statements does not grow with the rows -------------------------------------


def _grow(world, make, n: int, tag: str) -> None:
    """n more entitlements of Contoso's subtree, each with a seller, a service provider and a
    revoked attachment; n more requests of each kind that Contoso sees."""
    admin = _actor(world)
    for i in range(n):
        site = make.customer(f"Site {tag}{i}", parent=world["germany"])
        entitlement = make.entitlement(site, [world["redrock"]])
        make.attach(entitlement, world["initech"], permissions=("view", "download"))
        revoke_attachment(make.system, make.attach(entitlement, world["zephyr"])[0])
        partner = make.partner("service_provider", f"Helper {tag}{i}")
        request_partner_access(make.actor(partner), world["contoso"], [entitlement.code])
        request_transfer(admin, entitlement, world["fabrikam"])
        request_to_join(create_user(f"joiner{tag}{i}@example.com", f"Joiner {i}"), site)
        make.user(site, "member")
    db.session.commit()


@pytest.mark.parametrize("url", [
    "/customer/partners", "/customer/partners?state=any&q=e", "/customer/requests",
    "/customer/requests?q=o&direction=to_us", "/customer/partners/choices?form=attach&eq=ENT",
    "VISIBILITY",
])
def test_query_count_does_not_grow_with_rows(world, make, login_as, count_queries, url):
    admin = login_as(world["admin"], world["contoso"])
    if url == "VISIBILITY":
        url = f"/customer/entitlements/{world['studio_de'].code}/visibility"

    def measure() -> int:
        counts = []
        for headers in ({}, HTMX):
            _fresh()
            with count_queries() as counter:
                response = admin.get(url, headers=headers)
            assert response.status_code == 200
            counts.append(counter.count)
        return counts

    _grow(world, make, 1, "a")
    small = measure()
    _grow(world, make, 12, "b")
    make.attach(world["studio_de"], world["initech"])
    for i in range(5):  # more parties to explain on the visibility panel
        make.attach(world["studio_de"], make.partner("service_provider", f"Extra {i}"))
        make.user(world["germany"], "member")
    large = measure()
    assert small == large, f"{url}: {small} statements with little data, {large} with more"
    print(url, "statements (page, fragment):", large)


# --- two at once (PostgreSQL: two connections really race) -------------------------------------


def test_two_revocations_at_once_revoke_once(app, world, make):
    from tests.test_hardening import _postgres_only, _race

    _postgres_only()
    from portal.models import User
    from portal.services.entitlements import revoke_attachment as revoke

    for round_ in range(3):
        attachment_id = make.attach(world["sync"], make.partner("service_provider", f"Racer {round_}"))[0].id

        def call(attachment_id=attachment_id):
            actor = policy.Actor(user=db.session.get(User, world["admin"].id),
                                 org=db.session.get(Organization, world["contoso"].id), role="admin")
            return revoke(actor, db.session.get(Attachment, attachment_id))

        results = _race(app, call, call)
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and "was already revoked" in str(errors[0]), results
        assert _count(AuditEvent, AuditEvent.action == "attachment.revoke",
                      AuditEvent.subject_id == str(attachment_id)) == 1


def test_a_withdrawal_and_a_decision_at_once_do_one_thing(app, requests_world, make):
    from tests.test_hardening import _postgres_only, _race

    _postgres_only()
    from portal.models import User
    from portal.services.requests import withdraw_request

    w = requests_world
    for _ in range(3):
        entitlement = make.entitlement(w["contoso"])
        req_id = request_transfer(_actor(w), entitlement, w["fabrikam"]).id
        db.session.commit()

        def withdraw(req_id=req_id):
            actor = policy.Actor(user=db.session.get(User, w["admin"].id),
                                 org=db.session.get(Organization, w["contoso"].id), role="admin")
            return withdraw_request(actor, db.session.get(PortalRequest, req_id))

        def decide(req_id=req_id):
            return decide_request(make.system, db.session.get(PortalRequest, req_id), approve=False)

        results = _race(app, withdraw, decide)
        assert len([r for r in results if isinstance(r, Exception)]) == 1, results
        assert _count(AuditEvent, AuditEvent.action.in_(("request.withdraw", "request.rejected")),
                      AuditEvent.subject_id == str(req_id)) == 1
