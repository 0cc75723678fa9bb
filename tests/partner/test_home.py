"""The partner's single pane: figures of what it is attached to only (decoys: RedRock's sales and
Zephyr on everything), each panel a GET route of its own, scoped to the customer worked for."""

from __future__ import annotations

import re

import pytest

from portal.extensions import db
from portal.services.entitlements import revoke_attachment
from portal.services.requests import request_partner_access
from tests.partner.conftest import HX

PANELS = ["customers", "expiring", "stock", "requests"]


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def _counter(html: str, id_: str) -> str:
    return re.search(rf'<strong class="counter-value" id="{id_}">(\d+)</strong>', html).group(1)


def test_home_figures_count_what_we_are_attached_to(channel, bluesky):
    html = bluesky.get("/partner/").get_data(as_text=True)
    assert (_counter(html, "customer-count"), _counter(html, "entitlement-count")) == ("3", "4")
    assert 'href="/partner/customers"' in html and 'href="/partner/entitlements"' in html
    for panel in PANELS:
        assert f'hx-get="/partner/panels/{panel}" hx-trigger="load"' in html


@pytest.mark.parametrize("panel", PANELS)
def test_each_panel_is_a_fragment_for_htmx_and_a_page_without(channel, bluesky, panel):
    fragment = bluesky.get(f"/partner/panels/{panel}", headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith(f'<div class="card-body" id="panel-{panel}">')
    assert "HX-Request" in fragment.headers["Vary"]
    page = bluesky.get(f"/partner/panels/{panel}").get_data(as_text=True)
    assert "<html" in page and 'aria-label="Breadcrumb"' in page and f'id="panel-{panel}"' in page


def test_panels_show_only_our_customers_and_renewals(channel, bluesky):
    customers = _text(bluesky.get("/partner/panels/customers", headers=HX))
    assert "3 customers served" in customers
    assert re.findall(r"(Tailspin Toys|Contoso Germany|Fabrikam Inc) .*?(\d) entitlements?", customers)
    assert "Tailspin Toys 2 entitlements" in customers and "Fabrikam Inc 1 entitlement" in customers
    assert "Wingtip" not in customers
    expiring = bluesky.get("/partner/panels/expiring", headers=HX).get_data(as_text=True)
    # Fabrikam's BlueSky subscription ends in 30 days; RedRock's (20 days) and Tailspin's (200) are not counted.
    assert re.search(r'id="expiring-count"><strong>1</strong>', expiring)
    assert 'href="/partner/entitlements?ending=90"' in expiring
    assert channel.entitlements["fabrikam_sub"].code in expiring
    assert channel.entitlements["fabrikam_rr"].code not in expiring
    assert channel.entitlements["tailspin_late"].code not in expiring


def test_stock_and_its_age(channel, bluesky, login_as):
    text = _text(bluesky.get("/partner/panels/stock", headers=HX))
    assert "2 entitlements in stock" in text and "the oldest for 100 days" in text
    assert "Under 30 days 1 30 to 90 days 0 Over 90 days 1" in text
    assert 'href="/partner/stock"' in bluesky.get("/partner/panels/stock", headers=HX).get_data(as_text=True)
    redrock = login_as(channel.users["redrock_admin"])
    assert "Nothing in stock" in _text(redrock.get("/partner/panels/stock", headers=HX))


def test_pending_requests_are_ours_only(make, channel, bluesky):
    asker = make.actor(channel.orgs["bluesky"], "member")
    request_partner_access(asker, channel.orgs["wingtip"], ["ENT-AAAA"])
    request_partner_access(make.actor(channel.orgs["redrock"]), channel.orgs["tailspin"], ["ENT-BBBB"])  # decoy
    db.session.commit()
    html = bluesky.get("/partner/panels/requests", headers=HX).get_data(as_text=True)
    assert re.search(r'id="pending-count"><strong>1</strong>', html)
    assert html.count('class="list-group-item px-0 d-flex flex-wrap justify-content-between gap-2 our-request"') == 1
    assert "Wingtip Decoy" in html and "Tailspin" not in html


def test_working_for_a_customer_scopes_every_figure(channel, bluesky):
    bluesky.post("/partner/customer", data={"customer_id": channel.orgs["tailspin"].id})
    html = bluesky.get("/partner/").get_data(as_text=True)
    assert (_counter(html, "customer-count"), _counter(html, "entitlement-count")) == ("1", "2")
    assert "Working for <strong>Tailspin Toys</strong>" in html
    assert "Nothing ends soon" in _text(bluesky.get("/partner/panels/expiring", headers=HX))
    customers = _text(bluesky.get("/partner/panels/customers", headers=HX))
    assert "Tailspin Toys" in customers and "Fabrikam" not in customers and "Contoso" not in customers


def test_a_revoked_attachment_leaves_every_figure_at_once(make, channel, bluesky):
    fabrikam_sub = channel.entitlements["fabrikam_sub"]
    ours = [a for a in fabrikam_sub.attachments if a.partner_id == channel.orgs["bluesky"].id][0]
    revoke_attachment(make.system, ours)
    db.session.commit()
    html = bluesky.get("/partner/").get_data(as_text=True)
    assert (_counter(html, "customer-count"), _counter(html, "entitlement-count")) == ("2", "3")
    assert "Nothing ends soon" in _text(bluesky.get("/partner/panels/expiring", headers=HX))


def test_customers_and_producer_staff_get_404(make, channel, login_as):
    for user in (make.user(channel.orgs["fabrikam"], "admin"), make.user(make.producer(), "staff")):
        client = login_as(user)
        for url in ["/partner/", *[f"/partner/panels/{p}" for p in PANELS]]:
            assert client.get(url).status_code == 404, url
