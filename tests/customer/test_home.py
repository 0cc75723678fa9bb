"""The single pane: each panel is its own GET route (an htmx fragment, or a page without htmx),
counts only what the policy lets the user see, and every figure links to the list behind it."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Attachment
from portal.policy import Actor
from portal.services.activations import record_usage
from portal.services.entitlements import revoke_attachment
from portal.services.inbox import mark_read
from portal.services.requests import request_partner_access, request_to_join
from tests.customer.conftest import HX

PANELS = ["seats", "expiring", "usage", "activations", "partners", "requests", "inbox"]


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def test_home_loads_every_panel_from_its_own_url(admin_client):
    page = admin_client.get("/customer/").get_data(as_text=True)
    for panel in PANELS:
        assert f'hx-get="/customer/panels/{panel}" hx-trigger="load"' in page
    assert re.search(r'<strong class="counter-value" id="entitlement-count">4</strong>', page)


@pytest.mark.parametrize("panel", PANELS)
def test_each_panel_is_a_fragment_for_htmx_and_a_page_without(admin_client, panel):
    fragment = admin_client.get(f"/customer/panels/{panel}", headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith(f'<div class="card-body" id="panel-{panel}">')
    assert "HX-Request" in fragment.headers["Vary"]
    page = admin_client.get(f"/customer/panels/{panel}").get_data(as_text=True)
    assert "<html" in page and 'aria-label="Breadcrumb"' in page and f'id="panel-{panel}"' in page


def test_seats_per_product_count_the_whole_subtree_and_nothing_else(admin_client):
    text = _text(admin_client.get("/customer/panels/seats", headers=HX))
    # Studio: Germany 10 + Munich 5 seats, 3 used; Sync: USA 50, 25 used. Fabrikam's 7 + 20 are not ours.
    assert "Acme Studio 3 used · 12 free of 15 seats" in text
    assert "Acme Cloud Sync 25 used · 25 free of 50 seats" in text
    assert "Render" not in text  # pay-per-use has no seats


def test_a_member_of_a_subsidiary_counts_its_subtree(member_client):
    text = _text(member_client.get("/customer/panels/seats", headers=HX))
    assert "Acme Studio 3 used · 12 free of 15 seats" in text  # Germany and its Munich plant
    assert "Cloud Sync" not in text  # Contoso USA's is a sibling's
    partners = member_client.get("/customer/panels/partners", headers=HX).get_data(as_text=True)
    assert "Initech Services" in partners and "RedRock IT" in partners  # Munich's seller
    assert "Zephyr" not in partners


def _figure_and_list(client, panel: str, figure_id: str) -> tuple[int, int]:
    """The figure a panel shows, and the number of rows of the list it links to."""
    body = client.get(f"/customer/panels/{panel}", headers=HX).get_data(as_text=True)
    link = re.search(rf'<a href="([^"]+)" id="{figure_id}"><strong>(\d+)</strong>', body)
    assert link, body
    listed = client.get(link.group(1).replace("&amp;", "&"), headers=HX).get_data(as_text=True)
    return int(link.group(2)), listed.count('class="entitlement-row"')


def test_subscriptions_ending_soon_link_to_the_same_list(admin_client):
    assert _figure_and_list(admin_client, "expiring", "expiring-count") == (1, 1)  # USA's; not Fabrikam's


def test_usage_over_allowance_links_to_the_same_list(admin_client, shop, make):
    assert _figure_and_list(admin_client, "usage", "over-allowance-count") == (0, 0)  # Fabrikam's is over, not ours
    begin_write()
    record_usage(make.system, shop.line("group_render"), 700)
    db.session.commit()
    assert _figure_and_list(admin_client, "usage", "over-allowance-count") == (1, 1)
    assert "Over by 100" in _text(admin_client.get("/customer/panels/usage", headers=HX))


def test_partners_panel_names_active_attachments_on_our_entitlements_only(admin_client, shop, make):
    body = admin_client.get("/customer/panels/partners", headers=HX).get_data(as_text=True)
    names = re.findall(r'<span class="fw-semibold">([^<]+)</span>', body)
    assert names == ["BlueSky Resellers", "Initech Services", "Northwind Distribution", "RedRock IT"]
    assert "Zephyr" not in body
    # Each count links to the entitlements the partner is attached to.
    link = re.search(rf'href="(/customer/entitlements\?partner={shop.orgs["redrock"].id})">on <strong>2</strong>', body)
    assert link
    listed = admin_client.get(link.group(1), headers=HX).get_data(as_text=True)
    assert listed.count('class="entitlement-row"') == 2
    # A revoked attachment is gone from the panel.
    attachment = db.session.scalar(select(Attachment).where(Attachment.partner_id == shop.orgs["initech"].id))
    begin_write()
    revoke_attachment(make.system, attachment)
    db.session.commit()
    assert "Initech" not in admin_client.get("/customer/panels/partners", headers=HX).get_data(as_text=True)


def test_requests_waiting_for_the_admin(admin_client, member_client, shop, make):
    newcomer = make.user(shop.orgs["fabrikam"], "member", email="newhire@example.com")
    begin_write()
    request_to_join(newcomer, shop.orgs["germany"], message="New in Munich")
    redrock_admin = make.actor(shop.orgs["redrock"], "admin")
    request_partner_access(redrock_admin, shop.orgs["fabrikam"], [shop.entitlements["fab_studio"].code])  # not ours
    db.session.commit()
    text = _text(admin_client.get("/customer/panels/requests", headers=HX))
    assert "1 request waits for your decision" in text
    assert "newhire@example.com) asks to join Contoso Germany" in text
    assert "RedRock" not in text
    # Members decide nothing.
    member = _text(member_client.get("/customer/panels/requests", headers=HX))
    assert "Nothing to decide" in member and "newhire" not in member


def test_empty_panels_say_so(make, login_as):
    lonely = make.customer("Lonely Ltd")
    client = login_as(make.user(lonely, "admin"))
    for panel, words in [("seats", "No seats yet"), ("expiring", "Nothing ends soon"),
                         ("usage", "No pay-per-use licenses"), ("activations", "No activations yet"),
                         ("partners", "No partners attached"), ("requests", "Nothing to decide"),
                         ("inbox", "Nothing unread")]:
        assert words in _text(client.get(f"/customer/panels/{panel}", headers=HX))


# --- unread notifications -----------------------------------------------------------------------


@pytest.fixture
def messages(shop, make):
    """Seven messages to Contoso's tree (one to USA, one to Munich), two decoys at Fabrikam; the
    admin has read one, the Germany member another (read state is each user's own)."""
    made = {}
    for i in range(1, 6):
        made[f"group{i}"] = make.message(shop.orgs["contoso"], f"Group notice {i}", "general")
    made["usa"] = make.message(shop.orgs["usa"], "Cloud Sync 2.0 security patch", "security_patch")
    made["munich"] = make.message(shop.orgs["munich"], "Studio 5.1 service pack", "service_pack")
    made["fab"] = make.message(shop.orgs["fabrikam"], "Fabrikam's own notice", "critical")
    made["fab2"] = make.message(shop.orgs["fabrikam"], "Fabrikam's second notice", "critical")
    mark_read(Actor(user=shop.admin, org=shop.orgs["contoso"], role="admin"), made["group1"])
    mark_read(Actor(user=shop.member, org=shop.orgs["germany"], role="member"), made["munich"])
    db.session.commit()
    return made


def _unread_panel(client) -> tuple[int, str, list[tuple[str, str]]]:
    body = client.get("/customer/panels/inbox", headers=HX).get_data(as_text=True)
    figure = re.search(r'<a href="([^"]+)" id="unread-count"><strong>(\d+)</strong>', body)
    assert figure, body
    links = re.findall(r'<a href="(/customer/inbox/\d+)" class="fw-semibold">([^<]+)</a>', body)
    return int(figure.group(2)), figure.group(1).replace("&amp;", "&"), links


def test_unread_panel_shows_the_users_unread_count_and_the_newest_five(admin_client, messages):
    count, url, links = _unread_panel(admin_client)
    assert count == 6  # 7 of our tree, less the one the admin read; Fabrikam's 2 are not ours
    assert url == "/customer/inbox?state=unread"
    # Newest first, five at most; the Germany member's read of Munich's does not count for the admin.
    assert [title for _, title in links] == ["Studio 5.1 service pack", "Cloud Sync 2.0 security patch",
                                             "Group notice 5", "Group notice 4", "Group notice 3"]
    assert [href for href, _ in links] == [f"/customer/inbox/{messages[k].id}"
                                           for k in ("munich", "usa", "group5", "group4", "group3")]
    # The figure links to the inbox filtered to unread: the same number of rows.
    listed = admin_client.get(url, headers=HX).get_data(as_text=True)
    assert listed.count('class="message-row unread"') == 6 and 'class="message-row"' not in listed
    # Each title opens its message.
    assert admin_client.get(links[0][0]).status_code == 200


def test_unread_panel_of_a_subsidiary_member_counts_its_subtree_and_its_own_reads(member_client, messages,
                                                                                  shop, make):
    body = member_client.get("/customer/panels/inbox", headers=HX).get_data(as_text=True)
    # Munich's is read by this member; Group's and USA's are not its subtree's.
    assert "Nothing unread" in body and "Group notice" not in body and "Cloud Sync" not in body
    germany = make.message(shop.orgs["germany"], "Germany only notice", "general")
    count, url, links = _unread_panel(member_client)
    assert (count, url, links) == (1, "/customer/inbox?state=unread",
                                   [(f"/customer/inbox/{germany.id}", "Germany only notice")])


def test_reading_a_message_takes_it_off_the_panel(admin_client, messages):
    assert admin_client.post(f"/customer/inbox/{messages['munich'].id}/read", headers=HX).status_code == 200
    count, _, links = _unread_panel(admin_client)
    assert count == 5 and links[0][1] == "Cloud Sync 2.0 security patch"
    assert [title for _, title in links][-1] == "Group notice 2"
