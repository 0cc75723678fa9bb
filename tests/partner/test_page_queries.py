"""Each partner page, panel and fragment runs a fixed number of SQL statements, whatever the number
of customers, entitlements, activations and requests behind it (counted at N and at 3N)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.services.activations import activate
from portal.services.requests import request_partner_access
from tests.factories import write_transaction
from tests.partner.conftest import HX

PAGES = [
    "/partner/", "/partner/panels/customers", "/partner/panels/expiring", "/partner/panels/stock",
    "/partner/panels/requests", "/partner/customers", "/partner/customers?q=customer",
    "/partner/customers/choose?q=c", "/partner/requests", "/partner/requests?state=pending&q=c",
    "/partner/organization", "/partner/organization/audit", "/partner/organization/audit.csv",
    "/partner/reports", "/partner/reports?period=quarter", "/partner/reports.csv",
]
# Budgets: the statements each answer ran when this was written (a signed-in request spends 3 on
# the user, its memberships and organization; the top bar's working-for look-up adds 1 when set).
BUDGET = {
    "/partner/": 6, "/partner/panels/customers": 7, "/partner/panels/expiring": 6, "/partner/panels/stock": 6,
    "/partner/panels/requests": 6, "/partner/customers": 8, "/partner/customers?q=customer": 8,
    "/partner/customers/choose?q=c": 8, "/partner/requests": 6, "/partner/requests?state=pending&q=c": 6,
    "/partner/organization": 7, "/partner/organization/audit": 6, "/partner/organization/audit.csv": 4,
    "/partner/reports": 9, "/partner/reports?period=quarter": 9, "/partner/reports.csv": 8,
}


def _grow(make, channel, n: int) -> None:
    """n more customers (each under a parent) with two entitlements each through Northwind ->
    BlueSky, activations, stock, requests; and as many decoys through RedRock."""
    o = channel.orgs
    today = date.today()
    for i in range(n):
        parent = make.customer()
        for owner, chain in ((make.customer(parent=parent), [o["northwind"], o["bluesky"]]),
                             (make.customer(), [o["redrock"]])):
            for model in ("perpetual", "subscription"):
                entitlement = make.entitlement(owner, chain, model=model, seats=6, end=today + timedelta(days=40))
                entitlement.purchase_date = today - timedelta(days=40 * i)
                write_transaction()
                activate(make.system, entitlement.lines[0], f"host-{entitlement.id}", seats=2)
        make.entitlement(o["bluesky"], [o["northwind"], o["bluesky"]], fulfilment="stocking")
        request_partner_access(make.actor(o["bluesky"], "member"), make.customer(), [f"ENT-{i}"])
    db.session.commit()


@pytest.mark.parametrize("who", ["bluesky_admin", "northwind_admin"])
def test_partner_pages_cost_the_same_at_n_and_3n(make, channel, login_as, count_queries, who):
    client = login_as(channel.users[who])

    def measure() -> dict[str, int]:
        counts = {}
        for url in PAGES:
            for headers in ({}, HX):
                db.session.commit()
                with count_queries() as counter:
                    response = client.get(url, headers=headers)
                assert response.status_code == 200, url
                counts[(url, bool(headers))] = counter.count
        return counts

    _grow(make, channel, 2)
    small = measure()
    _grow(make, channel, 4)
    large = measure()
    assert small == large
    for (url, _), count in large.items():
        assert count <= BUDGET[url], f"{url}: {count} statements, budget {BUDGET[url]}"
    # Working for a customer adds the top bar's look-up, nothing that grows.
    client.post("/partner/customer", data={"customer_id": channel.orgs["tailspin"].id})
    assert measure() == measure()
