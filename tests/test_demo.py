"""The demo story (docs/concepts.md): loads deterministically and shows the five rules;
`make demo` serves it, and prints links to, the address asked for."""

import os
import re
import signal
import subprocess
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal import create_app
from portal.extensions import db
from portal.models import Activation, Entitlement, Membership, Organization, OutboxEmail, PortalRequest, User
from portal.policy import Actor, customers_served_by, visible_attachments, visible_entitlements
from portal.services.accounts import find_invitation
from tests.conftest import TEST_DB
from tests.oidc.provider import free_port

ROOT = Path(__file__).resolve().parents[1]

# Who sees how many entitlements in the story, straight from spec sections 4 and 9.
EXPECTED_VISIBLE = {
    "admin@acme.example": 8,  # the producer sees everything
    "staff@acme.example": 8,
    "admin@northwind.example": 5,  # distributed: Contoso DE, Fabrikam studio, Tailspin, 2 in BlueSky's stock
    "admin@bluesky.example": 5,  # sold the same 3, holds the 2 in stock
    "admin@redrock.example": 2,  # Contoso USA sync, Fabrikam sync
    "admin@initech.example": 1,  # attached as services to Contoso Germany's studio
    "admin@contoso.example": 3,  # its own credits plus both subsidiaries'
    "it@contoso-de.example": 1,  # only Contoso Germany's subtree
    "admin@fabrikam.example": 2,
    "admin@tailspin.example": 1,
}


@pytest.fixture
def demo(app):
    result = app.test_cli_runner().invoke(args=["portal", "demo"])
    assert result.exit_code == 0, result.output
    return result


def _actor(email: str) -> Actor:
    user = db.session.scalar(select(User).where(User.email == email))
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    return Actor(user=user, org=membership.org, role=membership.role)


def test_demo_prints_every_login_and_the_password(demo):
    for email in EXPECTED_VISIBLE:
        assert email in demo.output
    assert "Password for every demo user: demo-password-2026" in demo.output


def test_demo_refuses_a_second_load(demo, app):
    again = app.test_cli_runner().invoke(args=["portal", "demo"])
    assert again.exit_code != 0
    assert "not empty" in again.output


def test_demo_story_counts(demo):
    assert db.session.scalar(select(func.count(Entitlement.id))) == 8
    assert db.session.scalar(select(func.count(Organization.id))) == 11
    assert db.session.scalar(select(func.count(Activation.id))) == 4
    kinds = db.session.scalars(select(PortalRequest.kind).where(PortalRequest.state == "pending")).all()
    assert sorted(kinds) == ["join_org", "partner_access", "partner_application", "transfer"]


def test_each_demo_user_sees_its_share(demo):
    seen = {
        email: db.session.scalar(select(func.count()).select_from(visible_entitlements(_actor(email)).subquery()))
        for email in EXPECTED_VISIBLE
    }
    assert seen == EXPECTED_VISIBLE


def test_redrock_never_sees_what_fabrikam_bought_through_bluesky(demo):
    redrock = _actor("admin@redrock.example")
    codes = set(db.session.scalars(visible_entitlements(redrock).with_only_columns(Entitlement.code)))
    assert codes == {"ENT-DEMO-CUS1-0002", "ENT-DEMO-FAB1-0004"}
    served = [org.name for org in db.session.scalars(customers_served_by(redrock))]
    assert served == ["Contoso USA", "Fabrikam Inc"]


def test_initech_sees_only_its_own_attachment(demo):
    initech = _actor("admin@initech.example")
    (entitlement,) = db.session.scalars(visible_entitlements(initech)).all()
    attachments = db.session.scalars(visible_attachments(initech, entitlement)).all()
    assert [(a.partner.name, a.relation) for a in attachments] == [("Initech Services", "services")]
    producer = _actor("admin@acme.example")
    everyone = db.session.scalars(visible_attachments(producer, entitlement)).all()
    assert sorted(a.partner.name for a in everyone) == [
        "BlueSky Resellers", "Initech Services", "Northwind Distribution"]


# What `flask portal demo` says of each login: role, organization and its kind, in words.
EXPECTED_LOGINS = {
    "admin@acme.example": "admin of Acme Software (producer)",
    "staff@acme.example": "staff of Acme Software (producer)",
    "admin@northwind.example": "admin of Northwind Distribution (distributor)",
    "admin@bluesky.example": "admin of BlueSky Resellers (reseller)",
    "admin@redrock.example": "admin of RedRock IT (reseller)",
    "admin@initech.example": "admin of Initech Services (service provider)",
    "admin@contoso.example": "admin of Contoso Group (customer)",
    "it@contoso-de.example": "member of Contoso Germany (customer)",
    "admin@fabrikam.example": "admin of Fabrikam Inc (customer)",
    "admin@tailspin.example": "admin of Tailspin Toys (customer)",
    "newhire@contoso.example": "no organization yet; asked to join Contoso Group",
    "founder@globex.example": "no organization yet; applied to become a partner (Globex Solutions)",
}
LOGIN_LINE = re.compile(r"^  (\S+@\S+)  +(.+)$")


def _printed_logins(output: str) -> dict[str, str]:
    return {m[1]: m[2] for line in output.splitlines() if (m := LOGIN_LINE.match(line))}


