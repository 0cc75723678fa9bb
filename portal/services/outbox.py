"""The outbox worker: deliver queued mail over SMTP, with retries and backoff.

Mail is queued by ``portal.services.mail.queue_email`` in the same transaction as the
change that causes it; this module sends it. Each message goes through three short steps:

1. **Claim** one due row in its own transaction and lease it, by moving its
   ``next_attempt_at`` a lease period ahead, then commit. PostgreSQL locks the row with
   ``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of workers claim different rows side
   by side; SQLite, where ``FOR UPDATE`` compiles to nothing, starts the claim with
   ``BEGIN IMMEDIATE`` (``begin_write``), which serializes claims.
2. **Send** it over SMTP with no transaction open. No database lock is held during network
   I/O: on SQLite a write lock held while an SMTP server dawdles would stall every request
   of the web app that wants to write.
3. **Mark** it sent (or record the failure and the next attempt) and commit.

Delivery is at least once. A crash between send and mark leaves the row queued; it becomes
due again when the lease runs out and is sent a second time with the same ``Message-ID``
header, which lets the receiver drop the duplicate. Nothing else sends a message twice: a
claimed row is not due for any other worker until its lease has run out, and the lease
(``OUTBOX_LEASE_SECONDS``) is far longer than one SMTP conversation may take.

Failures: a 5xx answer to the recipient or the content is permanent and the row is marked
``failed`` at once; anything else (connection refused, timeout, 4xx) is retried after
``OUTBOX_BACKOFF_SECONDS * 2 ** (attempts - 1)`` seconds, capped at
``OUTBOX_BACKOFF_MAX_SECONDS``, until ``OUTBOX_MAX_ATTEMPTS`` attempts have failed. When the
server cannot be reached at all, the pass stops after recording that attempt: the other
due messages are left untouched for the next pass rather than each waiting out the same
connection timeout.

Everything here runs in an application context and never touches ``request``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from portal.database import begin_write
from portal.extensions import db
from portal.models import OutboxEmail, utcnow

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_MAX_SECONDS = 3600
DEFAULT_LEASE_SECONDS = 900
# Headers the worker sets itself; a row's extra ``headers`` may not override them.
RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "message-id", "date", "mime-version",
     "content-type", "content-transfer-encoding", "sender", "return-path"}
)


class ServerUnavailable(Exception):
    """The SMTP server could not be reached, greeted, secured or logged in to."""


@dataclass(frozen=True)
class _Outgoing:
    """What the worker needs to send one claimed row, read before its claim commits."""

    id: int
    message_id: str
    to_addr: str
    subject: str
    body_text: str
    body_html: str | None
    headers: dict
    created_at: datetime

    @classmethod
    def of(cls, email: OutboxEmail) -> _Outgoing:
        return cls(email.id, email.message_id, email.to_addr, email.subject, email.body_text,
                   email.body_html, dict(email.headers or {}), email.created_at)


def retry_delay(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: doubling from the base, capped."""
    exponent = min(max(attempts - 1, 0), 30)  # 2**30 * any sane base is far beyond the cap
    return timedelta(seconds=min(base_seconds * 2**exponent, max_seconds))


def build_message(outgoing: _Outgoing, mail_from: str) -> EmailMessage:
    """The MIME message for one row: text body, optional HTML alternative, its own Message-ID.

    Raises ``ValueError`` for header values with line breaks (the default email policy
    refuses them, which keeps header injection out).
    """
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = outgoing.to_addr
    message["Subject"] = outgoing.subject
    message["Date"] = format_datetime(outgoing.created_at)
    message["Message-ID"] = outgoing.message_id
    for name, value in outgoing.headers.items():
        if name.lower() not in RESERVED_HEADERS:
            message[name] = str(value)
    message.set_content(outgoing.body_text)
    if outgoing.body_html:
        message.add_alternative(outgoing.body_html, subtype="html")
    return message


