"""/customer/organization: the hierarchy as a tree, and every change an admin makes to it."""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Activation, Attachment, AuditEvent, Entitlement, Organization
from portal.policy import Actor
from portal.services.activations import activate
from tests.customer.tree_world import build_tree_world
from tests.factories import write_transaction

HX = {"HX-Request": "true"}


@pytest.fixture
def world(make):
    return build_tree_world(make)


@pytest.fixture
def admin(world, login_as):
    return login_as(world.admin, world.contoso)


def names(body: str) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'class="org-name fw-semibold">([^<]+)<', body)]


def field_errors(body: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in re.findall(r'<p class="error"[^>]* id="([^"]+)-error">([^<]*)</p>', body)}


def toast(response) -> dict:
    return json.loads(response.headers["HX-Trigger"])["portal:toast"]


def snapshot() -> list[tuple]:
    """Every organization and entitlement owner as committed now, and the audit trail's length."""
    db.session.rollback()
    orgs = db.session.execute(select(Organization.id, Organization.name, Organization.parent_id, Organization.path,
                                     Organization.email, Organization.website, Organization.notification_emails)
                              .order_by(Organization.id)).all()
    owners = db.session.execute(select(Entitlement.id, Entitlement.owner_id).order_by(Entitlement.id)).all()
    events = db.session.scalar(select(db.func.count(AuditEvent.id)))
    return [*orgs, *owners, ("events", events)]


def last_event() -> AuditEvent:
    db.session.rollback()
    return db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()))


# --- the tree ---------------------------------------------------------------------------------


def test_tree_shows_exactly_our_organizations_in_hierarchy_order(world, admin):
    body = admin.get("/customer/organization").get_data(as_text=True)
    assert names(body) == ["Contoso Group", "Contoso Germany", "Contoso Munich Plant", "Contoso USA"]
    assert "Tailspin" not in body and "BlueSky" not in body
    germany = body[body.index(f'id="org-{world.germany.id}"'):body.index(f'id="org-{world.munich.id}"')]
    assert "1 member · 1 entitlement" in " ".join(germany.split())
    # Subsidiaries are nested lists, labelled by their parent.
    assert 'aria-label="Subsidiaries and sites of Contoso Germany"' in body
    assert "Manage<span class=\"visually-hidden\"> of Contoso USA</span>" in body


def test_member_of_a_subsidiary_sees_its_subtree_read_only(world, login_as):
    client = login_as(world.member, world.germany)
    body = client.get("/customer/organization").get_data(as_text=True)
    assert names(body) == ["Contoso Germany", "Contoso Munich Plant"]
    assert "Manage<" not in body and "Details<span" in body
    panel = client.get(f"/customer/organization/{world.germany.id}", headers=HX).get_data(as_text=True)
    assert "<form" not in panel and "Notification contacts" in panel
    assert client.get(f"/customer/organization/{world.contoso.id}").status_code == 404


@pytest.mark.parametrize("org_key", ["tailspin", "tailspin_site", "bluesky"])
def test_organizations_outside_our_tree_are_404(world, admin, org_key):
    """Another customer's, and a partner's (its contacts are visible on our entitlements), alike."""
    org_id = world.orgs[org_key].id
    assert admin.get(f"/customer/organization/{org_id}").status_code == 404
    before = snapshot()
    for action, data in [("edit", {f"org-{org_id}-name": "Mine now"}), ("subsidiaries", {f"child-{org_id}-name": "X"}),
                         ("move", {f"move-{org_id}-parent_id": world.contoso.id}), ("delete", {})]:
        assert admin.post(f"/customer/organization/{org_id}/{action}", data=data).status_code == 404
    assert snapshot() == before


def test_panel_is_a_fragment_for_htmx_and_a_page_otherwise(world, admin):
    fragment = admin.get(f"/customer/organization/{world.germany.id}", headers=HX)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and f'id="org-{world.germany.id}-panel"' in body
    assert "Contoso Group &gt; Contoso Germany" in body
    page = admin.get(f"/customer/organization/{world.germany.id}").get_data(as_text=True)
    assert '<ol class="breadcrumb">' in page and "<details class=\"org-panel\" open>" in page
    # The root organization is anchored: no move, no delete.
    root = admin.get(f"/customer/organization/{world.contoso.id}", headers=HX).get_data(as_text=True)
    assert f'id="move-{world.contoso.id}"' not in root and f'id="delete-{world.contoso.id}"' not in root
    # The move select offers neither the organization itself, nor its descendants, nor its parent.
    options = re.findall(r'<option value="(\d*)"', body.split(f'id="move-{world.germany.id}"')[1].split("</form>")[0])
    assert options == ["", str(world.usa.id)]


