"""The producer's channel, customer, import and report pages run a fixed number of SQL statements,
whatever the number of partners, customers, entitlements, attachments and edges behind them."""

from __future__ import annotations

from datetime import date, timedelta

from portal.extensions import db
from portal.services.activations import activate
from portal.services.entitlements import LineSpec, attach_partner, create_entitlement
from tests.factories import write_transaction
from tests.producer.channel_world import fresh

HX = {"HX-Request": "true"}


def _grow(make, channel, n: int) -> None:
    """n more partners (with edges), customers (nested) and entitlements through two tiers."""
    o = channel.orgs
    product = make.product()
    today = date.today()
    for _ in range(n):
        reseller = make.partner("reseller", supplied_by=o["northwind"])
        customer = make.customer()
        make.customer(parent=o["contoso"])
        for owner, chain in ((customer, [o["northwind"], reseller]), (o["contoso"], [o["redrock"]]),
                             (o["germany"], [o["northwind"], o["bluesky"]])):
            entitlement = create_entitlement(make.system, owner=owner, sales_chain=chain, lines=[
                LineSpec(product, "subscription", 5, start_date=today, end_date=today + timedelta(days=40)),
                LineSpec(product, "perpetual", 3)])
            attach_partner(make.system, [entitlement], o["initech"])
            write_transaction()
            activate(make.system, entitlement.lines[0], f"host-{entitlement.id}")
            db.session.commit()


def _pages(channel) -> list[tuple[str, dict]]:
    o = channel.orgs
    urls = ["/producer/partners", "/producer/partners?q=a&kind=reseller", f"/producer/partners/{o['bluesky'].id}",
            f"/producer/partners/{o['northwind'].id}?state=any", f"/producer/partners/{o['initech'].id}",
            "/producer/channel", f"/producer/channel?focus={o['northwind'].id}", "/producer/customers",
            "/producer/customers?q=customer", f"/producer/customers?under={o['contoso'].id}",
            f"/producer/customers/{o['contoso'].id}", f"/producer/customers/{o['germany'].id}",
            "/producer/import", "/producer/reports", "/producer/reports?group=tier&period=quarter",
            "/producer/reports?kind=distributor&page=2",
            "/producer/reports.csv"]
    return [(u, {}) for u in urls] + [(u, HX) for u in urls[:12]]


def _measure(client, count_queries, channel) -> dict:
    counts = {}
    for url, headers in _pages(channel):
        with count_queries() as counter:
            response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        counts[(url, bool(headers))] = counter.count
    return counts


def test_channel_pages_do_not_grow_with_rows(make, staff_client, channel, count_queries):
    _grow(make, channel, 2)
    fresh()
    small = _measure(staff_client, count_queries, channel)
    _grow(make, channel, 6)
    fresh()
    large = _measure(staff_client, count_queries, channel)
    grew = {key: (small[key], large[key]) for key in small if small[key] != large[key]}
    assert not grew
    assert max(small.values()) <= 16, small


def test_an_htmx_table_reads_the_table_only(make, staff_client, channel, count_queries):
    """The table a search or a page link swaps in: none of the figures, forms, hierarchy or
    drawing around it on the full page is read for it, and the rows are the same."""
    o = channel.orgs
    _grow(make, channel, 2)
    fresh()
    around = {  # what only the full page shows, by a table its statements read
        f"/producer/partners/{o['bluesky'].id}": ("channel_month", "partner_customer", "channel_relationship"),
        "/producer/channel": ("GROUP BY channel_relationship.supplier_id", "NOT IN"),
        "/producer/partners": ("portal_request",),
        f"/producer/customers/{o['contoso'].id}": ("FROM membership",),
    }
    for url, marks in around.items():
        with count_queries() as full:
            page = staff_client.get(url).get_data(as_text=True)
        with count_queries() as table:
            fragment = staff_client.get(url, headers=HX).get_data(as_text=True)
        assert table.count < full.count, url
        assert "<html" not in fragment and fragment.strip() in page, url
        for mark in marks:
            assert any(mark in s for s in full.statements[1:]), (url, mark)
            assert not any(mark in s for s in table.statements[1:]), (url, mark)
