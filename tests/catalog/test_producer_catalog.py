"""The producer's catalog pages: products (list, search, create, edit), releases (add, with
Markdown notes rendered safely) and file uploads (multipart, htmx answering with the release's
block; errors next to the field with 422, nothing stored)."""

from __future__ import annotations

import hashlib
import io
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Product, Release, ReleaseFile
from portal.services import catalog

HX = {"HX-Request": "true"}


@pytest.fixture
def staff_client(make, login_as):
    producer = make.producer()
    return login_as(make.user(producer, "staff"), producer)


@pytest.fixture
def product(make):
    staff = make.actor(make.producer(), "staff")
    made = catalog.create_product(staff, name="Acme Studio", sku="STUDIO")
    catalog.create_product(staff, name="Decoy Tool", sku="DECOY")
    release = catalog.add_release(staff, made, version="5.1", released_on=date(2026, 7, 6), kind="service_pack",
                                  notes="Faster. <script>alert(1)</script> [x](javascript:alert(1))")
    db.session.commit()
    return made, release


def _count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count(model.id)))


def test_products_list_and_search(staff_client, product):
    page = staff_client.get("/producer/products").get_data(as_text=True)
    assert "2 products" in page and "Acme Studio" in page and "Decoy Tool" in page
    found = staff_client.get("/producer/products?q=stud", headers=HX)
    text = found.get_data(as_text=True)
    assert "1 product matching" in text and "Decoy Tool" not in text
    assert found.headers["HX-Push-Url"] == "/producer/products?q=stud"


def test_create_product_and_refuse_a_duplicate_sku(staff_client, product):
    response = staff_client.post("/producer/products", data={"product-name": "Acme Sync", "product-sku": "sync"})
    assert response.status_code == 302
    created = db.session.scalar(select(Product).where(Product.sku == "SYNC"))
    assert response.location.endswith(f"/producer/products/{created.id}")
    again = staff_client.post("/producer/products", data={"product-name": "Other", "product-sku": "SYNC"},
                              headers=HX)
    assert again.status_code == 422
    assert "A product with SKU SYNC exists already." in again.get_data(as_text=True)
    assert _count(Product) == 3


def test_product_page_shows_releases_with_sanitized_notes(staff_client, product):
    made, release = product
    page = staff_client.get(f"/producer/products/{made.id}").get_data(as_text=True)
    assert "Acme Studio 5.1" in page and "Service pack" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert 'href="javascript' not in page


def test_add_release_and_refuse_a_duplicate_version(staff_client, product):
    made, _ = product
    url = f"/producer/products/{made.id}/releases"
    ok = staff_client.post(url, data={"release-version": "5.1.1", "release-released_on": "2026-10-12",
                                      "release-kind": "security_patch", "release-notes": "**Install now.**"})
    assert ok.status_code == 302
    dup = staff_client.post(url, data={"release-version": "5.1", "release-released_on": "2026-10-12",
                                       "release-kind": "release"})
    assert dup.status_code == 422 and "Acme Studio has a release 5.1 already." in dup.get_data(as_text=True)
    bad = staff_client.post(url, data={"release-version": "6", "release-released_on": "someday",
                                       "release-kind": "release"})
    assert bad.status_code == 422 and "Enter the release date (YYYY-MM-DD)." in bad.get_data(as_text=True)
    assert _count(Release) == 2


def test_upload_a_file_with_htmx(staff_client, product):
    _, release = product
    data = b"PK\x03\x04 studio bytes"
    response = staff_client.post(f"/producer/releases/{release.id}/files", headers=HX,
                                 data={f"upload-{release.id}-file": (io.BytesIO(data), "studio-5.1.zip")},
                                 content_type="multipart/form-data")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<section class="card mb-4 release" id="release-{release.id}"')
    assert "studio-5.1.zip" in html and hashlib.sha256(data).hexdigest() in html
    assert "Uploaded studio-5.1.zip" in response.headers["HX-Trigger"]
    # The same bytes under another name: refused next to the field, nothing stored.
    dup = staff_client.post(f"/producer/releases/{release.id}/files", headers=HX,
                            data={f"upload-{release.id}-file": (io.BytesIO(data), "copy.zip")},
                            content_type="multipart/form-data")
    assert dup.status_code == 422
    assert "already in 5.1 as studio-5.1.zip" in dup.get_data(as_text=True)
    assert _count(ReleaseFile) == 1


def test_upload_without_a_file_is_a_field_error(staff_client, product):
    _, release = product
    response = staff_client.post(f"/producer/releases/{release.id}/files", headers=HX, data={},
                                 content_type="multipart/form-data")
    assert response.status_code == 422 and "Choose a file to upload." in response.get_data(as_text=True)


def test_delete_a_file(staff_client, product, make):
    _, release = product
    staff = make.actor(make.producer(), "staff")
    stored = catalog.add_release_file(staff, release, "a.txt", io.BytesIO(b"abc"))
    db.session.commit()
    path = catalog.file_path(stored)
    response = staff_client.post(f"/producer/files/{stored.id}/delete", headers=HX)
    assert response.status_code == 200 and "a.txt" not in response.get_data(as_text=True).split("Files")[1]
    assert _count(ReleaseFile) == 0 and not path.exists()


def test_customers_and_partners_never_see_the_catalog(make, login_as, product):
    made, release = product
    for org in (make.customer(), make.partner()):
        client = login_as(make.user(org, "admin"), org)
        assert client.get("/producer/products").status_code == 404
        assert client.get(f"/producer/products/{made.id}").status_code == 404
        assert client.post(f"/producer/releases/{release.id}/files", data={}).status_code == 404
