"""Who may download which release (spec section 3, issue 8 item 7, issue 9 item 4), with decoys:

- a perpetual line covers releases dated up to its maintenance end; a later release is listed
  as not entitled with the date, and its file answers 403;
- a subscription while it runs (today within start..end), a usage line while its entitlement
  is active; an ended subscription is listed with the day it ended;
- a product nobody of ours holds is not listed and its files answer 404;
- a partner downloads only through an attachment with the download permission (or its stock),
  only for the customer it works for when it chose one; Reseller 1 never gets a file through
  Reseller 2's entitlement;
- each download streams the bytes (Content-Length, ETag and Digest with the SHA-256, Range) and
  is audited: who, on behalf of whom, which file.
"""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal import policy
from portal.extensions import db
from portal.models import AuditEvent
from portal.services import catalog
from portal.services.entitlements import set_attachment_permissions

TODAY = date.today()


@pytest.fixture
def world(make):
    staff = make.actor(make.producer(), "staff")
    studio = catalog.create_product(staff, name="Acme Studio", sku="STUDIO")
    sync = catalog.create_product(staff, name="Acme Sync", sku="SYNC")
    credits = catalog.create_product(staff, name="Acme Credits", sku="CREDITS")
    decoy = catalog.create_product(staff, name="Decoy Suite", sku="DECOY")
    maintenance_end = TODAY - timedelta(days=30)
    rel = {
        "5.1": catalog.add_release(staff, studio, version="5.1", released_on=maintenance_end - timedelta(days=60)),
        "5.1.1": catalog.add_release(staff, studio, version="5.1.1", released_on=maintenance_end + timedelta(days=1),
                                     kind="security_patch", notes="**Install now.**"),
        "sync": catalog.add_release(staff, sync, version="2026.10", released_on=TODAY - timedelta(days=5)),
        "credits": catalog.add_release(staff, credits, version="1.0", released_on=TODAY - timedelta(days=5)),
        "decoy": catalog.add_release(staff, decoy, version="1.0", released_on=TODAY - timedelta(days=5)),
    }
    files = {key: catalog.add_release_file(staff, release, f"{key}.zip", io.BytesIO(f"bytes of {key}".encode()))
             for key, release in rel.items()}
    db.session.commit()

    northwind = make.partner("distributor", "Northwind")
    reseller1 = make.partner("reseller", "Reseller One", supplied_by=northwind)
    reseller2 = make.partner("reseller", "Reseller Two")
    contoso = make.customer("Contoso")
    contoso_de = make.customer("Contoso DE", parent=contoso)
    other = make.customer("Other Customer")
    ents = {
        # Maintenance ended before 5.1.1: 5.1 yes, 5.1.1 not.
        "studio": make.entitlement(contoso_de, [northwind, reseller1], product=studio, end=maintenance_end),
        # Sync: an ended subscription via Reseller Two.
        "sync": make.entitlement(contoso, [reseller2], model="subscription", product=sync,
                                 start=TODAY - timedelta(days=400), end=TODAY - timedelta(days=35)),
        "credits": make.entitlement(contoso, [reseller2], model="usage", product=credits),
        # Decoy: another customer's, sold by Reseller Two.
        "decoy": make.entitlement(other, [reseller2], product=studio),
    }
    return {"staff": staff, "rel": rel, "files": files, "ents": ents, "contoso": contoso,
            "contoso_de": contoso_de, "other": other, "northwind": northwind, "reseller1": reseller1,
            "reseller2": reseller2, "maintenance_end": maintenance_end}


def _client(make, login_as, org, role="admin", customer=None):
    user = make.user(org, role)
    client = login_as(user, org)
    if customer is not None:
        with client.session_transaction() as session:
            session["customer_id"] = customer.id
    return client


def _status(client, url: str) -> int:
    response = client.get(url)
    response.close()
    return response.status_code


def _download_event():
    """The one download audited (the test's session starts a new transaction to see it)."""
    db.session.rollback()
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "release_file.download")).all()
    assert len(events) <= 1
    return events[0] if events else None