# --- changes --------------------------------------------------------------------------------------


def test_add_a_subsidiary_in_place(world, admin):
    response = admin.post(f"/customer/organization/{world.usa.id}/subsidiaries",
                          data={f"child-{world.usa.id}-name": "  Contoso Boston Site "}, headers=HX)
    assert response.status_code == 200
    assert toast(response) == {"message": "Added Contoso Boston Site under Contoso USA.", "kind": "success"}
    assert names(response.get_data(as_text=True))[-1] == "Contoso Boston Site"
    db.session.rollback()
    site = db.session.scalar(select(Organization).where(Organization.name == "Contoso Boston Site"))
    assert (site.parent_id, site.kind, site.path) == (world.usa.id, "customer", f"{world.usa.path}{site.id}/")
    event = last_event()
    assert (event.action, event.user_id, event.subject_org_id) == ("organization.create", world.admin.id, site.id)


def test_rename_and_set_contacts(world, admin):
    g = world.germany.id
    response = admin.post(f"/customer/organization/{g}/edit", headers=HX, data={
        f"org-{g}-name": "Contoso Deutschland", f"org-{g}-email": "it@contoso.de", f"org-{g}-phone": "+49 89 1234",
        f"org-{g}-website": "https://contoso.de", f"org-{g}-address": "Leopoldstr. 1\n80802 München",
        f"org-{g}-notification_emails": "Security@Contoso.de; ops@contoso.de, security@contoso.de"})
    assert response.status_code == 200
    assert toast(response)["message"] == "Renamed Contoso Germany to Contoso Deutschland."
    assert "Contoso Deutschland" in names(response.get_data(as_text=True))
    db.session.rollback()
    org = db.session.get(Organization, g)
    assert (org.name, org.email, org.notification_emails) == ("Contoso Deutschland", "it@contoso.de",
                                                              "security@contoso.de, ops@contoso.de")
    event = last_event()
    assert event.action == "organization.update"
    assert event.details["name"] == ["Contoso Germany", "Contoso Deutschland"]


def test_without_javascript_a_change_redirects_to_the_organization(world, admin):
    g = world.germany.id
    response = admin.post(f"/customer/organization/{g}/edit", data={f"org-{g}-name": "Contoso DE"})
    assert response.status_code == 302
    assert response.location == f"/customer/organization/{g}#org-{g}"
    page = admin.get(response.location).get_data(as_text=True)
    assert "Renamed Contoso Germany to Contoso DE." in page


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "   ", "Enter a name."),
    ("name", "Contoso\x00Germany", "Remove control characters from this field."),
    ("name", "Contoso\x1bGermany", "Remove control characters from this field."),
    ("name", "x" * 201, "Keep the name under 200 characters."),
    ("email", "not-an-address", "Enter a valid email address."),
    ("website", "javascript:alert(1)", "Enter a web address starting with https://."),
    ("notification_emails", "ops@contoso.de, nobody", "“nobody” is not an email address."),
])
def test_bad_contact_input_is_refused_next_to_its_field_and_changes_nothing(world, admin, field, value, message):
    g = world.germany.id
    data = {f"org-{g}-name": "Contoso Germany", f"org-{g}-{field}": value}
    before = snapshot()
    response = admin.post(f"/customer/organization/{g}/edit", data=data, headers=HX)
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True)) == {f"org-{g}-{field}": message}
    assert snapshot() == before


def test_move_rewrites_the_whole_subtree(world, admin):
    g, usa = world.germany.id, world.usa.id
    response = admin.post(f"/customer/organization/{g}/move", data={f"move-{g}-parent_id": usa}, headers=HX)
    assert response.status_code == 200
    assert toast(response)["message"] == "Moved Contoso Germany under Contoso USA."
    assert names(response.get_data(as_text=True)) == ["Contoso Group", "Contoso USA", "Contoso Germany",
                                                      "Contoso Munich Plant"]
    db.session.rollback()
    munich = db.session.get(Organization, world.munich.id)
    assert munich.path == f"{world.contoso.path}{usa}/{g}/{munich.id}/"
    event = last_event()
    assert (event.action, event.details) == ("organization.move", {"from_parent_id": world.contoso.id,
                                                                  "to_parent_id": usa})


