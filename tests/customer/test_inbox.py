"""/customer/inbox: the producer's notices to our organizations, read or unread per user."""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, NotificationRead
from portal.policy import Actor
from portal.services.errors import NotAllowed
from portal.services.inbox import mark_all_read, mark_read, unread_count
from tests.customer.tree_world import build_tree_world

HX = {"HX-Request": "true"}
PARTNERS = [{"name": "BlueSky Resellers", "email": "hello@bluesky.example", "phone": "+1 555 0300",
             "website": "https://bluesky.example"},
            {"name": "Sly Partner", "email": "sly@example.com", "website": "javascript:alert(1)"}]


@pytest.fixture
def world(make):
    world = build_tree_world(make)
    code = world.entitlements["germany"].code
    world.messages = {
        "patch": make.message(world.germany, "Acme Studio 5.1.1 security patch", "security_patch",
                              content=[{"code": code, "partners": PARTNERS}],
                              body="A file-parsing flaw is fixed.\nInstall it now."),
        "sp": make.message(world.contoso, "Acme Studio 5.1 service pack", "service_pack"),
        "eol": make.message(world.munich, "Acme Studio 4 reaches its end of life", "end_of_life"),
        "decoy": make.message(world.tailspin, "Tailspin's own notice", "critical"),
        "decoy_site": make.message(world.tailspin_site, "Tailspin site notice", "general"),
    }
    return world


@pytest.fixture
def admin(world, login_as):
    return login_as(world.admin, world.contoso)


def titles(body: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<a href="/customer/inbox/\d+"[^>]*>([^<]+)</a>', body)]


def nav_count(body: str) -> str:
    badge = re.search(r'<span id="inbox-unread"[^>]*>(.*?)</span></span>', body)
    return re.sub(r"<[^>]+>", "", badge.group(1)).strip() if badge else ""


def toast(response) -> dict:
    return json.loads(response.headers["HX-Trigger"])["portal:toast"]


def reads() -> list[tuple[int, int]]:
    db.session.rollback()
    return db.session.execute(select(NotificationRead.user_id, NotificationRead.message_id)
                              .order_by(NotificationRead.user_id, NotificationRead.message_id)).all()


def test_inbox_lists_our_organizations_messages_newest_first(world, admin):
    body = admin.get("/customer/inbox").get_data(as_text=True)
    assert titles(body) == ["Acme Studio 4 reaches its end of life", "Acme Studio 5.1 service pack",
                            "Acme Studio 5.1.1 security patch"]
    assert "3 messages" in body and "Tailspin" not in body
    assert nav_count(body) == "3 unread"
    assert body.count('<span class="badge text-bg-primary message-state">Unread</span>') == 3


def test_a_subsidiary_member_sees_its_subtrees_messages(world, login_as):
    body = login_as(world.member, world.germany).get("/customer/inbox").get_data(as_text=True)
    assert titles(body) == ["Acme Studio 4 reaches its end of life", "Acme Studio 5.1.1 security patch"]
    assert nav_count(body) == "2 unread"


def test_every_customer_page_shows_the_unread_count(world, admin):
    for url in ("/customer/", "/customer/organization", "/customer/users", "/customer/audit"):
        assert nav_count(admin.get(url).get_data(as_text=True)) == "3 unread", url


def test_mark_one_read_is_for_this_user_only(world, admin, login_as, make):
    colleague = make.user(world.contoso, "member")
    patch = world.messages["patch"]
    response = admin.post(f"/customer/inbox/{patch.id}/read", headers=HX)
    assert response.status_code == 200
    assert toast(response)["message"] == "Marked “Acme Studio 5.1.1 security patch” as read."
    body = response.get_data(as_text=True)
    # The table, and the nav's count out of band.
    assert '<span id="inbox-unread" hx-swap-oob="true">' in body and nav_count(body) == "2 unread"
    row = body[body.index(f'id="message-{patch.id}"'):].split("</tr>")[0]
    assert "Read</span>" in row and "Mark as read" not in row
    assert reads() == [(world.admin.id, patch.id)]
    assert nav_count(login_as(colleague, world.contoso).get("/customer/inbox").get_data(as_text=True)) == "3 unread"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "notification.read"))
    assert (event.user_id, event.subject_org_id) == (world.admin.id, world.germany.id)
    # Twice is once.
    assert admin.post(f"/customer/inbox/{patch.id}/read", headers=HX).status_code == 200
    assert reads() == [(world.admin.id, patch.id)]
    assert db.session.scalar(select(func.count()).where(AuditEvent.action == "notification.read")) == 1


