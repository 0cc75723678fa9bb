"""Real Chromium against the real app served over HTTP, with CSRF switched on.

One Chromium per test session, one browser context per test, one live server per test
(the function-scoped ``app`` and its fresh database). Every page a test visits through
``browse`` is screenshotted into ``test-artifacts/screenshots/`` (git-ignored), and so is
the page at a failure. Console errors, uncaught page errors, Content-Security-Policy
violations and 5xx responses fail the step that caused them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import create_engine, select, text
from werkzeug.security import generate_password_hash

from portal.database import begin_write
from portal.demo import load_demo
from portal.extensions import db
from portal.models import Organization
from portal.services import accounts
from tests.conftest import _migrate, _postgres_url, make_test_app

# One folder per database: `make test` runs the SQLite and PostgreSQL suites side by side.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots" / os.environ.get(
    "PORTAL_TEST_DB", "sqlite")
CHROMIUM = "/usr/bin/chromium"
# The same allowance for assertions (``expect(...).to_have_text``) as for actions, below.
expect.set_options(timeout=15_000)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
# Reported to Python from the page: init scripts run outside the page's CSP.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__portalCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} `
                              + `at ${e.sourceFile || location.href}:${e.lineNumber}`);
});
"""
_FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
def app_config() -> dict:
    """Browser tests exercise the real CSRF protection."""
    return {"WTF_CSRF_ENABLED": True}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def base_url(live_server) -> str:
    return live_server


@pytest.fixture
def context(browser, base_url) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    # Generous: the suite runs a test per core (pytest-xdist), so Chromium and the live server
    # share the machine with another test. A passing step never waits for these.
    context.set_default_timeout(15_000)
    context.set_default_navigation_timeout(20_000)
    yield context
    context.close()


class Browse:
    """A page plus the habits of these tests: screenshot every page, fail on page problems."""

    def __init__(self, page: Page, name: str):
        self.page = page
        self.name = name
        self.problems: list[str] = []
        self.shots: list[Path] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)
        # Pages of other origins (an identity provider's login page) are not ours to judge.
        self.foreign_origins: list[str] = []

    def _foreign(self, url: str | None) -> bool:
        return bool(url) and any(url.startswith(origin) for origin in self.foreign_origins)

    def _request_failed(self, request) -> None:
        # Leaving a page cancels what it still loads (htmx panels, the icon): not a failure.
        if request.failure == "net::ERR_ABORTED":
            return
        if not self._foreign(request.frame.url):
            self.problems.append(f"request failed: {request.method} {request.url}")

    def _console(self, message) -> None:
        if message.type == "error" and not self._foreign(message.location.get("url")):
            self.problems.append(f"console error: {message.text} ({message.location.get('url')})")

    def _response(self, response) -> None:
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def csp_violation(self, text: str) -> None:
        if not any(origin in text for origin in self.foreign_origins):
            self.problems.append(f"CSP violation: {text}")

    def snap(self, label: str | None = None, full_page: bool = False) -> Path:
        """Save a screenshot of what the browser shows now (the viewport: it is quicker)."""
        label = label or (re.sub(r"[^A-Za-z0-9]+", "-", self.page.url.split("//", 1)[-1].split("/", 1)[-1]).strip("-")
                          or "root")
        path = SCREENSHOTS / f"{self.name}--{len(self.shots) + 1:02d}-{label}.png"
        self.page.screenshot(path=path, full_page=full_page)
        self.shots.append(path)
        return path

    def assert_clean(self) -> None:
        # One round trip, so console and CSP reports sent before it have arrived.
        self.page.evaluate("0")
        problems, self.problems = self.problems, []
        assert problems == [], "the page reported problems:\n" + "\n".join(problems)

    def goto(self, path: str) -> Page:
        response = self.page.goto(path)
        assert response is not None and response.ok, f"{path} answered {response and response.status}"
        self.snap()
        self.assert_clean()
        return self.page

    def submit(self, button, status: int = 200) -> Page:
        """Click a submit button and wait for the page it leads to, answered with ``status``."""
        with self.page.expect_navigation() as navigation:
            button.click()
        assert navigation.value.status == status, f"{navigation.value.url} answered {navigation.value.status}"
        if status >= 400:
            # Chromium logs any 4xx document as a console error; this one is expected.
            self.page.evaluate("0")
            expected = f"the server responded with a status of {status} "
            self.problems = [p for p in self.problems
                             if not (expected in p and p.endswith(f"({navigation.value.url})"))]
        self.snap()
        self.assert_clean()
        return self.page


