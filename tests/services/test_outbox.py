"""The outbox worker against a real SMTP server (aiosmtpd on 127.0.0.1).

Time is moved by passing ``now`` to ``deliver_due``; outages are the server stopped and
started again on the same port. Deliveries and refusals are counted at the server.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import AuditEvent, OutboxEmail, utcnow
from portal.services import outbox
from portal.services.errors import NotAllowed, ServiceError
from portal.services.mail import queue_email, requeue_failed
from portal.services.outbox import deliver_due, retry_delay, run_worker
from tests.smtp_server import SmtpServer, UnavailableServer, self_signed_tls

MAIL_FROM = "Acme Entitlement Portal <portal@acme.example>"


def passed(sent: int = 0, retried: int = 0, failed: int = 0, deferred: int = 0) -> dict[str, int]:
    """What ``deliver_due`` returns for a pass."""
    return {"sent": sent, "retried": retried, "failed": failed, "deferred": deferred}


NOTHING = passed()


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
    assert deliver_due() == passed(sent=1)

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


def test_long_smtp_outage_uses_up_no_attempts_then_delivers_each_mail_exactly_once(app, smtp_server):
    emails = queue(3)
    queued_at = [email.next_attempt_at for email in emails]
    expected = [email.message_id for email in emails]
    smtp_server.stop()
    now = utcnow()

    # Three times as many passes as a message has attempts, hours apart: far beyond any backoff.
    for _ in range(3 * app.config["OUTBOX_MAX_ATTEMPTS"]):
        assert deliver_due(now=now) == passed(deferred=1)  # one connection refused, then the pass stops
        now += timedelta(hours=1)
    head, *others = rows()
    assert {email.status for email in rows()} == {"queued"}
    assert [email.attempts for email in rows()] == [0, 0, 0]
    assert [email.next_attempt_at for email in rows()] == queued_at  # due, in their order
    assert head.last_error.startswith("SMTP server unavailable: ")
    assert "Connection refused" in head.last_error
    assert [email.last_error for email in others] == [None, None]

    smtp_server.start()
    assert deliver_due(now=now) == passed(sent=3)
    assert deliver_due(now=now + timedelta(days=30)) == NOTHING

    assert smtp_server.message_ids == expected  # each exactly once, in queue order
    assert [(email.status, email.attempts, email.last_error) for email in rows()] == [("sent", 1, None)] * 3


def test_worker_asks_an_unavailable_server_once_per_backoff_and_delivers_when_it_is_back(app, smtp_server):
    """The real worker loop: a server that answers 421 to every connection, then the real one."""
    expected = [email.message_id for email in queue(3)]
    app.config["OUTBOX_BACKOFF_SECONDS"] = 0.25
    lines: list[str] = []

    with UnavailableServer() as unavailable:
        app.config["SMTP_PORT"] = unavailable.port

        def echo(line: str) -> None:
            lines.append(line)
            if sum("unavailable" in line for line in lines) == 4:
                app.config["SMTP_PORT"] = smtp_server.port  # the server is back
            if " sent" in line:
                os.kill(os.getpid(), signal.SIGTERM)

        started = time.monotonic()
        run_worker(once=False, interval=0.01, echo=echo)
        elapsed = time.monotonic() - started

    assert unavailable.connections == 4  # once per pass, not once per message or per poll
    assert elapsed >= 4 * 0.25  # it waited out the backoff each time, not the 0.01 s interval
    assert lines[1].startswith("outbox: SMTP server unavailable: 421 4.3.2 Service not available")
    assert lines[1].endswith("; no attempt counted, asking again in 0.25s")
    assert lines[-2:] == ["outbox: 3 sent, 0 to retry, 0 failed", "outbox worker: stopped"]
    assert smtp_server.message_ids == expected  # each exactly once
    assert [(email.status, email.attempts) for email in rows()] == [("sent", 1)] * 3


def test_worker_once_says_the_server_is_unavailable_and_keeps_the_mail(app, smtp_server):
    queue(2)
    smtp_server.stop()

    result = app.test_cli_runner().invoke(args=["portal", "worker", "--once"])

    assert result.exit_code == 0, result.output
    assert "outbox: 0 sent, 0 to retry, 0 failed" in result.output
    assert "SMTP server unavailable: ConnectionRefusedError" in result.output
    assert "no attempt counted, mail stays queued" in result.output
    assert [(email.status, email.attempts) for email in rows()] == [("queued", 0)] * 2


def test_server_closing_a_kept_open_connection_costs_nothing(app, smtp_server):
    """Servers close connections after a message (or idle): the next message gets a fresh one."""
    emails = queue(3)
    smtp_server.handler.hang_up_after_data = True

    assert deliver_due() == passed(sent=3)

    assert smtp_server.message_ids == [email.message_id for email in emails]
    assert [(email.status, email.attempts, email.last_error) for email in rows()] == [("sent", 1, None)] * 3


def test_server_too_busy_for_mail_from_costs_nothing(app, smtp_server):
    queue(2)
    smtp_server.handler.busy = "421 4.7.0 Too many connections, try again later"

    assert deliver_due() == passed(deferred=1)
    head, other = rows()
    assert (head.status, head.attempts, other.attempts) == ("queued", 0, 0)
    assert head.last_error == "SMTP server unavailable: 421 4.7.0 Too many connections, try again later"

    smtp_server.handler.busy = None
    assert deliver_due() == passed(sent=2)
    assert len(set(smtp_server.message_ids)) == len(smtp_server.envelopes) == 2


def test_silent_server_costs_one_timeout_per_pass_not_one_per_message(app):
    queue(3)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP, never greets
        app.config.update(SMTP_PORT=silent.getsockname()[1], SMTP_TIMEOUT=0.3)
        started = time.monotonic()
        assert deliver_due() == passed(deferred=1)
        assert time.monotonic() - started < 2
    first, *others = rows()
    assert (first.attempts, first.status) == (0, "queued")
    assert "timed out" in first.last_error
    assert [(email.attempts, email.last_error) for email in others] == [(0, None), (0, None)]


def test_timeout_after_the_server_answered_about_the_message_is_an_attempt(app, smtp_server):
    """A message that makes the server stall is charged, so it cannot hold up the queue for ever."""
    stalling, other = queue(2)
    app.config["SMTP_TIMEOUT"] = 0.3
    smtp_server.handler.stall[stalling.to_addr] = 1.0  # MAIL FROM answered, RCPT never in time

    assert deliver_due() == passed(sent=1, retried=1)

    stalling, other = rows()
    assert (stalling.status, stalling.attempts) == ("queued", 1)
    assert "timed out" in stalling.last_error
    assert (other.status, other.attempts) == ("sent", 1)
    assert smtp_server.message_ids == [other.message_id]


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600), (10_000, 3600)],
)
def test_retry_delay_doubles_and_is_capped(attempts, seconds):
    assert retry_delay(attempts, 30, 3600) == timedelta(seconds=seconds)


def test_4xx_is_retried_with_backoff_and_fails_after_max_attempts(app, smtp_server):
    (email,) = queue()
    smtp_server.handler.reject[email.to_addr] = "451 4.3.0 Try again later"
    now = utcnow()
    for attempt, delay in [(1, 30), (2, 60), (3, 120)]:
        assert deliver_due(now=now) == passed(retried=1)
        (email,) = rows()
        assert (email.status, email.attempts) == ("queued", attempt)
        assert email.next_attempt_at == now + timedelta(seconds=delay)
        assert deliver_due(now=email.next_attempt_at - timedelta(seconds=1)) == NOTHING  # backing off
        now = email.next_attempt_at

    assert deliver_due(now=now) == passed(failed=1)
    (email,) = rows()
    assert (email.status, email.attempts, email.sent_at) == ("failed", 4, None)
    assert email.last_error == "contact0@contoso.example: 451 4.3.0 Try again later"

    del smtp_server.handler.reject[email.to_addr]
    assert deliver_due(now=now + timedelta(days=30)) == NOTHING  # failed stays failed until requeued
    assert smtp_server.handler.refused == [email.to_addr] * 4  # asked four times, at the server
    assert smtp_server.envelopes == []


@pytest.mark.parametrize(
    ("reply", "status"),
    [("550 5.1.1 No such mailbox", "failed"), ("451 4.3.0 Try again later", "queued")],
)
def test_refused_recipient_does_not_hold_up_the_others(app, smtp_server, reply, status):
    queue(3)
    smtp_server.handler.reject["contact1@contoso.example"] = reply
    now = utcnow()

    assert deliver_due(now=now) == passed(sent=2, retried=int(status == "queued"), failed=int(status == "failed"))

    first, refused, third = rows()
    assert (first.status, third.status) == ("sent", "sent")
    assert (refused.status, refused.attempts, refused.sent_at) == (status, 1, None)
    assert reply in refused.last_error
    assert sorted(smtp_server.message_ids) == sorted([first.message_id, third.message_id])

    # The recipient's mailbox works again: a 4xx was worth retrying, a 5xx was final.
    del smtp_server.handler.reject["contact1@contoso.example"]
    later = deliver_due(now=now + timedelta(seconds=30))
    assert later == (passed(sent=1) if status == "queued" else NOTHING)
    assert smtp_server.handler.refused == ["contact1@contoso.example"]
    assert smtp_server.message_ids.count(refused.message_id) == int(status == "queued")
    assert rows()[1].status == ("sent" if status == "queued" else "failed")


def test_header_injection_is_refused_and_nothing_is_sent(app, smtp_server):
    queue_email(to="victim@contoso.example", subject="Hello\r\nBcc: everyone@example.com", body="x")
    db.session.commit()

    assert deliver_due() == passed(failed=1)
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

    assert deliver_due(now=t0 + timedelta(seconds=900)) == passed(sent=1)
    assert smtp_server.message_ids == [message_id, message_id]  # the receiver can drop the second
    assert deliver_due(now=t0 + timedelta(days=1)) == NOTHING
    assert len(smtp_server.envelopes) == 2


def test_starttls_and_login_when_configured(app, tmp_path):
    tls_context, ca_file = self_signed_tls(tmp_path)
    with SmtpServer(login=("portal", "s3cret"), tls_context=tls_context) as server:
        app.config.update(server.app_config(SMTP_STARTTLS=True, SMTP_CA_FILE=ca_file,
                                            SMTP_USERNAME="portal", SMTP_PASSWORD="s3cret"))
        queue(2)
        assert deliver_due() == passed(sent=2)
        assert len(server.messages) == 2
        assert server.logins == ["portal"]  # one connection for the whole pass

        app.config["SMTP_PASSWORD"] = "wrong"
        queue(1)
        assert deliver_due() == passed(deferred=1)  # our configuration, not the message: no attempt
        refused = rows()[-1]
        assert (refused.status, refused.attempts) == ("queued", 0)
        assert "535" in refused.last_error
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
    assert result == passed(sent=2)
    assert sorted(smtp_server.message_ids) == other_message_ids
    assert deliver_due() == passed(sent=1)  # free again: its turn
    assert smtp_server.message_ids[-1] == held_message_id


# --- requeueing failed mail ---------------------------------------------------------------


def failed_and_sent(smtp_server) -> tuple[int, int, str]:
    """Two mails through one pass: the first refused for good (550), the second sent."""
    refused, _ = queue(2)
    smtp_server.handler.reject[refused.to_addr] = "550 5.2.1 Mailbox disabled"
    assert deliver_due() == passed(sent=1, failed=1)
    del smtp_server.handler.reject[refused.to_addr]  # the recipient fixed their mailbox
    failed, sent = rows()
    assert (failed.status, sent.status) == ("failed", "sent")
    return failed.id, sent.id, failed.message_id


def requeue_events() -> list[AuditEvent]:
    db.session.commit()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "mail.requeue")))


def test_producer_staff_requeue_failed_mail_which_is_then_delivered_once(app, smtp_server, make):
    failed_id, sent_id, message_id = failed_and_sent(smtp_server)
    staff = make.actor(make.producer(), "staff")

    with pytest.raises(ServiceError, match=f"not failed or unknown: {sent_id}, 999999"):
        requeue_failed(staff, [failed_id, sent_id, 999999])
    db.session.rollback()
    assert requeue_events() == []

    (email,) = requeue_failed(staff, [failed_id])
    db.session.commit()

    (event,) = requeue_events()
    assert (event.user_id, event.org_id) == (staff.user.id, staff.org.id)
    assert (event.subject_type, event.subject_id) == ("outbox_email", str(failed_id))
    assert event.details["attempts"] == 1
    assert event.details["last_error"] == "contact0@contoso.example: 550 5.2.1 Mailbox disabled"
    requeued = db.session.get(OutboxEmail, failed_id)
    assert (requeued.status, requeued.attempts) == ("queued", 0)

    assert deliver_due() == passed(sent=1)
    assert deliver_due(now=utcnow() + timedelta(days=1)) == NOTHING
    assert smtp_server.message_ids.count(message_id) == 1
    assert len(smtp_server.envelopes) == 2  # the other one was not sent again
    assert [(email.status, email.attempts) for email in rows()] == [("sent", 1), ("sent", 1)]


@pytest.mark.parametrize("kind", ["customer", "reseller"])
def test_only_the_producer_requeues_mail(app, smtp_server, make, kind):
    failed_id, _, _ = failed_and_sent(smtp_server)
    org = make.customer() if kind == "customer" else make.partner(kind)
    admin = make.actor(org, "admin")

    with pytest.raises(NotAllowed):
        requeue_failed(admin, [failed_id])
    with pytest.raises(NotAllowed):
        requeue_failed(admin)
    db.session.rollback()

    assert requeue_events() == []
    assert db.session.get(OutboxEmail, failed_id).status == "failed"
    assert deliver_due() == NOTHING


def test_mail_cli_status_and_requeue_all(app, smtp_server, make):
    failed_id, sent_id, message_id = failed_and_sent(smtp_server)
    make.producer()
    cli = app.test_cli_runner()

    status = cli.invoke(args=["portal", "mail", "status"])
    assert status.exit_code == 0, status.output
    assert status.output.splitlines() == [
        "0 queued, 1 sent, 1 failed",
        f"  failed #{failed_id} to contact0@contoso.example after 1 attempt(s): "
        "contact0@contoso.example: 550 5.2.1 Mailbox disabled",
    ]

    for args in ([], ["--all", "--id", str(failed_id)]):
        refused = cli.invoke(args=["portal", "mail", "requeue", *args])
        assert refused.exit_code == 2
        assert "Give either --id N (one or more times) or --all." in refused.output
    not_failed = cli.invoke(args=["portal", "mail", "requeue", "--id", str(sent_id)])
    assert not_failed.exit_code == 1
    assert f"not failed or unknown: {sent_id}." in not_failed.output
    assert requeue_events() == []

    result = cli.invoke(args=["portal", "mail", "requeue", "--all"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"1 failed mail(s) queued again: #{failed_id}"
    (event,) = requeue_events()
    assert (event.user_id, event.subject_id) == (None, str(failed_id))  # the system, from the CLI

    worker = cli.invoke(args=["portal", "worker", "--once"])
    assert "outbox: 1 sent, 0 to retry, 0 failed" in worker.output
    assert smtp_server.message_ids.count(message_id) == 1
    assert cli.invoke(args=["portal", "mail", "status"]).output == "0 queued, 2 sent, 0 failed\n"
    assert cli.invoke(args=["portal", "mail", "requeue", "--all"]).output == "0 failed mail(s) queued again\n"


# --- deliver_due inside a unit of work ----------------------------------------------------


def committed_outbox_count() -> int:
    """Rows in the outbox as another connection sees them: what has really been committed."""
    with db.engine.connect() as other:
        return other.scalar(select(func.count()).select_from(OutboxEmail))


@pytest.mark.parametrize("pending", ["added", "flushed", "orm_update"])
@pytest.mark.parametrize("then", ["rollback", "commit"])
def test_deliver_due_refuses_to_run_inside_a_unit_of_work_with_changes(app, smtp_server, pending, then):
    (earlier,) = queue()
    earlier_id = earlier.id
    email = queue_email(to="new@contoso.example", subject="Welcome", body="Hello.")
    if pending == "flushed":
        db.session.flush()
        assert not (db.session.new or db.session.dirty)  # the check the worker relied on before
    elif pending == "orm_update":
        db.session.expunge(email)  # only the UPDATE statement below is pending
        db.session.execute(update(OutboxEmail).where(OutboxEmail.id == earlier_id)
                           .values(subject="Changed"))

    with pytest.raises(RuntimeError, match="would commit your pending changes"):
        deliver_due()

    assert smtp_server.envelopes == []  # nothing sent, nothing claimed
    assert committed_outbox_count() == 1  # the caller's change was not committed for it
    if then == "rollback":
        db.session.rollback()
        expected = [("Security patch 0 for Widget", "sent")]
    else:
        db.session.commit()
        expected = [("Changed" if pending == "orm_update" else "Security patch 0 for Widget", "sent")]
        if pending != "orm_update":
            expected.append(("Welcome", "sent"))
    assert deliver_due() == passed(sent=len(expected))
    assert [(email.subject, email.status) for email in rows()] == expected
    assert len(smtp_server.envelopes) == len(expected)


@pytest.mark.parametrize("to_addr", [
    "contact@contoso.example", "Contact 1 <c1@contoso.example>", "<c@contoso.example>",
    '"Doe, Jane" <jane@contoso.example>', "Jane (sales) <jane@contoso.example>",
    "Jürgen Müller <jm@contoso.example>", "Name<n@contoso.example>", " spaced@contoso.example ",
])
def test_envelope_recipient_is_the_address_parseaddr_finds(to_addr):
    from email.utils import parseaddr

    assert outbox.envelope_address(to_addr) == parseaddr(to_addr)[1]
