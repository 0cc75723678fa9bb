"""Notifications (spec section 6, rules 3 and 5) on the demo story, through a real SMTP server.

The fan-out runs as the worker runs it (``run_worker(once=True)``), and the mail is counted
where it arrives: at an aiosmtpd server started for each test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal import policy
from portal.database import begin_write
from portal.demo import load_demo
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Membership,
    Notification,
    NotificationMessage,
    Organization,
    OutboxEmail,
    Product,
    Release,
    User,
    utcnow,
)
from portal.policy import Actor
from portal.services import accounts
from portal.services import notifications as notices
from portal.services.errors import NotAllowed, ServiceError
from portal.services.outbox import run_worker
from tests.smtp_server import SmtpServer

MAIL_FROM = "notices@acme.example"


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app_config(smtp_server):
    return smtp_server.app_config(MAIL_FROM=MAIL_FROM, OUTBOX_MAX_ATTEMPTS=5, OUTBOX_BACKOFF_SECONDS=0,
                                  OUTBOX_BACKOFF_MAX_SECONDS=0, OUTBOX_LEASE_SECONDS=900)


@pytest.fixture
def story(app, monkeypatch):
    monkeypatch.setattr(accounts, "generate_password_hash", lambda password, **_kw: "cheap$" + password)
    begin_write()  # SQLite: the story activates seats, which needs the write lock
    load_demo()
    db.session.commit()
    orgs = {org.name: org for org in db.session.scalars(select(Organization))}
    return orgs


def actor(email: str) -> Actor:
    user = db.session.scalar(select(User).where(User.email == email))
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    return Actor(user=user, org=membership.org, role=membership.role)


def studio_patch(staff: Actor, **kw) -> Notification:
    studio = db.session.scalar(select(Product).where(Product.sku == "ACME-STUDIO"))
    patch = db.session.scalar(select(Release).where(Release.product_id == studio.id, Release.version == "5.1.1"))
    kw.setdefault("kind", "security_patch")
    notification = notices.compose(staff, title="Studio 5.1.1 fixes a file-parsing vulnerability",
                                   body="Install **5.1.1** now.", product=studio,
                                   release=patch if kw.get("kind") == "security_patch" else None, **kw)
    db.session.commit()
    return notification


def send(notification: Notification, staff: Actor) -> None:
    notices.send(staff, notification)
    db.session.commit()
    run_worker(once=True, echo=lambda _m: None)


def subject(mail) -> str:
    """The Subject as a reader sees it (a long one arrives folded, with the fold's space)."""
    return mail["Subject"].strip()


def names(partners: list[dict]) -> set[str]:
    return {p["name"] for p in partners}


def messages_of(notification: Notification) -> dict[str, list[dict]]:
    return {m.org.name: m.content for m in db.session.scalars(
        select(NotificationMessage).where(NotificationMessage.notification_id == notification.id))}


def test_a_security_patch_reaches_each_customer_naming_exactly_its_partners(story, smtp_server):
    staff = actor("staff@acme.example")
    notification = studio_patch(staff)
    send(notification, staff)

    got = messages_of(notification)
    assert set(got) == {"Contoso Germany", "Fabrikam Inc", "Tailspin Toys"}
    by_code = {name: {item["code"]: names(item["partners"]) for item in content} for name, content in got.items()}
    assert by_code == {
        "Contoso Germany": {"ENT-DEMO-CDE1-0001": {"BlueSky Resellers", "Initech Services"}},
        # Fabrikam's other entitlement (Cloud Sync via RedRock) is not about Studio: not listed.
        "Fabrikam Inc": {"ENT-DEMO-FAB2-0005": {"BlueSky Resellers"}},
        "Tailspin Toys": {"ENT-DEMO-TSP1-0006": {"BlueSky Resellers"}},
    }
    db.session.refresh(notification)
    assert (notification.state, notification.organizations_done, notification.emails_queued) == ("sent", 3, 3)

    # The inboxes: Contoso's admin sees its subsidiary's message; RedRock and the others nothing.
    def inbox(email: str) -> list[str]:
        return [m.org.name for m in db.session.scalars(policy.visible_messages(actor(email)))]
    assert inbox("admin@contoso.example") == ["Contoso Germany"]
    assert inbox("it@contoso-de.example") == ["Contoso Germany"]
    assert inbox("admin@fabrikam.example") == ["Fabrikam Inc"]
    assert inbox("admin@tailspin.example") == ["Tailspin Toys"]
    assert inbox("admin@redrock.example") == inbox("admin@bluesky.example") == []

    # The mail, as the SMTP server received it: one per notification contact, text and HTML.
    received = {m["To"]: m for m in smtp_server.messages}
    assert sorted(received) == ["it@contoso-de.example", "it@fabrikam.example", "it@tailspin.example"]
    for mail in received.values():
        assert subject(mail) == "[Security patch] Studio 5.1.1 fixes a file-parsing vulnerability"
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert "hello@bluesky.example" in text and "hello@bluesky.example" in html
        assert "RedRock" not in text + html and "Northwind" not in text + html
        assert "<strong>5.1.1</strong>" in html
    fabrikam = received["it@fabrikam.example"].get_body(("plain",)).get_content()
    assert "ENT-DEMO-FAB2-0005" in fabrikam and "ENT-DEMO-FAB1-0004" not in fabrikam
    assert "Initech" not in fabrikam
    assert "support@initech.example" in received["it@contoso-de.example"].get_body(("plain",)).get_content()
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail).where(
        OutboxEmail.notification_id == notification.id, OutboxEmail.status == "sent")) == 3