class _SmtpConnection:
    """One SMTP connection, opened on first use and reused for the rest of a pass."""

    def __init__(self, config):
        self.config = config
        self.smtp: smtplib.SMTP | None = None

    def send(self, message: EmailMessage, to_addr: str) -> None:
        if self.smtp is None:
            self.smtp = self._open()
        # The envelope recipient is the bare address, even if the row has "Name <address>".
        self.smtp.send_message(message, to_addrs=[parseaddr(to_addr)[1] or to_addr])

    def _open(self) -> smtplib.SMTP:
        config = self.config
        smtp = None
        try:
            smtp = smtplib.SMTP(config["SMTP_HOST"], int(config["SMTP_PORT"]),
                                timeout=float(config["SMTP_TIMEOUT"]))
            smtp.ehlo()
            if config.get("SMTP_STARTTLS"):
                smtp.starttls(context=ssl.create_default_context(cafile=config.get("SMTP_CA_FILE")))
                smtp.ehlo()
            if config.get("SMTP_USERNAME"):
                smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
        except (OSError, smtplib.SMTPException) as error:
            if smtp is not None:
                _close_quietly(smtp)
            raise ServerUnavailable(_describe(error)) from error
        return smtp

    def reset(self) -> None:
        """Drop the connection after an error; the next message opens a fresh one."""
        if self.smtp is not None:
            _close_quietly(self.smtp)
            self.smtp = None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                _close_quietly(self.smtp)
            self.smtp = None