def test_mark_all_read_and_filter(world, admin):
    admin.post(f"/customer/inbox/{world.messages['sp'].id}/read", headers=HX)
    unread = admin.get("/customer/inbox", query_string={"state": "unread"}, headers=HX).get_data(as_text=True)
    assert titles(unread) == ["Acme Studio 4 reaches its end of life", "Acme Studio 5.1.1 security patch"]
    response = admin.post("/customer/inbox/read", headers=HX | {
        "HX-Current-URL": "http://localhost/customer/inbox?state=unread"})
    assert toast(response)["message"] == "Marked 2 messages as read."
    body = response.get_data(as_text=True)
    assert titles(body) == [] and "No messages match this search." in body and nav_count(body) == ""
    assert len(reads()) == 3  # the decoys' messages stay unread: they are not ours
    assert toast(admin.post("/customer/inbox/read", headers=HX))["message"] == "Nothing was unread."
    read = admin.get("/customer/inbox", query_string={"state": "read", "kind": "security_patch"}, headers=HX)
    assert titles(read.get_data(as_text=True)) == ["Acme Studio 5.1.1 security patch"]


def test_a_message_with_its_entitlements_and_partners(world, admin):
    patch = world.messages["patch"]
    body = admin.get(f"/customer/inbox/{patch.id}").get_data(as_text=True)
    assert "Acme Studio 5.1.1 security patch" in body and "For Contoso Group &gt; Contoso Germany" in body
    # The body is Markdown, rendered and sanitized.
    assert '<div class="message-body mb-3"><p>A file-parsing flaw is fixed.\nInstall it now.</p>' in body
    assert world.entitlements["germany"].code in body
    assert '<a href="mailto:hello@bluesky.example">' in body and '<a href="https://bluesky.example"' in body
    assert "javascript:" not in body  # a website that is no web address is not a link, not even shown
    assert 'id="message-state">Unread' in body
    # Without JavaScript, marking read comes back here.
    response = admin.post(f"/customer/inbox/{patch.id}/read")
    assert response.status_code == 302 and response.location == f"/customer/inbox/{patch.id}"
    assert 'id="message-state">Read' in admin.get(response.location).get_data(as_text=True)


@pytest.mark.parametrize("key", ["decoy", "decoy_site"])
def test_another_customers_messages_are_404(world, admin, key):
    message = world.messages[key]
    assert admin.get(f"/customer/inbox/{message.id}").status_code == 404
    assert admin.post(f"/customer/inbox/{message.id}/read").status_code == 404
    assert reads() == []


def test_a_subsidiary_member_cannot_read_the_parents_message(world, login_as):
    client = login_as(world.member, world.germany)
    assert client.get(f"/customer/inbox/{world.messages['sp'].id}").status_code == 404
    assert client.post(f"/customer/inbox/{world.messages['sp'].id}/read").status_code == 404
    assert reads() == []


def test_the_services_refuse_messages_outside_the_inbox(world):
    actor = Actor(user=world.member, org=world.germany, role="member")
    with pytest.raises(NotAllowed):
        mark_read(actor, world.messages["decoy"])
    assert mark_all_read(actor) == 2
    assert unread_count(actor) == 0
    assert unread_count(Actor(user=world.admin, org=world.contoso, role="admin")) == 3


def test_inbox_queries_do_not_grow_with_messages(world, make, login_as, count_queries):
    client = login_as(world.admin, world.contoso)

    def measure():
        db.session.commit()
        counts = []
        for url in ("/customer/inbox", f"/customer/inbox/{world.messages['patch'].id}"):
            with count_queries() as counter:
                assert client.get(url).status_code == 200
            counts.append(counter.count)
        return counts

    small = measure()
    for n in range(30):
        make.message(world.germany if n % 2 else world.usa, f"Notice {n}", content=[{"code": "X", "partners": []}])
    client.post(f"/customer/inbox/{world.messages['sp'].id}/read")
    large = measure()
    print(f"inbox list, message page: {small} statements")
    assert small == large