def test_smtp_down_during_the_send_then_back_delivers_every_message_once(story, smtp_server):
    staff = actor("staff@acme.example")
    notification = studio_patch(staff)
    smtp_server.stop()
    send(notification, staff)  # fans out, then finds the server down: nothing lost, nothing sent
    assert notices.recipient_counts(notification) == {"queued": 3, "sent": 0, "failed": 0}
    assert smtp_server.messages == []

    smtp_server.start()
    run_worker(once=True, echo=lambda _m: None)
    run_worker(once=True, echo=lambda _m: None)  # a second pass finds nothing more to send
    assert sorted(m["To"] for m in smtp_server.messages) == [
        "it@contoso-de.example", "it@fabrikam.example", "it@tailspin.example"]
    assert len(set(smtp_server.message_ids)) == 3
    assert notices.recipient_counts(notification) == {"queued": 0, "sent": 3, "failed": 0}


def test_the_job_runs_in_batches_each_its_own_transaction(story, smtp_server):
    staff = actor("staff@acme.example")
    notification = studio_patch(staff)
    notices.send(staff, notification)
    db.session.commit()
    steps = []
    while (step := notices.advance(batch_size=1)) is not None:
        steps.append(step)
        db.session.refresh(notification)
        if step == "checked" and notification.state == "checking":
            # Checking writes no message: nothing is in anyone's inbox yet.
            assert db.session.scalar(select(func.count()).select_from(NotificationMessage)) == 0
    assert steps == ["checked"] * 4 + ["queued"] * 3 + ["sent"]
    assert notification.organizations_total == notification.organizations_done == 3


def test_a_failed_leak_check_stops_the_whole_send_before_anything_is_queued(story, smtp_server, monkeypatch):
    staff = actor("staff@acme.example")
    notification = studio_patch(staff)
    redrock = story["RedRock IT"]
    build = notices.build_messages

    def leaky(notification, owner_ids):  # a bug that names RedRock on Tailspin's BlueSky entitlement
        messages = build(notification, owner_ids)
        for message in messages:
            if message.org_name == "Tailspin Toys":
                message.content[0]["partners"].append({"id": redrock.id, "name": redrock.name, "email": None,
                                                       "phone": None, "website": None, "relation": "sold"})
        return messages

    monkeypatch.setattr(notices, "build_messages", leaky)
    send(notification, staff)
    db.session.refresh(notification)
    assert notification.state == "stopped"
    assert "names partner" in notification.stop_reason and "RedRock IT" in notification.stop_reason
    assert db.session.scalar(select(func.count()).select_from(NotificationMessage)) == 0
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail).where(
        OutboxEmail.notification_id == notification.id)) == 0
    assert smtp_server.messages == []
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.subject_type == "notification")
                             .order_by(AuditEvent.id.desc()).limit(1)) == "notification.stop"


def test_optional_kinds_can_be_turned_off_for_email_security_patches_cannot(story, smtp_server):
    staff = actor("staff@acme.example")
    fabrikam_admin = actor("admin@fabrikam.example")
    notices.set_email(fabrikam_admin, story["Fabrikam Inc"], "service_pack", False)
    with pytest.raises(ServiceError, match="always sent"):
        notices.set_email(fabrikam_admin, story["Fabrikam Inc"], "security_patch", False)
    with pytest.raises(NotAllowed):  # a member does not decide for the organization
        notices.set_email(actor("it@contoso-de.example"), story["Contoso Germany"], "general", False)
    db.session.commit()

    pack = studio_patch(staff, kind="service_pack")
    send(pack, staff)
    assert set(messages_of(pack)) == {"Contoso Germany", "Fabrikam Inc", "Tailspin Toys"}  # inbox: always
    assert sorted(m["To"] for m in smtp_server.messages) == ["it@contoso-de.example", "it@tailspin.example"]

    patch = studio_patch(staff)
    send(patch, staff)
    assert "it@fabrikam.example" in [m["To"] for m in smtp_server.messages[2:]]


