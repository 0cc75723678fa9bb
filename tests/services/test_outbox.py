"""The outbox worker against a real SMTP server (aiosmtpd on 127.0.0.1).

Time is moved by passing ``now`` to ``deliver_due``; outages are the server stopped and
started again on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import OutboxEmail, utcnow
from portal.services import outbox
from portal.services.mail import queue_email
from portal.services.outbox import deliver_due, retry_delay, run_worker
from tests.smtp_server import SmtpServer, self_signed_tls

MAIL_FROM = "Acme Entitlement Portal <portal@acme.example>"
NOTHING = {"sent": 0, "retried": 0, "failed": 0}


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app_config(smtp_server):
    # Depends on smtp_server, so the server (and its port) exists before the app is built.
    return smtp_server.app_config(
        MAIL_FROM=MAIL_FROM,
        OUTBOX_MAX_ATTEMPTS=4,
        OUTBOX_BACKOFF_SECONDS=30,
        OUTBOX_BACKOFF_MAX_SECONDS=3600,
        OUTBOX_LEASE_SECONDS=900,
    )


def queue(count: int = 1, **kwargs) -> list[OutboxEmail]:
    """Queue ``count`` mails and commit, as a service plus its view would."""
    emails = [
        queue_email(to=f"contact{n}@contoso.example", subject=f"Security patch {n} for Widget",
                    body=f"Please install patch {n}.", **kwargs)
        for n in range(count)
    ]
    db.session.commit()
    return emails


def rows() -> list[OutboxEmail]:
    """The outbox as committed now (ends the test's own transaction: a stale snapshot would lie)."""
    db.session.commit()
    return list(db.session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def test_queued_mail_is_delivered_once_with_its_headers_and_marked_sent(app, smtp_server):
    (email,) = queue(html="<p>Please install <b>patch 0</b>.</p>", category="security_patch")
    email.headers = {"X-Portal-Category": "security_patch", "Message-ID": "<forged@example>"}
    decoy = queue_email(to="later@contoso.example", subject="Not yet", body="Tomorrow.")
    decoy.next_attempt_at = utcnow() + timedelta(days=1)
    db.session.commit()
    message_id = email.message_id

    before = utcnow()
    assert deliver_due() == {"sent": 1, "retried": 0, "failed": 0}

    (envelope,) = smtp_server.envelopes
    assert envelope.mail_from == "portal@acme.example"
    assert envelope.rcpt_tos == ["contact0@contoso.example"]
    (message,) = smtp_server.messages
    assert message["Message-ID"] == message_id
    assert message["From"] == MAIL_FROM
    assert message["To"] == "contact0@contoso.example"
    assert message["Subject"] == "Security patch 0 for Widget"
    assert message["X-Portal-Category"] == "security_patch"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content().strip() == "Please install patch 0."
    assert message.get_body(("html",)).get_content().strip() == "<p>Please install <b>patch 0</b>.</p>"

    sent, waiting = rows()
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, None)
    assert before <= sent.sent_at <= utcnow()
    assert (waiting.status, waiting.attempts, waiting.sent_at) == ("queued", 0, None)

    assert deliver_due() == NOTHING
    assert len(smtp_server.envelopes) == 1


def test_smtp_outage_loses_nothing_and_backs_off_then_delivers_exactly_once(app, smtp_server):
    queue(3)
    smtp_server.stop()
    t0 = utcnow()

    # Down: each pass records one failed attempt and stops, the others stay due for the next.
    for _ in range(3):
        assert deliver_due(now=t0) == {"sent": 0, "retried": 1, "failed": 0}
    assert deliver_due(now=t0) == NOTHING
    for email in rows():
        assert email.status == "queued"
        assert email.attempts == 1
        assert email.next_attempt_at == t0 + timedelta(seconds=30)
        assert "SMTP server unavailable" in email.last_error
        assert email.sent_at is None

    smtp_server.start()
    assert deliver_due(now=t0 + timedelta(seconds=29)) == NOTHING  # still backing off
    assert smtp_server.envelopes == []

    assert deliver_due(now=t0 + timedelta(seconds=30)) == {"sent": 3, "retried": 0, "failed": 0}
    assert deliver_due(now=t0 + timedelta(days=1)) == NOTHING

    emails = rows()
    assert sorted(smtp_server.message_ids) == sorted(email.message_id for email in emails)
    assert len(set(smtp_server.message_ids)) == 3
    for email in emails:
        assert (email.status, email.attempts, email.last_error) == ("sent", 2, None)


def test_silent_server_costs_one_timeout_per_pass_not_one_per_message(app):
    queue(3)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP, never greets
        app.config.update(SMTP_PORT=silent.getsockname()[1], SMTP_TIMEOUT=0.3)
        started = time.monotonic()
        assert deliver_due() == {"sent": 0, "retried": 1, "failed": 0}
        assert time.monotonic() - started < 2
    first, *others = rows()
    assert (first.attempts, first.status) == (1, "queued")
    assert "timed out" in first.last_error
    assert [(email.attempts, email.last_error) for email in others] == [(0, None), (0, None)]


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600), (10_000, 3600)],
)
def test_retry_delay_doubles_and_is_capped(attempts, seconds):
    assert retry_delay(attempts, 30, 3600) == timedelta(seconds=seconds)


