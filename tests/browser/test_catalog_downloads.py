"""The catalog and downloads in real Chromium, on the demo story: producer staff upload a release
file with the htmx form on a product's page (a duplicate is refused next to the field), a customer
downloads a file whose bytes match the SHA-256 the page shows, a partner sees its downloads; every
page at desktop width and 390 px, checked with axe-core."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.test_customer_portal import check_page, expect_refusal, sign_in_as


def test_staff_upload_a_release_file_in_place(browse, demo, tmp_path):
    page = sign_in_as(browse, "staff@acme.example")
    browse.goto("/producer/products")
    expect(page.locator("nav .nav-link[aria-current=page]")).to_have_text("Products")
    expect(page.locator("#products-summary")).to_have_text("3 products")
    check_page(browse, "producer-products")

    page.get_by_role("link", name="Acme Studio").click()
    expect(page).to_have_url(re.compile(r"/producer/products/\d+$"))
    release = page.locator("section.release", has_text="Acme Studio 5.1.1")
    expect(release.locator(".release-kind")).to_have_text("Security patch")
    expect(release.locator(".release-notes strong")).to_have_text("Install now.")
    expect(release.locator(".release-file")).to_have_count(2)
    check_page(browse, "producer-product")

    data = b"Acme Studio 5.1.1 hotfix bundle\n" * 100
    upload = tmp_path / "studio-5.1.1-extra.bin"
    upload.write_bytes(data)
    release.locator("input[type=file]").set_input_files(str(upload))
    release.get_by_role("button", name="Upload to 5.1.1").click()
    release = page.locator("section.release", has_text="Acme Studio 5.1.1")
    expect(release.locator(".release-file")).to_have_count(3)
    added = release.locator(".release-file", has_text="studio-5.1.1-extra.bin")
    expect(added.locator(".sha256")).to_have_text(hashlib.sha256(data).hexdigest())
    expect(added).to_contain_text("3,200 bytes")
    expect(page.locator(".toast").last).to_contain_text("Uploaded studio-5.1.1-extra.bin")
    browse.snap("uploaded")

    # The same bytes again under another name: refused next to the field, the list unchanged.
    copy = tmp_path / "copy.bin"
    copy.write_bytes(data)
    release.locator("input[type=file]").set_input_files(str(copy))
    release.get_by_role("button", name="Upload to 5.1.1").click()
    release = page.locator("section.release", has_text="Acme Studio 5.1.1")
    expect(release.locator(".error")).to_contain_text("already in 5.1.1 as studio-5.1.1-extra.bin")
    expect(release.locator("input[type=file]")).to_have_attribute("aria-invalid", "true")
    expect(release.locator(".release-file")).to_have_count(3)
    expect_refusal(browse, 422)
    check_page(browse, "producer-upload-refused")


def test_a_customer_downloads_a_file_whose_sha256_matches(browse, demo, tmp_path):
    page = sign_in_as(browse, "admin@contoso.example")
    browse.goto("/customer/downloads")
    expect(page.locator("nav .nav-link[aria-current=page]")).to_have_text("Downloads")
    expect(page.locator(".product-downloads h2")).to_have_text(
        [re.compile("Acme Cloud Sync"), re.compile("Acme Render Credits"), re.compile("Acme Studio")])
    check_page(browse, "customer-downloads")

    item = page.locator(".release", has_text="Acme Studio 5.1.1")
    link = item.get_by_role("link", name="acme-studio-5.1.1.zip", exact=True)
    shown = item.locator(".release-file", has_text="acme-studio-5.1.1.zip").locator(".sha256").inner_text()
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "acme-studio-5.1.1.zip"
    saved = Path(tmp_path / "got.zip")
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == shown
    browse.assert_clean()


def test_partner_downloads(browse, demo):
    page = sign_in_as(browse, "admin@bluesky.example")
    browse.goto("/partner/downloads")
    expect(page.locator(".product-downloads h2")).to_have_text([re.compile("Acme Studio")])
    expect(page.locator(".release.not-entitled")).to_have_count(0)
    check_page(browse, "partner-downloads")
    # Northwind distributed the same entitlements: view only, nothing to download.
    page.context.clear_cookies()
    page = sign_in_as(browse, "admin@northwind.example")
    browse.goto("/partner/downloads")
    expect(page.locator(".empty-state")).to_contain_text("No software to download")