def test_partners_get_a_copy_only_when_they_asked_and_only_of_their_entitlements(story, smtp_server):
    staff = actor("staff@acme.example")
    bluesky, initech = story["BlueSky Resellers"], story["Initech Services"]
    notices.set_partner_copy(actor("admin@bluesky.example"), bluesky, "security_patch", True)
    with pytest.raises(NotAllowed):
        notices.set_partner_copy(actor("admin@bluesky.example"), initech, "security_patch", True)
    db.session.commit()
    send(studio_patch(staff), staff)

    copies = [m for m in smtp_server.messages if subject(m).startswith("Copy: ")]
    assert [m["To"] for m in copies] == ["hello@bluesky.example"]
    text = copies[0].get_body(("plain",)).get_content()
    for code in ("ENT-DEMO-CDE1-0001", "ENT-DEMO-FAB2-0005", "ENT-DEMO-TSP1-0006"):
        assert code in text
    assert "Initech" not in text and "ENT-DEMO-STK1" not in text  # stock is nobody's customer yet
    assert not [m for m in smtp_server.messages if m["To"] in ("support@initech.example", "team@redrock.example",
                                                               "sales@northwind.example")]


def test_acknowledgement_and_reminders(story, smtp_server):
    staff = actor("staff@acme.example")
    notification = studio_patch(staff, remind_after_days=7, remind_partners=True)
    send(notification, staff)
    message = {m.org.name: m for m in db.session.scalars(select(NotificationMessage))}

    with pytest.raises(NotAllowed):
        notices.acknowledge(actor("it@contoso-de.example"), message["Contoso Germany"])  # a member
    with pytest.raises(NotAllowed):
        notices.acknowledge(actor("admin@fabrikam.example"), message["Contoso Germany"])  # not its own
    with pytest.raises(NotAllowed):
        notices.acknowledge(staff, message["Contoso Germany"])  # the producer reads, never acknowledges
    assert notices.acknowledge(actor("admin@contoso.example"), message["Contoso Germany"]) is True
    assert notices.acknowledge(actor("admin@contoso.example"), message["Contoso Germany"]) is False
    db.session.commit()

    before = len(smtp_server.messages)
    assert notices.send_reminders(now=utcnow() + timedelta(days=6)) == 0
    assert notices.send_reminders(now=utcnow() + timedelta(days=8)) == 2  # Fabrikam and Tailspin
    assert notices.send_reminders(now=utcnow() + timedelta(days=9)) == 0  # reminded once
    run_worker(once=True, echo=lambda _m: None)
    reminders = smtp_server.messages[before:]
    assert sorted(m["To"] for m in reminders) == [
        "hello@bluesky.example", "hello@bluesky.example", "it@fabrikam.example", "it@tailspin.example"]
    assert all(subject(m).startswith("Reminder: [Security patch]") for m in reminders)
    to_bluesky = [m.get_body(("plain",)).get_content() for m in reminders if m["To"] == "hello@bluesky.example"]
    assert sorted(("ENT-DEMO-FAB2-0005" in t, "ENT-DEMO-TSP1-0006" in t) for t in to_bluesky) == [
        (False, True), (True, False)]
    assert not any("ENT-DEMO-CDE1-0001" in t for t in to_bluesky)  # acknowledged: no reminder


def test_preview_counts_and_shows_the_exact_message_of_a_chosen_customer(story):
    staff = actor("staff@acme.example")
    notification = studio_patch(staff)
    shown = notices.preview(notification, customer=story["Fabrikam Inc"])
    assert (shown.organizations, shown.emails, shown.partner_copies) == (3, 3, 0)
    assert shown.message.org_name == "Fabrikam Inc"
    assert [(i["code"], names(i["partners"])) for i in shown.message.content] == [
        ("ENT-DEMO-FAB2-0005", {"BlueSky Resellers"})]
    assert db.session.scalar(select(func.count()).select_from(NotificationMessage)) == 0  # a preview writes nothing


@pytest.mark.parametrize(("changes", "field"), [
    ({"title": "Patch\x07now"}, "title"),
    ({"title": "  "}, "title"),
    ({"body": ""}, "body"),
    ({"kind": "rumour"}, "kind"),
    ({"kind": "general", "remind_after_days": 7}, "remind_after_days"),
    ({"remind_after_days": 0}, "remind_after_days"),
])
def test_compose_refuses_bad_input_next_to_the_field(story, changes, field):
    staff = actor("staff@acme.example")
    studio = db.session.scalar(select(Product).where(Product.sku == "ACME-STUDIO"))
    values = {"kind": "security_patch", "title": "Patch", "body": "Install it.", "product": studio, **changes}
    with pytest.raises(ServiceError) as refused:
        notices.compose(staff, **values)
    assert refused.value.field == field
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_only_producer_staff_compose_and_send(story):
    studio = db.session.scalar(select(Product).where(Product.sku == "ACME-STUDIO"))
    for email in ("admin@contoso.example", "admin@bluesky.example"):
        with pytest.raises(NotAllowed):
            notices.compose(actor(email), kind="general", title="Hi", body="Hello", product=studio)
    sync = db.session.scalar(select(Product).where(Product.sku == "ACME-SYNC"))
    patch = db.session.scalar(select(Release).where(Release.version == "5.1.1"))
    with pytest.raises(ServiceError, match="not a release of Acme Cloud Sync"):
        notices.compose(actor("staff@acme.example"), kind="security_patch", title="x", body="y", product=sync,
                        release=patch)