def test_gives_up_after_max_attempts(app, smtp_server):
    (email,) = queue()
    smtp_server.stop()
    now = utcnow()
    for attempt, delay in [(1, 30), (2, 60), (3, 120)]:
        assert deliver_due(now=now) == {"sent": 0, "retried": 1, "failed": 0}
        (email,) = rows()
        assert (email.status, email.attempts) == ("queued", attempt)
        assert email.next_attempt_at == now + timedelta(seconds=delay)
        now = email.next_attempt_at

    assert deliver_due(now=now) == {"sent": 0, "retried": 0, "failed": 1}
    (email,) = rows()
    assert (email.status, email.attempts, email.sent_at) == ("failed", 4, None)
    assert "Connection refused" in email.last_error

    smtp_server.start()
    assert deliver_due(now=now + timedelta(days=30)) == NOTHING
    assert smtp_server.envelopes == []


@pytest.mark.parametrize(
    ("reply", "status", "attempts"),
    [("550 5.1.1 No such mailbox", "failed", 1), ("451 4.3.0 Try again later", "queued", 1)],
)
def test_refused_recipient_does_not_hold_up_the_others(app, smtp_server, reply, status, attempts):
    queue(3)
    smtp_server.handler.reject["contact1@contoso.example"] = reply

    counts = deliver_due()

    assert counts == {"sent": 2, "retried": int(status == "queued"), "failed": int(status == "failed")}
    first, refused, third = rows()
    assert (first.status, third.status) == ("sent", "sent")
    assert (refused.status, refused.attempts, refused.sent_at) == (status, attempts, None)
    assert reply in refused.last_error
    assert sorted(smtp_server.message_ids) == sorted([first.message_id, third.message_id])


def test_header_injection_is_refused_and_nothing_is_sent(app, smtp_server):
    queue_email(to="victim@contoso.example", subject="Hello\r\nBcc: everyone@example.com", body="x")
    db.session.commit()

    assert deliver_due() == {"sent": 0, "retried": 0, "failed": 1}
    (email,) = rows()
    assert email.status == "failed"
    assert email.last_error.startswith("unsendable message")
    assert smtp_server.envelopes == []


def test_crash_between_send_and_mark_resends_once_with_the_same_message_id(app, smtp_server, monkeypatch):
    (email,) = queue()
    message_id = email.message_id
    t0 = utcnow()

    def crash(*_args):
        raise RuntimeError("worker killed after sending")

    monkeypatch.setattr(outbox, "_mark_sent", crash)
    with pytest.raises(RuntimeError, match="worker killed"):
        deliver_due(now=t0)
    db.session.rollback()
    monkeypatch.undo()

    (email,) = rows()
    assert (email.status, email.attempts) == ("queued", 0)
    assert email.next_attempt_at == t0 + timedelta(seconds=900)  # leased, not lost
    assert deliver_due(now=t0 + timedelta(seconds=899)) == NOTHING  # no other worker takes it meanwhile

    assert deliver_due(now=t0 + timedelta(seconds=900)) == {"sent": 1, "retried": 0, "failed": 0}
    assert smtp_server.message_ids == [message_id, message_id]  # the receiver can drop the second
    assert deliver_due(now=t0 + timedelta(days=1)) == NOTHING
    assert len(smtp_server.envelopes) == 2