@pytest.mark.parametrize(("target", "message"), [
    ("germany", "An organization cannot move under itself or its own descendants."),
    ("munich", "An organization cannot move under itself or its own descendants."),
    ("tailspin", "Choose an organization of your own hierarchy."),  # a tampered id
    ("tailspin_site", "Choose an organization of your own hierarchy."),
    ("bluesky", "Choose an organization of your own hierarchy."),
])
def test_refused_moves_say_why_next_to_the_field_and_change_nothing(world, admin, target, message):
    g = world.germany.id
    before = snapshot()
    response = admin.post(f"/customer/organization/{g}/move", data={f"move-{g}-parent_id": world.orgs[target].id},
                          headers=HX)
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True)) == {f"move-{g}-parent_id": message}
    assert snapshot() == before


@pytest.mark.parametrize("value", ["", "abc", "-1", "99999999999", "1\x00", "\u0661"])
def test_junk_parent_ids_are_field_errors(world, admin, value):
    g = world.germany.id
    before = snapshot()
    response = admin.post(f"/customer/organization/{g}/move", data={f"move-{g}-parent_id": value}, headers=HX)
    assert response.status_code == 422
    assert list(field_errors(response.get_data(as_text=True))) == [f"move-{g}-parent_id"]
    assert snapshot() == before


def test_delete_an_empty_organization(world, admin):
    m = world.munich.id
    response = admin.post(f"/customer/organization/{m}/delete", headers=HX)
    assert response.status_code == 200
    assert toast(response)["message"] == "Deleted Contoso Munich Plant."
    assert "Contoso Munich Plant" not in names(response.get_data(as_text=True))
    # The parent's panel is open: where the admin was working.
    assert f'id="org-{world.germany.id}-panel"' in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Organization, m) is None
    event = last_event()
    assert (event.action, event.subject_org_id, event.details["name"]) == ("organization.delete", world.germany.id,
                                                                          "Contoso Munich Plant")


@pytest.mark.parametrize(("org_key", "reason"), [
    ("germany", "Move or delete its subsidiaries first."),
    ("usa", "It still has members; remove them first."),
])
def test_a_refused_delete_shows_the_reason_and_changes_nothing(world, admin, make, org_key, reason):
    make.user(world.usa, "member")
    org = world.orgs[org_key]
    before = snapshot()
    response = admin.post(f"/customer/organization/{org.id}/delete", headers=HX)
    assert response.status_code == 422  # swapped by htmx: the reason stays next to the button
    expected = f"{org.name} cannot be deleted: {reason}"
    assert toast(response) == {"message": expected, "kind": "error"}
    assert re.search(rf'id="delete-{org.id}-refusal">{re.escape(html.escape(expected, quote=False))}<',
                     response.get_data(as_text=True).replace("&#39;", "'"))
    assert snapshot() == before
    plain = admin.post(f"/customer/organization/{org.id}/delete")
    assert plain.status_code == 409 and "cannot be deleted" in plain.get_data(as_text=True)
    assert snapshot() == before


def test_the_top_organization_stays(world, admin):
    before = snapshot()
    c = world.contoso.id
    assert admin.post(f"/customer/organization/{c}/delete").status_code == 403
    assert admin.post(f"/customer/organization/{c}/move", data={f"move-{c}-parent_id": world.usa.id}).status_code == 403
    assert snapshot() == before


ADMIN_ACTIONS = [
    ("edit", lambda w: {f"org-{w.germany.id}-name": "Hijacked"}),
    ("subsidiaries", lambda w: {f"child-{w.germany.id}-name": "New site"}),
    ("move", lambda w: {f"move-{w.germany.id}-parent_id": w.munich.id}),
    ("delete", lambda w: {}),
    ("entitlements", lambda w: {f"ent-{w.germany.id}-code": w.entitlements["germany"].code,
                                f"ent-{w.germany.id}-org_id": w.munich.id}),
]


