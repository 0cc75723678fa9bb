"""The single pane: each panel is its own GET route (an htmx fragment, or a page without htmx),
counts only what the policy lets the user see, and every figure links to the list behind it."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Attachment
from portal.services.activations import record_usage
from portal.services.entitlements import revoke_attachment
from portal.services.requests import request_partner_access, request_to_join
from tests.customer.conftest import HX

PANELS = ["seats", "expiring", "usage", "activations", "partners", "requests"]


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
                         ("partners", "No partners attached"), ("requests", "Nothing to decide")]:
        assert words in _text(client.get(f"/customer/panels/{panel}", headers=HX))