@pytest.fixture
def browse(context, request) -> Iterator[Browse]:
    name = re.sub(r"[^A-Za-z0-9_.@-]+", "_", request.node.name).strip("_")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob(f"{name}--*.png"):
        old.unlink()
    context.expose_function("__portalCspViolation", lambda text: browse.csp_violation(text))
    context.add_init_script(CSP_LISTENER)
    browse = Browse(context.new_page(), name)
    yield browse
    if request.node.stash.get(_FAILED, False):
        browse.snap("failure", full_page=True)
    else:
        browse.assert_clean()
    browse.page.close()


def _cheap_password_hash(password: str, method: str = "scrypt", salt_length: int = 16) -> str:
    # Still scrypt, checked by the real code, at a cost that suits a test (12 demo users).
    return generate_password_hash(password, method="scrypt:1024:8:1", salt_length=salt_length)


@dataclass
class DemoDatabase:
    """The demo story loaded once per session; each test gets its own copy of it."""

    kind: str
    template: str  # SQLite: a file; PostgreSQL: a database name
    admin_url: str = ""

    def fresh_url(self, tmp_path: Path) -> str:
        if self.kind == "sqlite":
            target = tmp_path / "portal.db"
            shutil.copyfile(self.template, target)
            return f"sqlite:///{target}"
        copy = f"{self.template}_run"
        _admin_sql(self.admin_url, f"DROP DATABASE IF EXISTS {copy} WITH (FORCE)",
                   f"CREATE DATABASE {copy} TEMPLATE {self.template}")
        return _postgres_url(copy)


def _admin_sql(admin_url: str, *statements: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def _load_demo_into(url: str, instance: Path) -> None:
    app = make_test_app(url, instance)
    with app.app_context(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "generate_password_hash", _cheap_password_hash)
        begin_write()  # SQLite: the story activates seats, which needs the write lock
        load_demo()
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def demo_database(test_database, signing_key_dir, tmp_path_factory) -> Iterator[DemoDatabase]:
    """Loading the story takes longer than copying it: load once, copy per test."""
    root = tmp_path_factory.mktemp("demo")
    if test_database.kind == "sqlite":
        url = test_database.fresh_url(root)
        _load_demo_into(url, signing_key_dir)
        yield DemoDatabase("sqlite", url.removeprefix("sqlite:///"))
        return
    name = f"portal_test_{os.getpid()}_demo"
    admin_url = _postgres_url("postgres")
    drop = [f"DROP DATABASE IF EXISTS {name}_run WITH (FORCE)", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"]
    _admin_sql(admin_url, *drop, f"CREATE DATABASE {name}")
    _migrate(_postgres_url(name), root / "instance")
    _load_demo_into(_postgres_url(name), signing_key_dir)
    yield DemoDatabase("postgres", name, admin_url)
    _admin_sql(admin_url, *drop)


@pytest.fixture
def database_url(request, test_database, tmp_path) -> str:
    """A test that asks for ``demo`` starts from the demo story; any other from an empty database."""
    if "demo" in request.fixturenames:
        return request.getfixturevalue("demo_database").fresh_url(tmp_path)
    return test_database.fresh_url(tmp_path)


@pytest.fixture
def demo(app) -> dict[str, Organization]:
    """The demo story of spec section 9 (in this test's database): its organizations by name."""
    return {org.name: org for org in db.session.scalars(select(Organization))}