@pytest.mark.parametrize(("action", "data"), ADMIN_ACTIONS, ids=[a for a, _ in ADMIN_ACTIONS])
def test_a_member_sees_but_every_change_is_403(world, login_as, action, data):
    client = login_as(world.member, world.germany)
    before = snapshot()
    response = client.post(f"/customer/organization/{world.germany.id}/{action}", data=data(world), headers=HX)
    assert response.status_code == 403
    assert "admins" in response.get_data(as_text=True)
    assert snapshot() == before


# --- moving an entitlement within the tree ---------------------------------------------------------


def test_move_an_entitlement_to_another_organization_of_ours(world, admin):
    entitlement = world.entitlements["germany"]
    write_transaction()
    initech = Actor(user=world.initech_admin, org=world.initech, role="admin")
    activate(initech, entitlement.lines[0], "munich-cad-01", seats=2)
    db.session.commit()
    columns = (Attachment.id, Attachment.partner_id, Attachment.active, Attachment.relation)
    attachments = db.session.execute(select(*columns).where(Attachment.entitlement_id == entitlement.id)
                                     .order_by(Attachment.id)).all()
    g = world.germany.id
    response = admin.post(f"/customer/organization/{g}/entitlements", headers=HX, data={
        f"ent-{g}-code": entitlement.code.lower(), f"ent-{g}-org_id": world.usa.id})
    assert response.status_code == 200
    assert toast(response)["message"] == f"Moved {entitlement.code} from Contoso Germany to Contoso USA."
    db.session.rollback()
    assert db.session.get(Entitlement, entitlement.id).owner_id == world.usa.id
    # The partners stay attached, the seats stay activated.
    assert db.session.execute(select(*columns).where(Attachment.entitlement_id == entitlement.id)
                              .order_by(Attachment.id)).all() == attachments
    assert db.session.scalar(select(Activation.active).where(Activation.host_id == "munich-cad-01")) is True
    event = last_event()
    assert (event.action, event.subject_org_id, event.details["from_org_id"]) == ("entitlement.move", world.usa.id, g)
    # The figures follow.
    body = response.get_data(as_text=True)
    usa = body[body.index(f'id="org-{world.usa.id}"'):]
    assert "0 members · 1 entitlement" in " ".join(usa.split())


@pytest.mark.parametrize(("code_key", "target", "errors"), [
    ("tailspin", "usa", {"code": "Contoso Germany holds no entitlement with this code."}),  # another customer's
    ("group", "usa", {"code": "Contoso Germany holds no entitlement with this code."}),  # ours, not Germany's
    ("germany", "tailspin", {"org_id": "Choose an organization of your own hierarchy."}),  # a tampered target
    ("germany", "bluesky", {"org_id": "Choose an organization of your own hierarchy."}),
])
def test_refused_entitlement_moves_change_nothing(world, admin, code_key, target, errors):
    g = world.germany.id
    before = snapshot()
    response = admin.post(f"/customer/organization/{g}/entitlements", headers=HX, data={
        f"ent-{g}-code": world.entitlements[code_key].code, f"ent-{g}-org_id": world.orgs[target].id})
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True)) == {f"ent-{g}-{k}": v for k, v in errors.items()}
    assert snapshot() == before


# --- query counts ---------------------------------------------------------------------------------


def test_tree_and_panel_queries_do_not_grow_with_the_tree(world, make, login_as, count_queries):
    client = login_as(world.admin, world.contoso)

    def measure():
        db.session.commit()
        counts = []
        for url, headers in [("/customer/organization", {}), (f"/customer/organization/{world.germany.id}", {}),
                             (f"/customer/organization/{world.germany.id}", HX)]:
            with count_queries() as counter:
                assert client.get(url, headers=headers).status_code == 200
            counts.append(counter.count)
        return counts

    small = measure()
    for n in range(8):
        site = make.customer(f"Contoso Site {n}", parent=world.germany if n % 2 else world.usa)
        make.user(site, "member")
        make.entitlement(site)
        make.entitlement(world.germany)
    large = measure()
    print(f"organization page, detail page, panel fragment: {small} statements")
    assert small == large, f"{small} statements with 4 organizations, {large} with 12"
