"""Acting on behalf of a customer within our attachment: the customer's seat controls (Host ID,
Seats, Name, Activate, Return, Rehost, the .lic) on the partner's entitlement page. The customer
reads each act as "U of P on behalf of C" in its audit and on the activation; a view-only
attachment shows no controls and a forged POST gets 403; an invisible entitlement is 404.
Each page costs the same number of SQL statements whatever the number of rows."""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import Activation, AuditEvent, Entitlement
from portal.services.activations import activate
from portal.services.entitlements import LineSpec, create_entitlement
from tests.factories import write_transaction
from tests.partner.conftest import HX


def _activate(client, line_id: int, host: str, seats: int = 1, name: str = "", headers=HX):
    return client.post(f"/partner/lines/{line_id}/activations", headers=headers, data={
        f"line-{line_id}-host_id": host, f"line-{line_id}-seats": str(seats), f"line-{line_id}-friendly_name": name})


def test_the_seller_activates_on_behalf_and_the_customer_sees_who(pworld, as_partner, login_as):
    bluesky = as_partner("bluesky", working_for="fabrikam")
    line = pworld.entitlements["fab_bluesky"].lines[0]
    page = bluesky.get(f"/partner/entitlements/{pworld.code('fab_bluesky')}").get_data(as_text=True)
    for control in (">Host ID<", ">Seats<", ">Name <", ">Activate<", ">Return<", ">Rehost<", ">Certificate<", '.lic"'):
        assert control in page, control
    assert "on behalf of Fabrikam Inc" in page
    response = _activate(bluesky, line.id, "fab-new-host", seats=2, name="Fab CAD")
    assert response.status_code == 200
    assert "Activated 2 seats of Acme Studio on fab-new-host." in response.headers["HX-Trigger"]
    card = response.get_data(as_text=True)
    assert "<html" not in card and "3 used · 4 free of 7" in re.sub(r"</?strong>", "", card)
    assert 'hx-post="/partner/activations/' in card  # the card's controls stay in the partner portal
    db.session.rollback()  # see what the request committed
    activation = db.session.scalar(select(Activation).where(Activation.host_id == "fab-new-host"))
    assert activation.activated_by_org_id == pworld.orgs["bluesky"].id
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "activation.create",
                                                       AuditEvent.subject_id == str(activation.id)))
    assert (event.org_id, event.on_behalf_of_org_id) == (pworld.orgs["bluesky"].id, pworld.orgs["fabrikam"].id)
    # The customer: in its audit and on the activation.
    fabrikam = login_as(pworld.users["fabrikam"], pworld.orgs["fabrikam"])
    audit = fabrikam.get("/customer/audit").get_data(as_text=True)
    assert "Test User of BlueSky Resellers on behalf of Fabrikam Inc" in audit
    own = fabrikam.get(f"/customer/entitlements/{pworld.code('fab_bluesky')}").get_data(as_text=True)
    assert "by Test User of BlueSky Resellers on behalf of Fabrikam Inc" in own


def test_return_rehost_and_certificate_on_behalf(pworld, as_partner):
    bluesky = as_partner("bluesky")
    activation = pworld.activations["fab_bs_host"]
    lic = bluesky.get(f"/partner/activations/{activation.id}.lic")
    assert lic.status_code == 200 and lic.mimetype == "application/jwt"
    assert lic.get_data(as_text=True).count(".") == 2
    moved = bluesky.post(f"/partner/activations/{activation.id}/rehost", headers=HX,
                         data={f"activation-{activation.id}-host_id": "fab-bs-host-2"})
    assert moved.status_code == 200 and "Moved 1 seat from fab-bs-host to fab-bs-host-2." in moved.headers["HX-Trigger"]
    db.session.rollback()
    new = db.session.scalar(select(Activation).where(Activation.host_id == "fab-bs-host-2", Activation.active))
    returned = bluesky.post(f"/partner/activations/{new.id}/return")  # without JavaScript: back to the page
    assert returned.status_code == 302
    assert returned.location.endswith(f"/partner/entitlements/{pworld.code('fab_bluesky')}#line-{new.line_id}")
    db.session.rollback()
    events = db.session.execute(select(AuditEvent.action, AuditEvent.on_behalf_of_org_id).where(
        AuditEvent.org_id == pworld.orgs["bluesky"].id).order_by(AuditEvent.id)).all()
    fabrikam = pworld.orgs["fabrikam"].id
    assert events == [("activation.create", fabrikam), ("activation.rehost", fabrikam),
                      ("activation.return", fabrikam)]


def test_a_bad_host_id_is_a_field_error(pworld, as_partner):
    bluesky = as_partner("bluesky")
    line = pworld.entitlements["fab_bluesky"].lines[0]
    response = _activate(bluesky, line.id, "bad host!")
    assert response.status_code == 422
    assert "A host id is 1 to 128 characters" in response.get_data(as_text=True)
    too_many = _activate(bluesky, line.id, "big-host", seats=50, headers={})
    assert too_many.status_code == 422 and "Only 6 of 7 seats are free." in too_many.get_data(as_text=True)
    assert "<html" in too_many.get_data(as_text=True)  # the partner's page, with the error