def test_perpetual_line_covers_releases_up_to_its_maintenance_end(make, world):
    rights = policy.download_rights(make.actor(world["contoso"], "member"), TODAY)
    studio = rights[world["rel"]["5.1"].product_id]
    assert studio.decide(world["rel"]["5.1"].released_on) == (True, "Included in your maintenance.")
    entitled, reason = studio.decide(world["rel"]["5.1.1"].released_on)
    assert not entitled
    assert reason == f"Released after your maintenance ended on {world['maintenance_end'].isoformat()}."


def test_subscription_and_usage_rules(make, world):
    rights = policy.download_rights(make.actor(world["contoso"], "admin"), TODAY)
    sync = rights[world["rel"]["sync"].product_id]
    ended = (TODAY - timedelta(days=35)).isoformat()
    assert sync.decide(world["rel"]["sync"].released_on) == (False, f"Your subscription ended on {ended}.")
    credits = rights[world["rel"]["credits"].product_id]
    assert credits.decide(world["rel"]["credits"].released_on)[0] is True
    assert world["rel"]["decoy"].product_id not in rights  # nobody of Contoso's holds it
    assert set(rights) == {world["rel"][k].product_id for k in ("5.1", "sync", "credits")}


def test_customer_downloads_page_lists_entitled_and_not_entitled_with_reasons(make, login_as, world):
    client = _client(make, login_as, world["contoso"], "member")
    page = client.get("/customer/downloads").get_data(as_text=True)
    assert page.count('class="list-group-item release"') == 2  # 5.1 and credits 1.0
    assert page.count("list-group-item release not-entitled") == 2  # 5.1.1 and the ended sync
    assert f"Released after your maintenance ended on {world['maintenance_end'].isoformat()}." in page
    assert "Your subscription ended on" in page
    assert "<strong>Install now.</strong>" in page  # notes rendered from Markdown
    assert "Decoy Suite" not in page and "decoy.zip" not in page
    assert f"/customer/downloads/files/{world['files']['5.1'].id}" in page
    assert f"/customer/downloads/files/{world['files']['5.1.1'].id}" not in page


def test_a_subsidiary_member_sees_only_its_subtree(make, login_as, world):
    client = _client(make, login_as, world["contoso_de"], "member")
    page = client.get("/customer/downloads").get_data(as_text=True)
    assert "Acme Studio" in page and "Acme Sync" not in page and "Acme Credits" not in page
    assert _status(client, f"/customer/downloads/files/{world['files']['credits'].id}") == 404


def test_a_download_streams_the_bytes_and_is_audited(make, login_as, world):
    client = _client(make, login_as, world["contoso"], "member")
    release_file = world["files"]["5.1"]
    response = client.get(f"/customer/downloads/files/{release_file.id}")
    assert response.status_code == 200
    data = response.get_data()
    response.close()
    assert data == b"bytes of 5.1"
    assert hashlib.sha256(data).hexdigest() == release_file.sha256
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["ETag"] == f'"{release_file.sha256}"'
    assert response.headers["Digest"] == "sha-256=" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert response.headers["Content-Disposition"] == "attachment; filename=5.1.zip"
    event = _download_event()
    assert event.subject_id == str(release_file.id) and event.on_behalf_of_org_id is None
    assert event.subject_org_id == world["contoso_de"].id
    assert event.details["sha256"] == release_file.sha256
    assert event.details["entitlement"] == world["ents"]["studio"].code
    # Range and conditional requests.
    part = client.get(f"/customer/downloads/files/{release_file.id}", headers={"Range": "bytes=0-4"})
    assert part.status_code == 206 and part.get_data() == b"bytes"
    part.close()
    again = client.get(f"/customer/downloads/files/{release_file.id}",
                       headers={"If-None-Match": f'"{release_file.sha256}"'})
    assert again.status_code == 304
    again.close()


