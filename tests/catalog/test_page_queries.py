"""The catalog's pages and the downloads run a fixed number of SQL statements, whatever the
number of entitlements, products, releases and files behind them (counted at N and at 3N)."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest

from portal import policy
from portal.extensions import db
from portal.services import catalog

# Statements when this was written (a signed-in request spends 3-4 on the user, its memberships,
# its organization and the top bar's switcher).
BUDGET = {"/customer/downloads": 9, "/partner/downloads": 9, "/producer/products": 8, "product": 7,
          "download": 14}


def _grow(make, staff, customer, reseller, n: int) -> None:
    """n products, each with 2 releases of 2 files, held by the customer through the reseller
    (perpetual, subscription and usage lines), and as many decoy entitlements elsewhere."""
    today = date.today()
    decoy = make.customer()
    for _ in range(n):
        product = catalog.create_product(staff, name=f"Product {make.product().id}", sku=f"P{make.product().id}")
        for k, released in enumerate((today - timedelta(days=400), today - timedelta(days=10))):
            release = catalog.add_release(staff, product, version=f"{k}.0", released_on=released, notes="**n**")
            for name in ("a.zip", "b.txt"):
                catalog.add_release_file(staff, release, name, io.BytesIO(f"{product.id}{k}{name}".encode()))
        db.session.commit()
        for model in ("perpetual", "subscription", "usage"):
            make.entitlement(customer, [reseller], product=product, model=model,
                             end=today - timedelta(days=100) if model == "perpetual" else None)
            make.entitlement(decoy, [reseller], product=product, model=model)


@pytest.mark.parametrize("walk", [False, True], ids=["aggregate", "walk"])
def test_catalog_and_download_pages_do_not_grow_with_rows(make, login_as, count_queries, monkeypatch, walk):
    if walk:  # the partner decides its downloads by walking the products' lines (policy.download_rights)
        monkeypatch.setattr(policy, "DOWNLOAD_WALK_FROM", 0)
    producer = make.producer()
    staff = make.actor(producer, "staff")
    customer = make.customer("Contoso")
    reseller = make.partner("reseller")
    _grow(make, staff, customer, reseller, 2)
    clients = {"customer": login_as(make.user(customer, "member"), customer),
               "partner": login_as(make.user(reseller, "admin"), reseller),
               "producer": login_as(make.user(producer, "staff"), producer)}
    first_product = db.session.scalar(db.select(catalog.Product.id).order_by(catalog.Product.id.desc()))
    first_file = db.session.scalar(db.select(catalog.ReleaseFile.id).order_by(catalog.ReleaseFile.id.desc()))

    def measure() -> dict[str, int]:
        counts = {}
        for url, area in [("/customer/downloads", "customer"), ("/partner/downloads", "partner"),
                          ("/producer/products", "producer"), ("product", "producer"), ("download", "customer")]:
            target = {"product": f"/producer/products/{first_product}",
                      "download": f"/customer/downloads/files/{first_file}"}.get(url, url)
            db.session.commit()
            with count_queries() as counter:
                response = clients[area].get(target)
                response.close()
            assert response.status_code == 200, target
            counts[url] = counter.count
        return counts

    small = measure()
    db.session.rollback()
    _grow(make, staff, customer, reseller, 4)
    product = db.session.get(catalog.Product, first_product)
    for k in range(3):  # more releases and files on the product page too
        release = catalog.add_release(staff, product, version=f"9.{k}", released_on=date.today(), notes="x")
        for name in ("c.zip", "d.txt"):
            catalog.add_release_file(staff, release, name, io.BytesIO(f"more {k}{name}".encode()))
    db.session.commit()
    large = measure()
    assert large == small, f"statements with little data {small}, with more {large}"
    over = {page: (count, BUDGET[page]) for page, count in small.items() if count > BUDGET[page]}
    assert not over, f"over budget (statements, budget): {over}"