def test_demo_and_invite_use_the_base_url_make_demo_sets(database_url, signing_key_dir, monkeypatch):
    """`make demo HOST=127.0.0.2 PORT=5001` sets PORTAL_BASE_URL: every printed and mailed link follows it."""
    monkeypatch.setenv("PORTAL_BASE_URL", "http://127.0.0.2:5001")
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "DATABASE_URL": database_url,
                      "INSTANCE_PATH": str(signing_key_dir)})
    with app.app_context():
        try:
            demo = app.test_cli_runner().invoke(args=["portal", "demo"])
            assert demo.exit_code == 0, demo.output
            assert "Sign in at http://127.0.0.2:5001/login with:" in demo.output
            assert _printed_logins(demo.output) == EXPECTED_LOGINS
            invite = app.test_cli_runner().invoke(
                args=["portal", "invite", "new.person@contoso.example", "Contoso Group", "member"])
            assert invite.exit_code == 0, invite.output
            token = re.search(r"http://127\.0\.0\.2:5001/invitations/(\S+)$", invite.output.strip())[1]
            assert find_invitation(token).org.name == "Contoso Group"
            mail = db.session.scalar(select(OutboxEmail).where(OutboxEmail.category == "invitation"))
            assert f"http://127.0.0.2:5001/invitations/{token}\n" in mail.body_text
            assert "5000" not in demo.output + invite.output + mail.body_text
        finally:
            db.session.remove()
            db.engine.dispose()


def test_demo_lists_every_demo_user_with_kind_and_role(demo):
    assert _printed_logins(demo.output) == EXPECTED_LOGINS
    assert "Sign in at http://127.0.0.1:5000/login with:" in demo.output


def _make_dry_run(*args: str, env: dict | None = None) -> list[str]:
    """The commands `make -n` would run (nothing is run; the set-up lines may be among them)."""
    result = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, check=True, env=env)
    return result.stdout.splitlines()


def _flask_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "/bin/flask --app wsgi" in line]


def test_make_demo_passes_host_and_port_to_every_step():
    lines = _flask_lines(_make_dry_run("demo", "HOST=127.0.0.2", "PORT=5001"))
    assert [line.split("--app wsgi ")[1].split(" ")[0:2] for line in lines] == [
        ["db", "upgrade"], ["portal", "demo"], ["run", "--host"]]
    assert all("PORTAL_BASE_URL=http://127.0.0.2:5001 " in line for line in lines)
    assert lines[-1].endswith("run --host 127.0.0.2 --port 5001")
    assert "PORTAL_LOCAL_LOGIN_ENABLED=true" in lines[-1]


def test_make_demo_defaults_and_ipv6_and_ignores_host_from_the_environment():
    env = os.environ | {"HOST": "somebox.example", "PORT": "80"}  # some shells export HOST
    (run,) = [line for line in _flask_lines(_make_dry_run("demo-run", env=env)) if " run " in line]
    assert "PORTAL_BASE_URL=http://127.0.0.1:5000 " in run and run.endswith("--host 127.0.0.1 --port 5000")
    (run,) = [line for line in _flask_lines(_make_dry_run("demo-run", "HOST=::1")) if " run " in line]
    assert "PORTAL_BASE_URL=http://[::1]:5000 " in run and run.endswith("--host ::1 --port 5000")
    (invite,) = _flask_lines(_make_dry_run("demo-invite", "PORT=5001", "EMAIL=a@b.example", "ORG=Contoso Group",
                                           "ROLE=member"))
    assert "PORTAL_BASE_URL=http://127.0.0.1:5001 " in invite
    assert invite.endswith("portal invite 'a@b.example' 'Contoso Group' 'member'")


@pytest.mark.slow
@pytest.mark.skipif(TEST_DB != "sqlite", reason="the demo runs on SQLite whichever database the suite uses")
def test_make_demo_serves_on_the_port_asked_for_and_its_links_work(tmp_path):
    """The real thing, without the set-up step: `make demo-run` serves, `make demo-invite` prints a working link."""
    port = free_port()
    address = ["HOST=127.0.0.1", f"PORT={port}", f"DEMO_DB={tmp_path}/demo.db"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env |= {"PORTAL_SECRET_KEY": "test", "PORTAL_INSTANCE_PATH": str(tmp_path)}
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        server = subprocess.Popen(["make", "--no-print-directory", "demo-run", *address], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:  # noqa: S310
                    assert response.status == 200 and b"Sign in" in response.read()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        printed = log.read_text()
        assert f"Sign in at http://127.0.0.1:{port}/login with:" in printed
        assert _printed_logins(printed) == EXPECTED_LOGINS
        invite = subprocess.run(["make", "--no-print-directory", "demo-invite", *address,
                                 "EMAIL=new.person@contoso.example", "ORG=Contoso Group", "ROLE=member"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
        link = re.search(rf"http://127\.0\.0\.1:{port}/invitations/\S+", invite.stdout)[0]
        with urllib.request.urlopen(link, timeout=5) as response:  # noqa: S310
            assert b"Contoso Group" in response.read()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


def test_every_demo_release_ships_files_whose_sha256_matches_the_bytes_on_disk(demo):
    import hashlib

    from portal.models import Release
    from portal.services.catalog import file_path

    releases = db.session.scalars(select(Release).order_by(Release.id)).all()
    assert [r.version for r in releases] == ["5.0", "5.1", "5.1.1", "2026.10"]
    for release in releases:
        assert release.files, release.version
        for release_file in release.files:
            data = file_path(release_file).read_bytes()
            assert len(data) == release_file.size
            assert hashlib.sha256(data).hexdigest() == release_file.sha256


def test_demo_release_files_are_the_same_at_every_load():
    from types import SimpleNamespace

    from portal.demo import demo_release_files

    release = SimpleNamespace(product=SimpleNamespace(sku="ACME-STUDIO", name="Acme Studio"), version="5.1",
                              kind="service_pack", released_on=date(2026, 7, 6), notes="SP1")
    assert demo_release_files(release) == demo_release_files(release)