def test_starttls_and_login_when_configured(app, tmp_path):
    tls_context, ca_file = self_signed_tls(tmp_path)
    with SmtpServer(login=("portal", "s3cret"), tls_context=tls_context) as server:
        app.config.update(server.app_config(SMTP_STARTTLS=True, SMTP_CA_FILE=ca_file,
                                            SMTP_USERNAME="portal", SMTP_PASSWORD="s3cret"))
        queue(2)
        assert deliver_due() == {"sent": 2, "retried": 0, "failed": 0}
        assert len(server.messages) == 2
        assert server.logins == ["portal"]  # one connection for the whole pass

        app.config["SMTP_PASSWORD"] = "wrong"
        queue(1)
        assert deliver_due() == {"sent": 0, "retried": 1, "failed": 0}
        assert "535" in rows()[-1].last_error
        assert len(server.messages) == 2


def test_worker_cli_once_delivers_what_is_due(app, smtp_server):
    queue(3)

    result = app.test_cli_runner().invoke(args=["portal", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "outbox: 3 sent, 0 to retry, 0 failed" in result.output
    assert len(set(smtp_server.message_ids)) == len(smtp_server.envelopes) == 3
    assert {email.status for email in rows()} == {"sent"}


def test_worker_once_drains_more_than_one_pass(app, smtp_server):
    queue(5)
    lines: list[str] = []

    run_worker(once=True, echo=lines.append, limit=2)  # passes of 2, 2 and 1

    assert lines == ["outbox: 5 sent, 0 to retry, 0 failed"]
    assert len(set(smtp_server.message_ids)) == len(smtp_server.envelopes) == 5


def test_worker_stops_on_sigterm_without_waiting_out_the_interval(app, smtp_server):
    queue(2)
    handler_before = signal.getsignal(signal.SIGTERM)
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if " sent" in line:
            os.kill(os.getpid(), signal.SIGTERM)

    started = time.monotonic()
    run_worker(once=False, interval=30, echo=echo)

    assert time.monotonic() - started < 5
    assert lines[-2:] == ["outbox: 2 sent, 0 to retry, 0 failed", "outbox worker: stopped"]
    assert len(smtp_server.envelopes) == 2
    assert signal.getsignal(signal.SIGTERM) == handler_before


def test_two_workers_deliver_each_message_exactly_once(app, smtp_server):
    """PostgreSQL: SKIP LOCKED lets the workers claim side by side; SQLite: BEGIN IMMEDIATE queues them."""
    emails = queue(30)
    expected = sorted(email.message_id for email in emails)
    smtp_server.handler.delay = 0.02  # each send takes a moment, so the workers overlap
    start = threading.Barrier(2)
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with app.app_context():
                start.wait(timeout=5)
                results[name] = deliver_due(limit=100)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert sorted(smtp_server.message_ids) == expected  # every message, none twice
    assert results["a"]["sent"] + results["b"]["sent"] == 30
    assert results["a"]["sent"] > 0
    assert results["b"]["sent"] > 0
    assert {(email.status, email.attempts) for email in rows()} == {("sent", 1)}


def test_postgres_claims_skip_a_row_another_worker_holds(app, smtp_server):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL-only; SQLite has no row locks (BEGIN IMMEDIATE serializes)")
    emails = queue(3)
    held_id, held_message_id = emails[0].id, emails[0].message_id
    other_message_ids = sorted(email.message_id for email in emails[1:])
    db.session.commit()
    result: dict = {}

    def worker() -> None:
        with app.app_context():
            result.update(deliver_due())

    holder = db.engine.connect()  # another worker, busy with the oldest row
    try:
        holder.begin()
        holder.execute(select(OutboxEmail.id).where(OutboxEmail.id == held_id).with_for_update())
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(timeout=10)
        blocked = thread.is_alive()
    finally:
        holder.rollback()
        holder.close()
    thread.join(timeout=10)

    assert not blocked, "deliver_due waited for a locked row instead of skipping it"
    assert result == {"sent": 2, "retried": 0, "failed": 0}
    assert sorted(smtp_server.message_ids) == other_message_ids
    assert deliver_due() == {"sent": 1, "retried": 0, "failed": 0}  # free again: its turn
    assert smtp_server.message_ids[-1] == held_message_id
