"""A full OIDC sign-in round trip in Chromium against the real test provider."""

import re

import pytest
from playwright.sync_api import expect


@pytest.fixture
def browse(browse, oidc_providers):
    browse.foreign_origins = [provider.issuer for provider in oidc_providers.values()]
    return browse


@pytest.fixture
def app_config(oidc_providers):
    return {"WTF_CSRF_ENABLED": True,
            "OIDC_PROVIDERS": {name: p.portal_config(name, display_name=f"{name.title()} SSO")
                               for name, p in oidc_providers.items()}}


def _sign_in_at_provider(browse, login: str):
    page = browse.page
    expect(page.locator("input[name=login]")).to_be_visible()
    browse.snap("provider-login")
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    with page.expect_navigation(url=re.compile(r"127\.0\.0\.1:\d+/(customer|partner|producer|no-access)")):
        page.locator("button[type=submit]").click()
    return page


def test_known_user_signs_in_with_the_provider(browse, make, oidc_providers):
    customer = make.customer("Contoso Group")
    make.entitlement(customer)
    user = make.user(customer, "admin", email="olga@contoso.com")
    make.identity(user, oidc_providers["beta"].issuer, "olga")
    page = browse.goto("/login")
    expect(page.get_by_role("link", name="Sign in with Alpha SSO")).to_be_visible()
    page.get_by_role("link", name="Sign in with Beta SSO").click()
    page = _sign_in_at_provider(browse, "olga")
    expect(page).to_have_url(re.compile(r"/customer/$"))
    expect(page.locator("main h1")).to_have_text("Contoso Group")
    expect(page.locator("#entitlement-count")).to_have_text("1")
    browse.snap("signed-in")
    browse.assert_clean()


def test_newcomer_lands_on_request_access_and_asks_to_join(browse, make, oidc_providers):
    make.customer("Contoso Group")
    page = browse.goto("/login")
    page.get_by_role("link", name="Sign in with Alpha SSO").click()
    page = _sign_in_at_provider(browse, "paula")
    expect(page).to_have_url(re.compile(r"/no-access$"))
    expect(page.locator("main")).to_contain_text("paula@example.com")
    browse.snap("request-access")
    page.locator("#organization").fill("Contoso Group")
    page.locator("#message").fill("New in the design team")
    browse.submit(page.get_by_role("button", name="Ask to join"))
    expect(page.locator("#pending-requests")).to_contain_text("Contoso Group")
    browse.assert_clean()