def _close_quietly(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in error.recipients.items())
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _is_permanent(error: smtplib.SMTPException) -> bool:
    """A 5xx answer to this recipient or this content: retrying will not help."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    return False


def _begin() -> None:
    """Start a fresh write transaction (on SQLite ``BEGIN IMMEDIATE``, never a leftover read)."""
    _end_idle_transaction()
    begin_write()


def _claim_next(now: datetime, lease: timedelta) -> _Outgoing | None:
    """Claim the oldest due row in a transaction of its own and lease it; None when none is due."""
    _begin()
    email = db.session.scalar(
        select(OutboxEmail)
        .where(OutboxEmail.status == "queued", OutboxEmail.next_attempt_at <= now)
        .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if email is None:
        db.session.commit()
        return None
    outgoing = _Outgoing.of(email)
    email.next_attempt_at = now + lease
    db.session.commit()
    return outgoing


def _locked_row(email_id: int) -> OutboxEmail | None:
    """The claimed row, locked, in a fresh write transaction; None if it is no longer queued.

    Only possible when our lease ran out and another worker finished the row meanwhile (or
    someone deleted it): then its outcome stands.
    """
    _begin()
    email = db.session.get(OutboxEmail, email_id, with_for_update=True, populate_existing=True)
    if email is None or email.status != "queued":
        db.session.commit()
        return None
    return email


def _mark_sent(email_id: int, now: datetime) -> None:
    email = _locked_row(email_id)
    if email is None:
        return
    email.status = "sent"
    email.attempts += 1
    email.sent_at = now
    email.last_error = None
    db.session.commit()


def _mark_failed(email_id: int, now: datetime, error: str, *, permanent: bool) -> str | None:
    """Record a failed attempt; returns the new status (``queued`` again, or ``failed``)."""
    config = current_app.config
    email = _locked_row(email_id)
    if email is None:
        return None
    email.attempts += 1
    email.last_error = error[:2000]
    if permanent or email.attempts >= int(config["OUTBOX_MAX_ATTEMPTS"]):
        email.status = "failed"
    else:
        email.next_attempt_at = now + retry_delay(
            email.attempts,
            float(config["OUTBOX_BACKOFF_SECONDS"]),
            float(config.get("OUTBOX_BACKOFF_MAX_SECONDS", DEFAULT_BACKOFF_MAX_SECONDS)),
        )
    status = email.status
    log.warning("outbox: %s to %s %s: %s", email.message_id, email.to_addr,
                "failed" if status == "failed" else "will be retried", error)
    db.session.commit()  # touch no row after this: a read would open the next transaction
    return status


def _end_idle_transaction() -> None:
    """The worker runs its own transactions: refuse unsaved changes, end a read-only one."""
    session = db.session()
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("deliver_due() runs its own transactions: commit or roll back first")
    if session.in_transaction():
        session.commit()


def deliver_due(now: datetime | None = None, limit: int = 100,
                stop: threading.Event | None = None) -> dict[str, int]:
    """Deliver up to ``limit`` due queued mails, each claimed and marked in its own commits.

    ``now`` is the worker's clock (tests move it forward); ``stop``, when set, ends the
    pass after the message in hand. Returns counts: ``sent``, ``retried`` (failed this time,
    queued for a later attempt) and ``failed`` (given up). ``attempts`` on a row counts every
    try, the successful one included. Call it outside any unit of work: it commits.
    """
    config = current_app.config
    lease = timedelta(seconds=float(config.get("OUTBOX_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)))
    counts = {"sent": 0, "retried": 0, "failed": 0}
    _end_idle_transaction()
    connection = _SmtpConnection(config)
    try:
        for _ in range(limit):
            if stop is not None and stop.is_set():
                break
            clock = now or utcnow()
            outgoing = _claim_next(clock, lease)
            if outgoing is None:
                break
            try:
                message = build_message(outgoing, config["MAIL_FROM"])
            except (ValueError, TypeError, UnicodeError, MessageError) as error:
                _failure(counts, outgoing, clock, f"unsendable message: {error}", permanent=True)
                continue
            try:
                connection.send(message, outgoing.to_addr)
            except ServerUnavailable as error:
                _failure(counts, outgoing, clock, f"SMTP server unavailable: {error}")
                break  # the rest would only wait out the same failure; they stay due
            except smtplib.SMTPException as error:
                connection.reset()
                _failure(counts, outgoing, clock, _describe(error), permanent=_is_permanent(error))
                continue
            except OSError as error:  # connection lost mid-message, timeout
                connection.reset()
                _failure(counts, outgoing, clock, _describe(error))
                continue
            _mark_sent(outgoing.id, clock)
            counts["sent"] += 1
    finally:
        connection.close()
    return counts


def _failure(counts: dict[str, int], outgoing: _Outgoing, now: datetime, error: str, *,
             permanent: bool = False) -> None:
    status = _mark_failed(outgoing.id, now, error, permanent=permanent)
    if status is not None:
        counts["failed" if status == "failed" else "retried"] += 1


def run_worker(once: bool = False, interval: float = 2.0,
               echo: Callable[[str], None] = print, limit: int = 100) -> None:
    """Deliver due mail now and then every ``interval`` seconds until SIGTERM or Ctrl-C.

    With ``once``, deliver everything that is due and return. A stop request lets the message
    in hand finish (so it is not sent twice) and then returns without waiting out the interval.
    """
    stop = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # signal handlers can only be installed there
        previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        if not once:
            echo(f"outbox worker: polling every {interval:g}s (SIGTERM or Ctrl-C stops)")
        while not stop.is_set():
            try:
                total = _drain(limit, stop)
            except SQLAlchemyError as error:
                if once:
                    raise
                # The database may be restarting; the claimed row (if any) keeps its lease.
                db.session.rollback()
                echo(f"outbox worker: database error, retrying in {interval:g}s: {error}")
                total = None
            if total is not None and (once or any(total.values())):
                echo(f"outbox: {total['sent']} sent, {total['retried']} to retry, {total['failed']} failed")
            if once:
                return
            db.session.remove()  # hand the connection back to the pool while idle
            stop.wait(interval)
        echo("outbox worker: stopped")
    except KeyboardInterrupt:
        echo("outbox worker: interrupted")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _drain(limit: int, stop: threading.Event) -> dict[str, int]:
    """Passes of ``deliver_due`` until one is not full (so nothing more is due) or a stop."""
    total = {"sent": 0, "retried": 0, "failed": 0}
    while not stop.is_set():
        counts = deliver_due(limit=limit, stop=stop)
        for key, value in counts.items():
            total[key] += value
        if sum(counts.values()) < limit:
            break
    return total
