"""An invited newcomer sets a password from the invitation link, in real Chromium with real CSRF."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.services.accounts import invite_user
from tests.browser.test_sign_in import expect_shell, sign_in

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a passphrase of my own"


def test_invited_newcomer_sets_a_password_then_signs_in_with_it(browse, make):
    customer = make.customer("Contoso Group")
    make.entitlement(customer)
    _, token = invite_user(make.system, customer, "alice@contoso.example", "member")
    db.session.commit()

    page = browse.goto(f"/invitations/{token}")
    expect(page.locator("main h1")).to_have_text("Join Contoso Group")
    expect(page.locator("#invitee")).to_have_text("a•••@contoso.example")  # whoever holds the link
    expect(page.locator("main")).not_to_contain_text("alice@contoso.example")
    form = page.locator("form#set-password")
    form.get_by_label("Your name").fill("Alice Liddell")
    form.get_by_label("New password").fill(NEW_PASSWORD)
    form.get_by_label("Confirm the password").fill(NEW_PASSWORD + "!")
    page = browse.submit(form.get_by_role("button", name="Set password and join"), status=422)
    expect(page.locator("#confirm-error")).to_have_text("The two passwords are not the same.")
    expect(page.locator("#confirm")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#display_name")).to_have_value("Alice Liddell")

    form = page.locator("form#set-password")
    form.get_by_label("New password").fill(NEW_PASSWORD)
    form.get_by_label("Confirm the password").fill(NEW_PASSWORD)
    page = browse.submit(form.get_by_role("button", name="Set password and join"))
    expect_shell(page, "Contoso Group", "customer", 1)
    expect(page.locator(".flash")).to_contain_text("Welcome! You joined Contoso Group.")
    expect(page.locator(".topbar")).to_contain_text("Alice Liddell")

    page = browse.submit(page.get_by_role("button", name="Sign out"))
    expect(page).to_have_url(re.compile(r"/login$"))
    page = sign_in(browse, "alice@contoso.example", NEW_PASSWORD)
    expect_shell(page, "Contoso Group", "customer", 1)
    # The link worked once.
    response = page.goto(f"/invitations/{token}")
    assert response.status == 410
    browse.problems.clear()  # Chromium logs the 410 document as a console error
