"""Each customer page, panel and fragment runs a fixed number of SQL statements, whatever the
number of entitlements, lines, activations, attachments and requests behind it."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from portal.extensions import db
from portal.services.activations import activate, record_usage
from portal.services.entitlements import LineSpec, create_entitlement
from portal.services.requests import request_to_join
from tests.customer.conftest import HX
from tests.factories import write_transaction

PAGES = [
    "/customer/", "/customer/panels/seats", "/customer/panels/expiring", "/customer/panels/usage",
    "/customer/panels/activations", "/customer/panels/partners", "/customer/panels/requests",
    "/customer/panels/inbox", "/customer/entitlements", "/customer/entitlements?q=host&sort=organization&status=active",
    "/customer/entitlements.csv",
]
# Budgets: the statements each answer ran when this was written (SQLite and PostgreSQL alike; a
# signed-in request spends 2 on the user, then its memberships with their organizations, which
# the top bar's org switcher shares). A POST re-reads what it shows after its commit. An
# activation costs 4 (services/test_activation_cost.py).
BUDGET = {
    "/customer/": 6, "/customer/panels/seats": 3, "/customer/panels/expiring": 4, "/customer/panels/usage": 4,
    "/customer/panels/activations": 3, "/customer/panels/partners": 3, "/customer/panels/requests": 4,
    "/customer/panels/inbox": 4,
    "/customer/entitlements": 13, "/customer/entitlements?q=host&sort=organization&status=active": 13,
    "/customer/entitlements.csv": 12, "entitlement": 13, "visibility": 9, "activate": 17, "return": 24,
}


def _lines(products, today):
    studio, sync, render = products
    return [
        LineSpec(studio, "perpetual", 40, maintenance_end=today + timedelta(days=300)),
        LineSpec(sync, "subscription", 40, start_date=today - timedelta(days=5), end_date=today + timedelta(days=20)),
        LineSpec(render, "usage", 100, usage_period="month"),
    ]


def _grow(make, system, customer, partners, products, n: int) -> None:
    """n more entitlements of three lines each, with activations, usage, attachments and requests;
    and as many decoys at another customer."""
    today = date.today()
    decoy = make.customer()
    for i in range(n):
        for owner in (customer, decoy):
            entitlement = create_entitlement(system, owner=owner, lines=_lines(products, today),
                                             sales_chain=[partners[i % 2]])
            write_transaction()
            for host in range(3):
                activate(system, entitlement.lines[0], f"host-{entitlement.id}-{host}")
                activate(system, entitlement.lines[1], f"host-{entitlement.id}-{host}")
            record_usage(system, entitlement.lines[2], 150)
            make.attach(entitlement, partners[2 + i % 2])
        request_to_join(make.user(decoy, "member"), customer, message=f"join {i}")
        make.message(customer, f"Notice {i}")
        make.message(decoy, f"Decoy notice {i}")
    db.session.commit()


@pytest.fixture
def world(make):
    partners = [make.partner("reseller"), make.partner("reseller"), make.partner("service_provider"),
                make.partner("service_provider")]
    products = [make.product(), make.product(), make.product()]
    customer = make.customer("Contoso Group")
    site = make.customer("Contoso Site", parent=customer)
    return {"partners": partners, "products": products, "customer": customer, "site": site}


def test_customer_pages_do_not_grow_with_rows(make, login_as, count_queries, world):
    system = make.system
    client = login_as(make.user(world["customer"], "admin"), world["customer"])
    big = create_entitlement(system, owner=world["site"], lines=_lines(world["products"], date.today()),
                             sales_chain=[world["partners"][0]])
    write_transaction()
    first = activate(system, big.lines[0], "first-host")[0]
    db.session.commit()
    line_id, code = big.lines[0].id, big.code
    hosts = iter(range(10))

    def measure() -> dict[str, int]:
        counts = {}
        for url in PAGES:
            db.session.commit()
            with count_queries() as counter:
                response = client.get(url, headers=HX if "panels" in url else {})
            assert response.status_code == 200, url
            counts[url] = counter.count
        db.session.commit()
        with count_queries() as counter:
            assert client.get(f"/customer/entitlements/{code}").status_code == 200
        counts["entitlement"] = counter.count
        with count_queries() as counter:
            assert client.get(f"/customer/entitlements/{code}/visibility", headers=HX).status_code == 200
        counts["visibility"] = counter.count
        with count_queries() as counter:
            response = client.post(f"/customer/lines/{line_id}/activations", headers=HX,
                                   data={f"line-{line_id}-host_id": f"new-host-{next(hosts)}",
                                         f"line-{line_id}-seats": "1"})
            assert response.status_code == 200, response.get_data(as_text=True)
        counts["activate"] = counter.count
        return counts

    small = measure()
    with count_queries() as counter:
        assert client.post(f"/customer/activations/{first.id}/return", headers=HX).status_code == 200
    small["return"] = counter.count
    db.session.rollback()  # a fresh transaction: the requests wrote meanwhile

    _grow(make, system, world["site"], world["partners"], world["products"], 12)
    write_transaction()
    for host in range(15):
        activate(system, big.lines[0], f"many-{host}")
        activate(system, big.lines[1], f"many-{host}")
    record_usage(system, big.lines[2], 30)
    again = activate(system, big.lines[0], "again-host")[0]
    make.attach(big, world["partners"][2])
    make.attach(big, world["partners"][3])
    db.session.commit()
    large = measure()
    with count_queries() as counter:
        assert client.post(f"/customer/activations/{again.id}/return", headers=HX).status_code == 200
    large["return"] = counter.count

    assert large == small, f"statements with little data {small}, with more {large}"
    over = {page: (count, BUDGET[page]) for page, count in small.items() if count > BUDGET[page]}
    assert not over, f"over budget (statements, budget): {over}"