def test_not_entitled_is_403_and_invisible_is_404(make, login_as, world):
    client = _client(make, login_as, world["contoso"], "admin")
    refused = client.get(f"/customer/downloads/files/{world['files']['5.1.1'].id}")
    assert refused.status_code == 403
    assert "maintenance ended" in refused.get_data(as_text=True)
    assert _status(client, f"/customer/downloads/files/{world['files']['sync'].id}") == 403
    assert _status(client, f"/customer/downloads/files/{world['files']['decoy'].id}") == 404
    assert client.get("/customer/downloads/files/999999").status_code == 404
    assert _download_event() is None


def test_another_customer_never_gets_contosos_file(make, login_as, world):
    """Other Customer holds Acme Studio too (maintenance running): it gets the studio files
    through its own entitlement, never Sync or Credits."""
    client = _client(make, login_as, world["other"], "admin")
    assert _status(client, f"/customer/downloads/files/{world['files']['5.1.1'].id}") == 200
    assert _status(client, f"/customer/downloads/files/{world['files']['credits'].id}") == 404
    event = _download_event()
    assert event.details["entitlement"] == world["ents"]["decoy"].code


def test_reseller_one_never_downloads_through_reseller_twos_entitlement(make, login_as, world):
    client = _client(make, login_as, world["reseller1"])
    page = client.get("/partner/downloads").get_data(as_text=True)
    assert "Acme Studio" in page  # via its own sale to Contoso DE
    assert "Acme Sync" not in page and "Acme Credits" not in page
    assert _status(client, f"/partner/downloads/files/{world['files']['credits'].id}") == 404
    assert _status(client, f"/partner/downloads/files/{world['files']['sync'].id}") == 404
    # 5.1.1: Contoso DE's maintenance ended before it; Reseller Two's decoy sale to Other
    # Customer would cover it, but that is not Reseller One's.
    assert _status(client, f"/partner/downloads/files/{world['files']['5.1.1'].id}") == 403
    assert _status(client, f"/partner/downloads/files/{world['files']['5.1'].id}") == 200
    event = _download_event()
    assert event.org_id == world["reseller1"].id
    assert event.on_behalf_of_org_id == world["contoso_de"].id  # "U of Reseller One on behalf of Contoso DE"
    assert event.subject_org_id == world["contoso_de"].id


def test_a_partner_without_the_download_permission_gets_nothing(make, login_as, world):
    """Northwind distributed Contoso DE's studio: its attachment lets it view, not download."""
    client = _client(make, login_as, world["northwind"])
    page = client.get("/partner/downloads").get_data(as_text=True)
    assert "No software to download" in page
    assert _status(client, f"/partner/downloads/files/{world['files']['5.1'].id}") == 404
    # Given the permission, it downloads.
    attachment = next(a for a in world["ents"]["studio"].attachments if a.partner_id == world["northwind"].id)
    set_attachment_permissions(world["staff"], attachment, ["view", "download"])
    db.session.commit()
    assert _status(client, f"/partner/downloads/files/{world['files']['5.1'].id}") == 200


def test_working_for_a_customer_scopes_the_partners_downloads(make, login_as, world):
    reseller2 = world["reseller2"]
    everyone = _client(make, login_as, reseller2)
    page = everyone.get("/partner/downloads").get_data(as_text=True)
    assert "Acme Sync" in page and "Acme Credits" in page and "Acme Studio" in page
    for_contoso = _client(make, login_as, reseller2, customer=world["contoso"])
    page = for_contoso.get("/partner/downloads").get_data(as_text=True)
    assert "Acme Studio" not in page  # that one is Other Customer's
    assert _status(for_contoso, f"/partner/downloads/files/{world['files']['5.1'].id}") == 404
    assert _status(for_contoso, f"/partner/downloads/files/{world['files']['credits'].id}") == 200


def test_stock_is_downloadable_by_its_holder(make, login_as, world):
    holder = make.partner("reseller", "Stocking Reseller", stocking=True)
    make.entitlement(holder, [holder], fulfilment="stocking", product=world["rel"]["credits"].product,
                     model="usage")
    client = _client(make, login_as, holder)
    assert _status(client, f"/partner/downloads/files/{world['files']['credits'].id}") == 200
    event = _download_event()
    assert event.on_behalf_of_org_id is None