def test_a_view_only_attachment_shows_no_controls_and_a_forged_post_is_403(pworld, as_partner):
    northwind = as_partner("northwind")  # distributed: view only
    page = northwind.get(f"/partner/entitlements/{pworld.code('de_studio')}").get_data(as_text=True)
    assert "munich-cad-01" in page
    for control in (">Activate<", ">Return<", ">Rehost<", ">Certificate<", ">Host ID<", '.lic"'):
        assert control not in page, control
    line = pworld.entitlements["de_studio"].lines[0]
    activation = pworld.activations["de_cad"]
    assert _activate(northwind, line.id, "forged-host").status_code == 403
    assert northwind.post(f"/partner/activations/{activation.id}/return", headers=HX).status_code == 403
    assert northwind.post(f"/partner/activations/{activation.id}/rehost", headers=HX,
                          data={f"activation-{activation.id}-host_id": "x"}).status_code == 403
    assert northwind.get(f"/partner/activations/{activation.id}.lic").status_code == 403
    db.session.rollback()
    assert db.session.scalar(select(Activation).where(Activation.host_id == "forged-host")) is None
    assert activation.active
    # Initech may activate but not download: activate yes, no certificate.
    initech = as_partner("initech")
    page = initech.get(f"/partner/entitlements/{pworld.code('de_studio')}").get_data(as_text=True)
    assert ">Activate<" in page and ">Certificate<" not in page
    assert _activate(initech, line.id, "initech-node").status_code == 200
    assert initech.get(f"/partner/activations/{activation.id}.lic").status_code == 403


def test_another_partners_entitlement_is_404_for_every_control(pworld, as_partner):
    bluesky = as_partner("bluesky")
    line = pworld.entitlements["fab_redrock"].lines[0]
    activation = pworld.activations["fab_rr_host"]
    assert _activate(bluesky, line.id, "sneaky").status_code == 404
    assert bluesky.post(f"/partner/activations/{activation.id}/return").status_code == 404
    assert bluesky.post(f"/partner/activations/{activation.id}/rehost",
                        data={f"activation-{activation.id}-host_id": "x"}).status_code == 404
    assert bluesky.get(f"/partner/activations/{activation.id}.lic").status_code == 404
    assert activation.active


def test_the_line_card_names_only_our_own_acts(pworld, as_partner):
    page = as_partner("bluesky").get(f"/partner/entitlements/{pworld.code('de_studio')}").get_data(as_text=True)
    assert "zephyr-node" in page and "Zephyr" not in page and "activated-by" not in page
    zephyr = as_partner("zephyr").get(f"/partner/entitlements/{pworld.code('de_studio')}").get_data(as_text=True)
    assert "by Test User of Zephyr Decoy Services on behalf of Contoso Germany" in zephyr


def test_partner_pages_do_not_grow_with_rows(pworld, as_partner, make, count_queries):
    bluesky = as_partner("bluesky")
    de = make.entitlement(pworld.orgs["germany"], [pworld.orgs["northwind"], pworld.orgs["bluesky"]], seats=1000)
    line_id, code = de.lines[0].id, de.code
    hosts = iter(range(100))
    pages = ["/partner/entitlements", "/partner/entitlements?q=host&sort=customer&access=sold",
             "/partner/entitlements.csv", f"/partner/entitlements/{code}", "/partner/stock",
             "/partner/stock/customers?customer_q=co"]

    def measure() -> dict[str, int]:
        counts = {}
        for url in pages:
            for headers in ({}, HX):
                db.session.commit()
                with count_queries() as counter:
                    assert bluesky.get(url, headers=headers).status_code == 200, url
                counts[url + str(bool(headers))] = counter.count
        db.session.commit()
        with count_queries() as counter:
            assert _activate(bluesky, line_id, f"budget-{next(hosts)}").status_code == 200
        counts["activate"] = counter.count
        return counts

    def grow(n: int) -> None:
        system = make.system
        studio = de.lines[0].product
        for _ in range(n):
            customer = make.customer()
            for owner, chain in ((customer, [pworld.orgs["northwind"], pworld.orgs["bluesky"]]),
                                 (customer, [pworld.orgs["redrock"]])):
                e = create_entitlement(system, owner=owner, sales_chain=chain,
                                       lines=[LineSpec(studio, "perpetual", 5), LineSpec(studio, "perpetual", 3)])
                make.attach(e, pworld.orgs["zephyr"], permissions=("view", "activate"))
                write_transaction()
                activate(system, e.lines[0], f"grow-{e.id}")
            create_entitlement(system, owner=pworld.orgs["bluesky"], fulfilment="stocking",
                               sales_chain=[pworld.orgs["northwind"], pworld.orgs["bluesky"]],
                               lines=[LineSpec(studio, "perpetual", 5)])
        write_transaction()
        for host in range(3):
            activate(system, de.lines[0], f"more-{n}-{host}")
        db.session.commit()

    grow(4)
    small = measure()
    grow(8)
    large = measure()
    assert large == small, f"statements with fewer rows {small}, with more {large}"
    assert db.session.query(Entitlement).count() > 30
