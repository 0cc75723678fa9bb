"""/customer/audit: what happened to our entitlements and organizations, by whom, for whom."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import pytest

from portal.extensions import db
from portal.models import utcnow
from portal.policy import Actor
from portal.services.activations import activate
from portal.services.orgs import update_organization
from tests.customer.tree_world import build_tree_world
from tests.factories import write_transaction

HX = {"HX-Request": "true"}


@pytest.fixture
def world(make):
    world = build_tree_world(make)
    # Decoys: the same partner acting for another customer, and that customer's own changes.
    decoy = make.entitlement(world.tailspin)
    make.attach(decoy, world.initech, permissions=("view", "activate"))
    write_transaction()
    initech = Actor(user=world.initech_admin, org=world.initech, role="admin")
    activate(initech, world.entitlements["germany"].lines[0], "munich-render-node", seats=1)
    activate(initech, decoy.lines[0], "tailspin-node", seats=1)
    update_organization(Actor(user=world.decoy_admin, org=world.tailspin, role="admin"), world.tailspin,
                        phone="+1 555 0199")
    update_organization(Actor(user=world.admin, org=world.contoso, role="admin"), world.usa, phone="+1 555 0101")
    db.session.commit()
    return world


@pytest.fixture
def admin(world, login_as):
    return login_as(world.admin, world.contoso)


def rows(body: str) -> list[tuple[str, str, str]]:
    """(who, action, details) of each row shown."""
    found = re.findall(r'<td class="wrap audit-who">([^<]*)</td>\s*<td class="audit-action">([^<]*)</td>\s*'
                       r'<td class="wrap small audit-details">([^<]*)</td>', body)
    return [tuple(html.unescape(cell) for cell in row) for row in found]


def count_line(body: str) -> str:
    return re.search(r'id="audit-summary"[^>]*>([^<]*)<', body).group(1)


def visible_event_count(world) -> int:
    from portal import policy

    actor = Actor(user=world.admin, org=world.contoso, role="admin")
    db.session.rollback()
    return len(db.session.scalars(policy.visible_audit_events(actor)).all())


def test_what_a_partner_did_on_our_behalf_is_named_so(world, admin):
    body = admin.get("/customer/audit").get_data(as_text=True)
    shown = rows(body)
    code = world.entitlements["germany"].code
    assert shown[:2] == [
        ("Test User of Contoso Group", "Organization renamed or contacts changed", "phone: — → +1 555 0101"),
        ("Test User of Initech Services on behalf of Contoso Germany", "Seats activated",
         f"code: {code} · host id: munich-render-node · seats: 1"),
    ]
    assert count_line(body) == f"{visible_event_count(world)} events"
    assert len(shown) == visible_event_count(world)
    # Nothing of Tailspin's: neither its own change nor what the same partner did for it.
    assert "tailspin" not in body.lower() and "0199" not in body


def test_filters_are_in_the_url(world, admin):
    only = admin.get("/customer/audit", query_string={"action": "activation.create"}, headers=HX)
    body = only.get_data(as_text=True)
    assert "<html" not in body and count_line(body) == "1 event"
    assert rows(body)[0][0] == "Test User of Initech Services on behalf of Contoso Germany"
    who = admin.get("/customer/audit", query_string={"q": "initech"}, headers=HX).get_data(as_text=True)
    assert [r[1] for r in rows(who)] == ["Seats activated"]
    who = admin.get("/customer/audit", query_string={"q": "admin@contoso.example"}, headers=HX).get_data(as_text=True)
    assert [r[1] for r in rows(who)] == ["Organization renamed or contacts changed"]
    today = utcnow().date()
    later = admin.get("/customer/audit", query_string={"from": (today + timedelta(days=1)).isoformat()},
                      headers=HX).get_data(as_text=True)
    assert count_line(later) == "0 events"
    window = admin.get("/customer/audit", query_string={"from": today.isoformat(), "to": today.isoformat(),
                                                        "action": "organization.update"}).get_data(as_text=True)
    assert count_line(window) == "1 event"
    # The CSV link carries the filters, and the date fields keep their values.
    assert f'href="/customer/audit.csv?action=organization.update&amp;from={today}&amp;to={today}"' in window
    assert f'id="audit-from" name="from" value="{today}"' in window


@pytest.mark.parametrize("query", [{"from": "yesterday"}, {"to": "2026-13-01"}, {"action": "session.sign_in"},
                                   {"q": "x\x00"}, {"sort": "user_id"}])
def test_bad_filters_answer_400(world, admin, query):
    response = admin.get("/customer/audit", query_string=query)
    assert response.status_code == 400


def test_pages_and_csv_of_what_is_shown(world, admin):
    actor = Actor(user=world.admin, org=world.contoso, role="admin")
    for n in range(30):
        update_organization(actor, world.munich, phone=f"+49 89 {n:04d}")
    db.session.commit()
    first = admin.get("/customer/audit", query_string={"action": "organization.update"}).get_data(as_text=True)
    assert count_line(first) == "31 events" and len(rows(first)) == 25
    second = admin.get("/customer/audit", query_string={"action": "organization.update", "page": 2}, headers=HX)
    assert len(rows(second.get_data(as_text=True))) == 6
    response = admin.get("/customer/audit.csv", query_string={"action": "organization.update"})
    assert response.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(table) == 31
    assert table[0]["who"] == "Test User of Contoso Group"
    assert table[0]["details"] == "phone: +49 89 0028 → +49 89 0029"
    assert table[0]["user_email"] == "admin@contoso.example"
    assert table[0]["subject"] == f"organization {world.munich.id}"
    assert {row["action"] for row in table} == {"organization.update"}


def test_csv_defuses_spreadsheet_formulas(world, admin, make):
    sly = make.user(world.contoso, "admin")
    sly.display_name = "=HYPERLINK(\"http://evil.example\")"
    update_organization(Actor(user=sly, org=world.contoso, role="admin"), world.usa, name="@SUM(1)")
    db.session.commit()
    table = list(csv.DictReader(io.StringIO(admin.get("/customer/audit.csv").get_data(as_text=True))))
    assert table[0]["who"] == "'=HYPERLINK(\"http://evil.example\") of Contoso Group"
    assert table[0]["details"] == "name: Contoso USA → @SUM(1)"  # inside a cell: harmless
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in table for cell in row.values())


def test_members_have_no_audit_trail(world, login_as):
    client = login_as(world.member, world.germany)
    for url in ("/customer/audit", "/customer/audit.csv"):
        response = client.get(url)
        assert response.status_code == 403
        assert "Only your organization's admins see its audit trail." in html.unescape(response.get_data(as_text=True))
    assert 'href="/customer/audit"' not in client.get("/customer/").get_data(as_text=True)


def test_audit_queries_do_not_grow_with_events(world, admin, count_queries):
    def measure():
        db.session.commit()
        with count_queries() as counter:
            assert admin.get("/customer/audit").status_code == 200
        return counter.count

    small = measure()
    actor = Actor(user=world.admin, org=world.contoso, role="admin")
    for n in range(40):
        update_organization(actor, world.munich, phone=f"+49 89 {n:04d}")
    large = measure()
    print(f"audit page: {small} statements")
    assert small == large


def test_events_are_newest_first_by_default(world, admin):
    body = admin.get("/customer/audit").get_data(as_text=True)
    times = re.findall(r'<time datetime="([^"]+)">', body)
    assert len(times) == visible_event_count(world) and times == sorted(times, reverse=True)
    oldest_first = admin.get("/customer/audit", query_string={"sort": "at"}).get_data(as_text=True)
    assert re.findall(r'<time datetime="([^"]+)">', oldest_first) == times[::-1]


@pytest.mark.parametrize("url", ["/customer/audit", "/customer/audit.csv"])
def test_who_did_it_is_looked_up_per_event_not_joined(world, admin, count_queries, url):
    """The events are read with who did each as a primary-key look-up per event (correlated
    subqueries), never joined with the users and organizations: a planner that believes the trail
    small merge-joins it with a walk of every user (9 ms for two events at 200k entitlements)."""
    with count_queries() as counter:
        response = admin.get(url)
    assert response.status_code == 200 and "Initech Services on behalf of Contoso Germany" in response.get_data(
        as_text=True)
    events = [s for s in counter.statements if re.search(r"\bFROM audit_event\b", s) and "count(*)" not in s]
    assert len(events) == 1, events
    assert not re.search(r"\bJOIN\b", events[0], re.I), events[0]
    assert len(re.findall(r"\(SELECT [a-z_]+\.(?:display_name|email|name)\s+FROM (?:user_account|organization)\b",
                          events[0])) == 4
