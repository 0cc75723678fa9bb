"""Landing pages run a constant number of SQL statements, whatever the data size."""

import pytest

from portal.extensions import db


def _grow(make, partner, customers, per_customer):
    for _ in range(customers):
        customer = make.customer()
        for _ in range(per_customer):
            make.entitlement(customer, [partner])


@pytest.mark.parametrize("area", ["partner", "customer", "producer"])
def test_home_query_count_does_not_grow(make, login_as, count_queries, area):
    reseller = make.partner("reseller", "BlueSky")
    customer = make.customer("Contoso")
    org = {"partner": reseller, "customer": customer, "producer": make.producer()}[area]
    client = login_as(make.user(org))

    def measure():
        db.session.commit()
        with count_queries() as counter:
            response = client.get(f"/{area}/")
        assert response.status_code == 200
        return counter.count

    make.entitlement(customer, [reseller])
    small = measure()
    _grow(make, reseller, customers=6, per_customer=3)
    for _ in range(10):
        make.entitlement(customer, [reseller])
    large = measure()
    assert small == large, f"{small} statements with little data, {large} with more"
