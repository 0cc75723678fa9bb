"""Sign-in, sign-out and the two switchers, in real Chromium with real CSRF.

Expected counts come from the demo story (spec section 9) read through the access
policy (spec section 4, ``portal/policy.py``). The story's eight entitlements:

1. Contoso Germany, Acme Studio, via Northwind -> BlueSky; Initech attached (services)
2. Contoso USA, Acme Cloud Sync, via RedRock
3. Contoso Group, Acme Render Credits, direct from Acme
4. Fabrikam Inc, Acme Cloud Sync, via RedRock
5. Fabrikam Inc, Acme Studio, via Northwind -> BlueSky
6. Tailspin Toys, Acme Studio, via Northwind -> BlueSky
7, 8. BlueSky's stock of Acme Studio, via Northwind -> BlueSky

- producer (admin and staff): everything, 8;
- a customer: what its organization and every descendant owns: Contoso Group 3 (1, 2, 3:
  Contoso Germany's, Contoso USA's and its own), Contoso Germany 1 (1; Munich Plant owns
  none), Fabrikam 2 (4, 5), Tailspin 1 (6);
- a partner: its stock plus its active attachments: Northwind 5 (``distributed`` on 1, 5,
  6, 7, 8), BlueSky 5 (``sold`` on 1, 5, 6; owns 7, 8), RedRock 2 (2, 4), Initech 1 (1);
  the pending partner-access request of RedRock on 5 grants nothing yet.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.demo import DEMO_PASSWORD, DEMO_USERS
from portal.extensions import db
from portal.models import Membership
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

# org key of DEMO_USERS -> (organization name, shell, entitlements on its single pane). A partner's
# counts the customers' entitlements attached to it; stock (BlueSky's two) has a panel of its own.
EXPECTED = {
    "acme": ("Acme Software", "producer", 8),
    "northwind": ("Northwind Distribution", "partner", 3),
    "bluesky": ("BlueSky Resellers", "partner", 3),
    "redrock": ("RedRock IT", "partner", 2),
    "initech": ("Initech Services", "partner", 1),
    "contoso": ("Contoso Group", "customer", 3),
    "contoso_de": ("Contoso Germany", "customer", 1),
    "fabrikam": ("Fabrikam Inc", "customer", 2),
    "tailspin": ("Tailspin Toys", "customer", 1),
}
SHELL_TITLE = {"producer": "Producer portal", "partner": "Partner portal", "customer": "Customer portal"}


def sign_in(browse, email: str, password: str, status: int = 200):
    page = browse.goto("/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    return browse.submit(page.get_by_role("button", name="Sign in"), status=status)


def expect_shell(page, org_name: str, shell: str, count: int) -> None:
    expect(page).to_have_url(re.compile(rf"/{shell}/$"))
    expect(page.locator("main h1")).to_have_text(org_name)
    expect(page.locator("main")).to_contain_text(SHELL_TITLE[shell])
    expect(page.locator("#entitlement-count")).to_have_text(str(count))


@pytest.mark.parametrize(("email", "org_key"), [(email, key) for email, _, key, _ in DEMO_USERS],
                         ids=[email for email, *_ in DEMO_USERS])
def test_every_demo_user_lands_on_its_shell(browse, demo, email, org_key):
    """Sign-in redirects to / (no ``next``), which sends each user on to its own portal."""
    org_name, shell, count = EXPECTED[org_key]
    page = sign_in(browse, email, DEMO_PASSWORD)
    expect_shell(page, org_name, shell, count)
    # One membership: the top bar names the organization, no switcher.
    expect(page.locator(".topbar .org")).to_have_text(org_name)
    expect(page.locator("#org-switcher")).to_have_count(0)


def test_login_page_runs_htmx_under_the_strict_csp(browse):
    page = browse.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    csp = page.request.get("/login").headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.evaluate("typeof window.htmx") == "object"
    expect(page.locator("#email")).to_be_focused()


def test_pages_declare_an_icon(browse):
    page = browse.goto("/login")
    icon = page.locator("head link[rel~=icon]")
    assert icon.count() == 1
    href = icon.get_attribute("href") or ""
    assert href.startswith("data:") or page.request.get(href).ok


def test_a_csp_violation_is_noticed(browse):
    """The detector itself: an inline style injected into the page is refused and reported."""
    page = browse.goto("/login")
    page.evaluate("""() => { const s = document.createElement("style");
                             s.textContent = "body { color: red }"; document.head.append(s); }""")
    for _ in range(50):
        if any(p.startswith("CSP violation") for p in browse.problems):
            break
        page.wait_for_timeout(20)
    assert any(p.startswith("CSP violation: style-src") for p in browse.problems), browse.problems
    browse.problems.clear()


def test_wrong_password_shows_the_error_at_the_field_and_no_session(browse, demo):
    page = sign_in(browse, "admin@contoso.example", DEMO_PASSWORD + "x", status=401)
    expect(page).to_have_url(re.compile(r"/login$"))
    password_field = page.locator(".field", has=page.locator("#password"))
    expect(password_field.locator(".error")).to_have_text("Email or password is not right.")
    expect(page.locator("#password")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#email")).to_have_value("admin@contoso.example")
    expect(page.locator(".topbar .who")).to_have_count(0)
    expect(browse.goto("/customer/")).to_have_url(re.compile(r"/login\?next=/customer/"))
    expect(browse.goto("/")).to_have_url(re.compile(r"/login$"))


def test_sign_out_ends_the_session(browse, context, demo):
    page = sign_in(browse, "admin@fabrikam.example", DEMO_PASSWORD)
    expect_shell(page, "Fabrikam Inc", "customer", 2)
    signed_in_cookies = context.cookies()
    page = browse.submit(page.get_by_role("button", name="Sign out"))
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".flash")).to_have_text("You are signed out.")
    expect(browse.goto("/")).to_have_url(re.compile(r"/login$"))
    # The cookie from before sign-out is worthless now (the server bumped the session version).
    context.clear_cookies()
    context.add_cookies(signed_in_cookies)
    expect(browse.goto("/customer/")).to_have_url(re.compile(r"/login\?next="))


def test_two_memberships_switch_organization(browse, demo, make):
    user = make.user(demo["RedRock IT"], "admin", email="dual@redrock.example", password=PASSWORD)
    db.session.add(Membership(user=user, org=demo["Contoso Germany"], role="member"))
    db.session.commit()

    page = sign_in(browse, "dual@redrock.example", PASSWORD)
    # Partners come before customers: the partner portal first.
    expect_shell(page, "RedRock IT", "partner", 2)
    switcher = page.locator("form#org-switcher")
    expect(switcher.locator("option")).to_have_text(["RedRock IT (admin)", "Contoso Germany (member)"])
    switcher.locator("select").select_option(label="Contoso Germany (member)")
    page = browse.submit(switcher.get_by_role("button", name="Switch"))
    expect_shell(page, "Contoso Germany", "customer", 1)
    expect(page.locator("#org_id option:checked")).to_have_text("Contoso Germany (member)")
    # The choice is part of the session: the front door keeps it.
    expect_shell(browse.goto("/"), "Contoso Germany", "customer", 1)

    switcher = page.locator("form#org-switcher")
    switcher.locator("select").select_option(label="RedRock IT (admin)")
    page = browse.submit(switcher.get_by_role("button", name="Switch"))
    expect_shell(page, "RedRock IT", "partner", 2)
