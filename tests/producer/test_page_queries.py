"""Each producer page runs a fixed number of SQL statements whatever the number of entitlements,
lines, attachments, requests, audit events and mails behind it (measured at N and at 3N)."""

from __future__ import annotations

from datetime import date, timedelta

from portal.extensions import db
from portal.models import PortalRequest
from portal.services.entitlements import LineSpec, create_entitlement
from portal.services.mail import queue_email
from portal.services.requests import request_to_join
from tests.producer.conftest import HX

PAGES = ["/producer/", "/producer/requests", "/producer/requests?state=all&sort=-kind", "/producer/entitlements",
         "/producer/entitlements?q=Contoso&status=active&held=customer", "/producer/entitlements/new",
         "/producer/audit", "/producer/audit?org=Contoso&action=entitlement.create", "/producer/mail",
         "/producer/mail?status=failed"]


def _grow(make, partners, products, customers, n: int) -> None:
    today = date.today()
    system = make.system
    for i in range(n):
        owner = customers[i % 2]
        lines = [LineSpec(products[0], "perpetual", 10, maintenance_end=today + timedelta(days=99)),
                 LineSpec(products[1], "subscription", 5, start_date=today, end_date=today + timedelta(days=30))]
        entitlement = create_entitlement(system, owner=owner, lines=lines, sales_chain=[partners[i % 2]])
        make.attach(entitlement, partners[2])
        request_to_join(make.user(make.customer(), "member"), owner, message=f"join {i}")
        failed = queue_email(to=f"x{i}@example.com", subject="s", body="b")
        failed.status, failed.last_error = "failed", "550"
    db.session.commit()


def test_producer_pages_do_not_grow_with_rows(make, login_as, count_queries):
    producer = make.producer()
    client = login_as(make.user(producer, "staff"), producer)
    partners = [make.partner("reseller"), make.partner("reseller"), make.partner("service_provider")]
    products = [make.product(), make.product()]
    customers = [make.customer("Contoso Group"), make.customer("Fabrikam Inc")]
    _grow(make, partners, products, customers, 3)
    first = db.session.scalar(db.select(PortalRequest.id).order_by(PortalRequest.id))
    from portal.models import Entitlement

    code = db.session.scalar(db.select(Entitlement.code).order_by(Entitlement.id))

    def measure() -> dict[str, int]:
        counts = {}
        for url in [*PAGES, f"/producer/requests/{first}", f"/producer/entitlements/{code}"]:
            for headers in ({}, HX):
                db.session.commit()
                with count_queries() as counter:
                    response = client.get(url, headers=headers)
                assert response.status_code == 200, url
                counts[(url, bool(headers))] = counter.count
        return counts

    small = measure()
    _grow(make, partners, products, customers, 9)
    large = measure()
    assert large == small
    assert max(small.values()) <= 20, small
